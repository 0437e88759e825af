"""The lesson is in the notebook: each lab defines its own networks (and lab 04 its L2 penalty) in `#@save` cells,
d2l-style, and trains what it defines; labutils/lessons.py, what other labs, the tests and the benchmarks reuse, is
generated from those cells (python -m labs.lessons), never kept by hand."""
import ast

import nbformat
import pytest

from conftest import ROOT
from labs import lessons as generator
from labutils import lessons, models, train

SAVED = {"01_mnist_mlp": {"ACTIVATION_LAYERS", "mlp", "init_weights"}, "02_fashion_fcn_vs_lenet": {"fcn", "lenet5"},
         "03_cifar10_cnn": {"model2", "cnn"}, "04_mnist_cnn_ensemble": {"MixedPool2d", "POOL_LAYERS", "ensemble_cnn",
                                                                         "l2_penalty"}}


def notebook_code(stem: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not c.source.lstrip().startswith("%")
                     and "colab-install" not in c.metadata.get("tags", []))


def defined(source: str) -> set:
    return {node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else node.targets[0].id
            for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) or
            (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name))}


def test_labutils_lessons_is_generated_from_the_notebooks_as_they_are():
    assert (ROOT / "labutils" / "lessons.py").read_text() == generator.generate(), \
        "a #@save cell changed: run `python -m labs.lessons`"
    assert (ROOT / "labutils" / "declared.py").read_text() == generator.generate_declared(), \
        "a parameters cell changed: run `python -m labs.lessons`"


@pytest.mark.parametrize("stem", SAVED)
def test_each_lab_saves_what_it_teaches_and_nothing_else_keeps_a_copy(stem):
    saved = set()
    for source in generator.saved_cells(ROOT / "notebooks" / f"{stem}.ipynb"):
        saved |= defined(source)
    assert saved == SAVED[stem]
    assert all(hasattr(lessons, name) for name in saved)
    assert not any(hasattr(models, name) or hasattr(train, name) for name in saved)   # no hand-kept second copy


def test_a_lab_trains_its_own_definitions_and_imports_only_what_other_labs_teach():
    for stem, names in SAVED.items():
        code = notebook_code(stem)
        used = {node.attr for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name) and node.value.id == "lessons"}
        assert not used & names, f"{stem} uses the generated copy of its own {used & names}"
        others = set().union(*(n for s, n in SAVED.items() if s != stem))
        assert used <= others
    assert "penalty=l2_penalty" in notebook_code("04_mnist_cnn_ensemble")   # its own penalty, in its recipe


def test_the_generated_module_names_its_source_and_runs_on_its_own():
    text = (ROOT / "labutils" / "lessons.py").read_text()
    assert "GENERATED from the notebooks' `#@save`" in text and "# --- from notebooks/04_mnist_cnn_ensemble.ipynb" in text
    assert "lessons." not in text.split('"""', 2)[2]   # a lab's `lessons.POOL_LAYERS` is the module's own name
    model = lessons.cnn(pool="mixed")
    assert any(isinstance(m, lessons.MixedPool2d) for m in model.modules())


def test_lab_01_shows_the_epoch_loop_with_train_and_eval_modes():
    code = notebook_code("01_mnist_mlp")
    loop = next(node for node in ast.parse(code).body if isinstance(node, ast.FunctionDef) and node.name == "train_epoch")
    text = ast.unparse(loop)
    assert "model.train()" in text and ".backward()" in text and ".step()" in text and len(text.splitlines()) <= 14
    assert ".eval()" in code and "accuracy(trial, mnist.val)" in code     # then measured in eval mode, and in train mode
