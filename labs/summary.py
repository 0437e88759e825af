"""A sweep's summaries, built from its runs' results.json files alone: summary.csv, summary.md, and the rendered
comparison report (summary.ipynb and summary.html, from notebooks/sweep_summary.ipynb).
"""

import csv
import io
import json
from pathlib import Path
from urllib.parse import quote

import yaml

from labutils import LabsError, results as results_file
from labutils.vocab import is_number, label, md, plural

from . import records

SUMMARY_NOTEBOOK = "sweep_summary.ipynb"
COLUMNS = ["run", "model", "status", "test_accuracy", "test_loss", "val_accuracy", "epochs", "wall_seconds", "error"]


def collect(sweep_dir, warn: bool = True) -> dict:
    """Run name -> results.json, for every run folder of the sweep that its sweep file makes now (sweep.yaml's
    `made`; all of them without one), sorted by name; an unusable results.json is left out, named in one warning
    line."""
    found, current = {}, made(sweep_dir)
    for path in sorted(Path(sweep_dir).glob("*/results.json")):
        if current is None or path.parent.name in current:
            results = records.read(path.parent, warn)
            if results is not None:
                found[path.parent.name] = results
    return found


def made(sweep_dir) -> set | None:
    """The runs the sweep file makes as it now stands (sweep.yaml's `made`), or None when that is not known."""
    path = Path(sweep_dir) / "sweep.yaml"
    try:
        spec = yaml.safe_load(path.read_text()) if path.is_file() and path.stat().st_size < 10_000_000 else None
    except (OSError, yaml.YAMLError):
        return None
    runs = spec.get("made") if isinstance(spec, dict) else None
    return set(runs) if isinstance(runs, dict) else None


def older(sweep_dir) -> list:
    """Run folders beside the sweep's runs that its sweep file no longer makes (it was edited since)."""
    current = made(sweep_dir)
    return [] if current is None else sorted(p.parent.name for p in Path(sweep_dir).glob("*/results.json")
                                             if p.parent.name not in current)


def check_one_sweep(sweep_dir: Path, runs: dict) -> None:
    """Refuse a folder that is not one sweep: no sweep.yaml beside the runs, or runs of several assignments."""
    if not (Path(sweep_dir) / "sweep.yaml").is_file():
        raise LabsError(f"{sweep_dir} is not a sweep's folder (it has no sweep.yaml); give a folder that "
                        f"`labs sweep` wrote, such as outputs/sweeps/<name>.")
    assignments = sorted({r["assignment"] for r in runs.values()})
    if len(assignments) > 1:
        raise LabsError(f"{sweep_dir} holds runs of {', '.join(assignments)}: a summary compares the runs of one "
                        f"sweep; give that sweep's own folder.")


def varied(runs: dict) -> list:
    """The parameters whose values differ between runs, in the order the notebook declares them."""
    names = []
    for results in runs.values():
        names += [n for n in results.get("params", {}) if n not in names]
    values = {n: {json.dumps(r.get("params", {}).get(n), sort_keys=True) for r in runs.values()} for n in names}
    return [n for n in names if len(values[n]) > 1]


def rows(runs: dict) -> list:
    """One row per run and model: the varied parameters, then test accuracy and loss, validation accuracy where
    training ended (results.best's rule), the epochs trained (a fraction for a staged recipe; none for an ensemble
    without its own history), wall seconds, status and error. A run without models (it failed) gets one row."""
    names = varied(runs)
    table = []
    for run, results in runs.items():
        base = {"run": run, "setting": results.get("setting") or run, "seed": results.get("seed"),
                **{n: results.get("params", {}).get(n) for n in names},
                "status": results.get("status"), "wall_seconds": results.get("wall_seconds"),
                "error": results.get("error") or ""}
        for model, m in (results.get("models") or {None: {}}).items():
            history = m.get("history") or []
            table.append({**base, "model": model or "", "test_accuracy": m.get("test_accuracy"),
                          "test_loss": m.get("test_loss"), "val_accuracy": results_file.final_val_accuracy(m),
                          "epochs": history[-1].get("epoch") if history else None})
    return table


def heading(name: str, runs: dict, names: list) -> str:
    """The summary's title (the sweep's name) and one line on what it holds."""
    assignments = ", ".join(sorted({str(r.get("assignment")) for r in runs.values()}))
    synthetic = sum(bool(r.get("params", {}).get("synthetic")) for r in runs.values())
    data = ("synthetic data (a smoke run)" if synthetic == len(runs) else "the real dataset" if not synthetic else
            f"the real dataset ({synthetic} of them on synthetic data)")
    return (f"# Sweep {md(name)}\n\n{plural(len(runs), 'run')} of {md(assignments)} on {data}; "
            f"varied: {md(', '.join(names) or 'nothing')}.\n")


def settings(table: list) -> list:
    """The rows of one setting (the same parameters, other seeds) merged into one: accuracies and wall time
    averaged, the test accuracies' range kept (test_min, test_max), the runs listed. A setting run with one seed
    is its run's row."""
    groups = {}
    for row in table:
        groups.setdefault((row["setting"], row["model"]), []).append(row)
    merged = []
    for (name, _), rows in groups.items():
        done = [r for r in rows if r["test_accuracy"] is not None]

        def mean(key, rs=done):
            values = [r[key] for r in rs if r[key] is not None]
            return sum(values) / len(values) if values else None
        statuses = {r["status"] for r in rows}
        merged.append({**rows[0], "run": name, "runs": [r["run"] for r in rows], "seeds": len(rows),
                       "seeds_list": [r.get("seed") for r in rows],
                       "status": statuses.pop() if len(statuses) == 1 else "mixed",
                       "test_accuracy": mean("test_accuracy"), "test_loss": mean("test_loss"),
                       "val_accuracy": mean("val_accuracy"), "wall_seconds": mean("wall_seconds", rows),
                       "test_min": min((r["test_accuracy"] for r in done), default=None),
                       "test_max": max((r["test_accuracy"] for r in done), default=None),
                       "error": " ".join(dict.fromkeys(r["error"] for r in rows if r["error"]))})
    return merged


def best_first(table: list) -> list:
    """Rows by validation accuracy, best first (results.best's rule: the test set chooses nothing); rows without
    one last."""
    return sorted(table, key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0), -(r["test_accuracy"] or 0)))


def best_run(table: list) -> dict | None:
    """The best run of a sweep: the row (run and model) that results.best picks; None when no run has one."""
    name = results_file.best({k: r for k, r in enumerate(table)})
    return table[name] if name is not None else None


def _fmt(column: str, value) -> str:
    if value is None:
        return ""
    if column in ("test_accuracy", "val_accuracy"):
        return f"{100 * value:.2f} %"
    if column == "test_loss":
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.3g}"   # a diverged run's loss can be huge
    if column == "wall_seconds":
        return f"{value:.0f}"
    if column == "epochs":   # a staged recipe's are a fraction: 1,200 iterations of 128 on 54,000 images, 2.84
        return f"{value:g}" if float(value).is_integer() else f"{value:.2f}"
    return label(value)


def to_csv(table: list, names: list) -> str:
    columns = ["run", "model", *names, *COLUMNS[2:]]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({c: label(row[c]) if c in names else row[c] for c in columns})
    return out.getvalue()


def _linked(row: dict) -> str:
    """The run's name linked to its report; a setting of several seeds links each seed's report."""
    if row.get("seeds", 1) == 1:
        return _link(row["runs"][0] if "runs" in row else row["run"], row["run"])
    seeds = " ".join(_link(run, seed) for run, seed in zip(row["runs"], row["seeds_list"]))
    return f"{md(row['run'])} (seeds {seeds})"


def _link(run: str, text) -> str:
    """A Markdown link to a run's report: its name shown as text, its folder quoted as a URL."""
    return f"[{md(text)}]({quote(run)}/report.html)"


def to_markdown(table: list, names: list, reference: dict | None = None) -> str:
    """The runs in markdown, best on validation first, each linked to its report. Runs that differ only by
    their seed are one row (test accuracy: the mean, and the range). `reference` (setting -> the seed report's
    test accuracy in %) adds a column beside ours."""
    rows = settings(table)
    names = [n for n in names if n != "seed" or all(r["seeds"] == 1 for r in rows)]
    columns = ["run", "model", *names, *COLUMNS[2:]]
    header = [md(c.replace("_", " ")) for c in columns] + (["seed report"] if reference else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in best_first(rows):
        cells = [_linked(row) if c == "run" else md(_fmt(c, row[c])) for c in columns]
        if row["seeds"] > 1 and row["test_min"] is not None:
            cells[columns.index("test_accuracy")] += f" ({100 * row['test_min']:.2f}-{100 * row['test_max']:.2f})"
        if reference:
            cells.append(f"{reference[row['run']]:.2f} %" if row["run"] in reference else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def differences(table: list, reference: dict, notes: dict | None = None, points: float = 2.0) -> list:
    """Sentences, one per setting whose test accuracy differs from the seed report's by more than `points`:
    the two numbers, and what this sweep's own runs say about it (the spread over seeds), then the sweep file's
    note on that setting, if any."""
    sentences = []
    for row in settings(table):
        ours, theirs = row["test_accuracy"], reference.get(row["run"])
        if ours is None or theirs is None or abs(100 * ours - theirs) <= points:
            continue
        text = (f"**{md(row['run'])}**: ours {100 * ours:.2f} % against the report's {theirs:.2f} % "
                f"({100 * ours - theirs:+.2f} points).")
        if row["seeds"] > 1:
            spread = 100 * (row["test_max"] - row["test_min"])
            inside = 100 * row["test_min"] <= theirs <= 100 * row["test_max"]
            text += (f" Over {row['seeds']} seeds ours ranges from {100 * row['test_min']:.2f} to "
                     f"{100 * row['test_max']:.2f} % ({spread:.1f} points), "
                     + ("and the report's number lies inside that range: one run of this setting is not "
                        "repeatable to within 2 points." if inside else
                        "and the report's number lies outside it." if spread > points else
                        "a narrow range: the difference is not noise of the seed."))
        else:
            text += " One seed only: add `seeds: [0, 1, 2]` to the sweep file to see how much it varies."
        if (notes or {}).get(row["run"]):
            text += f" {md(notes[row['run']])}"
        sentences.append(text)
    return sentences


def write(sweep_dir, render: bool = True, reference: dict | None = None, name: str = "",
          notes: dict | None = None) -> dict:
    """(Re)build summary.csv, summary.md and, with `render`, summary.ipynb + summary.html in `sweep_dir`.

    Returns {"runs", "ok", "failed", "best", "older"}: counts, the best run's name (by validation accuracy), and
    the run folders the sweep file no longer makes (left out).
    """
    from .params import course_dir
    from .runner import execute

    sweep_dir = Path(sweep_dir)
    name = name or sweep_dir.name
    runs = collect(sweep_dir)
    table, names = rows(runs), varied(runs)
    results_file.write_atomic(sweep_dir / "summary.csv", to_csv(table, names))
    gaps = differences(table, reference or {}, notes)
    results_file.write_atomic(sweep_dir / "summary.md", heading(name, runs, names) + "\n" + to_markdown(table, names, reference)
                              + "".join(f"\n{sentence}\n" for sentence in gaps))
    if render:
        error = execute(course_dir("notebooks") / SUMMARY_NOTEBOOK, sweep_dir / "summary.ipynb",
                        {"sweep_dir": str(sweep_dir.resolve()), "name": name, "reference": reference or {},
                         "notes": notes or {}})
        if error:
            raise LabsError(f"The summary report of {sweep_dir} failed ({error}); "
                            f"read {sweep_dir / 'summary.ipynb'} for the traceback.")
    best = best_run(table)
    return {"runs": len(runs), "ok": sum(r.get("status") == "ok" for r in runs.values()),
            "failed": sum(r.get("status") != "ok" for r in runs.values()),
            "best": best["run"] if best else None, "older": older(sweep_dir)}


# --- the comparison report's views (notebooks/sweep_summary.ipynb), one call each ---------------

def _show(markdown: str) -> None:
    from IPython.display import Markdown, display
    display(Markdown(markdown))


def show_heading(name: str, runs: dict) -> None:
    _show(heading(name, runs, varied(runs)))


def show_table(runs: dict, reference: dict, notes: dict) -> None:
    """Every setting, best validation accuracy first, and where ours differs from the report."""
    table = rows(runs)
    _show(to_markdown(table, varied(runs), reference))
    gaps = differences(table, reference, notes)
    if gaps:
        _show("**Where ours differs from the report by more than 2 points:**\n\n" + "\n\n".join(gaps))


def show_metric(runs: dict, metric: str, reference: dict) -> None:
    """`metric` against each varied parameter (the seed aside)."""
    names, table = varied(runs), rows(runs)
    for parameter in (v for v in names if v != "seed"):
        plot_metric(table, parameter, names, metric, reference)


def show_best(runs: dict) -> None:
    """The best run (by validation) and its parameters."""
    best = best_run(rows(runs))
    if best is None:
        print("no run finished")
        return
    _show(f"**{_link(best['run'], best['run'])}** ({md(best['model'])}): validation accuracy "
          f"{best['val_accuracy']:.2%} where training ended, test accuracy {best['test_accuracy']:.2%}.\n\n"
          "| parameter | value |\n|---|---|\n"
          + "\n".join(f"| {md(k)} | {md(label(v))} |" for k, v in runs[best["run"]]["params"].items()))


def show_failed(runs: dict) -> None:
    failed = {run: r for run, r in runs.items() if r["status"] != "ok"}
    if not failed:
        print("none: every run finished ok")
        return
    _show("| run | status | error |\n|---|---|---|\n" + "\n".join(
        f"| {_link(run, run)} | {md(r['status'])} | {md(r.get('error') or '')} |"
        for run, r in failed.items()))


# --- figures of the comparison report (matplotlib is imported only when drawing) ----------

def plot_metric(table: list, param: str, varied: list, metric: str = "test_accuracy", reference: dict | None = None):
    """`metric` against one varied parameter: a line over numeric values (log axis when they span decades),
    bars for categories; one series per model and setting of the other varied parameters.
    `reference` (run name -> test accuracy in %) adds the seed report's numbers as black crosses. Runs that
    differ only by their seed are drawn as one point, their mean, with a bar over their range (test accuracy)."""
    import matplotlib.pyplot as plt
    from labutils.style import legend_outside
    if "seed" in varied and param != "seed":
        table, varied = settings(table), [k for k in varied if k != "seed"]
    rows = [r for r in table if r.get(metric) is not None]
    others = [k for k in varied if k != param]
    series = {}
    for r in rows:
        key = ", ".join([r["model"]] + [f"{k}={label(r[k])}" for k in others])
        series.setdefault(key, []).append(r)
    values = [r[param] for r in table]
    numeric = all(is_number(v) for v in values)
    scale = 100 if "accuracy" in metric else 1
    fig, ax = plt.subplots(figsize=(7, 3.8))
    if numeric:
        positive = [v for v in values if v > 0]
        if len(positive) == len(values) and max(positive) / min(positive) >= 100:
            ax.set_xscale("log")
        for i, (key, rs) in enumerate(series.items()):
            rs = sorted(rs, key=lambda r: r[param])
            ax.plot([r[param] for r in rs], [scale * r[metric] for r in rs], "o-", color=f"C{i}", label=key)
            spread = [r for r in rs if r.get("seeds", 1) > 1 and metric == "test_accuracy"]
            if spread:
                ax.errorbar([r[param] for r in spread], [scale * r[metric] for r in spread], fmt="none", ecolor=f"C{i}",
                            capsize=4, yerr=[[scale * (r[metric] - r["test_min"]) for r in spread],
                                             [scale * (r["test_max"] - r[metric]) for r in spread]])
        x_of = {r["run"]: r[param] for r in table}
    else:
        categories = list(dict.fromkeys(label(v) for v in values))
        width = 0.8 / max(len(series), 1)
        for i, (key, rs) in enumerate(series.items()):
            ax.bar([categories.index(label(r[param])) + i * width - 0.4 + width / 2 for r in rs],
                   [scale * r[metric] for r in rs], width, color=f"C{i}", label=key)
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(categories)
        x_of = {r["run"]: categories.index(label(r[param])) for r in table}
    refs = [(x_of[run], value) for run, value in (reference or {}).items() if run in x_of]
    if refs:
        ax.plot(*zip(*sorted(refs)), "kx", markersize=9, mew=2, label="seed report")
    ax.set(xlabel=param, ylabel=metric.replace("_", " ") + (" (%)" if scale == 100 else ""),
           title=f"{metric.replace('_', ' ')} against {param}")
    legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_runs(runs: dict, key: str = "val_accuracy"):
    """One curve per run and model: `key` (a history column) per epoch, all runs overlaid; the seeds of one
    setting share its colour and one legend entry."""
    import matplotlib.pyplot as plt
    from labutils.style import legend_outside
    fig, ax = plt.subplots(figsize=(8, 4))
    scale = 100 if "accuracy" in key else 1
    colors, counts = {}, {}
    setting_of = {run: results.get("setting") or run for run, results in runs.items()}
    for run in runs:
        counts[setting_of[run]] = counts.get(setting_of[run], 0) + 1
    for run, results in runs.items():
        for model, m in (results.get("models") or {}).items():
            history = [h for h in m.get("history") or [] if h.get(key) is not None]
            if history:
                setting = setting_of[run] if len(results["models"]) == 1 else f"{setting_of[run]} {model}"
                first = setting not in colors
                colors.setdefault(setting, (f"C{len(colors) % 8}", "-" if len(colors) < 8 else "--"))
                n = counts[setting_of[run]]
                label = (setting + (f" ({n} seeds)" if n > 1 else "")) if first else None
                ax.plot([h["epoch"] for h in history], [scale * h[key] for h in history], marker=".", label=label,
                        color=colors[setting][0], linestyle=colors[setting][1])
    ax.set(xlabel="epoch", ylabel=key.replace("_", " ") + (" (%)" if scale == 100 else ""),
           title=f"{key.replace('_', ' ')} of every run")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    legend_outside(ax, ncol=2 if len(colors) > 12 else 1)
    fig.tight_layout()
    return fig
