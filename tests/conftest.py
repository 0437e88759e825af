import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# pytest-xdist runs one test file per core: each worker (and the notebook kernels it starts) then gets its share of
# the cores instead of every torch taking all of them and thrashing.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

# The files that start the most notebook kernels run first (the others keep their order): with one file per worker
# at a time, a long file begun last would leave the other cores idle through its last minutes.
FIRST = ["test_grading.py", "test_diagnoses.py", "test_record.py", "test_dask_faults.py", "test_sweep.py", "test_faults.py", "test_faults_results.py", "test_faults_third.py", "test_run.py",
         "test_faults_again.py", "test_cifar.py", "test_colab.py", "test_notebook_checks.py"]


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))


def labs(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run `python -m labutils ARGS` the way a user runs `labs`, capturing its output."""
    return subprocess.run([sys.executable, "-m", "labs", *map(str, args)], cwd=cwd or ROOT, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


def start_labs(*args, cwd=None) -> subprocess.Popen:
    """`labs ARGS` started in the background, its output captured."""
    return subprocess.Popen([sys.executable, "-m", "labs", *map(str, args)], cwd=cwd or ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line(proc) -> bool:
    """A fault said the way users are promised: one line on stderr, no traceback."""
    return proc.stderr.count("\n") == 1 and "Traceback" not in proc.stdout + proc.stderr


def kernels(pid: int) -> list:
    """The notebook kernels among a process's descendants (processes that end while being looked at are skipped)."""
    import psutil
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


def all_ended(processes) -> bool:
    """Whether every one of `processes` has ended (zombies count as ended)."""
    import psutil
    def running(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False
    return not any(running(p) for p in processes)


def wait_for(condition, seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` have passed; its last value."""
    import time
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.1)
    return condition()


@pytest.fixture(scope="session")
def tiny_mnist():
    """Learnable synthetic MNIST, read through the real idx loader: 540 train, 60 validation, 200 test."""
    from labutils import data
    return data.load("mnist", synthetic=True, n_train=600, n_test=200, seed=0)


def smoke_params(assignment: str) -> dict:
    import yaml
    return yaml.safe_load((ROOT / "params" / assignment / "smoke.yaml").read_text())


def smoke_run(assignment: str, folder: Path) -> tuple:
    """`labs run ASSIGNMENT --smoke --output FOLDER`: (the process, the folder, results.json or None)."""
    import json
    proc = labs("run", assignment, "--smoke", "--output", folder)
    path = folder / "results.json"
    return proc, folder, json.loads(path.read_text()) if path.exists() else None


def raw_values(nb) -> list:
    """The raw return values a notebook's cells printed (a dict, a tensor, a long repr): none should show."""
    plain = [o.data["text/plain"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if o.output_type == "execute_result" and set(o.data) == {"text/plain"}]
    return [t for t in plain if len(t) > 400 or "tensor(" in t or "{'" in t]


# --- a lab's notebook in a live kernel, worked as a student works it (tests/test_student.py, test_record.py) ---------

def errors(nb) -> list:
    return [(i, o["traceback"]) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.get("outputs", [])
            if o["output_type"] == "error"]


def text(cell) -> str:
    """A cell's printed text and plain-text displays."""
    found = []
    for o in cell.get("outputs", []):
        found.append(o.get("text", "") if o["output_type"] == "stream" else
                     o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/markdown", ""))
    return "".join(found)


class Kernel:
    """A lab's notebook in a live kernel: its cells run by index, edited as a student would edit them."""

    def __init__(self, stem: str, folder):
        import nbclient
        import nbformat
        self.nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
        self.client = nbclient.NotebookClient(self.nb, kernel_name="python3", allow_errors=True, timeout=300,
                                              resources={"metadata": {"path": str(folder)}})

    def index(self, needle: str) -> int:
        return next(i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and needle in c.source)

    def run(self, *indexes) -> list:
        for i in indexes:
            self.nb.cells[i].outputs = []
            self.client.execute_cell(self.nb.cells[i], i)
        return [(i, tb) for i, tb in errors(self.nb) if i in indexes]

    def run_from(self, first: int, last: int | None = None) -> list:
        code = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and first <= i <= (last or 10 ** 6)
                and "colab-install" not in c.metadata.get("tags", [])]
        return self.run(*code)

    def value(self, expression: str):
        """A JSON value computed in the kernel."""
        import json
        import nbformat
        cell = nbformat.v4.new_code_cell(f"import json as _json; print(_json.dumps({expression}))")
        self.nb.cells.append(cell)
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1)
        finally:
            self.nb.cells.pop()
        assert not errors(nbformat.v4.new_notebook(cells=[cell])), cell.outputs
        return json.loads(text(cell))

    def retype(self, **lines):
        """The parameters cell with lines retyped, without annotations: name -> value text."""
        cell = self.nb.cells[self.index("seed: int =")]
        kept = [line for line in cell.source.splitlines() if line.split(":", 1)[0] not in lines]
        cell.source = "\n".join(kept + [f"{name} = {value}" for name, value in lines.items()])

    def edit(self, needle: str, old: str, new: str) -> int:
        i = self.index(needle)
        assert old in self.nb.cells[i].source, old
        self.nb.cells[i].source = self.nb.cells[i].source.replace(old, new)
        return i
