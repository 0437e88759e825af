"""A sweep's summaries, built from its runs' results.json files alone: summary.csv, summary.md, and the rendered
comparison report (summary.ipynb and summary.html, from notebooks/sweep_summary.ipynb).
"""

import csv
import io
import json
from pathlib import Path

from . import LabsError, results as results_file

SUMMARY_NOTEBOOK = "sweep_summary.ipynb"
COLUMNS = ["run", "model", "status", "test_accuracy", "test_loss", "best_val_accuracy", "epochs", "wall_seconds",
           "error"]


def collect(sweep_dir) -> dict:
    """Run name -> results.json, for every run folder of the sweep (sorted by name)."""
    found = {}
    for path in sorted(Path(sweep_dir).glob("*/results.json")):
        results = results_file.read(path.parent)
        if results is not None:
            found[path.parent.name] = results
    return found


def varied(runs: dict) -> list:
    """The parameters whose values differ between runs, in the order the notebook declares them."""
    names = []
    for results in runs.values():
        names += [n for n in results.get("params", {}) if n not in names]
    values = {n: {json.dumps(r.get("params", {}).get(n), sort_keys=True) for r in runs.values()} for n in names}
    return [n for n in names if len(values[n]) > 1]


def label(value) -> str:
    """A parameter value as a short label: [256, 256] -> 256x256, 1e-05 -> 1e-05."""
    if isinstance(value, list):
        return "x".join(map(label, value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def rows(runs: dict) -> list:
    """One row per run and model: the varied parameters, then test accuracy and loss, best validation accuracy,
    epochs, wall seconds, status and error. A run without models (it failed) gets one row."""
    names = varied(runs)
    table = []
    for run, results in runs.items():
        base = {"run": run, **{n: results.get("params", {}).get(n) for n in names},
                "status": results.get("status"), "wall_seconds": results.get("wall_seconds"),
                "error": results.get("error", "")}
        for model, m in (results.get("models") or {None: {}}).items():
            history = m.get("history") or []
            val = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None]
            table.append({**base, "model": model or "", "test_accuracy": m.get("test_accuracy"),
                          "test_loss": m.get("test_loss"), "best_val_accuracy": max(val) if val else None,
                          "epochs": len(history)})
    return table


def best_first(table: list) -> list:
    """Rows by test accuracy, best first; rows without one (failed runs) last."""
    return sorted(table, key=lambda r: (r["test_accuracy"] is None, -(r["test_accuracy"] or 0)))


def _fmt(column: str, value) -> str:
    if value is None:
        return ""
    if column in ("test_accuracy", "best_val_accuracy"):
        return f"{100 * value:.2f} %"
    if column == "test_loss":
        return f"{value:.4f}"
    if column == "wall_seconds":
        return f"{value:.0f}"
    return label(value)


def to_csv(table: list, names: list) -> str:
    columns = ["run", "model", *names, *COLUMNS[2:]]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({c: label(row[c]) if c in names else row[c] for c in columns})
    return out.getvalue()


def to_markdown(table: list, names: list, reference: dict | None = None) -> str:
    """The table in markdown, best first; `reference` (run name -> the seed report's test accuracy in %) adds a
    column beside ours."""
    columns = ["run", "model", *names, *COLUMNS[2:]]
    header = [c.replace("_", " ") for c in columns] + (["seed report"] if reference else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in best_first(table):
        cells = [_fmt(c, row[c]).replace("|", "/").replace("\n", " ") for c in columns]
        if reference:
            cells.append(f"{reference[row['run']]:.2f} %" if row["run"] in reference else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(sweep_dir, render: bool = True, reference: dict | None = None) -> dict:
    """(Re)build summary.csv, summary.md and, with `render`, summary.ipynb + summary.html in `sweep_dir`.

    Returns {"runs", "ok", "failed", "best"}: counts and the best run's name.
    """
    from .params import course_dir
    from .runner import execute

    sweep_dir = Path(sweep_dir)
    runs = collect(sweep_dir)
    table, names = rows(runs), varied(runs)
    results_file.write_atomic(sweep_dir / "summary.csv", to_csv(table, names))
    results_file.write_atomic(sweep_dir / "summary.md", f"# Sweep {sweep_dir.name}\n\n"
                              + to_markdown(table, names, reference))
    if render:
        error = execute(course_dir("notebooks") / SUMMARY_NOTEBOOK, sweep_dir / "summary.ipynb",
                        {"sweep_dir": str(sweep_dir.resolve()), "reference": reference or {}})
        if error:
            raise LabsError(f"The summary report of {sweep_dir} failed ({error}); "
                            f"read {sweep_dir / 'summary.ipynb'} for the traceback.")
    ranked = best_first(table)
    return {"runs": len(runs), "ok": sum(r.get("status") == "ok" for r in runs.values()),
            "failed": sum(r.get("status") != "ok" for r in runs.values()),
            "best": ranked[0]["run"] if ranked and ranked[0]["test_accuracy"] is not None else None}


# --- figures of the comparison report (matplotlib is imported only when drawing) ----------

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_metric(table: list, param: str, varied: list, metric: str = "test_accuracy", reference: dict | None = None):
    """`metric` against one varied parameter: a line over numeric values (log axis when they span decades),
    bars for categories; one series per model and setting of the other varied parameters.
    `reference` (run name -> test accuracy in %) adds the seed report's numbers as black crosses."""
    import matplotlib.pyplot as plt
    rows = [r for r in table if r.get(metric) is not None]
    others = [k for k in varied if k != param]
    series = {}
    for r in rows:
        key = ", ".join([r["model"]] + [f"{k}={label(r[k])}" for k in others])
        series.setdefault(key, []).append(r)
    values = [r[param] for r in table]
    numeric = all(_is_number(v) for v in values)
    scale = 100 if "accuracy" in metric else 1
    fig, ax = plt.subplots(figsize=(7, 3.8))
    if numeric:
        positive = [v for v in values if v > 0]
        if len(positive) == len(values) and max(positive) / min(positive) >= 100:
            ax.set_xscale("log")
        for i, (key, rs) in enumerate(series.items()):
            rs = sorted(rs, key=lambda r: r[param])
            ax.plot([r[param] for r in rs], [scale * r[metric] for r in rs], "o-", color=f"C{i}", label=key)
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
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_runs(runs: dict, key: str = "val_accuracy"):
    """One curve per run and model: `key` (a history column) per epoch, all runs overlaid."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    scale = 100 if "accuracy" in key else 1
    for run, results in runs.items():
        for model, m in (results.get("models") or {}).items():
            history = [h for h in m.get("history") or [] if h.get(key) is not None]
            if history:
                name = run if len(results["models"]) == 1 else f"{run} {model}"
                ax.plot([h["epoch"] for h in history], [scale * h[key] for h in history], marker=".", label=name)
    ax.set(xlabel="epoch", ylabel=key.replace("_", " ") + (" (%)" if scale == 100 else ""),
           title=f"{key.replace('_', ' ')} of every run")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, ncol=2 if len(ax.lines) > 8 else 1)
    fig.tight_layout()
    return fig
