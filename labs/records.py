"""Reading run records back (an unusable results.json is no result, named in one warning), and the check that a
folder can be written: what the tool needs of labutils.results, which writes them."""

import json
import os
import sys
from pathlib import Path

from labutils import LabsError
from labutils.results import STATUSES
from labutils.vocab import is_number


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
