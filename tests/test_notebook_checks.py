"""A notebook keeps the promises `labs` keeps when it runs on its own: bad parameters stop it in its first step with
the one line `labs` gives, shown as one line, whether it runs under plain papermill or in Jupyter with an edited
parameters cell; a LabsError in any cell is its sentence, not a traceback."""
import subprocess
import sys

import nbclient
import nbformat
import pytest

from conftest import ROOT

LAB01 = ROOT / "notebooks" / "01_mnist_mlp.ipynb"


def errors(nb) -> list:
    """(cell index, traceback lines) of every error output."""
    return [(i, o["traceback"]) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.get("outputs", [])
            if o["output_type"] == "error"]


@pytest.mark.parametrize("option, message", [
    (["-p", "lr", "abc"], "lr must be a float like 0.001 (learning rate), not 'abc'."),
    (["-p", "optimizer", "adamm"], "optimizer must be one of adam, adamw, sgd, rmsprop, adadelta, not 'adamm' "
                                   "(did you mean 'adam'?)."),
    (["-p", "lrr", "0.1"], "Unknown parameter 'lrr' for mnist_mlp (did you mean 'lr'?); the notebook's parameters "
                           "cell lists them all."),
])
def test_plain_papermill_with_a_bad_value_stops_at_the_first_step_with_one_sentence(option, message, tmp_path):
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(LAB01), str(out), *option, "--cwd", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr
    nb = nbformat.read(out, as_version=4)
    [(index, traceback)] = errors(nb)
    assert traceback == [message]                                               # the sentence alone
    assert "report.start" in nb.cells[index].source                             # the first step after the parameters
    assert all(c.get("execution_count") is None for c in nb.cells[index + 1:] if c.cell_type == "code")  # no training


def run_cells(client, nb, indexes) -> list:
    for i in indexes:
        nb.cells[i].outputs = []
        client.execute_cell(nb.cells[i], i)
    return [(i, tb) for i, tb in errors(nb) if i in indexes]


def edited(source: str, **values) -> str:
    """The parameters cell with some lines rewritten as a student types them: name -> the new line's right side."""
    lines = []
    for line in source.splitlines():
        name = line.split(":", 1)[0]
        lines.append(f"{name}: {values.pop(name)}" if name in values else line)
    return "\n".join(lines + [f"{name} = {value}" for name, value in values.items()])   # names the cell lacks


def test_a_student_editing_the_parameters_cell_in_jupyter_meets_the_same_one_line_errors(tmp_path):
    nb = nbformat.read(LAB01, as_version=4)
    cells = {tag: next(i for i, c in enumerate(nb.cells) if tag(c)) for tag in (
        lambda c: "parameters" in c.metadata.get("tags", []), lambda c: "report.start" in c.source,
        lambda c: "data.load(" in c.source)}
    params, setup, load = cells.values()
    original = nb.cells[params].source
    client = nbclient.NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for change, message in [
            ({"lr": 'float = "fast"  # learning rate'}, "lr must be a float (learning rate), not 'fast'."),
            ({"epochs": "int = 0  # passes"}, "epochs must be at least 1, not 0."),
            ({"lrr": "0.1"}, "Unknown parameter 'lrr' for mnist_mlp (did you mean 'lr'?); the notebook's parameters "
                             "cell lists them all."),
            ({"val_fraction": "float = 0.995  #", "synthetic": "bool = True  #"},
             "n_train 0 (all: 1,000) with val_fraction 0.995 leaves 5 training images, too few to learn from (at "
             "least 10); raise n_train (0: all) or lower val_fraction."),
        ]:
            nb.cells[params].source = edited(original, **change)
            assert run_cells(client, nb, [params, setup]) == [(setup, [message])], change
        # the defaults, offline and without the data: the data cell says what to do in a notebook
        nb.cells[params].source = edited(original, data_dir=f"str = {str(tmp_path / 'empty')!r}  #",
                                         download="bool = False  #")
        [(where, [line])] = run_cells(client, nb, [params, setup, load])
        assert where == load and "MNIST is not in" in line and "set `synthetic = True` in the parameters cell" in line
        assert "--smoke" not in line
        # set so, the same kernel goes on without a false alarm from what the earlier runs left behind; a number
        # typed as a string is read as the number, as `labs` reads YAML's 1e-3
        nb.cells[params].source = edited(original, synthetic="bool = True  #", n_train="int = 300  #",
                                         lr='float = "0.01"  #')
        assert run_cells(client, nb, [params, setup, load]) == []
        nb.cells.append(nbformat.v4.new_code_cell("print(repr(lr), len(mnist.train))"))
        assert client.execute_cell(nb.cells[-1], len(nb.cells) - 1).outputs[0]["text"] == "0.01 270\n"


def test_labs_errors_show_as_their_sentence_in_any_cell_of_a_kernel(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import labutils"),
        nbformat.v4.new_code_cell("raise labutils.LabsError('the dataset is missing; set synthetic = True.')"),
        nbformat.v4.new_code_cell("raise ValueError('other errors keep their traceback')")])
    nbclient.NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=60).execute()
    [(one, first), (two, second)] = errors(nb)
    assert (one, two) == (1, 2) and first == ["the dataset is missing; set synthetic = True."]
    assert len(second) > 1 and "ValueError" in "".join(second)
