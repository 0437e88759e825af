"""Lab 04, the MNIST CNN ensemble: its network, staged training, the L2 term, the notebook end to end."""

import nbformat
import pytest
import torch
from torch import nn

from conftest import labs, raw_values, smoke_params, smoke_run
from labutils import LabsError, lessons, models, train
from labs import params


def test_the_reports_network_has_exactly_its_parameter_count_for_every_pooling():
    for pool in ("mixed", "max", "avg"):
        assert models.count_parameters(lessons.ensemble_cnn(pool)) == 2_720_778


def test_pooling_keeps_tensorflows_same_sizes_28_14_7_4():
    net = lessons.ensemble_cnn("max")
    sizes = [layer[2] for layer in models.summary(net, (1, 28, 28))["layers"] if layer[1] == "MaxPool2d"]
    assert sizes == [(32, 14, 14), (64, 7, 7), (128, 4, 4)]


def test_mixed_pooling_is_the_mean_of_max_and_average_and_the_last_window_averages_what_it_covers():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    mixed = lessons.MixedPool2d(2, ceil_mode=True)(x)
    # windows: [[0,1],[3,4]] -> max 4, mean 2; [2],[5] -> max 5, mean 3.5; [6,7] -> 7, 6.5; [8] -> 8, 8
    assert mixed.flatten().tolist() == [3.0, 4.25, 6.75, 8.0]


def test_biases_start_at_0_1_and_leaky_relu_and_dropout_follow_each_hidden_linear():
    net = lessons.init_weights(lessons.ensemble_cnn(), "he", bias=0.1)
    assert all(torch.all(m.bias == 0.1) for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    kinds = [type(m) for m in net]
    first = kinds.index(nn.Linear)
    assert kinds[first:first + 6] == [nn.Linear, nn.LeakyReLU, nn.Dropout] * 2 and net[first + 2].p == 0.5


def test_staged_values_interpolate_lr_batch_and_l2_updated_every_50_iterations():
    stages = [{"iterations": 1400, "lr": [0.00375, 0.0025], "batch_size": [200, 300], "l2": [100, 400]},
              {"iterations": 6000, "lr": [2e-4, 1e-8], "batch_size": [400, 600], "l2": [100, 0]}]
    plan = train.Schedule(tuple(stages), every=100, update_every=50)
    values = plan.at
    assert plan.total == 7400
    assert values(0) == (0.00375, 200, 100)
    assert values(49) == values(0)                                   # updated every 50 iterations only
    lr, batch, l2 = values(700)                                      # half way to stage 1's last update (1350)
    assert lr == pytest.approx(0.00375 - 0.00125 * 700 / 1350) and batch == round(200 + 100 * 700 / 1350)
    assert l2 == pytest.approx(100 + 300 * 700 / 1350)
    assert values(1399) == pytest.approx((0.0025, 300, 400))        # stage 1 ends at its end values
    assert values(1400) == pytest.approx((2e-4, 400, 100))          # stage 2 starts at its start values
    assert values(7399) == pytest.approx((1e-8, 600, 0))
    constant = train.Schedule(({"iterations": 10, "lr": 0.01, "batch_size": 32, "l2": 0},), every=5)
    assert constant.at(7) == (0.01, 32, 0)


def test_the_l2_term_is_the_sum_over_weight_layers_of_the_mean_squared_weight():
    net = nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 1, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net[0].bias.fill_(100.0)                                     # biases are not penalized
        net[1].weight.fill_(3.0)
    assert lessons.l2_penalty(net).item() == pytest.approx((1 + 4 + 9 + 16) / 4 + 9)


def test_staged_training_learns_and_records_a_row_at_each_evaluation(tiny_mnist):
    train.seed_everything(0)
    net = lessons.init_weights(lessons.mlp([64, 64, 64]), "he")
    stages = [{"iterations": 30, "lr": [0.003, 0.002], "batch_size": [32, 64], "l2": [10, 40]},
              {"iterations": 20, "lr": [0.001, 0.0001], "batch_size": 64, "l2": [10, 0]}]
    fit = train.fit(net, tiny_mnist, train.Recipe(stages=stages, update_every=5, eval_every=20,
                                                   penalty=lessons.l2_penalty),
                    watch=tiny_mnist.test, progress=False)
    assert [r["iteration"] for r in fit.history] == [20, 40, 50]
    # iteration 19: stage 1's batch 32 -> 64, at its update of iteration 15 of 25: 32 + 32 * 15 / 25 = 51.2
    assert [r["batch_size"] for r in fit.history] == [51, 64, 64]
    assert fit.status == "ok" and fit.history[-1]["test_accuracy"] > 0.5 and len(fit.watched) == 3
    train.seed_everything(1)
    other = train.fit(lessons.init_weights(lessons.mlp([64, 64, 64]), "he"), tiny_mnist,
                      train.Recipe(stages=stages, update_every=5, eval_every=20, penalty=lessons.l2_penalty),
                      watch=tiny_mnist.test, progress=False)
    curve = train.ensemble_history([fit, other])
    for row, a, b in zip(curve, fit.watched, other.watched):        # the mean of the two members' probabilities
        assert not torch.equal(a.probabilities, b.probabilities)
        by_hand = ((a.probabilities + b.probabilities) / 2).argmax(1)
        assert row["test_accuracy"] == pytest.approx((by_hand == a.labels).float().mean().item())

def test_the_method_sweeps_one_stage_run_trains_at_smoke_size(tiny_mnist):
    from conftest import ROOT
    from labs import sweep
    plan = sweep.load(ROOT / "params" / "sweeps" / "mnist_cnn_ensemble-method.yaml", smoke=True)
    stages = plan.runs["method1"]["stages"]
    assert len(stages) == 1 and stages[0]["iterations"] <= 40 and stages[0]["l2"] == 0    # shrunk, still one stage
    train.seed_everything(0)
    net = lessons.init_weights(lessons.mlp([64, 64, 64]), "he")
    fit = train.fit(net, tiny_mnist, train.Recipe(stages=stages, update_every=5, eval_every=10), progress=False)
    assert [r["iteration"] for r in fit.history] == list(range(10, stages[0]["iterations"] + 1, 10))
    assert fit.status == "ok" and fit.history[-1]["val_accuracy"] > 0.5
    assert {r["lr"] for r in fit.history} == {stages[0]["lr"]}                           # constant, as in method 1


@pytest.mark.parametrize("stages, message", [
    ([{"iterations": 10, "lr": 0.1, "batch_size": 8}], "stage 1: the key 'l2' is missing"),
    ([{"iterations": 10, "lr": 0.1, "batch_size": 8, "l2": 0, "momentum": 0.9}], "stage 1: unknown key 'momentum'"),
    ([{"iterations": 10, "lr": 0.1, "batch_size": 8, "l2": 0}, {"iterations": 0, "lr": 0.1, "batch_size": 8, "l2": 0}],
     "stage 2: iterations must be a whole number of at least 1"),
    ([{"iterations": 10, "lr": 0.1, "batch_size": [8, 0], "l2": 0}], "stage 1: batch_size must be at least 1"),
    ([{"iterations": 10, "lr": [0.1, 0.0], "batch_size": 8, "l2": 0}], "stage 1: lr must be greater than 0"),
    ([{"iterations": 10, "lr": 0.1, "batch_size": 8, "l2": -1}], "stage 1: l2 must be 0 or more"),
    ([{"iterations": 10, "lr": [0.1, 0.01, 0.001], "batch_size": 8, "l2": 0}],
     "stage 1: lr must be a number or a [start, end] pair of numbers"),
    ([{"iterations": 10, "lr": "fast", "batch_size": 8, "l2": 0}], "stage 1: lr must be a number or a [start, end]"),
    ([], "stages must be a non-empty list"),
])
def test_bad_stages_are_refused_naming_the_stage_and_the_key(stages, message):
    with pytest.raises(LabsError) as e:
        params.resolve("mnist_cnn_ensemble", [], {"stages": stages})
    assert message in str(e.value)


def test_a_bad_stage_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    proc = labs("run", "mnist_cnn_ensemble", "--smoke", "-p", "stages", "[{iterations: 10, lr: 0.1, batch_size: 8}]",
                "--output", tmp_path / "run")
    assert proc.returncode == 2 and "stage 1: the key 'l2' is missing" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return smoke_run("mnist_cnn_ensemble", tmp_path_factory.mktemp("ensemble") / "run")


def test_smoke_run_trains_the_members_and_their_ensemble(smoke):
    proc, folder, results = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert results["status"] == "ok" and list(results["models"]) == ["member 1", "member 2", "ensemble"]
    smoke = smoke_params("mnist_cnn_ensemble")
    evaluations = [i for i in range(1, 41) if i % smoke["eval_every"] == 0]
    for name in ("member 1", "member 2"):
        member = results["models"][name]
        assert member["parameters"] == 2_720_778 and member["test_accuracy"] > 0.6      # chance: 0.1
        assert [r["iteration"] for r in member["history"]] == evaluations
        assert {"val_accuracy", "test_accuracy", "lr", "batch_size", "l2"} <= set(member["history"][0])
    ensemble = results["models"]["ensemble"]
    assert ensemble["parameters"] == 2 * 2_720_778 and ensemble["test_accuracy"] > 0.6
    assert [r["iteration"] for r in ensemble["history"]] == evaluations
    for name in ("ensemble_curves", "schedule", "curves", "confusion_matrix", "samples"):
        assert (folder / f"{name}.png").is_file(), name
    html = (folder / "report.html").read_text()
    assert "minimum test loss" in html and "over the mean member" in html
    report = nbformat.read(folder / "report.ipynb", as_version=4)
    assert raw_values(report) == []                                  # no cell prints a raw value
    printed = "".join(o.get("text", "") for c in report.cells if c.cell_type == "code" for o in c.outputs)
    assert "test accuracy" in printed and "meant for a GPU" not in printed   # a smoke run is short, wherever it runs

