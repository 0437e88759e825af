"""The FashionMNIST lab: its models, its data, and the notebook end to end."""

import nbformat
import pytest
import torch
from torch import nn

from conftest import raw_values, smoke_params, smoke_run
from labutils import analysis, data, lessons, models
from labs import params


def test_the_three_models_have_exactly_the_reports_parameter_counts():
    assert models.count_parameters(lessons.fcn()) == 408_074
    assert models.count_parameters(lessons.lenet5()) == 61_706
    assert models.count_parameters(lessons.lenet5(modified=True)) == 61_990


def test_fcn_is_linear_batch_norm_relu_linear():
    assert [type(m) for m in lessons.fcn()] == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]


def test_classic_lenet5_uses_tanh_average_pooling_padding_2_and_a_third_conv_to_120():
    net = lessons.lenet5()
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == \
        [(1, 6, (5, 5), (2, 2)), (6, 16, (5, 5), (0, 0)), (16, 120, (5, 5), (0, 0))]
    kinds = {type(m) for m in net}
    assert nn.Tanh in kinds and nn.AvgPool2d in kinds and not kinds & {nn.ReLU, nn.MaxPool2d, nn.BatchNorm2d, nn.Dropout}
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_modified_lenet5_adds_batch_norm_relu_max_pooling_and_dropout_after_the_first_linear():
    net = lessons.lenet5(modified=True, dropout=0.2)
    kinds = [type(m) for m in net]
    assert kinds.count(nn.BatchNorm2d) == 3 and nn.MaxPool2d in kinds and nn.Tanh not in kinds
    first_linear = kinds.index(nn.Linear)
    assert kinds[first_linear + 1:first_linear + 3] == [nn.ReLU, nn.Dropout] and net[first_linear + 2].p == 0.2


def test_fashion_mnist_loads_through_the_same_idx_reader_in_its_own_folder(tmp_path):
    data.write_synthetic("fashion_mnist", tmp_path, n_train=40, n_test=10)
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    d = data.load("fashion_mnist", str(tmp_path), download=False, val_fraction=0)
    assert (len(d.train), len(d.test)) == (40, 10) and d.classes[0] == "T-shirt/top" and d.mean == (0.5,)
    with pytest.raises(Exception, match="FashionMNIST is not in"):
        data.load("fashion_mnist", str(tmp_path / "empty"), download=False)


def test_most_confused_pairs():
    cm = torch.tensor([[5, 3, 0], [1, 7, 0], [0, 4, 2]])
    assert analysis.most_confused(cm, ["a", "b", "c"], k=2) == [("c", "b", 4), ("a", "b", 3)]


def test_models_parameter_takes_a_non_empty_list_of_different_known_models():
    assert params.resolve("fashion_fcn_vs_lenet", [], {"models": ["lenet5"]})["models"] == ["lenet5"]
    for bad in ([], ["lenet7"], ["fcn", "fcn"]):
        with pytest.raises(Exception, match="models must be a list of different models from fcn, lenet5"):
            params.resolve("fashion_fcn_vs_lenet", [], {"models": bad})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return smoke_run("fashion_fcn_vs_lenet", tmp_path_factory.mktemp("fashion") / "run")


def test_smoke_run_trains_the_three_models_far_above_chance(smoke):
    proc, folder, results = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert results["status"] == "ok"
    assert raw_values(nbformat.read(folder / "report.ipynb", as_version=4)) == []   # no cell prints a raw value
    counts = {name: m["parameters"] for name, m in results["models"].items()}
    assert counts == {"fcn": 408_074, "lenet5": 61_706, "lenet5_modified": 61_990}
    for m in results["models"].values():
        assert m["test_accuracy"] > 0.6 and len(m["history"]) == smoke_params("fashion_fcn_vs_lenet")["epochs"]
        assert m["recipe"]["augment"] == "random horizontal flips"           # flip true here; false in test_reach
        assert m["test_accuracy_single_view"] is not None                    # tta true here; false in test_reach
        assert sum(map(sum, m["confusion_matrix"])) == smoke_params("fashion_fcn_vs_lenet")["n_test"]
    for name in ("samples", "curves", "per_class_accuracy", "misclassified", "confusion_matrix_fcn",
                 "confusion_matrix_lenet5", "confusion_matrix_lenet5_modified"):
        assert (folder / f"{name}.png").is_file(), name


def test_the_report_compares_the_models_in_this_runs_numbers(smoke):
    _, folder, _ = smoke
    html = (folder / "report.html").read_text()
    assert "408,074" in html and "61,706" in html and "416,520" in html     # parameters and MACs per image
    assert "each weight reused\n784 times" in html or "each weight reused 784 times" in html
    assert "6.6× LeNet-5" in html

