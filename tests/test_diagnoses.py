"""Diagnoses that are true at a student's settings, through a real kernel: a short run near chance is "not learned
yet", never "diverged"; batch norm's running statistics are named where evaluation mode falls far below batch
statistics; an over- or underfit verdict needs a validation split large enough to tell; in fp32 and in bf16."""
import json

from conftest import Kernel, text


def record(folder) -> dict:
    return json.loads((folder / "results.json").read_text())


def diagnoses(stem: str, tmp_path, **params) -> tuple:
    """A lab run top to bottom at a student's settings: its results.json and the analysis cell's text."""
    tmp_path.mkdir(exist_ok=True)
    lab, out = Kernel(stem, tmp_path), tmp_path / "run"
    lab.retype(synthetic="True", output_dir=repr(str(out)), **params)
    with lab.client.setup_kernel():
        assert lab.run_from(0) == []
    return record(out), text(lab.nb.cells[lab.index("analysis.write(run")])


def test_a_short_run_at_the_students_settings_is_not_called_diverged_nor_overfit_in_fp32(tmp_path):
    # lab 03 with only n_train and epochs lowered: batch 128, 10 steps, the default model2 and model3
    results, analysis = diagnoses("03_cifar10_cnn", tmp_path / "03", n_train="600", epochs="2", precision='"fp32"',
                                  models='["model2", "model3"]', ensemble="0", n_test="100")
    model2, model3 = results["models"]["model2"], results["models"]["model3"]
    assert results["status"] == "ok" and results["error"] is None
    assert model2["note"].startswith("model2: not learned yet: after 10 steps training accuracy is ")
    assert "its loss falling from " in model2["note"] and model2["history"][-1]["train_accuracy"] < 0.15
    assert model3["note"].startswith("model3: validation accuracy is ") and "with batch statistics" in model3["note"]
    assert model3["val_accuracy_batch_statistics"] - model3["history"][-1]["val_accuracy"] > 0.5
    assert "**model3**: validation accuracy ends at" in analysis and "cannot yet tell over- from underfitting" in analysis
    assert "DIVERGED" not in analysis and "it overfits" not in analysis
    # lab 01 with n_train = 50: 5 validation images, where one image is 20 points
    results, analysis = diagnoses("01_mnist_mlp", tmp_path / "01", n_train="50", epochs="3", precision='"fp32"',
                                  hidden="[64, 64, 64]", n_test="100")
    assert results["models"]["mlp"]["val_images"] == 5
    assert "a gap within the noise of 5 validation images" in analysis and "too small to judge" in analysis
    assert "it overfits" not in analysis and "it underfits" not in analysis


def test_the_same_diagnoses_in_bf16(tmp_path):
    results, analysis = diagnoses("03_cifar10_cnn", tmp_path, n_train="600", epochs="2", precision='"bf16"',
                                  models='["model3"]', model3_widths="[32, 64]", ensemble="0", n_test="100")
    assert results["status"] == "ok" and results["env"]["precision"] == "bf16"
    assert "with batch statistics" in results["models"]["model3"]["note"] and "it overfits" not in analysis
