"""`labs check`: every lab notebook run with nbval on the machine at hand (CPU or GPU, Colab too), each prepared with
its smoke parameters by papermill, and the device and precision each ran on, from the run's own results.json."""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from . import records
from .params import assignments, notebook, resolve, smoke_values


def check_one(assignment: str, folder: Path, device: str = "auto") -> dict:
    """nbval over `assignment`'s notebook prepared in `folder` with its smoke parameters on `device`:
    {"assignment", "ok", "passed", "failed" (the failed cells, as nbval names them), "device", "precision"}."""
    import papermill
    run = folder / assignment
    prepared = folder / notebook(assignment).name
    papermill.execute_notebook(str(notebook(assignment)), str(prepared), prepare_only=True, progress_bar=False,
                               parameters={**smoke_values(assignment), "device": device, "output_dir": str(run)})
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p",
                           "no:cacheprovider", "-q", "-rf", prepared.name], cwd=folder, capture_output=True, text=True)
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error)", proc.stdout.splitlines()[-1]
                                                     if proc.stdout.strip() else "")}
    failed = [line.split("::", 1)[1].split(" - ")[0] for line in proc.stdout.splitlines()
              if line.startswith("FAILED ") and "::" in line]
    env = (records.read(run, warn=False) or {}).get("env") or {}
    return {"assignment": assignment, "ok": proc.returncode == 0, "passed": counts.get("passed", 0),
            "failed": failed or ([] if proc.returncode == 0 else [proc.stdout.strip()[-300:] or proc.stderr[-300:]]),
            "device": env.get("device") or "?", "gpu": env.get("gpu"), "precision": env.get("precision") or "?"}


def describe(outcome: dict) -> str:
    """One line for the terminal."""
    where = f"{outcome['device']}" + (f" ({outcome['gpu']})" if outcome.get("gpu") else "") + \
        f", forward passes in {outcome['precision']}"
    if outcome["ok"]:
        return f"{outcome['assignment']}: ok, {outcome['passed']} cells passed nbval on {where}"
    return f"{outcome['assignment']}: FAILED on {where}: {', '.join(outcome['failed'])}"


def check(names=(), device: str = "auto") -> list:
    """Check the named assignments (all by default), printing a line for each as it ends; their outcomes."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="labs-check-") as tmp:
        for assignment in names or list(assignments()):
            resolve(assignment, [], {"device": device}, smoke=True)   # an unknown name or device: one line, first
        for assignment in names or list(assignments()):
            print(f"{assignment}: nbval over {notebook(assignment).name} with its smoke parameters ...", flush=True)
            outcomes.append(check_one(assignment, Path(tmp), device))
            print("  " + describe(outcomes[-1]), flush=True)
    return outcomes
