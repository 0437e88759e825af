"""Run one assignment notebook with papermill into a run folder: params.yaml, report.ipynb, report.html,
results.json and the figures; one run at a time per folder (a lock).

Every file is whole or absent. A notebook that fails keeps its partial report, and the run's results.json says
"failed" with the cell and the error; so does a run whose report could not be written.
"""

import errno
import glob
import json
import os
import re
import socket
import sys
import time
import shutil
import uuid
from pathlib import Path

import yaml
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec

from labutils import LabsError, results as results_file

from . import records
from .params import notebook


KERNEL_FILES = ".labs-kernel"   # a run's kernel connection file and sockets, removed when the kernel ends


class CurrentPythonKernel(AsyncKernelManager):
    """A kernel on this very Python, so a notebook sees the packages `labs` sees, whatever `python3` kernelspec
    exists. It talks over local sockets (ipc) where the system has them, rather than unencrypted TCP; its
    connection file and sockets lie in the run folder (the kernel's working directory), never in the system's
    temporary folder. LABS_BATCH tells the notebook that it runs inside `labs` (see labutils.in_notebook)."""

    transport = "tcp" if sys.platform == "win32" else "ipc"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.transport == "ipc":   # short socket names, relative to the run folder (a socket path has ~100 bytes)
            self.ip = f"{KERNEL_FILES}/ipc"

    async def _async_pre_start_kernel(self, **kw):
        folder = Path(kw.get("cwd") or os.getcwd()).resolve() / KERNEL_FILES   # its own folder: jupyter sets the
        folder.mkdir(exist_ok=True)                                          # sticky bit on the one that holds it
        self.connection_file = str(folder / f"kernel-{uuid.uuid4().hex[:12]}.json")
        return await super()._async_pre_start_kernel(**kw)

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
PARTIAL = ".report.partial.ipynb"   # a run's report while papermill writes it (see execute)


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
        process = psutil.Process(holder["pid"])   # the same process (not a new one with its number), not a zombie
        alive = abs(process.create_time() - holder["started"]) < 1 and process.status() != psutil.STATUS_ZOMBIE
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
    error = None
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=parameters, kernel_name="python3", kernel_manager_class=CurrentPythonKernel,
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
        shutil.rmtree(target.parent / KERNEL_FILES, ignore_errors=True)   # the kernel has ended
    if target.exists():
        try:
            export_html(target)
        except Exception as e:   # a full disk goes up (the run is not ok); nbconvert's own faults cost only the HTML
            if isinstance(e, OSError) and e.errno in DISK_FULL:
                raise
            print(f"labs: warning: {target.with_suffix('.html').name} is missing: nbconvert could not render the report "
                  f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}); {target.name} holds all of it.",
                  file=sys.stderr, flush=True)
    return error


# --- what a run folder holds ------------------------------------------------------------------

MARKER = ".labs-run"   # in every run folder: the files that the last run wrote there (JSON), and only those
WRITTEN = ("params.yaml", "report.ipynb", "report.html", "results.json")   # what every run writes (with figures)


def earlier_files(folder: Path) -> list:
    """The files an earlier `labs` run wrote in `folder`, which a new run replaces; nothing else there is touched.
    A folder that holds files labs did not write (no marker) is refused in one line: it is someone's."""
    marker = folder / MARKER
    if marker.is_file():
        try:
            names = json.loads(marker.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            names = None
        if isinstance(names, list) and all(isinstance(n, str) and "/" not in n and n not in ("", ".", "..")
                                           for n in names):
            return names
        raise LabsError(f"{marker} is damaged, so labs cannot tell its files from yours; delete it to let a run "
                        f"replace what is there, or give another --output.")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK, KERNEL_FILES))
    if foreign and ((folder.parent / SWEEP_MARKER).is_file() or records.read(folder, warn=False) is not None):
        return [*WRITTEN, *(p.name for p in folder.glob("*.png"))]   # a run of a sweep, or of labs before the marker
    if foreign:
        _refuse(folder, foreign)
    return []


def _refuse(folder: Path, foreign: list) -> None:
    """One line for a folder that holds files labs did not write: it is someone's, and labs touches nothing there."""
    raise LabsError(f"{folder} already holds files that labs did not write ({len(foreign)}, e.g. {foreign[0]!r}); "
                    f"give a new or empty folder as --output, so that nothing of yours is replaced.")


SWEEP_MARKER = ".labs-sweep"   # in every sweep folder: labs wrote it, its summaries and its run folders


def claim_sweep_folder(folder: Path, mark: bool = True) -> None:
    """Refuse a sweep folder that holds files labs did not write (no marker, and not a sweep of labs from before
    the marker); with `mark`, mark it as a sweep's otherwise."""
    names = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK, SWEEP_MARKER))
    legacy = (folder / "sweep.yaml").is_file() and "made:" in (folder / "sweep.yaml").read_text(errors="replace")
    if names and not (folder / SWEEP_MARKER).exists() and not legacy:
        _refuse(folder, names)
    if mark:
        results_file.write_atomic(folder / SWEEP_MARKER, "a sweep folder of labs\n")


def _mark(folder: Path, names) -> None:
    results_file.write_atomic(folder / MARKER, json.dumps({"files": sorted(set(names))}) + "\n")


def run(assignment: str, params: dict, folder: Path, stream: bool = True, setting: str | None = None) -> dict:
    """Execute the assignment's notebook with `params` (already resolved and validated) into `folder`; returns
    its results. `setting`: the run's name in its sweep, recorded in results.json.

    A new or empty folder, or one that an earlier run wrote (then its files are replaced, and only those: a report
    never mixes two runs, and nothing else is touched)."""
    folder = records.writable_folder(folder, "run folder")
    held = lock(folder, "labs run")
    start, error = time.perf_counter(), None
    try:
        earlier = earlier_files(folder)
        end_kernels(folder)   # what a killed run left: its kernel files, a partial report
        for name in earlier:
            (folder / name).unlink(missing_ok=True)
        for name in {*earlier, *WRITTEN}:   # what a write cut short left: write_atomic's temporary files
            for path in folder.glob(f".{glob.escape(name)}.*.tmp"):
                path.unlink(missing_ok=True)
        (folder / PARTIAL).unlink(missing_ok=True)
        before = {p.name for p in folder.iterdir()}
        _mark(folder, WRITTEN)   # so far; when the run ends, every file it wrote
        try:
            results_file.write_atomic(folder / "params.yaml", yaml.safe_dump(params, sort_keys=False))
            error = execute(notebook(assignment), folder / "report.ipynb",
                            {**params, "output_dir": str(folder.resolve())}, stream)
        except KeyboardInterrupt:
            error = "interrupted before the notebook finished"
            raise
        except OSError as e:   # the disk is full: recorded as failed (if even that can be written), then said
            error = f"could not write {e.filename or 'the report'}: {e.strerror or e}"
            raise
        finally:
            try:
                results = _final(assignment, params, folder, error, time.perf_counter() - start, setting)
            finally:
                new = {p.name for p in folder.iterdir() if p.is_file()} - before - {MARKER, LOCK}
                _mark(folder, [*WRITTEN, *new])
    finally:
        end_kernels(folder)
        held.unlink(missing_ok=True)
    return results


def end_kernels(folder: Path) -> None:
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
    shutil.rmtree(folder / KERNEL_FILES, ignore_errors=True)


def _final(assignment: str, params: dict, folder: Path, error: str | None, seconds: float,
           setting: str | None) -> dict:
    """The run's results.json, from the notebook's own record (when it wrote one and nothing failed after):
    with the run's setting, or "failed" with the error. Written whole; if even that fails, none is left."""
    record = records.read(folder, warn=False)
    if not error and (record is None or record["status"] == "running"):
        error = "the notebook finished without " + ("writing results.json" if record is None else "its last cell, "
                                                     "run.finish(), which completes results.json")
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
