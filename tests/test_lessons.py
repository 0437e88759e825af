"""The lesson is in the notebook: each lab defines its own networks (and lab 04 its L2 penalty) where it teaches
them, d2l-style; labutils keeps the same definitions for the labs and benchmarks that reuse them, and these tests
keep the two the same, so the notebook is the source and the library is checked from it."""
import ast
import inspect

import nbformat
import pytest

from conftest import ROOT
from labutils import models, train

LESSONS = {   # notebook -> what it defines, and where labutils keeps the same
    "01_mnist_mlp": {"ACTIVATION_LAYERS": models, "mlp": models, "init_weights": models},
    "02_fashion_fcn_vs_lenet": {"fcn": models, "lenet5": models},
    "03_cifar10_cnn": {"model2": models, "cnn": models},
    "04_mnist_cnn_ensemble": {"MixedPool2d": models, "POOL_LAYERS": models, "ensemble_cnn": models,
                              "l2_penalty": train},
}


class _Unqualified(ast.NodeTransformer):
    """`architectures.lenet5` in a notebook is `lenet5` in labutils.models."""

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id == "architectures":
            return ast.copy_location(ast.Name(node.attr, node.ctx), node)
        return node


def definitions(source: str) -> dict:
    """Top-level functions, classes and assignments of some source, by name, as comparable ASTs."""
    found = {}
    for node in ast.parse(source).body:
        name = node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
            node.targets[0].id if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) else None
        if name:
            found[name] = ast.dump(_Unqualified().visit(node))
    return found


def notebook_code(stem: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not c.source.lstrip().startswith("%")
                     and "colab-install" not in c.metadata.get("tags", []))


@pytest.mark.parametrize("stem", LESSONS)
def test_each_lab_defines_its_own_networks_as_labutils_keeps_them(stem):
    ours = definitions(notebook_code(stem))
    for name, module in LESSONS[stem].items():
        assert name in ours, f"{stem} no longer defines {name}"
        theirs = definitions(inspect.getsource(module))
        assert ours[name] == theirs[name], f"{name}: {stem} and labutils.{module.__name__.split('.')[-1]} differ"


def test_lab_01_shows_the_epoch_loop_with_train_and_eval_modes():
    code = notebook_code("01_mnist_mlp")
    loop = next(node for node in ast.parse(code).body if isinstance(node, ast.FunctionDef) and node.name == "train_epoch")
    text = ast.unparse(loop)
    assert "model.train()" in text and ".backward()" in text and ".step()" in text and len(text.splitlines()) <= 14
    assert ".eval()" in code and "accuracy(trial, mnist.val)" in code     # then measured in eval mode, and in train mode
