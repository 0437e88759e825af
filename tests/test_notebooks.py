"""The source notebooks: clean, parameterized the same way, in step with pyproject and the params files."""
import ast
import tomllib

import nbformat
import pytest

from labutils import params
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ASSIGNMENTS = params.assignments()
LABS = sorted(ASSIGNMENTS.values())            # the assignment notebooks (not the sweep summary)
REPO_URL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def read(path):
    return nbformat.read(path, as_version=4)


def parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


def test_every_assignment_notebook_is_found():
    assert "mnist_mlp" in ASSIGNMENTS and NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_with_kernelspec_python3(path):
    nb = read(path)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_colab_badge_then_colab_only_install_from_the_project_url(path):
    nb = read(path)
    slug = REPO_URL.removeprefix("https://github.com/")
    assert f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}" in nb.cells[0].source
    setup = nb.cells[1].source
    assert 'if "google.colab" in sys.modules:' in setup and f"git+{REPO_URL}" in setup
    assert "torch" not in setup.split("%pip install")[1]        # Colab's own torch is left alone


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_parameter_is_annotated_commented_and_seen_by_papermill(path):
    source = parameters_cell(read(path)).source
    assigned = [node.target.id for node in ast.parse(source).body if isinstance(node, ast.AnnAssign)]
    assert len(assigned) == len(source.strip().splitlines()), "one annotated assignment per line, nothing else"
    seen = params.declared_in(path)
    assert list(seen) == assigned, "papermill must parse every line (no '=' inside a comment)"
    for p in seen.values():
        assert p.type in {"int", "float", "str", "bool", "list", "dict"} and p.help, p.name
        assert isinstance(p.default, {"int": int, "float": float, "str": str, "bool": bool, "list": list,
                                      "dict": dict}[p.type])


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_default_yaml_matches_the_notebook_defaults(assignment):
    declared = params.declared(assignment)
    default = params.load_yaml(ROOT / "params" / assignment / "default.yaml")
    assert default, "default.yaml writes the defaults out"
    for name, value in default.items():
        assert declared[name].default == value, name


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "params").glob("*/*.yaml") if p.parent.name != "sweeps"),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_parameter_file_is_valid_for_its_assignment(path):
    params.resolve(path.parent.name, [path])


@pytest.mark.parametrize("path", sorted((ROOT / "params" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sweep_file_is_valid(path):
    from labutils import sweep
    plan = sweep.load(path)
    assert plan.runs and path.read_text().startswith("#"), "a sweep file says what it reproduces"
