"""index.html: every run and sweep under the outputs folder, newest first, each linked to its report.

Plain static HTML, readable offline, built from the results.json files alone (no torch, no server).
"""

import html
import os
from pathlib import Path
from urllib.parse import quote

from labutils import results as results_file

from . import records, summary

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
p.note { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.35em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; } td.num { text-align: right; white-space: nowrap; }
tr.failed td { background: #fde8e8; } tr.diverged td { background: #fff3dc; } tr.mixed td { background: #fff3dc; }
.status { font-weight: 600; } tr.failed .status { color: #b00020; } tr.diverged .status { color: #a05a00; }
details summary { cursor: pointer; color: #555; } details td { font-size: 0.93em; }
a { color: #0b57d0; } td.date { white-space: nowrap; } .error { color: #b00020; font-size: 0.9em; }
"""


def _link(target: Path, base: Path, text: str) -> str:
    """A relative link from the index's folder to `target`, or plain text when the target is missing."""
    if not target.exists():
        return html.escape(text)
    return f'<a href="{quote(Path(os.path.relpath(target, base)).as_posix())}">{html.escape(text)}</a>'


def _accuracies(results: dict) -> str:
    return "<br>".join(f"{html.escape(name)} {100 * m['test_accuracy']:.2f} %"
                       for name, m in (results.get("models") or {}).items() if m.get("test_accuracy") is not None)


def _run_row(folder: Path, results: dict, base: Path, name: str) -> str:
    status = results.get("status", "?")
    error = f'<div class="error">{html.escape(results["error"])}</div>' if results.get("error") else ""
    return (f'<tr class="{html.escape(status)}"><td class="date">{html.escape(str(results.get("finished", ""))[:16].replace("T", " "))}</td>'
            f'<td>{html.escape(str(results.get("assignment", "")))}</td><td>{_link(folder / "report.html", base, name)}'
            f'{error}</td><td class="status">{html.escape(status)}</td><td class="num">{_accuracies(results)}</td>'
            f'<td class="num">{results.get("wall_seconds") or 0:.0f} s</td></tr>')


def _files(root: Path, names) -> list:
    """Files of these names anywhere under `root`, through symlinked folders too (each real folder once)."""
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:   # a link back up the tree, or two links to one folder
            subfolders.clear()
            continue
        seen.add(real)
        found += [Path(folder) / name for name in files if name in names]
    return found


def collect(root: Path) -> tuple:
    """(runs, sweeps) under `root`: runs as [(folder, results)], sweeps as [(folder, {run: results})]; a run inside
    a sweep's folder belongs to that sweep."""
    found = _files(root, ("results.json", "sweep.yaml", "summary.csv"))
    sweeps = sorted({p.parent for p in found if p.name != "results.json"})
    runs = []
    for path in sorted(p for p in found if p.name == "results.json"):
        if path.parent.parent not in sweeps:
            results = records.read(path.parent)
            if results is not None:
                runs.append((path.parent, results))
    return runs, [(folder, summary.collect(folder)) for folder in sweeps]


def _newest(results: dict) -> str:
    return str(results.get("finished", ""))


def render(root: Path) -> str:
    root = Path(root)
    runs, sweeps = collect(root)
    runs.sort(key=lambda r: _newest(r[1]), reverse=True)
    sweeps.sort(key=lambda s: max((_newest(r) for r in s[1].values()), default=""), reverse=True)
    head = "<tr><th>finished</th><th>assignment</th><th>run</th><th>status</th><th>test accuracy</th><th>wall time</th></tr>"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Runs in {html.escape(str(root))}</title>"
             f"<style>{STYLE}</style></head><body><h1>Runs and sweeps</h1>",
             f'<p class="note">Everything under <code>{html.escape(str(root.resolve()))}</code>, newest first, from '
             f'each run\'s results.json. Failed runs are red, diverged ones orange. Rebuild with '
             f'<code>labs index</code>.</p>']
    parts.append(f"<h2>Sweeps ({len(sweeps)})</h2>")
    if sweeps:
        parts.append("<table><tr><th>last run</th><th>sweep</th><th>assignment</th><th>runs</th>"
                     "<th>best run (by validation)</th></tr>")
        for folder, members in sweeps:
            top = summary.best_run(summary.rows(members))
            best = (f"{_link(folder / top['run'] / 'report.html', root, top['run'])} "
                    f"{html.escape(top['model'])}: test {100 * top['test_accuracy']:.2f} %"
                    if top else "none finished")
            bad = sum(r.get("status") != "ok" for r in members.values())
            status = "ok" if not bad else "failed" if bad == len(members) else "mixed"
            assignments = ", ".join(sorted({str(r.get("assignment")) for r in members.values()}))
            last = max((_newest(r) for r in members.values()), default="")[:16].replace("T", " ")
            inner = "".join(_run_row(folder / run, r, root, run)
                            for run, r in sorted(members.items(), key=lambda m: _newest(m[1]), reverse=True))
            parts.append(
                f'<tr class="{status}"><td class="date">{html.escape(last)}</td><td>{_link(folder / "summary.html", root, folder.name)}'
                f'<details><summary>{len(members)} runs</summary><table>{head}{inner}</table></details></td>'
                f'<td>{html.escape(assignments)}</td><td class="status">{len(members) - bad} ok, {bad} failed or '
                f'diverged</td><td>{best}</td></tr>')
        parts.append("</table>")
    else:
        parts.append("<p>none yet: <code>labs sweep params/sweeps/&lt;file&gt;.yaml</code></p>")
    parts.append(f"<h2>Runs ({len(runs)})</h2>")
    if runs:
        parts.append(f"<table>{head}")
        parts += [_run_row(folder, results, root, folder.relative_to(root).as_posix()) for folder, results in runs]
        parts.append("</table>")
    else:
        parts.append("<p>none yet: <code>labs run &lt;assignment&gt;</code></p>")
    return "\n".join(parts) + "\n</body></html>\n"


def write(root: Path) -> Path:
    """(Re)write root/index.html."""
    root = Path(root)
    target = root / "index.html"
    results_file.write_atomic(target, render(root))
    return target
