import pytest
import torch

from labutils import LabsError, lessons
from labs import cli, params


def error_of(assignment="mnist_mlp", **values):
    with pytest.raises(LabsError) as e:
        params.resolve(assignment, [], values)
    return str(e.value)


def test_unknown_assignment_suggests_the_closest():
    with pytest.raises(LabsError, match="Unknown assignment 'mnist_mpl' \\(did you mean 'mnist_mlp'\\?\\)"):
        params.notebook("mnist_mpl")


def test_unknown_parameter_suggests_the_closest_valid_name():
    assert "Unknown parameter 'dropuot'" in error_of(dropuot=0.1) and "did you mean 'dropout'" in error_of(dropuot=0.1)
    assert "did you mean 'lr'" in error_of(learning_rate=0.1)


@pytest.mark.parametrize("name, value, message", [
    ("lr", "fast", "lr must be a float like 0.001"),
    ("epochs", 2.5, "epochs must be an int like 20"),
    ("epochs", True, "epochs must be an int"),
    ("hidden", 512, "hidden must be a list"),
    ("batch_norm", "yes", "batch_norm must be a bool"),
])
def test_wrong_types_are_refused(name, value, message):
    assert message in error_of(**{name: value})


@pytest.mark.parametrize("name, value, message", [
    ("lr", 0, "lr must be greater than 0, not 0.0"),
    ("lr", -0.1, "lr must be greater than 0"),
    ("dropout", 1.0, "dropout must be in [0, 1), not 1.0"),
    ("dropout", -0.1, "dropout must be in [0, 1)"),
    ("epochs", 0, "epochs must be at least 1, not 0"),
    ("batch_size", 0, "batch_size must be at least 1"),
    ("weight_decay", -1e-4, "weight_decay must be 0 or more"),
    ("val_fraction", 1.0, "val_fraction must be in [0, 1)"),
    ("optimizer", "lion", "optimizer must be one of adam, adamw, sgd, rmsprop, adadelta"),
    ("warmup", 1.0, "warmup must be in [0, 1)"),
    ("label_smoothing", -0.1, "label_smoothing must be in [0, 1)"),
    ("init", "glorot", "init must be one of default, he, xavier, normal"),
    ("hidden", [512, 0], "hidden must be a list of layer widths"),
    ("device", "tpu", "device must be auto, cpu, cuda"),
    ("lr", float("nan"), "lr must be a finite number"),
    ("precision", "fp8", "precision must be one of auto, fp32, bf16, fp16"),
])
def test_out_of_range_values_are_refused(name, value, message):
    assert message in error_of(**{name: value})


def test_runner_owned_parameters_cannot_be_set():
    assert "use --output DIR" in error_of(output_dir="/tmp/x")


def test_good_values_are_typed():
    resolved = params.resolve("mnist_mlp", [], {"lr": 1, "hidden": [8, 8], "init": "xavier"})
    assert {k: resolved[k] for k in ("lr", "hidden", "init")} == {"lr": 1.0, "hidden": [8, 8], "init": "xavier"}
    assert type(resolved["lr"]) is float
    assert params.resolve("mnist_mlp", [], {"lr": "1e-3"})["lr"] == 0.001   # YAML reads 1e-3 as a string


def test_files_layer_in_order_and_overrides_win(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: 0.1\nepochs: 3\n")
    (tmp_path / "b.yaml").write_text("lr: 0.2\n")
    resolved = params.resolve("mnist_mlp", [tmp_path / "a.yaml", tmp_path / "b.yaml"], {"epochs": 4})
    assert resolved["lr"] == 0.2 and resolved["epochs"] == 4
    assert resolved["dropout"] == 0.2 and "output_dir" not in resolved      # notebook default


def test_smoke_sits_under_the_files_but_its_data_size_and_epochs_always_hold(tmp_path):
    (tmp_path / "a.yaml").write_text("batch_size: 64\nepochs: 30\nn_train: 0\nsynthetic: false\n")
    resolved = params.resolve("mnist_mlp", [tmp_path / "a.yaml"], {"epochs": 1}, smoke=True)
    assert resolved["batch_size"] == 64                                  # the file's value, over smoke.yaml's 32
    assert resolved["synthetic"] is True and resolved["n_train"] == 600  # smoke.yaml's data size holds
    assert resolved["epochs"] == 1                                       # at most smoke.yaml's 2
    assert params.resolve("mnist_mlp", [tmp_path / "a.yaml"], smoke=True)["epochs"] == 2


def test_yaml_files_missing_malformed_or_not_a_mapping(tmp_path):
    with pytest.raises(LabsError, match="does not exist"):
        params.load_yaml(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("lr: [0.1,\n")
    with pytest.raises(LabsError, match="is not valid YAML at line 2"):
        params.load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- lr\n")
    with pytest.raises(LabsError, match="must be a mapping"):
        params.load_yaml(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert params.load_yaml(tmp_path / "empty.yaml") == {}


def test_command_line_values_are_read_as_yaml():
    assert params.parse_value("0.01") == 0.01 and params.parse_value("[512, 256]") == [512, 256]
    assert params.parse_value("he") == "he" and params.parse_value("false") is False
    assert params.parse_value("[1,") == "[1,"


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "Unknown assignment 'nope'"),
    (["run", "mnist_mlp", "-p", "dropuot", "0.1"], "did you mean 'dropout'"),
    (["run", "mnist_mlp", "-p", "lr", "fast"], "lr must be a float"),
    (["run", "mnist_mlp", "-p", "lr", "-1"], "lr must be greater than 0"),
    (["run", "mnist_mlp", "-p", "epochs", "0"], "epochs must be at least 1"),
    (["run", "mnist_mlp", "-f", "missing.yaml"], "missing.yaml does not exist"),
    (["run", "mnist_mlp", "-f", "bad.yaml"], "bad.yaml is not valid YAML"),
    (["list", "nope"], "Unknown assignment 'nope'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("lr: : :\n")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]    # no outputs/ folder, nothing


def test_the_choices_validated_here_are_exactly_the_ones_implemented():
    from labutils import models, train, vocab
    assert set(vocab.ACTIVATIONS) == set(lessons.ACTIVATION_LAYERS)
    assert set(vocab.LOSSES) == set(train.LOSS_FUNCTIONS)
    assert set(vocab.POOLS) == set(lessons.POOL_LAYERS)
    for name in vocab.OPTIMIZERS:
        train.make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for name in vocab.SCHEDULES:
        plan = train.Recipe(schedule=name, lr_decay=0.5, lr_step=2, epochs=2, batch_size=10).laid_out(40)
        assert 0 < plan.at(5)[0] <= 1e-3 and (plan.at(5)[0] < 1e-3) == (name != "none")
    for name in vocab.INITS:
        lessons.init_weights(lessons.mlp([4]), name)
    for name in vocab.PRECISIONS:
        train.precision_for(torch.device("cuda" if name == "fp16" else "cpu"), name)   # fp16: CUDA only


@pytest.mark.parametrize("name, value, message", [
    ("model3_pool", "sum", "model3_pool must be one of max, avg, mixed"),
    ("model3_widths", [64, 0], "model3_widths must be a list of layer widths"),
    ("model3_blocks", 0, "model3_blocks must be at least 1"),
    ("lenet5_dropout", 1.0, "lenet5_dropout must be in [0, 1)"),
    ("ensemble", -1, "ensemble must be 0 or more"),
    ("ensemble_of", "fcn", "ensemble_of must be one of lenet5, model2, model3"),
    ("models", ["model4"], "models must be a list of different models from lenet5, model2, model3"),
    ("schedule", "linear", "schedule must be one of none, exponential, step, cosine"),
])
def test_the_cifar_labs_own_parameters_are_checked_too(name, value, message):
    assert message in error_of("cifar10_cnn", **{name: value})


def test_smoke_shrinks_a_staged_schedule_in_iterations_and_in_batch_size():
    from conftest import ROOT
    resolved = params.resolve("mnist_cnn_ensemble", [ROOT / "params" / "mnist_cnn_ensemble" / "seed.yaml"], smoke=True)
    stages = resolved["stages"]
    assert sum(s["iterations"] for s in stages) <= 40 and len(stages) == 2      # the report's 7,400, in proportion
    assert [s["batch_size"] for s in stages] == [[96, 96], [96, 96]]            # not 200-600 images on 540
    assert [s["lr"] for s in stages] == [[0.00375, 0.0025], [0.0002, 1e-08]]    # its other values kept
