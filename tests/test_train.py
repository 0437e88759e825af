import pytest
import torch
from torch import nn

from labutils import analysis, LabsError, data, lessons, models, train


def small_mlp(seed=0, dropout=0.2):
    torch.manual_seed(seed)
    return lessons.init_weights(lessons.mlp([128, 128, 128], dropout=dropout), "he")


def test_fit_learns_synthetic_digits_far_above_chance(tiny_mnist):
    model = small_mlp()
    fit = train.fit(model, tiny_mnist, train.Recipe(epochs=8, batch_size=32), progress=False)
    test = train.evaluate(model, tiny_mnist.test)
    assert fit.status == "ok" and fit.error is None
    assert test.accuracy > 0.8          # chance is 0.1
    assert fit.history[-1]["train_loss"] < fit.history[0]["train_loss"]


def test_history_has_one_row_per_epoch_with_the_contract_keys(tiny_mnist):
    fit = train.fit(small_mlp(), tiny_mnist, train.Recipe(epochs=2, batch_size=64), progress=False)
    assert [row["epoch"] for row in fit.history] == [1, 2]
    assert set(fit.history[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert fit.train_samples_per_second > 0


def test_evaluation_runs_in_eval_mode_and_restores_training_mode(tiny_mnist):
    model = small_mlp(dropout=0.5)
    model.train()
    first = train.evaluate(model, tiny_mnist.val, precision="fp32")
    second = train.evaluate(model, tiny_mnist.val, precision="fp32")
    assert model.training                                  # mode given back
    assert first.loss == second.loss                       # dropout off: deterministic
    model.eval()
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(tiny_mnist.val.x), tiny_mnist.val.y).item()
    assert first.loss == pytest.approx(expected, rel=1e-5)


def test_confusion_matrix_and_per_class_accuracy(tiny_mnist):
    model = small_mlp()
    train.fit(model, tiny_mnist, train.Recipe(epochs=2, batch_size=32), progress=False)
    test = train.evaluate(model, tiny_mnist.test)
    cm = test.confusion_matrix(10)
    assert cm.shape == (10, 10) and cm.sum().item() == len(tiny_mnist.test)
    assert cm.diag().sum().item() / cm.sum().item() == pytest.approx(test.accuracy)
    per_class = test.per_class_accuracy(10)
    c = 3
    assert per_class[c] == pytest.approx(cm[c, c].item() / cm[c].sum().item())


def test_a_last_layer_of_the_wrong_size_is_refused_in_one_line_before_a_step(tiny_mnist):
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 12))    # trains, then breaks the 10-class confusion matrix
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(LabsError) as refused:
        train.fit(model, tiny_mnist, train.Recipe(epochs=1, batch_size=32), name="mlp", progress=False)
    message = "mlp gives 12 outputs per image, but the data has 10 classes: its last layer must give 10."
    assert str(refused.value) == message and not getattr(refused.value, "__notes__", [])
    assert train.ATTEMPTS["mlp"] == f"crashed: {message}" and model.training
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_a_stop_between_two_epochs_is_training_stopped_not_a_bare_interrupt(tiny_mnist, monkeypatch):
    def pressed(*args):   # the stop button pressed while the first epoch's line is written, after its steps
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "progress_line", pressed)
    with pytest.raises(BaseException) as stopped:
        train.fit(small_mlp(), tiny_mnist, train.Recipe(epochs=3, batch_size=32), name="mlp")
    assert isinstance(stopped.value, LabsError) and train.ATTEMPTS["mlp"] == "stopped in epoch 1 of 3"
    assert str(stopped.value) == "mlp: training stopped in epoch 1 of 3; run this cell again to train from the start."


def test_nan_loss_stops_training_and_reports_divergence(tiny_mnist, capsys):
    fit = train.fit(small_mlp(), tiny_mnist, train.Recipe(epochs=5, batch_size=32, optimizer="sgd", lr=1e6), name="mlp")
    assert fit.status == "diverged" and len(fit.history) < 5
    assert "NaN" in fit.error and "lr=1e+06" in fit.error and fit.error.startswith("mlp:")
    assert "DIVERGED" in capsys.readouterr().out


def test_a_run_that_ends_at_chance_is_not_learned_yet_not_diverged(tiny_mnist):
    model = lessons.mlp([16])
    for p in model.parameters():
        nn.init.zeros_(p)          # every image gets the same scores: accuracy = share of one class
    fit = train.fit(model, tiny_mnist, train.Recipe(epochs=1, batch_size=32, optimizer="sgd", lr=1e-12), progress=False)
    assert fit.status == "ok" and fit.error is None
    assert fit.note.startswith("model: not learned yet: after 17 steps training accuracy is ")
    assert fit.note.endswith("near chance (10%); train longer (more epochs or images), or check the learning rate.")


def test_same_seed_same_metrics_other_seed_other_metrics(tiny_mnist):
    def run(seed):
        train.seed_everything(seed)
        model = lessons.init_weights(lessons.mlp([64, 64, 64], dropout=0.2), "he")
        fit = train.fit(model, tiny_mnist, train.Recipe(epochs=2, batch_size=32), progress=False)
        return [(r["train_loss"], r["val_loss"], r["val_accuracy"]) for r in fit.history], \
            train.evaluate(model, tiny_mnist.test).loss
    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop),
                                       ("adadelta", torch.optim.Adadelta)])
def test_optimizers_carry_lr_and_weight_decay(name, cls):
    opt = train.make_optimizer(name, [nn.Parameter(torch.zeros(3))], lr=0.01, weight_decay=1e-4)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 1e-4
    with pytest.raises(LabsError, match="Unknown optimizer"):
        train.make_optimizer("lion", [nn.Parameter(torch.zeros(3))], lr=0.01)


def test_weight_decay_shrinks_the_weights(tiny_mnist):
    norms = {}
    for wd in (0.0, 0.1):
        model = small_mlp()
        train.fit(model, tiny_mnist, train.Recipe(epochs=2, batch_size=32, weight_decay=wd), progress=False)
        norms[wd] = sum(p.norm() ** 2 for p in model.parameters()).item()
    assert norms[0.1] < 0.8 * norms[0.0]


def epochs(schedule: str, **kw) -> train.Schedule:
    """An epoch recipe of 4 iterations per epoch (or `every`), laid out as its Schedule."""
    return train.Schedule(({"iterations": kw.pop("total", 40), "lr": 1.0, "batch_size": 32, "l2": 0.0},),
                          kw.pop("every", 4), staged=False, curve=schedule, **kw)


def test_schedules_multiply_the_learning_rate_per_iteration():
    assert epochs("none").lr_factor(30) == 1.0
    exponential = epochs("exponential", decay=0.5)
    assert exponential.lr_factor(4) == pytest.approx(0.5) and exponential.lr_factor(2) == pytest.approx(0.5 ** 0.5)
    step = epochs("step", decay=0.9, step=1000, total=3000)
    assert step.lr_factor(999) == 1.0 and step.lr_factor(1000) == pytest.approx(0.9)
    assert step.at(2500) == (pytest.approx(0.81), 32, 0.0)                        # lr, batch size, l2
    with pytest.raises(LabsError, match="Unknown schedule"):
        train.Recipe(schedule="cosine_warm")


def test_warmup_rises_linearly_then_the_schedule_runs_over_the_remaining_steps():
    one_cycle = epochs("cosine", every=10, total=100, warmup=20)
    assert [one_cycle.lr_factor(i) for i in (0, 9, 19)] == pytest.approx([0.05, 0.5, 1.0])
    assert one_cycle.lr_factor(20) == 1.0 and one_cycle.lr_factor(60) == pytest.approx(0.5)
    assert one_cycle.lr_factor(99) < 0.001 and epochs("none", every=10, total=100, warmup=4).lr_factor(1) == 0.5
    plan = train.Recipe(lr=0.1, epochs=3, batch_size=32, schedule="cosine", warmup=0.1).laid_out(540)
    assert (plan.total, plan.every, plan.warmup) == (51, 17, 5) and plan.at(4) == (pytest.approx(0.1), 32, 0.0)


def test_a_bigger_batch_than_the_training_split_makes_one_step_an_epoch(tiny_mnist):
    train.seed_everything(0)
    fit = train.fit(lessons.mlp([64]), tiny_mnist, train.Recipe(epochs=3, batch_size=1000, lr=0.003), progress=False)
    assert [r["epoch"] for r in fit.history] == [1, 2, 3] and fit.train_samples_per_second > 0
    assert fit.history[-1]["train_loss"] < fit.history[0]["train_loss"]


def test_label_smoothing_raises_the_training_loss_but_not_the_validation_loss(tiny_mnist):
    def run(smoothing):
        train.seed_everything(0)
        model = small_mlp()
        return train.fit(model, tiny_mnist, train.Recipe(epochs=6, batch_size=32, label_smoothing=smoothing),
                         progress=False).history[-1]
    plain, smoothed = run(0.0), run(0.2)
    assert smoothed["train_loss"] > plain["train_loss"] + 0.2          # smoothed targets: the loss cannot reach 0
    assert smoothed["val_accuracy"] > 0.6 and smoothed["val_loss"] < smoothed["train_loss"]   # chance: 0.1


def test_history_records_the_learning_rate_of_each_epoch(tiny_mnist):
    fit = train.fit(small_mlp(), tiny_mnist, train.Recipe(epochs=3, batch_size=32, lr=0.01, schedule="exponential",
                                                       lr_decay=0.5), progress=False)
    assert [r["lr"] for r in fit.history] == pytest.approx([0.01, 0.005, 0.0025])


@pytest.mark.parametrize("cuda, mps, picked", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, picked):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert train.pick_device("auto") == torch.device(picked)


def test_auto_device_is_an_available_one_and_missing_devices_are_refused():
    assert train.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(LabsError, match="not available"):
            train.pick_device("cuda")


def test_a_recipe_refuses_unknown_choices_and_bad_stages_in_one_line():
    with pytest.raises(LabsError, match="Unknown optimizer 'lion'; choose one of adam"):
        train.Recipe(optimizer="lion")
    with pytest.raises(LabsError, match="Unknown schedule 'cosin' \\(did you mean 'cosine'\\?\\)"):
        train.Recipe(schedule="cosin")
    with pytest.raises(LabsError, match="stage 1: the key 'l2' is missing"):
        train.Recipe(stages=[{"iterations": 10, "lr": 0.1, "batch_size": 8}])


def test_a_recipe_reads_as_a_sentence_with_counts_in_words():
    text = train.Recipe(epochs=1, batch_size=64, optimizer="adamw", lr=0.01, schedule="cosine", warmup=0.2,
                        weight_decay=0.05, label_smoothing=0.1, augment=data.augmentation(flip=True, shift=2),
                        precision="fp32")._repr_markdown_()
    assert text.startswith("**Recipe.** 1 epoch in batches of 64, AdamW at lr 0.01 with the learning rate following")
    for words in ("warm-up over the first 20% of the steps", "weight decay 0.05 (decoupled)",
                  "label smoothing 0.1", "random horizontal flips and random shifts of up to 2 pixels",
                  "forward passes in fp32"):
        assert words in text
    staged = train.Recipe(stages=[{"iterations": 1, "lr": [0.1, 0.01], "batch_size": 8, "l2": 0}])._repr_markdown_()
    assert "in 1 stage (stage 1: 1 iteration, lr 0.1 → 0.01, batch size 8, l2 0)" in staged


def test_conv_nets_train_channels_last_on_the_cpu_unless_their_batch_norm_is_narrow():
    cpu = torch.device("cpu")
    assert train.channels_last(lessons.lenet5(), cpu) and train.channels_last(lessons.ensemble_cnn(), cpu)
    assert train.channels_last(lessons.cnn(), cpu)                           # batch norm of 64+ channels
    assert not train.channels_last(lessons.lenet5(modified=True), cpu)       # 6-channel batch norm: slower so
    assert not train.channels_last(lessons.mlp([8]), cpu)                    # no convolutions


def test_test_time_augmentation_averages_an_image_and_its_mirror(tiny_mnist):
    class LeftHalf(nn.Module):   # scores depend on the left half only, so a mirror image scores differently
        def forward(self, x):
            return x[..., :14].flatten(1)[:, :10]
    plain, tta = train.evaluate(LeftHalf(), tiny_mnist.test), train.evaluate(LeftHalf(), tiny_mnist.test, tta=True)
    x = tiny_mnist.test.x
    expected = ((LeftHalf()(x) + LeftHalf()(x.flip(3))) / 2).softmax(1)
    assert torch.allclose(tta.probabilities, expected, atol=1e-6)
    assert tta.single_view_accuracy == plain.accuracy and plain.single_view_accuracy is None


@pytest.mark.parametrize("device, capability, flags, native", [
    ("cuda", (8, 0), (), True), ("cuda", (9, 0), (), True), ("cuda", (7, 5), (), False),     # Ampere on; Turing not
    ("cpu", (0, 0), ("avx2", "avx512f", "amx_tile", "amx_bf16"), True),                    # Intel Xeon with AMX
    ("cpu", (0, 0), ("avx2", "avx512f", "avx512_bf16"), True),                             # AMD Zen 4
    ("cpu", (0, 0), ("avx2", "avx512f"), False), ("cpu", (0, 0), (), False),
    ("mps", (0, 0), ("amx_bf16",), False),
])
def test_auto_precision_is_bf16_exactly_where_the_hardware_computes_it_natively(device, capability, flags, native):
    assert train.native_bf16(device, capability, frozenset(flags)) is native


def test_precision_is_auto_fp32_or_bf16_and_auto_follows_this_cpus_flags():
    cpu = torch.device("cpu")
    assert train.precision_for(cpu, "fp32") == "fp32" and train.precision_for(cpu, "bf16") == "bf16"
    for flags, expected in (({"avx2", "fma"}, "fp32"), ({"avx512f"}, "fp32"), ({"avx512_bf16"}, "bf16"),
                            ({"amx_tile", "amx_bf16"}, "bf16")):
        train.cpu_flags.cache_clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(train, "cpu_flags", lambda: frozenset(flags))
            assert train.precision_for(cpu, "auto") == expected, flags
    with pytest.raises(LabsError, match="Unknown precision 'bf61' .did you mean 'bf16'..; choose one of auto, fp32"):
        train.precision_for(cpu, "bf61")
    with pytest.raises(LabsError, match="^precision fp16 is for CUDA GPUs without bf16 .such as Colab's T4., not cpu; "):
        train.precision_for(cpu, "fp16")
    with pytest.raises(LabsError, match="bf16 is not available on Apple's mps"):
        train.precision_for(torch.device("mps"), "bf16")


@pytest.mark.parametrize("capability, eager, expected", [((9, 0), False, "bf16"), ((8, 0), False, "bf16"),
                                                         ((9, 0), True, "fp32"), ((7, 5), False, "fp32")])
def test_auto_on_cuda_is_bf16_only_where_the_gpu_has_it_and_the_steps_run_as_graphs(monkeypatch, capability, eager,
                                                                                      expected):
    """On an H200, bf16 was faster than fp32 inside captured steps and slower in eager ones; a T4 (7.5) has no
    bf16, and auto does not pick fp16 there, unmeasured."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.delenv("LABS_EAGER", raising=False)
    if eager:
        monkeypatch.setenv("LABS_EAGER", "1")
    cuda = torch.device("cuda")
    assert train.captures(cuda) is not eager and not train.captures(torch.device("cpu"))
    assert train.precision_for(cuda, "auto") == expected
    assert train.precision_for(cuda, "fp16") == "fp16"


def test_bf16_runs_the_forward_pass_in_bf16_and_keeps_weights_and_losses_fp32(tiny_mnist):
    model = small_mlp()
    seen = []
    model[1].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    fit = train.fit(model, tiny_mnist, train.Recipe(epochs=6, batch_size=32, precision="bf16"), progress=False)
    assert seen[0] == torch.float32                       # the check of its outputs, before training
    assert set(seen[1:]) == {torch.bfloat16} and fit.precision == "bf16"   # every step and evaluation
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert isinstance(fit.history[-1]["train_loss"], float) and fit.history[-1]["val_accuracy"] > 0.6   # chance 0.1
    assert train.evaluate(model, tiny_mnist.test, precision="bf16").accuracy > 0.6


def test_a_staged_l2_needs_the_notebooks_own_penalty_and_trains_with_it(tiny_mnist):
    stages = [{"iterations": 6, "lr": 0.01, "batch_size": 16, "l2": 50}]
    with pytest.raises(LabsError, match=r"^The stages give an L2 coefficient \(l2\) but the recipe has no penalty"):
        train.Recipe(stages=stages)
    calls = []

    def penalty(model):
        calls.append(1)
        return sum(p.pow(2).sum() for p in model.parameters())
    train.fit(small_mlp(dropout=0.0), tiny_mnist, train.Recipe(stages=stages, penalty=penalty), progress=False)
    assert len(calls) == 6                                   # the recipe's penalty, once a step: what trains


def rows(*pairs, losses=None):
    """History rows of an epoch recipe: (train accuracy, validation accuracy) each, and their training losses."""
    return [{"epoch": k + 1, "train_loss": (losses or [1.0] * len(pairs))[k], "train_accuracy": t, "val_loss": 2.0,
             "val_accuracy": v, "lr": 1e-3} for k, (t, v) in enumerate(pairs)]


def test_diverged_means_a_loss_that_became_nan_or_exploded_and_a_falling_loss_near_chance_is_not_learned_yet():
    falling = train.Fit(history=rows((0.091, 0.21), (0.133, 0.2), losses=[11.8, 2.5]))   # lab 03's model2, 10 steps
    train._check_learned(falling, "model2", 10, 10)
    assert falling.status == "ok" and falling.error is None
    assert falling.note == ("model2: not learned yet: after 10 steps training accuracy is 13.3%, near chance (10%), its "
                            "loss falling from 11.8 to 2.5; train longer (more epochs or images).")
    flat = train.Fit(history=rows((0.11, 0.1), (0.12, 0.09), losses=[2.30, 2.31]))
    train._check_learned(flat, "lenet5", 10, 400)
    assert flat.status == "ok" and "not falling (2.3 to 2.31)" in flat.note and "check the learning rate" in flat.note
    exploded = train.Fit(history=rows((0.5, 0.5), (0.1, 0.1), losses=[1.2, 40.0]))
    train._check_learned(exploded, "fcn", 10, 40)
    assert exploded.status == "diverged" and exploded.error == \
        "fcn: the training loss exploded, from 1.2 to 40; try a smaller learning rate."
    learned = train.Fit(history=rows((0.6, 0.5), (0.9, 0.85), losses=[1.2, 0.4]))
    train._check_learned(learned, "fcn", 10, 40)
    assert (learned.status, learned.error, learned.note) == ("ok", None, None)


def test_the_batch_norm_note_compares_evaluation_mode_with_batch_statistics_on_the_same_images():
    bn = train.Fit(history=rows((0.49, 0.12), (0.963, 0.2), losses=[1.73, 0.36]), batch_statistics=0.967, val_images=60)
    train._check_learned(bn, "model3", 10, 10)
    assert bn.status == "ok" and bn.note.startswith("model3: validation accuracy is 20.0% in evaluation mode but 96.7% on "
                                                    "the same images with batch statistics: batch norm's running")
    far_from_chance = train.Fit(history=rows((0.9, 0.5), (0.95, 0.6), losses=[1.0, 0.3]), batch_statistics=0.9,
                                val_images=600)   # not at chance, yet 30 points below: the note too
    train._check_learned(far_from_chance, "model3", 10, 100)
    assert "60.0% in evaluation mode but 90.0%" in far_from_chance.note
    close = train.Fit(history=rows((0.9, 0.85), (0.95, 0.88), losses=[1.0, 0.3]), batch_statistics=0.9, val_images=600)
    train._check_learned(close, "model3", 10, 100)
    assert close.note is None


def test_the_confusion_matrix_has_the_true_classes_as_rows_and_per_class_accuracy_is_each_rows_share():
    labels, predictions = torch.tensor([0, 0, 0, 0, 1, 2]), torch.tensor([1, 1, 1, 0, 1, 2])   # class 0 taken for 1
    evaluation = train.Evaluation(0.0, 0.5, labels, predictions, torch.zeros(6, 3))
    assert evaluation.confusion_matrix().tolist() == [[1, 3, 0], [0, 1, 0], [0, 0, 1]]
    assert evaluation.per_class_accuracy() == [0.25, 1.0, 1.0]
    assert analysis.confusions(evaluation.confusion_matrix(), ["a", "b", "c"], k=1).startswith(
        "The most frequent mistakes: a taken for b (3)")
