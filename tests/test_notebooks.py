"""The source notebooks: clean, parameterized the same way, in step with pyproject and the params files."""
import ast
import tomllib

import labutils
import nbformat
import pytest

from labs import params
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


def test_every_badge_and_install_cell_follows_pyproject():
    from labs import colab
    assert colab.problems() == []
    assert REPO_URL == colab.project()[0]


def test_a_badge_or_install_cell_that_disagrees_is_named_with_its_notebook():
    from labs import colab
    url, version = colab.project()
    found = colab.problems(url, "9.9.9")
    assert len(found) == 2 * len(LABS)
    assert found[0].startswith("01_mnist_mlp.ipynb: its Colab badge does not open") and "v9.9.9" in found[0]
    assert "02_fashion_fcn_vs_lenet.ipynb: its install cell (tagged colab-install) does not install " \
           f"labutils @ git+{url}@v9.9.9" in found


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_the_install_cell_runs_on_colab_only_and_leaves_colabs_torch_alone(path):
    [cell] = [c for c in read(path).cells if "colab-install" in c.metadata.get("tags", [])]
    assert 'if "google.colab" in sys.modules:' in cell.source
    version = labutils.__version__
    assert f'%pip install -q "labutils @ git+{REPO_URL}@v{version}"' in cell.source
    assert "torch" not in cell.source.split("%pip install")[1]        # Colab's own torch is left alone


def test_labs_colab_moves_every_badge_and_install_cell_to_another_repository(tmp_path, monkeypatch):
    import shutil
    from labs import cli, colab
    copy = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", copy / "notebooks")
    shutil.copy(ROOT / "pyproject.toml", copy)
    monkeypatch.setattr(colab, "ROOT", copy)
    monkeypatch.setattr(params, "ROOT", copy)
    assert cli.main(["colab", "--repo", "someone/deep-labs"]) == 0
    assert 'Repository = "https://github.com/someone/deep-labs"' in (copy / "pyproject.toml").read_text()
    assert colab.problems() == [] and colab.project()[0] == "https://github.com/someone/deep-labs"
    first = read(copy / "notebooks" / "04_mnist_cnn_ensemble.ipynb").cells[0].source
    assert "colab.research.google.com/github/someone/deep-labs/blob/v" in first and "# 04 ·" in first
    assert cli.main(["colab", "--repo", "not a repo"]) == 2


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_the_gpu_labs_ask_colab_for_a_gpu_and_the_others_do_not(path):
    gpu = path.stem.split("_", 1)[1] in ("cifar10_cnn", "mnist_cnn_ensemble")
    assert (read(path).metadata.get("accelerator") == "GPU") == gpu


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
def test_the_defaults_are_written_once_in_the_parameters_cell_and_labs_list_shows_them(assignment):
    from conftest import labs
    assert not (ROOT / "params" / assignment / "default.yaml").exists()
    shown = labs("list", assignment).stdout
    for p in params.declared(assignment).values():
        if p.name != "output_dir":
            assert any(line.split()[:2] == [p.name, p.type] and repr(p.default)[:20] in line
                       for line in shown.splitlines()), p.name


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "params").glob("*/*.yaml") if p.parent.name != "sweeps"),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_parameter_file_is_valid_for_its_assignment(path):
    params.resolve(path.parent.name, [path])


@pytest.mark.parametrize("path", sorted((ROOT / "params" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sweep_file_is_valid(path):
    from labs import sweep
    plan = sweep.load(path)
    assert plan.runs and path.read_text().startswith("#"), "a sweep file says what it reproduces"


def test_the_version_is_written_once_and_the_installed_package_reports_it():
    from importlib.metadata import version
    assert version("labutils") == labutils.__version__                 # pyproject.toml reads it (dynamic)
    assert "version" not in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
