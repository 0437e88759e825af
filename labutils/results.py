"""results.json, a run's record: the one function that builds it, writing it whole or not at all, and the one rule
for "best" (labs.records reads it back). No torch here."""

import contextlib
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

STATUSES = ("ok", "failed", "diverged", "stopped", "running")
ENV_KEYS = ("python", "torch", "device", "gpu", "precision", "layout", "steps", "peak_memory_gb", "labutils")


def build(assignment: str, params: dict, *, status: str = "ok", error: str | None = None, models: dict | None = None,
          env: dict | None = None, wall_seconds: float = 0.0, setting: str | None = None) -> dict:
    """The record of a run, one shape whatever its status (README, "What a run writes"); unknown env keys None."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    known = {"python": platform.python_version(), "torch": None, "labutils": __version__}
    with contextlib.suppress(PackageNotFoundError):
        known["torch"] = version("torch")
    return {"assignment": assignment, "status": status, "error": error, "setting": setting,
            "seed": params.get("seed"), "params": params,
            "env": {key: {**known, **(env or {})}.get(key) for key in ENV_KEYS},
            "wall_seconds": wall_seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "models": models or {}}


def final_val_accuracy(model: dict) -> float | None:
    """A model's validation accuracy where its training ended (None without one): what "best" is judged by."""
    history = model.get("history") or []
    return history[-1].get("val_accuracy") if history else None


def best(models: dict) -> str | None:
    """The model with the highest validation accuracy where training ended (None if none has one): never test."""
    scored = {name: m["val_accuracy"] if "val_accuracy" in m else final_val_accuracy(m) for name, m in models.items()}
    scored = {name: v for name, v in scored.items() if v is not None}
    return max(scored, key=scored.get) if scored else None


def epoch_seconds(history: list) -> float:
    """The mean seconds of training between two evaluations (an epoch, or an evaluation period of a staged recipe)."""
    return sum(row["seconds"] for row in history) / max(len(history), 1)


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` to `path` by a temporary file and a rename: whole or absent, the OSError naming `path`."""
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
    except BaseException as e:   # a stop (KeyboardInterrupt) included: no temporary file is left behind
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):   # a full disk, a folder in the way: name the file meant, not the temporary one
            raise OSError(e.errno, e.strerror, str(path)) from None
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


def describe(results: dict, clock: str = "") -> str:
    """For a terminal: status, test accuracies, wall time (`clock`: from when), the error and notes below."""
    accuracies = ", ".join(f"{name} {m['test_accuracy']:.2%}" for name, m in (results.get("models") or {}).items()
                           if m.get("test_accuracy") is not None)
    line = results["status"] + (f", test accuracy {accuracies}" if accuracies else "")
    line += f" ({results.get('wall_seconds') or 0:.0f} s{clock})"
    notes = [f"\n    NOTE: {m['note']}" for m in (results.get("models") or {}).values() if m.get("note")]
    return line + (f"\n    {results['error']}" if results.get("error") else "") + "".join(notes)
