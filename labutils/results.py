"""The files a run writes: results.json (written atomically, read back safely, the shape of a failed run's),
and the check that a folder can be written at all.

No torch here: the runner and sweep summaries read and write these files without importing it.
"""

import json
import math
import os
import platform
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import LabsError, __version__


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


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so no reader ever sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:   # a full disk, a folder in the way: name the file meant, not the temporary one
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None


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


def read(folder: Path) -> dict | None:
    """A run folder's results.json, or None when it is missing or unreadable."""
    try:
        return json.loads((Path(folder) / "results.json").read_text())
    except (OSError, ValueError):
        return None


def failed(assignment: str, params: dict, error: str, seconds: float) -> dict:
    """results.json of a run that did not finish: status "failed", the error, and no models."""
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    env = {"python": platform.python_version(), "torch": torch_version, "device": params.get("device"),
           "gpu": None, "labutils": __version__}
    return {"assignment": assignment, "status": "failed", "error": error, "params": params, "env": env,
            "wall_seconds": seconds, "finished": now(), "models": {}}


def now() -> str:
    """The local date and time, as results.json records when a run finished: 2026-11-23T14:05:09."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def describe(results: dict) -> str:
    """For a terminal: the status, each model's test accuracy and the wall time; the error on a second line."""
    accuracies = ", ".join(f"{name} {m['test_accuracy']:.2%}" for name, m in (results.get("models") or {}).items()
                           if m.get("test_accuracy") is not None)
    line = results["status"] + (f", test accuracy {accuracies}" if accuracies else "")
    line += f" ({results.get('wall_seconds') or 0:.0f} s)"
    return line + (f"\n    {results['error']}" if results.get("error") else "")
