"""Run one assignment notebook with papermill into a run folder: params.yaml, report.ipynb, report.html, results.json.

A notebook that fails keeps its partial report, and the run's results.json says "failed" with the cell and error.
"""

import sys
import time
from pathlib import Path

import yaml
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec

from . import results as results_file
from .params import notebook, validate


class CurrentPythonKernel(AsyncKernelManager):
    """A kernel on this very Python, so a notebook sees the packages `labs` sees, whatever `python3` kernelspec exists.

    It talks over local sockets (ipc) where the system has them, rather than unencrypted TCP.
    """

    transport = "tcp" if sys.platform == "win32" else "ipc"

    @property
    def kernel_spec(self):
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                "--log-level=CRITICAL"],   # the notebook's own output still shows in full
                          display_name="Python 3 (labs)", language="python")


def new_folder(base: Path, name: str) -> Path:
    """base/name, or base/name-2, -3, ... when taken."""
    folder, n = base / name, 1
    while folder.exists():
        n += 1
        folder = base / f"{name}-{n}"
    return folder


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
    when done, so `target` is never half written; a failed notebook is kept too, for reading.
    Returns None, or one line naming the cell that failed and its error.
    stream: show the notebook's output (progress bars, epoch lines) live on this terminal.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = Path(target)
    partial = target.with_name(f".{target.stem}.partial.ipynb")
    error = None
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=parameters, kernel_name="python3",
            kernel_manager_class=CurrentPythonKernel, coalesce_streams=True, shutdown_kernel="immediate",
            cwd=str(target.parent),
            progress_bar=False, stdout_file=sys.stdout if stream else None, stderr_file=sys.stderr if stream else None)
    except PapermillExecutionError as e:
        error = _cell_error(e)
    except Exception as e:  # the kernel died, could not start, ...
        error = f"the notebook could not run: {type(e).__name__}: {e}"
    finally:
        if partial.exists():
            partial.replace(target)
            export_html(target)
    return error


LEFTOVERS = (".report.partial.ipynb", "kernel-ipc-*")   # what a killed run leaves in its folder


def run(assignment: str, params: dict, folder: Path, stream: bool = True) -> dict:
    """Execute the assignment's notebook with `params` (already resolved) into `folder`; return its results."""
    validate(assignment, params)
    folder = results_file.writable_folder(folder, "run folder")
    for leftover in (path for pattern in LEFTOVERS for path in folder.glob(pattern)):
        leftover.unlink(missing_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "results.json").unlink(missing_ok=True)
    start, error = time.perf_counter(), None
    try:
        error = execute(notebook(assignment), folder / "report.ipynb",
                        {**params, "output_dir": str(folder.resolve())}, stream)
    except KeyboardInterrupt:
        error = "interrupted (Ctrl-C) before the notebook finished"
        raise
    finally:
        if error:
            results_file.write(folder / "results.json",
                               results_file.failed(assignment, params, error, time.perf_counter() - start))
    results = results_file.read(folder)
    if results is None:
        results = results_file.failed(assignment, params, "the notebook finished without writing results.json",
                                      time.perf_counter() - start)
        results_file.write(folder / "results.json", results)
    return results


def describe_outcome(results: dict, folder: Path) -> str:
    """A short account of a finished run for the terminal."""
    return f"{results['assignment']}: {results_file.describe(results)}\n  report: {folder / 'report.html'}"
