"""results.json, the record of one run: the one function that builds it (ok, failed or diverged), writing it
whole or not at all, reading it back (an unusable file is no result, named in one warning), and the check that
a folder can be written.

No torch here: the runner, the sweeps and the index read and write these files without importing it.
"""

import json
import math
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import LabsError, __version__
from .vocab import is_number

STATUSES = ("ok", "failed", "diverged", "stopped", "running")
ENV_KEYS = ("python", "torch", "device", "gpu", "precision", "layout", "steps", "peak_memory_gb", "labutils")


def build(assignment: str, params: dict, *, status: str = "ok", error: str | None = None, models: dict | None = None,
          env: dict | None = None, wall_seconds: float = 0.0, setting: str | None = None) -> dict:
    """The record of a run, the same shape whatever its status: see README, "What a run writes".

    env: what the notebook knows of where it ran (device, gpu, precision, layout and how the steps ran per model, the
    GPU memory it took at most); unknown ones are None.
    setting: the run's setting in its sweep (None for a single run); with params["seed"], the run's identity.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    known = {"python": platform.python_version(), "torch": torch_version, "labutils": __version__}
    return {"assignment": assignment, "status": status, "error": error, "setting": setting,
            "seed": params.get("seed"), "params": params,
            "env": {key: {**known, **(env or {})}.get(key) for key in ENV_KEYS},
            "wall_seconds": wall_seconds, "finished": now(), "models": models or {}}


# --- the one rule for "best" -----------------------------------------------------------------

def final_val_accuracy(model: dict) -> float | None:
    """A model's validation accuracy where its training ended (None without one): what "best" is judged by."""
    history = model.get("history") or []
    return history[-1].get("val_accuracy") if history else None


def best(models: dict) -> str | None:
    """The best of `models` (name -> a results.json model entry, or a summary row with `val_accuracy`): the one with
    the highest validation accuracy where training ended; the test set chooses nothing. None when none has one."""
    scored = {name: m["val_accuracy"] if "val_accuracy" in m else final_val_accuracy(m) for name, m in models.items()}
    scored = {name: v for name, v in scored.items() if v is not None}
    return max(scored, key=scored.get) if scored else None


def epoch_seconds(history: list) -> float:
    """The mean seconds of training between two evaluations (an epoch, or an evaluation period of a staged recipe)."""
    return sum(row["seconds"] for row in history) / max(len(history), 1)


def now() -> str:
    """The local date and time, as results.json records when a run finished: 2026-11-23T14:05:09."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


# --- writing: whole or not at all -----------------------------------------------------------

def writable_folder(folder: Path, what: str = "folder") -> Path:
    """Make `folder` (and its parents) and check that a file can be written in it, before any work starts.

    Any fault (a missing parent that cannot be made, a file in the way, no permission, a full disk) is one
    LabsError naming the folder and the cause.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".labs-write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise LabsError(f"Cannot write the {what} {folder}: {e.strerror or e}; choose another folder.") from None
    return folder


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` to `path` through a temporary file and a rename: a reader (or a full disk) never leaves
    half a file; on failure nothing is left and the OSError names `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:   # a full disk, a folder in the way: name the file meant, not the temporary one
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:   # a stop (KeyboardInterrupt) while writing: no temporary file is left behind
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value):
    """Tensors to lists, and NaN or infinite floats to None, so the file is valid JSON."""
    if hasattr(value, "tolist"):   # torch tensors, numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write(path: Path, results: dict) -> None:
    write_atomic(path, json.dumps(json_safe(results), indent=2) + "\n")


# --- reading: an unusable file is no result -------------------------------------------------

def problem(results) -> str | None:
    """What makes a parsed results.json unusable, or None when it has the shape `build` gives (the fields that
    summaries, the index and sweeps read)."""
    if not isinstance(results, dict):
        return f"it holds a {type(results).__name__}, not a run's record"
    if results.get("status") not in STATUSES:
        return f"its status is {results.get('status')!r}, not one of {', '.join(STATUSES)}"
    for key, kind in (("params", dict), ("models", dict), ("assignment", str), ("env", (dict, type(None))),
                      ("error", (str, type(None))), ("setting", (str, type(None))), ("finished", (str, type(None)))):
        if not isinstance(results.get(key), kind):
            return f"its {key!r} is not {'a ' + kind.__name__ if isinstance(kind, type) else 'what it should be'}"
    if not is_number(results.get("wall_seconds", 0)):
        return "its 'wall_seconds' is not a number"
    for name, model in results["models"].items():
        if not isinstance(model, dict):
            return f"its model {name!r} is not a mapping"
        for key in ("test_accuracy", "test_loss", "parameters", "train_samples_per_second"):
            if model.get(key) is not None and not is_number(model[key]):
                return f"the {key} of {name!r} is not a number"
        history = model.get("history", [])
        if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
            return f"the history of {name!r} is not a list of rows"
        if any(row.get(key) is not None and not is_number(row[key]) for row in history
               for key in ("epoch", "iteration", "val_accuracy", "test_accuracy", "train_loss")):
            return f"the history of {name!r} holds a value that is not a number"
    return None


def read(folder: Path, warn: bool = True) -> dict | None:
    """A run folder's results.json; None when it is missing, or unusable (then, with `warn`, one line on stderr
    names the file and why, and the run counts as not done)."""
    path = Path(folder) / "results.json"
    if not path.exists():
        return None
    if not path.is_file() or path.stat().st_size > 100_000_000:   # a FIFO would hang the reader, a huge file stall it
        why = "it is not a regular file" if not path.is_file() else "it is far larger than a run's record"
        if warn:
            print(f"labs: warning: {path} is not a usable results.json ({why}); it counts as no result "
                  f"(a sweep runs it again).", file=sys.stderr, flush=True)
        return None
    try:
        results = json.loads(path.read_text())
        why = problem(results)
    except (OSError, ValueError) as e:
        why = f"it cannot be read ({type(e).__name__})"
    if why is None:
        return results
    if warn:
        print(f"labs: warning: {path} is not a usable results.json ({why}); it counts as no result "
              f"(a sweep runs it again).", file=sys.stderr, flush=True)
    return None


def describe(results: dict, clock: str = "") -> str:
    """For a terminal: the status, each model's test accuracy and the wall time (`clock`: what it counts from);
    the error on a second line."""
    accuracies = ", ".join(f"{name} {m['test_accuracy']:.2%}" for name, m in (results.get("models") or {}).items()
                           if m.get("test_accuracy") is not None)
    line = results["status"] + (f", test accuracy {accuracies}" if accuracies else "")
    line += f" ({results.get('wall_seconds') or 0:.0f} s{clock})"
    notes = [f"\n    NOTE: {m['note']}" for m in (results.get("models") or {}).values() if m.get("note")]
    return line + (f"\n    {results['error']}" if results.get("error") else "") + "".join(notes)
