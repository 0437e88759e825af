"""Two parts: the library the notebooks import (labutils) never imports the tool (labs), and its requirements are
the notebook's own (README, "Layout")."""
import ast
import subprocess
import sys
import tomllib

from conftest import ROOT

TOOL_ONLY = {"papermill", "nbconvert", "nbformat", "nbclient", "jupyter_client", "ipykernel", "psutil", "distributed",
             "dask", "nbval", "pytest", "labs"}


def imported(path) -> set:
    """The top-level modules that a source file imports anywhere (inside functions too); relative ones as '.'."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." if node.level else (node.module or "").split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
    return found


def test_no_library_module_imports_the_tool_or_its_dependencies():
    wrong = {p.name: sorted(imported(p) & TOOL_ONLY) for p in (ROOT / "labutils").glob("*.py") if imported(p) & TOOL_ONLY}
    assert wrong == {}, f"library modules importing the tool's side: {wrong}"


def test_the_walk_sees_imports_inside_functions():
    assert "papermill" in imported(ROOT / "labs" / "runner.py") and "torchvision" in imported(ROOT / "labutils" / "data.py")


def test_the_library_requires_only_what_a_notebook_needs_and_the_tool_keeps_its_own_apart():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {r.split(">")[0].split("[")[0] for r in project["dependencies"]}
    assert names == {"torch", "torchvision", "matplotlib", "seaborn", "pyyaml"}   # what Colab's install cell adds
    tool = {r.split(">")[0] for r in project["optional-dependencies"]["tool"]}
    assert {"papermill", "nbconvert", "ipykernel", "psutil"} <= tool
    assert project["scripts"]["labs"] == "labs.cli:main"


def test_importing_the_library_loads_nothing_of_the_tool():
    code = ("import sys, labutils.analysis, labutils.data, labutils.models, labutils.report, labutils.train; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % sorted(TOOL_ONLY))
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(loaded) == [], loaded


def test_the_tool_validates_notebooks_without_the_parser_that_costs_seconds_to_import():
    code = ("import sys, labs, nbformat; nbformat.validate(nbformat.v4.new_notebook()); "
            "print(sys.modules['rfc3987_syntax'], 'jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "True"]           # jsonschema validates; rfc3987-syntax was never imported
