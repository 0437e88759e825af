"""labutils.analysis: every sentence checked against the numbers it was written from, with each model in turn
winning, tying, losing, diverging, over- and underfitting."""
import itertools
import re

import pytest
import torch

from labutils import analysis, report, train

MODELS = ("fcn", "lenet5", "lenet5_modified")


def history(val_accuracies, train_accuracies=None, val_losses=None):
    """Epoch rows with the given validation accuracies (and training accuracies, validation losses)."""
    n = len(val_accuracies)
    train_accuracies = train_accuracies or val_accuracies
    val_losses = val_losses or [1.0 - 0.1 * k for k in range(n)]
    return [{"epoch": k + 1, "train_loss": 0.5, "train_accuracy": t, "val_loss": loss, "val_accuracy": v,
             "lr": 0.01, "seconds": 1.0} for k, (v, t, loss) in enumerate(zip(val_accuracies, train_accuracies,
                                                                             val_losses))]


def fake_run(test: dict, val: dict, diverged=(), assignment="fashion_fcn_vs_lenet", params=None):
    """A finished report.Run with these test and final validation accuracies per model (no torch model)."""
    run = report.Run(assignment, params or {"synthetic": True, "dataset": "fashion_mnist"}, "cpu")
    for name, accuracy in test.items():
        cm = torch.zeros(3, 3, dtype=torch.long)
        cm[0, 0], cm[1, 2], cm[2, 1] = 80, 12, 8
        run.trained_with[name] = run.started_with
        run.recorded[name] = {"test_accuracy": accuracy, "test_loss": 0.3, "confusion_matrix": cm.tolist(),
                            "history": history([val[name] - 0.01, val[name]])}
        run.fits[name] = train.Fit(status="diverged" if name in diverged else "ok",
                                   error=f"{name}: the training loss became NaN" if name in diverged else None)
    return run


def percentages(text: str) -> list:
    return [float(x) for x in re.findall(r"(\d+\.\d\d) %", text)]


@pytest.mark.parametrize("order", list(itertools.permutations(MODELS)))
def test_each_model_in_turn_is_ranked_first_with_the_exact_gaps(order):
    accuracies = dict(zip(order, (0.92, 0.90, 0.885)))
    sentence = analysis.ranking(accuracies)
    winner, second, third = order
    assert sentence.startswith(f"**{winner}** is the most accurate on the test set (92.00 %): ")
    assert f"2.00 points above {second} (90.00 %)" in sentence and f"3.50 points above {third} (88.50 %)" in sentence
    assert all(sentence.count(name) == 1 + sum(other.startswith(name) and other != name for other in MODELS)
               for name in MODELS)   # each model named once (lenet5 is also the start of lenet5_modified)


def test_ties_are_said_as_ties():
    two = analysis.ranking({"fcn": 0.9, "lenet5": 0.9, "lenet5_modified": 0.85})
    assert two.startswith("**fcn** and **lenet5** are level as the most accurate on the test set (90.00 %)")
    assert "5.00 points above lenet5_modified" in two
    assert analysis.ranking({"a": 0.9, "b": 0.9}) == "**a** and **b** are level on the test set, at 90.00 % each."
    assert analysis.compare("a", "b", {"a": 0.9, "b": 0.9}) == "On the test set **a** and **b** are level, at 90.00 % each."


def test_a_diverged_model_is_named_and_never_ranked_even_when_its_number_is_highest():
    sentence = analysis.ranking({"fcn": 0.95, "lenet5": 0.90, "lenet5_modified": 0.88}, diverged=["fcn"])
    assert sentence.startswith("**lenet5** is the most accurate on the test set (90.00 %): 2.00 points above "
                               "lenet5_modified (88.00 %).")
    assert sentence.endswith("**fcn** diverged, so its test accuracy (95.00 %) ranks nothing.")
    assert "fcn (" not in sentence.split("diverged")[0]


def test_the_fcn_against_lenet_paragraph_claims_nothing_about_the_third_model():
    """Regression: lab 02 once wrote "lenet5 is the most accurate" while lenet5_modified had 92.15 %."""
    accuracies = {"fcn": 0.9005, "lenet5": 0.9022, "lenet5_modified": 0.9215}
    assert analysis.compare("lenet5", "fcn", accuracies) == \
        "On the test set **lenet5** reached 90.22 %, 0.17 points above **fcn** (90.05 %)."
    assert analysis.compare("fcn", "lenet5", accuracies).endswith("0.17 points below **lenet5** (90.22 %).")
    ranked = analysis.ranking(accuracies)
    assert ranked.startswith("**lenet5_modified** is the most accurate on the test set (92.15 %)")
    assert "1.93 points above lenet5 (90.22 %)" in ranked and "2.10 points above fcn (90.05 %)" in ranked


def test_the_best_model_is_chosen_on_validation_and_the_test_set_only_reports_on_it():
    run = fake_run(test={"fcn": 0.93, "lenet5": 0.90}, val={"fcn": 0.88, "lenet5": 0.91})
    assert run.best() == "lenet5"                                     # best on validation, not on test
    text = " ".join(analysis.sentences(run, ["a", "b", "c"]))
    assert "Chosen on the validation split, the best model is **lenet5** (91.00 % where training ended)" in text
    assert "on the test set it reached 90.00 %, 3.00 points below the most accurate there" in text
    agree = fake_run(test={"fcn": 0.93, "lenet5": 0.90}, val={"fcn": 0.95, "lenet5": 0.91})
    assert "it is also the most accurate on the test set" in " ".join(analysis.sentences(agree, ["a", "b", "c"]))


def test_every_percentage_in_the_analysis_is_one_of_the_runs_numbers():
    run = fake_run(test={"fcn": 0.9005, "lenet5": 0.9022, "lenet5_modified": 0.9215},
                   val={"fcn": 0.90, "lenet5": 0.905, "lenet5_modified": 0.93}, diverged=["fcn"],
                   params={"synthetic": False, "dataset": "fashion_mnist"})
    text = "\n".join(analysis.sentences(run, ["a", "b", "c"]))
    known = {round(100 * m["test_accuracy"], 2) for m in run.models.values()}
    known |= {round(100 * r["val_accuracy"], 2) for m in run.models.values() for r in m["history"]}
    known |= {88.4, 89.02, 91.76}                                        # the report's, from its own file
    known |= {round(100 * (a - b), 2) for a in known for b in known}     # gaps
    assert percentages(text) and set(percentages(text)) <= known
    assert "Against the original report: fcn 90.05 % against 88.40 % (+1.65 points)" in text
    assert "**fcn** diverged" in text and "the best model is **lenet5_modified**" in text


def test_the_reports_numbers_are_compared_only_on_the_real_data_the_report_used():
    run = fake_run(test={"fcn": 0.9}, val={"fcn": 0.9}, params={"synthetic": True})
    assert not any("original report" in s for s in analysis.sentences(run, ["a", "b", "c"]))
    lab04 = fake_run(test={"member 1": 0.99, "ensemble": 0.9961}, val={"member 1": 0.99, "ensemble": 0.99},
                     assignment="mnist_cnn_ensemble", params={"synthetic": False, "dataset": "fashion_mnist"})
    assert not any("original report" in s for s in analysis.sentences(lab04, ["a", "b", "c"]))   # MNIST's number
    lab04.params["dataset"] = "mnist"
    text = " ".join(analysis.sentences(lab04, ["a", "b", "c"]))
    assert "Against the original report: ensemble 99.61 % against 99.56 % (+0.05 points): ensemble beats" in text


@pytest.mark.parametrize("ours, verdict", [((0.90, 0.91), "every model beats the original report"),
                                           ((0.87, 0.91), "fcn stays below the original report in this run"),
                                           ((0.87, 0.88), "fcn and lenet5 stay below the original report")])
def test_against_the_report_says_who_beats_it(ours, verdict):
    text = analysis.against_report(dict(zip(("fcn", "lenet5"), ours)), {"fcn": 88.4, "lenet5": 89.02})
    assert text.endswith(verdict + ".") or verdict + " in this run." in text


@pytest.mark.parametrize("ensemble, verdict, best_gain", [(0.93, "beats its best member", "+1.00"),
                                                         (0.92, "only ties its best member", "+0.00"),
                                                         (0.91, "falls below its best member", "-1.00")])
def test_the_ensemble_gain_is_said_from_its_numbers(ensemble, verdict, best_gain):
    text = analysis.ensemble_gain({"a": 0.92, "b": 0.90}, ensemble)
    assert f"The ensemble {verdict}: " in text and f"{best_gain} over the best one" in text
    assert f"{100 * (ensemble - 0.91):+.2f} points over the mean member" in text and "| mean of the members | 91.00 % |" in text


def test_learning_curves_overfit_underfit_or_neither():
    overfit = analysis.learning_curve("m", history([0.8, 0.85, 0.84], val_losses=[0.5, 0.4, 0.6]))
    assert "validation loss was lowest at epoch 2 (0.4000) and ended at 0.6000: it overfits" in overfit
    mild = analysis.learning_curve("m", history([0.80, 0.85, 0.86], train_accuracies=[0.85, 0.95, 0.99]))
    assert "training accuracy ends 13.0 points above validation accuracy (99.00 % against 86.00 %)" in mild
    under = analysis.learning_curve("m", history([0.70, 0.75, 0.80]))
    assert "still rising at the end (+10.00 points over the last evaluations): it underfits" in under
    flat = analysis.learning_curve("m", history([0.85, 0.85, 0.85], train_accuracies=[0.84, 0.85, 0.851]))
    assert "no sign of overfitting" in flat and "levelled off" in flat and "underfits" not in flat
    peaked = analysis.learning_curve("m", history([0.85, 0.90, 0.86], train_accuracies=[0.85, 0.90, 0.86]))
    assert "peaked at epoch 2 (90.00 %), 4.00 points above where it ended" in peaked
    assert analysis.learning_curve("m", history([0.9])) == "**m**: too few evaluations to read a curve from."


def test_confusions_name_the_largest_mistakes_and_their_share():
    text = analysis.confusions([[80, 0, 0], [0, 0, 12], [0, 8, 0]], ["a", "b", "c"], k=2, name="x")
    assert text == ("**x**'s most frequent mistakes: b taken for c (12), c taken for b (8); these 2 of the 6 "
                    "possible confusions make 100% of the 20 errors.")
    assert analysis.confusions([[5, 0], [0, 5]], ["a", "b"]) == "No test image was misclassified."
    assert analysis.confusions([[5, 0], [0, 5]], ["a", "b"], name="fcn") == "**fcn** misclassified no test image."


def test_the_mistakes_table_says_when_there_are_none_and_the_extremes_share_one_format():
    perfect = {"fcn": {"confusion_matrix": [[5, 0], [0, 5]]}}
    assert analysis.mistakes_table(perfect, ["a", "b"]) == "No test image was misclassified."
    rows = [{"iteration": 40, "test_loss": 0.137, "test_accuracy": 0.95},
            {"iteration": 80, "test_loss": 0.15894, "test_accuracy": 0.96}]
    table = analysis.extremes({"member 1": rows})
    assert "| member 1 | 0.1370 (40) | 95.00 % | 96.00 % (80) | 0.1589 | 96.00 % |" in table


def test_the_grading_points_of_lab_01_read_what_trained_not_the_parameters():
    from labutils import lessons, models
    # the parameters claim 3 hidden layers, dropout and weight decay; what trained had 2, none and none
    params = {"hidden": [64, 64, 64], "dropout": 0.2, "init": "he", "weight_decay": 0.1}
    fit = train.Fit(recipe=train.Recipe(weight_decay=0.0))
    layers = models.summary(lessons.mlp([64, 64]), (1, 28, 28))["layers"]
    text = analysis.grading(fit, layers, params, 0.976, 97.5)
    assert "- **not met**: at least 3 hidden layers" in text and "- **not met**: dropout" in text
    assert "- **not met**: weight decay (L2)" in text and "- met: test accuracy of at least 97.5 % (this run: 97.60 %)" in text
    fit = train.Fit(recipe=train.Recipe(weight_decay=1e-4))
    layers = models.summary(lessons.mlp([64, 64, 64], dropout=0.2), (1, 28, 28))["layers"]
    text = analysis.grading(fit, layers, {"init": "default"}, 0.9, 97.5)
    assert "- met: at least 3 hidden layers" in text and "- met: dropout" in text and "- met: weight decay" in text
    assert "- **not met**: weight initialization" in text


def curve(*points):
    return [{"epoch": k + 1, "train_loss": 1.0, "train_accuracy": t, "val_loss": vl, "val_accuracy": v}
            for k, (t, v, vl) in enumerate(points)]


def test_a_learning_curve_never_says_overfit_and_underfit_together():
    collapsed = analysis.learning_curve("model3", curve((0.49, 0.12, 1.2), (0.963, 0.2, 5.0)), 10, 60, 0.967)
    assert "20.00 % in evaluation mode but 96.70 % on the same images with batch statistics" in collapsed
    assert "overfits" not in collapsed and "underfits" not in collapsed
    rising_gap = analysis.learning_curve("m", curve((0.7, 0.6, 1.2), (0.9, 0.7, 1.0), (0.99, 0.75, 0.9)))
    assert "it overfits" in rising_gap and "mild" not in rising_gap          # 24 points: no mild overfit
    assert "still rising" in rising_gap and "underfit" not in rising_gap
    close = analysis.learning_curve("m", curve((0.7, 0.7, 1.0), (0.8, 0.8, 0.8), (0.9, 0.9, 0.6)))
    assert "no sign of overfitting" in close and "it underfits" in close


def test_an_over_or_underfit_verdict_needs_a_validation_split_large_enough_to_tell():
    # lab 01 with n_train = 50: 5 validation images, one image is 20 points
    small = analysis.learning_curve("mlp", curve((0.6, 0.6, 1.0), (1.0, 0.8, 0.9)), 10, val_images=5)
    assert "too small to judge over- or underfitting" in small and "5 validation images" in small
    assert "it overfits" not in small and "it underfits" not in small
    large = analysis.learning_curve("mlp", curve((0.6, 0.6, 1.0), (1.0, 0.8, 0.9)), 10, val_images=6000)
    assert "it overfits" in large
    # the same 5-point gap: within the noise of 60 images, beyond that of 6,000
    assert "too small" in analysis.learning_curve("m", curve((0.8, 0.8, 1.0), (0.9, 0.85, 0.9)), 10, 60)
    assert "mild overfit" in analysis.learning_curve("m", curve((0.8, 0.8, 1.0), (0.9, 0.85, 0.9)), 10, 6000)
    assert analysis.noise(0.5, 10_000) == pytest.approx(0.01, rel=0.01)   # twice the standard error, 1 point
