import json
import math

import matplotlib
import pytest
import torch

from labutils import LabsError, lessons, models, parameters, report, results, train
from labs import records

matplotlib.use("Agg")


def test_json_safe_turns_tensors_into_lists_and_nan_into_null():
    value = {"a": torch.tensor([[1, 2], [3, 4]]), "b": float("nan"), "c": [float("inf"), 0.5], 3: "x"}
    assert results.json_safe(value) == {"a": [[1, 2], [3, 4]], "b": None, "c": [None, 0.5], "3": "x"}


def test_atomic_write_leaves_no_temporary_files_and_a_readable_file(tmp_path):
    record = results.build("mnist_mlp", {"lr": math.nan})
    results.write(tmp_path / "run" / "results.json", record)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["results.json"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["params"] == {"lr": None}
    assert ((tmp_path / "run" / "results.json").stat().st_mode & 0o777) == 0o644
    assert records.read(tmp_path / "run")["params"] == {"lr": None}
    assert records.read(tmp_path / "nowhere") is None


def test_a_write_that_fails_half_way_leaves_the_old_file_whole(tmp_path, monkeypatch):
    """The disk fills while the new record is written: the old results.json stays as it was, nothing else is left."""
    path = tmp_path / "run" / "results.json"
    results.write(path, results.build("mnist_mlp", {"lr": 0.1}))
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device.*results.json"):
        results.write(path, results.build("mnist_mlp", {"lr": 0.2, "note": "x" * 100_000}))
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["results.json"]


CELL = 'lr: float = 1e-3  # learning rate\nepochs: int = 2  # passes\ntitle: str = "x"  # a name\n'


def test_a_notebook_checks_what_its_parameters_cell_and_papermills_cell_set_by_the_rules_labs_uses():
    namespace = {"In": ["", CELL, "# Parameters\nepochs = 3\n", "run = report.start(...)"], "lr": 1, "epochs": 3,
                 "title": "x", "torch": torch, "model": torch.nn.Linear(1, 1), "_x": 1}
    assert parameters.check_notebook("mnist_mlp", namespace) == {"lr": 1.0, "epochs": 3, "title": "x"}
    assert type(namespace["lr"]) is float                                  # typed as the cell declares it
    namespace.update(In=["", CELL, "# Parameters\nlrr = 0.1\n", "..."], lrr=0.1)
    with pytest.raises(LabsError, match="Unknown parameter 'lrr' for mnist_mlp \\(did you mean 'lr'\\?\\)"):
        parameters.check_notebook("mnist_mlp", namespace)
    namespace.update(In=["", CELL + "epochs = 0\n", "..."], epochs=0)     # a line added without its annotation
    with pytest.raises(LabsError, match="^epochs must be at least 1, not 0.$"):
        parameters.check_notebook("mnist_mlp", namespace)


def test_a_parameter_typed_again_without_its_annotation_is_still_that_parameter():
    cell = CELL.replace("epochs: int = 2  # passes", "epochs = 5").replace("title", "synthetic").replace('"x"', "True")
    cell = cell.replace("synthetic: str = True  # a name", "synthetic = True")
    namespace = {"In": ["", cell, "run = report.start(...)"], "lr": 1e-3, "epochs": 5, "synthetic": True}
    assert parameters.check_notebook("mnist_mlp", namespace) == {"lr": 1e-3, "epochs": 5, "synthetic": True}
    namespace.update(epochs="two")                                       # its type is the notebook's: int
    with pytest.raises(LabsError, match="^epochs must be an int"):
        parameters.check_notebook("mnist_mlp", namespace)
    namespace.update(In=["", cell + "lrr = 0.1\n", "..."], epochs=5, lrr=0.1)   # a typo is still no parameter
    with pytest.raises(LabsError, match="^Unknown parameter 'lrr' for mnist_mlp \\(did you mean 'lr'\\?\\)"):
        parameters.check_notebook("mnist_mlp", namespace)


def test_without_a_history_the_annotations_are_the_declarations():
    namespace = {"__annotations__": {"lr": float, "epochs": int}, "lr": -1.0, "epochs": 2}
    with pytest.raises(LabsError, match="lr must be greater than 0, not -1.0"):
        parameters.check_notebook("mnist_mlp", namespace)


@pytest.fixture(scope="module")
def trained(tiny_mnist):
    torch.manual_seed(0)
    model = lessons.mlp([64])
    fit = train.fit(model, tiny_mnist, train.Recipe(epochs=2, batch_size=32), progress=False)
    return model, fit, train.evaluate(model, tiny_mnist.test)


def test_run_writes_results_json_in_the_contract_shape(tmp_path, tiny_mnist, trained):
    model, fit, test = trained
    run = report.Run("mnist_mlp", {"lr": 0.001, "seed": 3}, "cpu", str(tmp_path))
    run.add("mlp", model, fit, test)
    written = run.finish()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["error"] is None
    assert list(on_disk) == list(SCHEMA)
    assert on_disk["seed"] == 3 and on_disk["setting"] is None
    assert list(on_disk["env"]) == list(results.ENV_KEYS)
    assert on_disk["env"]["device"] == "cpu" and on_disk["env"]["precision"] in ("fp32", "bf16")
    assert on_disk["env"]["layout"] == {"mlp": "contiguous"} and on_disk["env"]["steps"] == {"mlp": "eager"}
    assert on_disk["env"]["peak_memory_gb"] is None                              # CUDA's alone
    mlp = on_disk["models"]["mlp"]
    assert set(mlp) == {"parameters", "test_accuracy", "test_loss", "per_class_accuracy", "confusion_matrix",
                        "train_samples_per_second", "history", "macs_per_image",
                        "train_seconds", "recipe", "network", "val_images", "val_accuracy_batch_statistics", "note"}
    assert mlp["val_images"] == len(tiny_mnist.val) and mlp["val_accuracy_batch_statistics"] is None   # no batch norm
    assert mlp["recipe"] == {**fit.recipe.record(), "augment": "no augmentation"} and mlp["recipe"]["epochs"] == 2
    assert mlp["network"].startswith("Sequential(") and "Linear(in_features=784, out_features=64" in mlp["network"]
    assert mlp["parameters"] == 784 * 64 + 64 + 64 * 10 + 10 and mlp["macs_per_image"] == 784 * 64 + 64 * 10
    assert sum(map(sum, mlp["confusion_matrix"])) == len(tiny_mnist.test)
    assert mlp["test_accuracy"] == pytest.approx(test.accuracy) == pytest.approx(written["models"]["mlp"]["test_accuracy"])


SCHEMA = ("assignment", "status", "error", "setting", "seed", "params", "env", "wall_seconds", "finished", "models")


@pytest.mark.parametrize("status", ["ok", "failed", "diverged"])
def test_one_builder_gives_every_status_the_same_schema(status):
    record = results.build("mnist_mlp", {"seed": 1, "lr": 0.1}, status=status,
                           error=None if status == "ok" else "why", setting="lr-0.1", wall_seconds=2.0)
    assert tuple(record) == SCHEMA and tuple(record["env"]) == results.ENV_KEYS
    assert record["status"] == status and record["setting"] == "lr-0.1" and record["seed"] == 1
    assert record["env"]["device"] is None and record["env"]["labutils"]       # not known: None, never "auto"
    assert records.problem(json.loads(json.dumps(record))) is None             # it reads back as usable
    with pytest.raises(ValueError):
        results.build("mnist_mlp", {}, status="done")


@pytest.mark.parametrize("content, why", [
    ("[1, 2]", "holds a list"), ('"x"', "holds a str"), ('{"status": "ok"}', "'params' is not a dict"),
    ('{"assignment": "a", "status": "ok", "params": {}, "models": "x"}', "'models' is not a dict"),
    ('{"assignment": "a", "status": "ok", "params": {}, "models": {"m": {"test_accuracy": "0.9"}}}',
     "the test_accuracy of 'm' is not a number"),
    ('{"assignment": "a", "status": "done", "params": {}, "models": {}}', "its status is 'done'"),
    ("{not json", "cannot be read"),
])
def test_an_unusable_results_file_is_no_result_and_named_in_one_warning(tmp_path, capsys, content, why):
    (tmp_path / "results.json").write_text(content)
    assert records.read(tmp_path) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "results.json") in err and why in err


def test_a_diverged_model_makes_the_run_diverged_with_its_error(tmp_path, trained):
    model, fit, test = trained
    bad = train.Fit(history=[{**fit.history[0], "train_loss": float("nan")}], status="diverged",
                    error="mlp: the training loss became NaN in epoch 1")
    run = report.Run("mnist_mlp", {}, "cpu", str(tmp_path))
    run.add("mlp", model, bad, test)
    on_disk = run.finish()
    assert on_disk["status"] == "diverged" and "NaN in epoch 1" in on_disk["error"]
    assert json.loads((tmp_path / "results.json").read_text())["models"]["mlp"]["history"][0]["train_loss"] is None


def test_without_output_dir_nothing_is_written(tmp_path, monkeypatch, trained):
    monkeypatch.chdir(tmp_path)
    model, fit, test = trained
    run = report.Run("mnist_mlp", {}, "cpu", "")
    run.add("mlp", model, fit, test)
    run.save(report.plot_history({"mlp": fit.history}), "curves")
    run.finish()
    assert list(tmp_path.iterdir()) == []


def test_figures(tmp_path, tiny_mnist, trained):
    model, fit, test = trained
    run = report.Run("mnist_mlp", {}, "cpu", str(tmp_path))
    curves = report.plot_history({"a": fit.history, "b": fit.history})
    assert len(curves.axes) == 2 and len(curves.axes[0].lines) == 4     # train + val for each model
    confusion = report.plot_confusion(test.confusion_matrix(10), tiny_mnist.classes)
    assert len(confusion.axes[0].texts) == 100                           # one count per cell
    wrong = (test.predictions != test.labels).sum().item()
    missed = report.plot_misclassified(tiny_mnist, test, n=8)
    assert len(missed.axes[0].texts) == min(wrong, 8)                    # one caption per image shown
    assert missed.axes[0].get_title().startswith(f"{wrong} of 200 test images misclassified")
    per_class = report.plot_per_class({"mlp": test.per_class_accuracy(10)}, tiny_mnist.classes)
    assert len(per_class.axes[0].patches) == 10
    run.save(report.plot_samples(tiny_mnist, per_class=3), "samples")
    assert (tmp_path / "samples.png").stat().st_size > 1000


def test_the_schedule_plot_draws_an_epoch_recipe_as_well_as_a_staged_one():
    epochs = report.plot_schedule(train.Recipe(schedule="cosine", warmup=0.2, epochs=3, batch_size=32), 540)
    assert len(epochs.axes[0].lines[0].get_xdata()) == 3 * 17                # 17 iterations per epoch
    stages = [{"iterations": 30, "lr": [0.003, 0.002], "batch_size": [32, 64], "l2": [10, 40]},
              {"iterations": 20, "lr": 0.001, "batch_size": 64, "l2": 0}]
    staged = report.plot_schedule(train.Recipe(stages=stages, update_every=5, penalty=lessons.l2_penalty), 540)
    assert len(staged.axes[1].lines[0].get_ydata()) == 50 and len(staged.axes[1].lines) == 2   # the curve, one boundary
