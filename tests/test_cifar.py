"""The CIFAR-10 lab: its data format, augmentation, models, ensembles, and the notebook end to end."""
import json
import pickle

import nbformat
import pytest
import torch
from torch import nn

from conftest import raw_values, labs, smoke_params, smoke_run
from labutils import LabsError, data, lessons, models, train

SMOKE = smoke_params("cifar10_cnn")


def test_model_parameter_counts():
    assert models.count_parameters(lessons.lenet5(in_channels=3, padding=0)) == 62_006
    assert models.count_parameters(lessons.model2()) == 8_876_234
    assert models.count_parameters(lessons.cnn()) == 1_148_874          # model3's defaults: 64-128-256, 2 blocks


def test_model2_is_exactly_as_given():
    net = lessons.model2()
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in net if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 64, (5, 5)), (64, 64, (5, 5)), (64, 128, (3, 3)), (128, 128, (3, 3)), (128, 128, (3, 3))]
    linear = [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)]
    assert linear == [(8 * 8 * 128, 1024), (1024, 10)]
    assert [m.p for m in net if isinstance(m, nn.Dropout)] == [0.5]
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_model3_shape_is_its_parameters():
    net = lessons.cnn(widths=[8, 16], blocks=3, batch_norm=False, pool="mixed", dropout=0.3)
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 8, 16, 16, 16] and all(c.bias is not None for c in convs)
    kinds = [type(m) for m in net]
    assert kinds.count(lessons.MixedPool2d) == 2 and nn.BatchNorm2d not in kinds and nn.Dropout in kinds
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in lessons.cnn([8, 16], blocks=2)) == 4


def test_mixed_pooling_is_the_mean_of_max_and_average_pooling():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    assert lessons.MixedPool2d(2)(x).item() == pytest.approx((6.0 + 3.0) / 2)


def test_augmentation_keeps_shape_and_device_and_changes_batches():
    x = torch.randn(16, 3, 32, 32)
    torch.manual_seed(0)
    a, b = data.augment(x), data.augment(x)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert not torch.equal(a, b)


def test_a_flip_is_a_flip():
    x = torch.randn(64, 3, 8, 8)
    out = data.augment(x, crop_padding=0)
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))       # each image is itself or its mirror image
    assert 10 < sum(flipped) < 54                            # and about half are mirrored


def test_crops_stay_in_bounds_of_the_padded_image():
    x = torch.randn(32, 3, 8, 8)
    out = data.augment(x, crop_padding=2, flip=False)
    padded = nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for o, p in zip(out, padded):
        windows = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(o, p[:, dy:dy + 8, dx:dx + 8])]
        assert windows, "every crop is an 8x8 window of the padded image"


def test_synthetic_cifar_is_written_as_pickled_batches_in_torchvisions_layout(tmp_path):
    data.write_synthetic("cifar10", tmp_path, n_train=50, n_test=20)
    folder = tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(data.CIFAR_FILES)
    batch = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="latin1")
    assert batch["data"].shape == (10, 3072) and len(batch["labels"]) == 10
    d = data.load("cifar10", str(tmp_path), download=False, val_fraction=0)
    assert d.train.x.shape == (50, 3, 32, 32) and len(d.test) == 20 and d.classes[0] == "airplane"


def _batch(n):
    return {"batch_label": "training batch 1 of 5", "labels": [0] * n,
            "data": torch.zeros(n, 3072, dtype=torch.uint8).numpy()}


def test_a_full_size_batch_must_have_the_original_md5_but_subsets_are_used_as_they_are(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps(_batch(5)))
    (folder / "data_batch_1").write_bytes(pickle.dumps(_batch(30)))
    assert len(data.load("cifar10", str(tmp_path), download=False, val_fraction=0).train) == 30   # a subset
    (folder / "data_batch_1").write_bytes(pickle.dumps(_batch(10000)))
    with pytest.raises(LabsError, match="data_batch_1 is corrupted or not the original CIFAR-10 file"):
        data.load("cifar10", str(tmp_path), download=False)


def test_cosine_schedule_goes_from_one_to_zero():
    plan = train.Recipe(schedule="cosine", epochs=10, batch_size=10).laid_out(100)
    assert plan.lr_factor(0) == 1.0 and plan.lr_factor(50) == pytest.approx(0.5) and plan.lr_factor(100) == pytest.approx(0.0)


def test_an_ensemble_averages_the_members_probabilities():
    labels = torch.tensor([0, 1, 1])
    def member(p):
        p = torch.tensor(p)
        return train.Evaluation(0.0, 0.0, labels, p.argmax(1), p)
    a, b = member([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6]]), member([[0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    both = train.ensemble([a, b])
    assert torch.allclose(both.probabilities, torch.tensor([[0.75, 0.25], [0.4, 0.6], [0.55, 0.45]]))
    assert both.predictions.tolist() == [0, 1, 0] and both.accuracy == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return smoke_run("cifar10_cnn", tmp_path_factory.mktemp("cifar") / "run")


def test_smoke_run_has_three_models_and_the_ensemble_learning_far_above_chance(smoke):
    proc, folder, results = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    model3 = models.count_parameters(lessons.cnn(SMOKE["model3_widths"]))
    assert raw_values(nbformat.read(folder / "report.ipynb", as_version=4)) == []   # no cell prints a raw value
    counts = {name: m["parameters"] for name, m in results["models"].items()}
    assert counts == {"lenet5": 62_006, "model2": 8_876_234, "model3": model3, "ensemble": SMOKE["ensemble"] * model3}
    for name, m in results["models"].items():
        assert m["test_accuracy"] > 0.5, name                                   # chance is 0.1
        cm = torch.tensor(m["confusion_matrix"])
        assert cm.shape == (10, 10) and cm.sum().item() == SMOKE["n_test"]
    assert all(len(results["models"][n]["history"]) == SMOKE["epochs"] for n in ("lenet5", "model2", "model3"))
    model3 = results["models"]["model3"]   # augment and model3_batch_norm true here; false in test_reach
    assert model3["recipe"]["augment"] == "random horizontal flips and random shifts of up to 4 pixels"
    assert model3["network"].count("BatchNorm2d(") == 2 * len(SMOKE["model3_widths"])
    for name in ("samples", "augmentation", "curves", "confusion_matrix", "per_class_accuracy", "misclassified"):
        assert (folder / f"{name}.png").is_file(), name


def test_the_report_shows_the_ensemble_gain_and_the_divergence_check(smoke):
    _, folder, _ = smoke
    html = (folder / "report.html").read_text()
    assert "mean of the members" in html and "points over the mean member" in html
    assert "lenet5: ok" in html and "model2: ok" in html and "model3: ok" in html
    assert ": DIVERGED: " not in html and "WARNING" not in html   # 600 images, 2 epochs: no false alarm


def test_a_model_that_learns_nothing_is_named_in_the_report_and_results_but_not_called_diverged(tmp_path):
    proc = labs("run", "cifar10_cnn", "--smoke", "-p", "models", "[lenet5]", "-p", "ensemble", "0",
                "-p", "optimizer", "sgd", "-p", "lr", "1e-9", "--output", tmp_path)
    assert proc.returncode == 0 and "cifar10_cnn: ok" in proc.stdout
    assert "NOTE: lenet5: not learned yet: after 34 steps training accuracy is " in proc.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    note = results["models"]["lenet5"]["note"]
    assert results["status"] == "ok" and "near chance (10%), its loss not falling (" in note
    assert note.endswith("; train longer (more epochs or images), or check the learning rate.")
    assert "lenet5: ok; NOTE: lenet5: not learned yet" in (tmp_path / "report.html").read_text()



def test_torchvisions_own_cifar_reader_reads_our_synthetic_files_as_we_do(tmp_path):
    import torchvision
    root = data.write_synthetic("cifar10", tmp_path, n_train=50, n_test=20)

    class WithoutMd5(torchvision.datasets.CIFAR10):   # synthetic files cannot match the originals' md5
        def _check_integrity(self):
            return True

        def _load_meta(self):
            self.classes = pickle.loads((root / self.base_folder / "batches.meta").read_bytes(), encoding="latin1")[
                "label_names"]

    theirs = WithoutMd5(str(root), train=True)
    ours = data.DATASETS["cifar10"].read(root / "cifar-10-batches-py", 10)
    assert torch.equal(torch.as_tensor(theirs.data).permute(0, 3, 1, 2), ours["train_x"])
    assert theirs.targets == ours["train_y"].tolist() and theirs.classes == list(data.DATASETS["cifar10"].classes)
