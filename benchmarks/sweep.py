"""Sweep throughput and the fixed cost of one run, on this machine.

    python benchmarks/sweep.py              # 8 smoke runs of mnist_mlp with 1 and with 2 workers

1. Wall time of a sweep of N smoke runs (different seeds) with 1 worker and with 2 workers, summaries included.
2. Where one run's time goes, read from the executed report (papermill times every cell): kernel start and
   notebook writes (papermill's total minus the cells), imports, data, training, figures, and the HTML export
   (timed here). The fixed cost is everything but training.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from labs import runner, sweep


def sweep_file(folder: Path, runs: int) -> Path:
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump({"assignment": "mnist_mlp", "name": "bench", "grid": {"seed": list(range(runs))}}))
    return path


def timed_sweep(path: Path, out: Path, workers: int) -> float:
    plan = sweep.load(path, smoke=True)
    start = time.perf_counter()
    sweep.run([(plan, out)], workers=workers)
    return time.perf_counter() - start


def breakdown(folder: Path) -> dict:
    report = json.loads((folder / "report.ipynb").read_text())
    total = report["metadata"]["papermill"]["duration"]
    cells = {}
    for cell in report["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        duration = cell["metadata"].get("papermill", {}).get("duration") or 0.0
        kind = ("imports" if "import" in source and "labutils" in source else
                "data" if "data.load(" in source else
                "training" if "train.fit(" in source else
                "figures" if "report.show_" in source or "report.plot" in source else "other cells")
        cells[kind] = cells.get(kind, 0.0) + duration
    cells["kernel start and notebook writes"] = total - sum(cells.values())
    start = time.perf_counter()
    runner.export_html(folder / "report.ipynb")
    cells["HTML export"] = time.perf_counter() - start
    return cells


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = sweep_file(tmp, args.runs)
        walls = {w: timed_sweep(path, tmp / f"workers{w}", w) for w in (1, 2)}
        parts = breakdown(tmp / "workers1" / "seed-0")
    print(f"\nsweep of {args.runs} smoke runs of mnist_mlp (summaries included):")
    for w, wall in walls.items():
        print(f"  {w} worker{'s' if w > 1 else ' '}: {wall:6.1f} s   ({wall / args.runs:.1f} s per run)")
    print(f"  speed-up with 2 workers: {walls[1] / walls[2]:.2f}x")
    print("one run, where the time goes:")
    for kind, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<34}{seconds:6.2f} s")
    fixed = sum(parts.values()) - parts.get("training", 0.0)
    print(f"  fixed cost (all but training): {fixed:.2f} s; training: {parts.get('training', 0.0):.2f} s")


if __name__ == "__main__":
    main()
