"""Grading, measured: for each lab, the reference, the untouched student version and eight deliberately wrong
submissions graded by `labs grade` in its sandbox (the points each deserves), and the time to grade 30 submissions
of lab 02 with 2 local workers and on a local Dask cluster of 2 workers. Writes benchmarks/results/grading.md.

    python benchmarks/grading.py [--labs fashion_fcn_vs_lenet ...] [--timing] [--work DIR]
"""

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = {"mnist_mlp": "01_mnist_mlp", "fashion_fcn_vs_lenet": "02_fashion_fcn_vs_lenet",
            "cifar10_cnn": "03_cifar10_cnn", "mnist_cnn_ensemble": "04_mnist_cnn_ensemble"}
TAMPER = "check = lambda *args: print('matches the reference')\nimport labutils.checks\nlabutils.checks.check = check"

# Each lab's mistakes, as edits of its reference exercise cell (old, new), and where a submission's own cell goes.
MISTAKES = {
    "fashion_fcn_vs_lenet": {
        "a wrong layer size": [("nn.Linear(120, 84)", "nn.Linear(100, 84)")],
        "a missing activation": [("nn.Linear(120, 84), act(),", "nn.Linear(120, 84),")],
        "a wrong pooling": [("pool = nn.MaxPool2d if modified else nn.AvgPool2d", "pool = nn.MaxPool2d")],
        "batch norm missing in the fcn": [("nn.BatchNorm1d(width), ", "")],
        "a network that does not learn": [("        nn.Linear(120, 84), act(),", "        nn.Linear(120, 84), nn.Dropout(1.0), act(),")],
        "a crash in training": [("nn.Linear(84, n_classes))", "nn.Linear(84, 5))")],
        "a stub left unwritten": "stub lenet5",
        "a tampered check": "tamper",
    },
    "mnist_mlp": {
        "a wrong layer size": [("layers.append(nn.Linear(in_features, n_classes))", "layers.append(nn.Linear(in_features, 100))")],
        "a missing activation": [("        layers.append(ACTIVATION_LAYERS[activation]())\n", "")],
        "dropout missing": [("        if dropout:\n            layers.append(nn.Dropout(dropout))\n", "")],
        "the wrong init": [('nn.init.kaiming_normal_(m.weight, nonlinearity="relu")', "nn.init.xavier_normal_(m.weight)")],
        "a network that does not learn": [("layers.append(nn.Linear(in_features, n_classes))", "layers += [nn.Dropout(1.0), nn.Linear(in_features, n_classes)]")],
        "a crash in training": [("        loss = nn.functional.cross_entropy(", "        loss = nn.functional.nll_loss(model(split.x[batch]).sum(1), split.y[batch]) + nn.functional.cross_entropy(")],
        "a stub left unwritten": "stub mlp",
        "a tampered check": "tamper",
    },
    "cifar10_cnn": {
        "a wrong layer size": [("nn.Linear(8 * 8 * 128, 1024)", "nn.Linear(8 * 8 * 128, 512)")],
        "a missing activation": [("nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(),", "nn.Conv2d(64, 64, 5, padding=2),")],
        "a wrong pooling": [("nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)", "nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2)")],
        "batch norm missing": [("layers += [nn.BatchNorm2d(width)] if batch_norm else []", "layers += []")],
        "a network that does not learn": [("nn.ReLU(), nn.Dropout(dropout), nn.Linear(1024, n_classes)", "nn.ReLU(), nn.Dropout(1.0), nn.Linear(1024, n_classes)")],
        "a crash in training": [("nn.Linear(1024, n_classes))", "nn.Linear(1024, 5))")],
        "a stub left unwritten": "stub cnn",
        "a tampered check": "tamper",
    },
    "mnist_cnn_ensemble": {
        "a wrong layer size": [("*dense(1024, 512)", "*dense(1024, 256)")],
        "a missing activation": [("return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), ", "return [nn.Conv2d(c_in, c_out, 3, padding=1), ")],
        "a wrong pooling": [("0.5 * (nn.functional.max_pool2d(", "(nn.functional.max_pool2d(")],
        "a penalty that counts biases": [("for p in model.parameters() if p.dim() > 1)", "for p in model.parameters())")],
        "a network that does not learn": [("nn.Linear(512, n_classes))", "nn.Dropout(1.0), nn.Linear(512, n_classes))")],
        "a crash in training": [("nn.Linear(512, n_classes))", "nn.Linear(512, 5))")],
        "a stub left unwritten": "stub l2_penalty",
        "a tampered check": "tamper",
    },
}


def reference_cells(assignment: str) -> list:
    nb = nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK[assignment]}.ipynb", as_version=4)
    return [c.source.removeprefix("#@save").strip() for c in nb.cells if c.cell_type == "code" and
            (c.source.startswith("#@save") or "exercise" in c.metadata.get("tags", []))]


def write_submissions(course: Path, assignment: str, folder: Path) -> list:
    """The reference, the untouched student version and each mistake, as notebooks in `folder`."""
    student = course / "student" / f"{NOTEBOOK[assignment]}.ipynb"
    made = []

    def save(name, sources=None, tamper=False):
        nb = nbformat.read(student, as_version=4)
        exercises = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
        for cell, source in zip(exercises, sources or []):
            if source is not None:
                cell.source = "from labutils.checks import NotWritten\n" + source
        if tamper:
            for cell in (c for c in nb.cells if "check" in c.metadata.get("tags", [])):
                cell.source = TAMPER + "\n" + cell.source
        path = folder / f"{assignment}-{name.replace(' ', '-')}.ipynb"
        nbformat.write(nb, path)
        made.append((name, path))

    reference = reference_cells(assignment)
    save("the reference", reference)
    save("untouched")
    for mistake, edits in MISTAKES[assignment].items():
        if edits == "tamper":
            wrong = [_edit(reference, MISTAKES[assignment]["a wrong layer size"])]
            save(mistake, wrong[0], tamper=True)
        elif isinstance(edits, str):   # "stub NAME": that one exercise left unwritten, the others written
            name = edits.split()[1]
            save(mistake, [s + f"\n\n\ndef {name}(*args, **kwargs):\n    raise NotWritten('{name} is not written yet.')"
                           if f"def {name}(" in s else s for s in reference])
        else:
            save(mistake, _edit(reference, edits))
    return made


def _edit(cells: list, edits: list) -> list:
    out = []
    for source in cells:
        for old, new in edits:
            source = source.replace(old, new)
        out.append(source)
    assert out != cells, edits
    return out


def labs(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labs", *map(str, args)], cwd=ROOT, text=True, capture_output=True,
                          **kw)


def table(course: Path, made: list) -> list:
    rows = {r["submission"]: r for r in csv.DictReader((course / "grades.csv").open())}
    return [(name, rows[path.name]) for name, path in made]


def timing(course: Path, made: list, work: Path) -> dict:
    """Seconds to grade 30 submissions of lab 02 (the ten kinds, three times) with 2 local workers, then on a local
    Dask cluster of 2 workers."""
    found = {}
    for how in ("local", "dask"):
        subs = work / f"thirty-{how}"
        shutil.rmtree(subs, ignore_errors=True)
        subs.mkdir(parents=True)
        for k in range(3):
            for _, path in made:
                shutil.copy(path, subs / f"{k}-{path.name}")
        out = work / f"graded-{how}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        shutil.copytree(course / "grader", out / "grader")
        extra, cluster = ["--workers", "2"], []
        if how == "dask":
            scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "8790",
                                          "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(5)
            cluster = [scheduler] + [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                                       "tcp://127.0.0.1:8790", "--nthreads", "1", "--no-dashboard"],
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                                     for _ in range(2)]
            time.sleep(8)
            extra = ["--scheduler", "tcp://127.0.0.1:8790"]
        began = time.perf_counter()
        proc = labs("grade", *sorted(subs.glob("*.ipynb")), "--output", out, *extra)
        found[how] = time.perf_counter() - began
        for process in cluster:
            process.terminate()
            process.wait()
        assert proc.returncode == 0, proc.stderr[-2000:]
        points = [int(r["points"]) for r in csv.DictReader((out / "grades.csv").open())]
        print(how, f"{found[how]:.0f} s", len(points), "graded", flush=True)
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labs", nargs="*", default=list(NOTEBOOK))
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--work", default="/tmp/labs-grading")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "grading.md"))
    args = parser.parse_args()
    work = Path(args.work)
    lines = [f"# Grading, measured ({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores)", "",
             "`python benchmarks/grading.py`: each lab's reference, its untouched student version and eight wrong "
             "submissions, graded by `labs grade` in its sandbox at grading size (the smoke parameters), bands from 3 "
             "seeds.", ""]
    for assignment in args.labs:
        course = work / assignment
        shutil.rmtree(course, ignore_errors=True)
        began = time.perf_counter()
        proc = labs("assign", assignment, "--output", course)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assigned = time.perf_counter() - began
        subs = work / f"{assignment}-submissions"
        shutil.rmtree(subs, ignore_errors=True)
        subs.mkdir(parents=True)
        made = write_submissions(course, assignment, subs)
        began = time.perf_counter()
        proc = labs("grade", *[p for _, p in made], "--output", course, "--workers", "2")
        assert proc.returncode == 0, proc.stderr[-2000:]
        graded = time.perf_counter() - began
        rows = table(course, made)
        lines += [f"## {assignment}", "", f"`labs assign` took {assigned:.0f} s; grading these {len(made)} with 2 "
                  f"workers {graded:.0f} s.", "", "| submission | points | status | reason |", "|---|---:|---|---|"]
        lines += [f"| {name} | {r['points']} of {r['max_points']} | {r['status']} | {r['reason'][:110]} |"
                  for name, r in rows]
        lines.append("")
        print("\n".join(lines[-len(rows) - 6:]), flush=True)
        if args.timing and assignment == "fashion_fcn_vs_lenet":
            found = timing(course, made, work)
            lines += [f"30 submissions of lab 02 (the ten above, three times each), graded with `--workers 2`: "
                      f"**{found['local']:.0f} s**; on a local Dask cluster (a scheduler and 2 workers of one thread, "
                      f"`--scheduler`): **{found['dask']:.0f} s**.", ""]
    out = Path(args.out)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
