"""What a run records is what ran: every parameter of every notebook, given a value other than its default, reaches
what trained (the recipe the fit used, which results.json records; the network; the data) — checked in the
kernel that ran it, after the run. A parameter left out of a lab's table fails the test, so a new one is checked
too. (The grading reads the same recipe and network: tests/test_analysis.py.)"""
import json

import nbclient
import nbformat
import pytest

from conftest import ROOT
from labutils.declared import DECLARED

RECIPE = ("optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup", "lr_decay", "lr_step", "loss",
          "label_smoothing", "epochs", "batch_size")


def recorded(model: str, names) -> tuple:
    """An expression and its expected value: these recipe fields as results.json records them for `model`."""
    return f"{{k: results['models'][{model!r}]['recipe'][k] for k in {list(names)!r}}}"


# lab -> (the values, {parameter(s): (expression evaluated in the kernel after the run, expected)})
LABS = {
    "01_mnist_mlp": ({
        "seed": 3, "device": "cpu", "precision": "bf16", "data_dir": "/tmp/labs-unused-data", "download": False, "synthetic": True,
        "n_train": 300, "n_test": 100, "val_fraction": 0.2, "hidden": [48, 40, 32], "activation": "tanh",
        "dropout": 0.3, "batch_norm": True, "init": "normal", "init_std": 0.05, "optimizer": "rmsprop", "lr": 0.002,
        "momentum": 0.5, "weight_decay": 0.001, "schedule": "step", "warmup": 0.1, "lr_decay": 0.5, "lr_step": 7,
        "loss": "multi_margin", "label_smoothing": 0.0, "epochs": 2, "batch_size": 40}, {
        "seed": ("results['seed']", 3),
        "device": ("results['env']['device']", "cpu"),
        "precision": ("[results['env']['precision'], results['models']['mlp']['recipe']['precision']]", ["bf16"] * 2),
        "synthetic data_dir download": ("[mnist.source, results['params']['data_dir'], results['params']['download']]",
                                        ["synthetic", "/tmp/labs-unused-data", False]),
        "n_train val_fraction": ("[len(mnist.train), len(mnist.val)]", [240, 60]),
        "n_test": ("sum(map(sum, results['models']['mlp']['confusion_matrix']))", 100),
        "hidden": ("[m.out_features for m in model.modules() if isinstance(m, nn.Linear)]", [48, 40, 32, 10]),
        "activation batch_norm": ("sorted({type(m).__name__ for m in model.modules()} - {'Sequential', 'Flatten'})",
                                  ["BatchNorm1d", "Dropout", "Linear", "Tanh"]),
        "dropout": ("[m.p for m in model.modules() if isinstance(m, nn.Dropout)]", [0.3] * 3),
        "init init_std": ("round(float(new_network()[1].weight.std()), 3)", 0.05),
        " ".join(RECIPE): (recorded("mlp", RECIPE), {
            "optimizer": "rmsprop", "lr": 0.002, "momentum": 0.5, "weight_decay": 0.001, "schedule": "step",
            "warmup": 0.1, "lr_decay": 0.5, "lr_step": 7, "loss": "multi_margin", "label_smoothing": 0.0, "epochs": 2,
            "batch_size": 40}),
        "output_dir": ("(Path(output_dir) / 'results.json').exists()", True),
    }),
    "02_fashion_fcn_vs_lenet": ({
        "seed": 5, "device": "cpu", "precision": "bf16", "data_dir": "/tmp/labs-unused-data", "download": False, "synthetic": True,
        "n_train": 300, "n_test": 100, "val_fraction": 0.2, "models": ["lenet5_modified"], "init": "he",
        "init_std": 0.02, "dropout": 0.25, "flip": False, "shift": 2, "tta": False, "optimizer": "sgd", "lr": 0.05,
        "momentum": 0.8, "weight_decay": 0.01, "schedule": "exponential", "warmup": 0.0, "lr_decay": 0.7,
        "lr_step": 5, "loss": "cross_entropy", "label_smoothing": 0.2, "epochs": 2, "batch_size": 48}, {
        "seed": ("results['seed']", 5),
        "device": ("results['env']['device']", "cpu"),
        "precision": ("results['env']['precision']", "bf16"),
        "synthetic data_dir download": ("[fashion.source, results['params']['data_dir'], results['params']['download']]",
                                        ["synthetic", "/tmp/labs-unused-data", False]),
        "n_train val_fraction": ("[len(fashion.train), len(fashion.val)]", [240, 60]),
        "n_test": ("sum(map(sum, results['models']['lenet5_modified']['confusion_matrix']))", 100),
        "models": ("list(results['models'])", ["lenet5_modified"]),
        "init init_std": ("round(float(lessons.init_weights(builders['lenet5_modified'](), init, init_std)[4].weight"
                          ".std() * (2 / 150) ** -0.5), 1)", 1.0),   # he: std = sqrt(2 / fan-in), fan-in 150
        "dropout": ("[m.p for m in model.modules() if isinstance(m, nn.Dropout)]", [0.25]),
        "flip shift": ("str(results['models']['lenet5_modified']['recipe']['augment'])",
                       "random shifts of up to 2 pixels"),
        "tta": ("'test_accuracy_single_view' in results['models']['lenet5_modified']", False),
        " ".join(RECIPE): (recorded("lenet5_modified", RECIPE), {
            "optimizer": "sgd", "lr": 0.05, "momentum": 0.8, "weight_decay": 0.01, "schedule": "exponential",
            "warmup": 0.0, "lr_decay": 0.7, "lr_step": 5, "loss": "cross_entropy", "label_smoothing": 0.2,
            "epochs": 2, "batch_size": 48}),
        "output_dir": ("(Path(output_dir) / 'results.json').exists()", True),
    }),
    "03_cifar10_cnn": ({
        "seed": 2, "device": "cpu", "precision": "bf16", "data_dir": "/tmp/labs-unused-data", "download": False, "synthetic": True,
        "n_train": 300, "n_test": 40, "val_fraction": 0.2, "models": ["lenet5", "model3"], "lenet5_dropout": 0.3,
        "model3_widths": [8, 16], "model3_blocks": 1, "model3_batch_norm": False, "model3_pool": "avg",
        "model3_dropout": 0.4, "augment": False, "init": "xavier", "init_std": 0.03, "optimizer": "adamw",
        "lr": 0.003, "momentum": 0.7, "weight_decay": 0.02, "schedule": "none", "warmup": 0.25, "lr_decay": 0.6,
        "lr_step": 9, "loss": "multi_margin", "label_smoothing": 0.0, "epochs": 2, "batch_size": 30, "ensemble": 2,
        "ensemble_of": "lenet5"}, {
        "seed": ("results['seed']", 2),
        "device": ("results['env']['device']", "cpu"),
        "precision": ("results['env']['precision']", "bf16"),
        "synthetic data_dir download": ("[cifar.source, results['params']['data_dir'], results['params']['download']]",
                                        ["synthetic", "/tmp/labs-unused-data", False]),
        "n_train val_fraction": ("[len(cifar.train), len(cifar.val)]", [240, 60]),
        "n_test": ("sum(map(sum, results['models']['model3']['confusion_matrix']))", 40),
        "models ensemble ensemble_of": ("list(results['models'])", ["lenet5", "model3", "ensemble"]),
        "lenet5_dropout": ("[m.p for m in trained['lenet5'][0].modules() if isinstance(m, nn.Dropout)]", [0.3]),
        "model3_widths model3_blocks model3_batch_norm model3_pool model3_dropout": (
            "[type(m).__name__ + str(getattr(m, 'out_channels', getattr(m, 'p', ''))) for m in trained['model3'][0]]",
            ["Conv2d8", "ReLU", "AvgPool2d", "Conv2d16", "ReLU", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
             "Dropout0.4", "Linear"]),
        "augment": ("results['models']['model3']['recipe']['augment']", "no augmentation"),
        "init init_std": ("round(float(lessons.init_weights(builders['lenet5'](), init, init_std)[3].weight.std() * "
                          "((6 * 25 + 16 * 25) / 2) ** 0.5), 1)", 1.0),   # xavier: sqrt(2 / (fan-in + fan-out))
        " ".join(RECIPE): (recorded("model3", RECIPE), {
            "optimizer": "adamw", "lr": 0.003, "momentum": 0.7, "weight_decay": 0.02, "schedule": "none",
            "warmup": 0.25, "lr_decay": 0.6, "lr_step": 9, "loss": "multi_margin", "label_smoothing": 0.0,
            "epochs": 2, "batch_size": 30}),
        "output_dir": ("(Path(output_dir) / 'results.json').exists()", True),
    }),
    "04_mnist_cnn_ensemble": ({
        "seed": 4, "device": "cpu", "precision": "bf16", "dataset": "fashion_mnist", "data_dir": "/tmp/labs-unused-data",
        "download": False, "synthetic": True, "n_train": 300, "n_test": 100, "val_fraction": 0.2, "members": 3,
        "pool": "max", "dropout": 0.2, "init": "normal", "init_std": 0.04, "shift": 2, "optimizer": "adamw",
        "weight_decay": 0.01, "stages": [{"iterations": 6, "lr": [0.001, 0.002], "batch_size": [16, 24], "l2": 3}],
        "update_every": 2, "eval_every": 3, "loss": "multi_margin", "label_smoothing": 0.0}, {
        "seed": ("results['seed']", 4),
        "device": ("results['env']['device']", "cpu"),
        "precision": ("results['env']['precision']", "bf16"),
        "dataset synthetic data_dir download": (
            "[images.name, images.source, results['params']['data_dir'], results['params']['download']]",
            ["FashionMNIST", "synthetic", "/tmp/labs-unused-data", False]),
        "n_train val_fraction": ("[len(images.train), len(images.val)]", [240, 60]),
        "n_test": ("sum(map(sum, results['models']['ensemble']['confusion_matrix']))", 100),
        "members": (   # the ensemble's probabilities are the mean of every member's, and the members differ
            "[list(results['models']), torch.allclose(averaged.probabilities, torch.stack([t.probabilities for _, _, t "
            "in networks.values()]).mean(0)), results['models']['ensemble']['confusion_matrix'] == train.Evaluation(0, 0, "
            "images.test.y.cpu(), averaged.probabilities.argmax(1), averaged.probabilities).confusion_matrix().tolist(), "
            "not torch.equal(networks['member 1'][2].probabilities, networks['member 3'][2].probabilities)]",
            [["member 1", "member 2", "member 3", "ensemble"], True, True, True]),
        "pool dropout": ("sorted({type(m).__name__ + str(getattr(m, 'p', '')) for m in networks['member 1'][0]})",
                         ["Conv2d", "Dropout0.2", "Flatten", "LeakyReLU", "Linear", "MaxPool2d", "ReLU"]),
        "init init_std": ("round(float(new_network()[10].weight.std()), 3)", 0.04),
        "shift": ("results['models']['member 1']['recipe']['augment']", "random shifts of up to 2 pixels"),
        "optimizer weight_decay stages update_every eval_every loss label_smoothing": (
            recorded("member 2", ["optimizer", "weight_decay", "stages", "update_every", "eval_every", "loss",
                                  "label_smoothing", "penalty"]), {
                "optimizer": "adamw", "weight_decay": 0.01, "update_every": 2, "eval_every": 3, "loss": "multi_margin",
                "label_smoothing": 0.0, "penalty": "l2_penalty",
                "stages": [{"iterations": 6, "lr": [0.001, 0.002], "batch_size": [16, 24], "l2": 3}]}),
        "output_dir": ("(Path(output_dir) / 'results.json').exists()", True),
    }),
}


@pytest.mark.parametrize("stem", LABS)
def test_every_parameter_given_another_value_reaches_what_ran(stem, tmp_path):
    values, checks = LABS[stem]
    assignment = stem.split("_", 1)[1]
    values = {**values, "output_dir": str(tmp_path / "run")}
    covered = {name for names in checks for name in names.split()}
    assert covered == set(DECLARED[assignment]) == set(values), "a parameter without a check"
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defaults = {line.split(":", 1)[0]: line for line in params.source.splitlines()}
    same = [n for n in values if repr(values[n]) == defaults[n].split("=", 1)[1].split("  #")[0].strip()]
    assert set(same) <= {"label_smoothing", "loss"}, f"a value equal to its default proves nothing: {same}"
    params.source = "\n".join(f"{name}: {line.split(':', 1)[1].split('=')[0].strip()} = {values[name]!r}"
                              for name, line in defaults.items())
    probe = nbformat.v4.new_code_cell("import json as _json\nfrom pathlib import Path\n"   # results.json, as written
                                      "results = _json.loads((Path(output_dir) / 'results.json').read_text())\n"
                                      "print(_json.dumps({"
                                      + ", ".join(f"{k!r}: {e}" for k, (e, _) in checks.items()) + "}))")
    nb.cells.append(probe)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
    found = json.loads(probe.outputs[0]["text"])
    assert found == {k: expected for k, (_, expected) in checks.items()}
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["status"] in ("ok", "diverged")   # a few steps of tiny nets may rightly learn nothing
