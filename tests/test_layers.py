"""labutils' two layers: the notebook library never imports the batch side (README, "Layout")."""
import ast
import subprocess
import sys

from conftest import ROOT

LIBRARY = {"data", "models", "train", "progress", "report", "analysis", "style", "vocab", "results", "reported"}
BATCH = {"params", "runner", "sweep", "summary", "index", "cli", "colab", "__main__"}


def imported(module: str) -> set:
    """The labutils modules that `module` imports anywhere in its source (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / "labutils" / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("labutils")):
            base = (node.module or "").removeprefix("labutils").strip(".")
            found |= {base.split(".")[0]} if base else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("labutils.")}
    return found


def test_every_module_is_in_one_layer():
    modules = {p.stem for p in (ROOT / "labutils").glob("*.py")} - {"__init__"}
    assert modules == LIBRARY | BATCH and not LIBRARY & BATCH


def test_no_library_module_imports_a_batch_module():
    wrong = {module: sorted(imported(module) & BATCH) for module in LIBRARY if imported(module) & BATCH}
    assert wrong == {}, f"library modules importing the batch side: {wrong}"


def test_the_walk_sees_imports_inside_functions():
    assert "params" in imported("colab") and {"vocab", "progress", "data"} <= imported("train")


def test_importing_the_library_loads_no_batch_module():
    code = ("import sys, labutils.analysis, labutils.data, labutils.models, labutils.report, labutils.train; "
            "print(sorted(m for m in sys.modules if m.startswith('labutils.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {m.split(".")[1] for m in eval(loaded)} & BATCH, loaded
