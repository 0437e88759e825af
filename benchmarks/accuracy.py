"""Test accuracy on the real datasets: each lab's defaults and the seed reports' recipes, over N seeds.

    python benchmarks/accuracy.py                       # every lab whose dataset is in the data folder, 3 seeds
    python benchmarks/accuracy.py --labs fashion_fcn_vs_lenet --seeds 3 --data-dir ~/data

Each (lab, recipe, seed) is one real `labs run` of the lab's notebook (papermill, the same code a user runs) with
`download: false`, into outputs/accuracy/<lab>/<recipe>/seed-<N>/. A run already there with the same parameters
is kept, so an interrupted benchmark resumes. A lab whose dataset is not in the data folder is listed as
"not measured yet". The tables are rebuilt from every run found under the output folder:

    benchmarks/results/accuracy.csv   one row per lab, recipe and model, with its precision, machine and date
    benchmarks/results/accuracy.md    the same as a table

Rows of the earlier tables that this invocation did not measure are kept as they were (each row names its
machine and date). `default` runs the lab's defaults (`precision: auto`); `default-fp32` the same in fp32.

The test set is only reported here: every recipe was chosen on the validation split.
"""

import argparse
import csv
import io
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labutils import LabsError, data, results  # noqa: E402
from labs import records
from labs import params, runner, sweep  # noqa: E402
from labutils.reported import reported  # noqa: E402

# lab -> (dataset, [(recipe name, parameter files, overrides)]); the seed*.yaml presets are the reports' recipes
DEFAULTS = [("default", [], {}), ("default-fp32", [], {"precision": "fp32"})]
LABS = {
    "mnist_mlp": ("mnist", DEFAULTS + [("seed", ["seed.yaml"], {})]),
    "fashion_fcn_vs_lenet": ("fashion_mnist", DEFAULTS + [("seed", ["seed.yaml"], {}),
                                                          ("seed-modified", ["seed-modified.yaml"], {})]),
    "cifar10_cnn": ("cifar10", DEFAULTS + [("seed-lenet5", ["seed-lenet5.yaml"], {}),
                                           ("seed-model2", ["seed-model2.yaml"], {})]),
    "mnist_cnn_ensemble": ("mnist", DEFAULTS + [("seed", ["seed.yaml"], {})]),
}
# Measured on FashionMNIST too: lab 04 takes it as its `dataset` (MNIST cannot be fetched everywhere). Its seed
# recipe (3 million images per network) is left out there: about two hours per run on a 2-core CPU.
ALSO = {"mnist_cnn_ensemble": ("fashion_mnist", [(name, files, {**overrides, "dataset": "fashion_mnist"})
                                                 for name, files, overrides in DEFAULTS])}


def report_number(lab: str, dataset: str, recipe: str, model: str):
    """The seed report's test accuracy (%) for this row, from labutils/reports/<lab>.yaml: its number for the
    recipe, or for a lab's defaults the report's best for the model; None when the report has none."""
    paper = reported(lab)
    if dataset != paper.get("dataset"):
        return None
    if recipe.startswith("default"):
        return paper.get("models", {}).get(model)
    return paper.get("recipes", {}).get(recipe, {}).get(model)


COLUMNS = ["lab", "dataset", "recipe", "model", "precision", "seeds", "test_accuracy_mean", "test_accuracy_sd",
           "test_accuracy_min", "test_accuracy_max", "report", "wall_seconds_median", "wall", "machine", "torch", "date"]


def machine() -> str:
    """The CPU (or GPU) this runs on, in words."""
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os
    return f"{os.cpu_count()}-core {name} (CPU)"


def measure(labs: list, seeds: int, data_dir: str, out: Path, only: list) -> None:
    """Run every (lab, recipe, seed) whose dataset is present, skipping the runs already done; `only`: these
    recipes (all when empty)."""
    root = data.data_dir(data_dir)
    for lab in labs:
        for dataset, recipes in [LABS[lab]] + ([ALSO[lab]] if lab in ALSO else []):
            spec = data.DATASETS[dataset]
            if not spec.present(root / spec.folder):
                print(f"{lab} on {spec.title}: not in {root / spec.folder}: not measured", flush=True)
                continue
            for recipe, files, overrides in recipes:
                if only and recipe not in only:
                    continue
                for seed in range(seeds):
                    values = params.resolve(lab, [ROOT / "params" / lab / f for f in files],
                                            {**overrides, "seed": seed, "download": False, "data_dir": str(root)})
                    folder = out / lab / dataset / recipe / f"seed-{seed}"
                    if sweep.is_done(folder, values):
                        print(f"{lab} {dataset} {recipe} seed {seed}: done before", flush=True)
                        continue
                    print(f"{lab} {dataset} {recipe} seed {seed} ...", flush=True)
                    outcome = runner.run(lab, values, folder, stream=False)
                    print(f"  {results.describe(outcome)}", flush=True)


def rows(out: Path, labs: list) -> list:
    """One row per lab, dataset, recipe and model, from every run under `out`; a lab with no run: not measured."""
    table, found = [], set()
    for lab in labs:
        for dataset, recipes in [LABS[lab]] + ([ALSO[lab]] if lab in ALSO else []):
            for recipe, _, _ in recipes:
                runs = [r for r in (records.read(f) for f in sorted((out / lab / dataset / recipe).glob("seed-*")))
                        if r and r["status"] == "ok"]
                if not runs:
                    continue
                found.add((lab, dataset))
                for model in runs[0]["models"]:
                    accuracies = [100 * r["models"][model]["test_accuracy"] for r in runs if model in r["models"]]
                    table.append({
                        "lab": lab, "dataset": data.DATASETS[dataset].title, "recipe": recipe, "model": model,
                        "precision": "/".join(sorted({str(r["env"].get("precision")) for r in runs})),
                        "seeds": len(accuracies), "test_accuracy_mean": statistics.mean(accuracies),
                        "test_accuracy_sd": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                        "test_accuracy_min": min(accuracies), "test_accuracy_max": max(accuracies),
                        "report": report_number(lab, dataset, recipe, model),
                        "wall_seconds_median": statistics.median(r["wall_seconds"] for r in runs), "wall": "median",
                        "torch": runs[0]["env"]["torch"], "machine": machine(),
                        "date": max(str(r.get("finished", ""))[:10] for r in runs)})
    return table


def merged(table: list, earlier: Path, labs: list) -> list:
    """This invocation's rows, then the earlier table's rows for what it did not measure (kept as written, each
    with its machine and date), in the order of LABS; a lab with no row at all: not measured yet."""
    key = lambda r: (r["lab"], r["dataset"], r["recipe"], r["model"])
    new = {key(r) for r in table}
    old = list(csv.DictReader(earlier.open())) if earlier.exists() else []
    kept = []
    for r in old:
        if key(r) in new or not int(r["seeds"] or 0):
            continue
        if "wall_seconds_mean" in r:   # tables from before the median gave the mean
            r["wall_seconds_median"], r["wall"] = r.pop("wall_seconds_mean"), "mean"
        r = {k: (float(v) if k.startswith(("test_accuracy", "wall_seconds")) or k == "report" and v else v)
             for k, v in r.items()}
        kept.append({**r, "seeds": int(r["seeds"]), "report": r["report"] or None,
                     "precision": r.get("precision") or "fp32"})   # rows from before `precision`: all fp32
    rows_ = table + kept
    order = {lab: k for k, lab in enumerate(LABS)}
    recipes = {(lab, recipe): k for lab in LABS for k, (recipe, _, _) in enumerate(LABS[lab][1])}
    rows_.sort(key=lambda r: (order[r["lab"]], r["dataset"] != data.DATASETS[LABS[r["lab"]][0]].title,
                              r["dataset"], recipes.get((r["lab"], r["recipe"]), 99)))
    for lab in labs:
        if not any(r["lab"] == lab and r["dataset"] == data.DATASETS[LABS[lab][0]].title for r in rows_):
            rows_.append({"lab": lab, "dataset": data.DATASETS[LABS[lab][0]].title, "recipe": "default",
                          "model": "", "seeds": 0})
    rows_.sort(key=lambda r: order[r["lab"]])
    return rows_


def ensemble_gains(out: Path, labs: list) -> list:
    """Per lab, dataset and recipe with an ensemble: in how many seeds it beat its best member, and by how much."""
    lines = []
    for lab in labs:
        for dataset, recipes in [LABS[lab]] + ([ALSO[lab]] if lab in ALSO else []):
            for recipe, _, _ in recipes:
                gains = []
                for folder in sorted((out / lab / dataset / recipe).glob("seed-*")):
                    r = records.read(folder)
                    if r and r["status"] == "ok" and "ensemble" in r["models"]:
                        best = max(m["test_accuracy"] for name, m in r["models"].items() if name != "ensemble")
                        gains.append(100 * (r["models"]["ensemble"]["test_accuracy"] - best))
                if gains:
                    lines.append(f"- {lab}, {data.DATASETS[dataset].title}, {recipe}: the ensemble beat its best "
                                 f"member in {sum(g > 0 for g in gains)} of {len(gains)} seeds (by "
                                 + ", ".join(f"{g:+.2f}" for g in gains) + " points).")
    return lines


def to_markdown(table: list) -> str:
    lines = ["| lab | dataset | recipe | model | precision | test accuracy, mean ± sd (range) | seeds | the report | "
             "wall time per run (median) | machine, date |", "|---|---|---|---|---|---|---:|---:|---:|---|"]
    for r in table:
        if not r["seeds"]:
            paper = reported(r["lab"]).get("recipes", {})
            report = ", ".join(dict.fromkeys(f"{model} {v:.2f} %" for numbers in paper.values()
                                             for model, v in numbers.items()))
            lines.append(f"| {r['lab']} | {r['dataset']} | | | | not measured yet (the dataset is not on the "
                         f"measuring machine) | 0 | {report} | | |")
            continue
        report = f"{r['report']:.2f} %" if r["report"] is not None else ""
        lines.append(f"| {r['lab']} | {r['dataset']} | {r['recipe']} | {r['model']} | {r['precision']} | "
                     f"{r['test_accuracy_mean']:.2f} ± {r['test_accuracy_sd']:.2f} % "
                     f"({r['test_accuracy_min']:.2f}-{r['test_accuracy_max']:.2f}) | {r['seeds']} | {report} | "
                     f"{r['wall_seconds_median']:.0f} s{' (mean)' if r.get('wall') == 'mean' else ''} | "
                     f"{r['machine']}, {r['date']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labs", nargs="+", default=list(LABS), choices=list(LABS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 of each recipe (default 3)")
    p.add_argument("--data-dir", default="", help="default: $LABS_DATA_DIR, else ~/.cache/labs/data")
    p.add_argument("--output", default=str(ROOT / "outputs" / "accuracy"), help="where the runs land")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where the tables go")
    p.add_argument("--recipes", nargs="*", default=[], help="only these recipes (default: all)")
    p.add_argument("--tables-only", action="store_true", help="rebuild the tables from the runs already made")
    args = p.parse_args()
    out = Path(args.output)
    try:
        if not args.tables_only:
            measure(args.labs, args.seeds, args.data_dir, out, args.recipes)
        import torch
        folder = records.writable_folder(Path(args.results), "results folder")
        table = merged(rows(out, list(LABS)), folder / "accuracy.csv", list(LABS))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
        results.write_atomic(folder / "accuracy.csv", buffer.getvalue())
        header = (f"# Test accuracy on the real datasets\n\nWritten by `python benchmarks/accuracy.py`, last on "
                  f"{time.strftime('%Y-%m-%d')} ({machine()}, torch {torch.__version__}, Python "
                  f"{platform.python_version()}); each row names the machine and date it was measured on, and the "
                  f"precision of its forward passes. Each row is the mean over its seeds (0, 1, 2, ...) of full "
                  f"`labs run` executions of the lab's notebook; the defaults were chosen on the validation "
                  f"split, the test set only reported. *the report*: the seed report's number for that model "
                  f"(for a lab's defaults, the report's best). Wall time: one whole run of the notebook "
                  f"(all its models), the median over the seeds (a run may have shared the machine with other "
                  f"work; benchmarks/results/speed-*.md times what speed claims rest on).\n\n")
        gains = ensemble_gains(out, list(LABS))
        extra = ("\nEnsembles against their best member, seed by seed (test accuracy):\n\n" + "\n".join(gains) + "\n"
                 if gains else "")
        results.write_atomic(folder / "accuracy.md", header + to_markdown(table) + extra)
        print(f"wrote {folder / 'accuracy.md'} and {folder / 'accuracy.csv'}")
    except LabsError as e:
        print(f"accuracy: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
