"""Run one assignment notebook with papermill into a run folder: params.yaml, report.ipynb, report.html,
results.json and the figures; one run at a time per folder (a lock).

Every file is whole or absent. A notebook that fails keeps its partial report, and the run's results.json says
"failed" with the cell and the error; so does a run whose report could not be written.
"""

import errno
import json
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

import yaml
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec

from labutils import LabsError, results as results_file
from .params import notebook


class CurrentPythonKernel(AsyncKernelManager):
    """A kernel on this very Python, so a notebook sees the packages `labs` sees, whatever `python3` kernelspec
    exists. It talks over local sockets (ipc) where the system has them, rather than unencrypted TCP; its
    connection file lies in the run folder (`folder`, set per run), never in the system's temporary folder.
    LABS_BATCH tells the notebook's progress bars that no one watches them live (see labutils.progress)."""

    transport = "tcp" if sys.platform == "win32" else "ipc"
    folder = "."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.transport == "ipc":
            self.ip = "kernel-ipc"   # short socket names in the kernel's folder (a socket path has ~100 bytes)
        self.connection_file = str(Path(self.folder) / f"kernel-{uuid.uuid4().hex[:12]}.json")

    @property
    def kernel_spec(self):
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                "--log-level=CRITICAL"],   # the notebook's own output still shows in full
                          display_name="Python 3 (labs)", language="python", env={"LABS_BATCH": "1"})


def new_folder(base: Path, name: str) -> Path:
    """base/name, or base/name-2, -3, ... when taken."""
    folder, n = base / name, 1
    while folder.exists():
        n += 1
        folder = base / f"{name}-{n}"
    return folder


# --- one run at a time per folder ---------------------------------------------------------------

LOCK = ".labs.lock"


def lock(folder: Path, command: str) -> Path:
    """Claim `folder` for this process (`command` is "labs run" or "labs sweep"): a lock file naming it. A folder
    claimed by a live process is refused with one line; the lock of a process that is gone is taken over."""
    import psutil
    path = Path(folder) / LOCK
    me = psutil.Process()
    claim = {"pid": me.pid, "started": me.create_time(), "host": socket.gethostname(), "command": command}
    tmp = path.with_name(f"{LOCK}.{me.pid}")
    tmp.write_text(json.dumps(claim))
    try:
        while True:
            try:
                os.link(tmp, path)   # atomic: fails when the lock exists, and never leaves half a file
                return path
            except FileExistsError:
                holder = _holder(path)
                if holder:
                    since = time.strftime("%H:%M:%S", time.localtime(holder["started"]))
                    raise LabsError(f"{folder} is in use by another `{holder.get('command', 'labs')}` (process "
                                    f"{holder['pid']} on {holder['host']}, running since {since}); wait for it "
                                    f"to end, or give this one another --output.") from None
                path.unlink(missing_ok=True)   # stale
    finally:
        tmp.unlink(missing_ok=True)


def _holder(path: Path) -> dict | None:
    """Who holds a lock, if that process still lives (on another machine it is taken to live)."""
    import psutil
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict):
        return None
    if holder.get("host") != socket.gethostname():
        return holder
    try:
        alive = abs(psutil.Process(holder["pid"]).create_time() - holder["started"]) < 1
    except (psutil.Error, KeyError, TypeError):
        alive = False
    return holder if alive else None


# --- the notebook, its report -------------------------------------------------------------------

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)   # a full disk, a quota, a file-size limit


def _disk_error(e) -> OSError | None:
    """The OSError of a notebook cell that failed because the disk is full (from papermill's exception), naming
    the file, or the cell when the error does not say which file."""
    found = re.match(r"\[Errno (\d+)\] ([^:]+)(?:: '(.+)')?", str(e.evalue)) if e.ename in ("OSError",
                                                                                         "PermissionError") else None
    if found and int(found.group(1)) in DISK_FULL:
        return OSError(int(found.group(1)), found.group(2), found.group(3) or f"a file of {_cell_error(e).split(' failed')[0]}")
    return None


def _cell_error(e) -> str:
    """One line naming the failed cell and the error, from papermill's exception."""
    first_line = next((line for line in e.source.splitlines() if line.strip() and not line.startswith("#")), "")
    name = "" if e.ename == "LabsError" else f"{e.ename}: "
    return f"cell [{e.exec_count}] `{first_line.strip()[:60]}` failed: {name}{e.evalue}"


# Cell tags of the source notebooks, for report.html: plumbing stays in report.ipynb but not in the document.
REMOVE_CELL = ("remove-cell", "injected-parameters")   # the whole cell: the Colab install, the parameters
REMOVE_INPUT = ("remove-input",)                        # the code only, its output stays: tables, text, figures


def export_html(report: Path) -> Path:
    """report.ipynb -> report.html beside it, for reading without Jupyter: a document of the narrative, the code
    that is the lesson, and the outputs; cells tagged as plumbing lose their code (nbconvert's tag filter)."""
    import nbconvert
    from traitlets.config import Config
    config = Config({"TagRemovePreprocessor": {"enabled": True, "remove_cell_tags": set(REMOVE_CELL),
                                               "remove_input_tags": set(REMOVE_INPUT)},
                     "HTMLExporter": {"exclude_input_prompt": True, "exclude_output_prompt": True}})
    html, _ = nbconvert.HTMLExporter(config=config).from_filename(str(report))
    target = report.with_suffix(".html")
    results_file.write_atomic(target, html)
    return target


def execute(source: Path, target: Path, parameters: dict, stream: bool = False) -> str | None:
    """Run notebook `source` with `parameters` into `target`, then render target.html beside it.

    The kernel runs on this Python, in target's folder. The notebook is written to a temporary file and renamed
    when it is whole, so `target` is never half written; a failed notebook is kept too, for reading.
    Returns None, or one line naming the cell that failed. Raises OSError when the disk is full (the report or a
    file of the notebook could not be written), after leaving only whole files.
    stream: show the notebook's output (epoch lines) live on this terminal.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = Path(target)
    partial = target.with_name(f".{target.stem}.partial.ipynb")
    kernel = type("RunKernel", (CurrentPythonKernel,), {"folder": str(target.parent.resolve())})
    error = None
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=parameters, kernel_name="python3", kernel_manager_class=kernel,
            coalesce_streams=True, shutdown_kernel="immediate", cwd=str(target.parent), progress_bar=False,
            stdout_file=sys.stdout if stream else None, stderr_file=sys.stderr if stream else None)
    except PapermillExecutionError as e:
        error = _cell_error(e)
        full = _disk_error(e)
        if full:
            raise full from None
    except OSError as e:    # papermill could not write the notebook: a full disk, ...
        raise OSError(e.errno, e.strerror, str(target)) from None
    except Exception as e:  # the kernel died, could not start, the notebook could not be saved ...
        error = f"the notebook could not run: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        try:
            nbformat.read(partial, as_version=4)
            partial.replace(target)
        except (OSError, ValueError, KeyError):   # missing, or cut short by a full disk: not a report
            partial.unlink(missing_ok=True)
    if target.exists():
        export_html(target)   # an OSError (a full disk) goes up: the run is not ok
    return error


# Files of one run: a new run in the same folder first removes those of the last one, so a report never mixes
# two runs; and what a killed run left (kernel files, a partial report).
RUN_FILES = ("report.ipynb", "report.html", "results.json", "params.yaml", "*.png")
LEFTOVERS = (".report.partial.ipynb", "kernel-ipc-*", "kernel-*.json", ".*.tmp")


def run(assignment: str, params: dict, folder: Path, stream: bool = True, setting: str | None = None) -> dict:
    """Execute the assignment's notebook with `params` (already resolved and validated) into `folder`; returns
    its results. `setting`: the run's name in its sweep, recorded in results.json."""
    folder = results_file.writable_folder(folder, "run folder")
    held = lock(folder, "labs run")
    start, error = time.perf_counter(), None
    try:
        for path in (p for pattern in RUN_FILES + LEFTOVERS for p in folder.glob(pattern)):
            path.unlink(missing_ok=True)
        results_file.write_atomic(folder / "params.yaml", yaml.safe_dump(params, sort_keys=False))
        try:
            error = execute(notebook(assignment), folder / "report.ipynb",
                            {**params, "output_dir": str(folder.resolve())}, stream)
        except KeyboardInterrupt:
            error = "interrupted before the notebook finished"
            raise
        except OSError as e:   # the disk is full: recorded as failed (if even that can be written), then said
            error = f"could not write {e.filename or 'the report'}: {e.strerror or e}"
            raise
        finally:
            results = _final(assignment, params, folder, error, time.perf_counter() - start, setting)
    finally:
        _end_kernels(folder)
        held.unlink(missing_ok=True)
    return results


def _end_kernels(folder: Path) -> None:
    """End any kernel of this run still alive (one interrupted while it started), then remove its connection file
    and sockets."""
    import psutil
    for child in psutil.Process().children(recursive=True):
        try:
            if "ipykernel_launcher" in " ".join(child.cmdline()) and str(folder.resolve()) in " ".join(child.cmdline()):
                child.kill()
                child.wait(5)
        except psutil.Error:
            pass
    for path in (p for pattern in ("kernel-*.json", "kernel-ipc-*") for p in folder.glob(pattern)):
        path.unlink(missing_ok=True)


def _final(assignment: str, params: dict, folder: Path, error: str | None, seconds: float,
           setting: str | None) -> dict:
    """The run's results.json, from the notebook's own record (when it wrote one and nothing failed after):
    with the run's setting, or "failed" with the error. Written whole; if even that fails, none is left."""
    record = results_file.read(folder, warn=False)
    if record is None and not error:
        error = "the notebook finished without writing results.json"
    if error:
        results = results_file.build(assignment, params, status="failed", error=error, wall_seconds=seconds,
                                     setting=setting, env=(record or {}).get("env"))
    else:
        results = {**record, "setting": setting}
    try:
        results_file.write(folder / "results.json", results)
    except OSError:
        (folder / "results.json").unlink(missing_ok=True)   # never leave the notebook's "ok" behind a failure
        raise
    return results


def describe_outcome(results: dict, folder: Path) -> str:
    """A short account of a finished run for the terminal."""
    return f"{results['assignment']}: {results_file.describe(results)}\n  report: {folder / 'report.html'}"
