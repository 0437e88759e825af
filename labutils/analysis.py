"""Sentences about a run, written from its own numbers, so the analysis never contradicts them; write(run, classes)
is a notebook's whole analysis, and each part takes plain numbers that tests check it against."""

import math

import torch
from IPython.display import Markdown

from .reported import reported
from .results import epoch_seconds, final_val_accuracy
from .vocab import md, plural


def pct(accuracy: float) -> str:
    """0.9241 -> '92.41 %'."""
    return f"{100 * accuracy:.2f} %"


def _points(a: float, b: float) -> str:
    return f"{abs(100 * (a - b)):.2f} points"


def _when(row: dict) -> str:
    return f"iteration {row['iteration']:,}" if "iteration" in row else f"epoch {row['epoch']}"


def _names(names: list) -> str:
    bold = [f"**{md(n)}**" for n in names]
    return bold[0] if len(bold) == 1 else ", ".join(bold[:-1]) + " and " + bold[-1]


def ranking(accuracies: dict, diverged=()) -> str:
    """The models by test accuracy: the most accurate, by how much over each other; a diverged one named, not ranked."""
    healthy = {n: a for n, a in accuracies.items() if n not in diverged}
    sentences = []
    if len(healthy) == 1:
        [(name, accuracy)] = healthy.items()
        sentences.append(f"**{name}** reached {pct(accuracy)} on the test set.")
    elif healthy:
        top = max(healthy.values())
        leaders = [n for n, a in healthy.items() if a == top]
        others = sorted((n for n in healthy if n not in leaders), key=healthy.get, reverse=True)
        if not others:
            sentences.append(f"{_names(leaders)} are level on the test set, at {pct(top)} each.")
        else:
            lead = (f"{_names(leaders)} is the most accurate" if len(leaders) == 1 else
                    f"{_names(leaders)} are level as the most accurate")
            behind = ", ".join(f"{_points(top, healthy[n])} above {n} ({pct(healthy[n])})" for n in others)
            sentences.append(f"{lead} on the test set ({pct(top)}): {behind}.")
    for name in (n for n in accuracies if n in diverged):
        sentences.append(f"**{name}** diverged, so its test accuracy ({pct(accuracies[name])}) ranks nothing.")
    return " ".join(sentences)


def compare(first: str, second: str, accuracies: dict) -> str:
    """Two models on the test set, in one sentence that claims nothing about any other model."""
    a, b = accuracies[first], accuracies[second]
    if a == b:
        return f"On the test set **{first}** and **{second}** are level, at {pct(a)} each."
    return (f"On the test set **{first}** reached {pct(a)}, {_points(a, b)} {'above' if a > b else 'below'} "
            f"**{second}** ({pct(b)}).")


def best_on_validation(best: str, validation: dict, accuracies: dict) -> str:
    """Which model the validation split chooses, and what the test set says of that choice."""
    top = max(accuracies.values())
    verdict = ("it is also the most accurate on the test set" if accuracies[best] == top else
               f"on the test set it reached {pct(accuracies[best])}, {_points(top, accuracies[best])} below the "
               f"most accurate there: one validation split does not always pick the test set's winner")
    return (f"Chosen on the validation split, the best model is **{best}** ({pct(validation[best])} where "
            f"training ended); {verdict}.")


def against_report(accuracies: dict, reported_numbers: dict, source: str = "the original report") -> str:
    """This run's test accuracy beside the seed report's number (in %) for each model that has one."""
    shared = [n for n in accuracies if n in reported_numbers]
    if not shared:
        return ""
    parts = [f"{n} {pct(accuracies[n])} against {reported_numbers[n]:.2f} % "
             f"({100 * accuracies[n] - reported_numbers[n]:+.2f} points)" for n in shared]
    below = [n for n in shared if 100 * accuracies[n] < reported_numbers[n]]
    verdict = (f"every model beats {source}" if not below and len(shared) > 1 else
               f"{shared[0]} beats {source}" if not below else
               f"{_names(below).replace('**', '')} stay{'s' if len(below) == 1 else ''} below {source} in this run")
    return f"Against {source}: {'; '.join(parts)}: {verdict}."


def ensemble_gain(members: dict, ensemble: float, name: str = "ensemble") -> str:
    """Markdown: each member's test accuracy, their mean, the ensemble's, and its gain over both."""
    mean, best = sum(members.values()) / len(members), max(members.values())
    rows = "\n".join(f"| {member} | {pct(accuracy)} |" for member, accuracy in members.items())
    gain = 100 * (ensemble - best)
    verdict = ("beats its best member" if gain > 0 else "only ties its best member" if gain == 0 else
               "falls below its best member")
    return (f"| | test accuracy |\n|---|---:|\n{rows}\n| mean of the members | {pct(mean)} |\n"
            f"| **{name} of {len(members)}** | **{pct(ensemble)}** |\n\n"
            f"The {name} {verdict}: {100 * (ensemble - mean):+.2f} points over the mean member, {gain:+.2f} over "
            f"the best one.")


def learning_curve(name: str, history: list, n_classes: int = 10, val_images: int = 0,
                   batch_statistics: float | None = None) -> str:
    """What a model's curves say: over- or underfitting, batch norm's running statistics not yet right (against the
    validation accuracy with batch_statistics), or a split of val_images too small to tell; never two that clash."""
    rows = [r for r in history if r.get("val_loss") is not None]
    if len(rows) < 2:
        return f"**{name}**: too few evaluations to read a curve from."
    last, lowest = rows[-1], min(rows, key=lambda r: r["val_loss"])
    gap = last["train_accuracy"] - last["val_accuracy"]
    margin = noise(last["val_accuracy"], val_images) if val_images else 0.0
    overfit = True
    if batch_statistics is not None and batch_statistics - last["val_accuracy"] > max(0.1, margin):
        return (f"**{name}**: validation accuracy ends at {pct(last['val_accuracy'])} in evaluation mode but "
                f"{pct(batch_statistics)} on the same images with batch statistics: batch norm's running statistics, "
                f"from too few steps, do not yet describe the images, so the curves cannot yet tell over- from "
                f"underfitting; a longer run would.")
    if lowest is not last and last["val_loss"] > 1.1 * lowest["val_loss"] and margin <= 0.02:
        text = (f"validation loss was lowest at {_when(lowest)} ({lowest['val_loss']:.4f}) and ended at "
                f"{last['val_loss']:.4f}: it overfits in the later part of training")
    elif gap > max(0.02, margin):
        text = (f"training accuracy ends {100 * gap:.1f} points above validation accuracy ({pct(last['train_accuracy'])} "
                f"against {pct(last['val_accuracy'])}): it fits its training images better than new ones, "
                + ("a mild overfit, while the validation loss stayed near its lowest" if gap <= 0.1 else "it overfits"))
    elif gap < -max(0.005, margin):
        overfit = False
        text = (f"training accuracy ({pct(last['train_accuracy'])}, measured while training, with dropout or "
                f"augmentation on) ends below validation accuracy ({pct(last['val_accuracy'])}): the "
                f"regularization is at work and there is no sign of overfitting")
    elif margin > 0.02:
        return (f"**{name}**: training and validation accuracy end at {pct(last['train_accuracy'])} and "
                f"{pct(last['val_accuracy'])}, a gap within the noise of {plural(val_images, 'validation image')} "
                f"(±{100 * margin:.1f} points): the validation split is too small to judge over- or underfitting.")
    else:
        overfit = False
        text = (f"training and validation accuracy end close ({pct(last['train_accuracy'])} and "
                f"{pct(last['val_accuracy'])}): no sign of overfitting")
    best = max(rows, key=lambda r: r["val_accuracy"])
    recent = last["val_accuracy"] - rows[-3 if len(rows) >= 3 else 0]["val_accuracy"]
    if best is last and recent > max(0.003, margin):
        text += (f"; validation accuracy was still rising at the end ({100 * recent:+.2f} points over the last "
                 f"evaluations)" + ("" if overfit else ": it underfits, and longer training would likely help"))
    elif best is not last and best["val_accuracy"] - last["val_accuracy"] > max(0.003, margin):
        text += (f"; validation accuracy peaked at {_when(best)} ({pct(best['val_accuracy'])}), "
                 f"{100 * (best['val_accuracy'] - last['val_accuracy']):.2f} points above where it ended")
    else:
        text += "; validation accuracy had levelled off by the end"
    return f"**{name}**: {text}."


def noise(accuracy: float, n: int) -> float:
    """Twice the binomial standard error of an accuracy on n images (one right, one wrong as a prior)."""
    p = (accuracy * n + 1) / (n + 2)
    return 2 * math.sqrt(p * (1 - p) / max(n, 1))


def divergence(fits: dict) -> str:
    """Markdown: one line per trained model, ok (with its note, if any) or why it diverged."""
    return "\n".join(f"- {md(name)}: " + (("ok" + (f"; NOTE: {md(fit.note)}" if fit.note else "")) if fit.status == "ok"
                                         else "DIVERGED: " + md(fit.error)) for name, fit in fits.items())


def extremes(histories: dict, loss_scale: float = 1.0) -> str:
    """Markdown, as the MNIST ensemble report tabulates: each network's lowest test loss and highest test accuracy,
    with their iterations and the other metric there, and the final accuracy (losses times loss_scale)."""
    lines = ["| network | minimum test loss (iteration) | accuracy there | maximum test accuracy (iteration) | "
             "loss there | final test accuracy |", "|---|---:|---:|---:|---:|---:|"]
    for name, history in histories.items():
        rows = [r for r in history if r.get("test_loss") is not None]
        low, high, last = min(rows, key=lambda r: r["test_loss"]), max(rows, key=lambda r: r["test_accuracy"]), rows[-1]
        at = "iteration" if "iteration" in last else "epoch"
        lines.append(f"| {name} | {loss_scale * low['test_loss']:.4f} ({low[at]:,}) | {pct(low['test_accuracy'])} | "
                     f"{pct(high['test_accuracy'])} ({high[at]:,}) | {loss_scale * high['test_loss']:.4f} | "
                     f"{pct(last['test_accuracy'])} |")
    return "\n".join(lines)


def most_confused(confusion, classes, k: int = 5) -> list:
    """The k most frequent mistakes: (true class, predicted class, count), largest first."""
    confusion = torch.as_tensor(confusion).clone()
    confusion.fill_diagonal_(0)
    counts, flat = confusion.flatten().topk(min(k, confusion.numel()))
    n = len(classes)
    return [(classes[i // n], classes[i % n], c) for c, i in zip(counts.tolist(), flat.tolist()) if c > 0]


def confusions(confusion, classes, k: int = 3, name: str = "") -> str:
    """The k most frequent mistakes of a confusion matrix (rows: true class), and their share of all mistakes."""
    errors = int(torch.as_tensor(confusion).sum() - torch.as_tensor(confusion).trace())
    if not errors:
        return f"**{name}** misclassified no test image." if name else "No test image was misclassified."
    pairs = most_confused(confusion, classes, k)
    listed = ", ".join(f"{true} taken for {predicted} ({count})" for true, predicted, count in pairs)
    share = sum(c for *_, c in pairs) / errors
    n, whose = len(classes), f"**{name}**'s" if name else "The"
    return (f"{whose} most frequent mistakes: {listed}; these "
            f"{len(pairs)} of the {n * (n - 1)} possible confusions make {share:.0%} of the {errors:,} errors.")


def mistakes_table(models: dict, classes, k: int = 4) -> str:
    """Markdown: each model's k most frequent mistakes (or that there were none)."""
    rows = [f"| {name} | {true} | {predicted} | {count} |" for name, m in models.items()
            for true, predicted, count in most_confused(m["confusion_matrix"], classes, k)]
    if not rows:
        return "No test image was misclassified."
    return "\n".join(["| model | true class | predicted as | images |", "|---|---|---|---:|", *rows])


OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with momentum", "rmsprop": "RMSprop",
                   "adadelta": "Adadelta"}


def describe_recipe(recipe) -> str:
    """A train.Recipe in words."""
    r = recipe
    if r.stages:
        value = lambda v: f"{v[0]:g} → {v[1]:g}" if isinstance(v, (list, tuple)) else f"{v:g}"   # noqa: E731
        steps = "; ".join(f"stage {k}: {plural(s['iterations'], 'iteration')}, " + ", ".join(
            f"{key.replace('_', ' ')} {value(s[key])}" for key in ("lr", "batch_size", "l2"))
            for k, s in enumerate(r.stages, 1))
        text = (f"{OPTIMIZER_NAMES[r.optimizer]} in {plural(len(r.stages), 'stage')} ({steps}); the values move "
                f"linearly within a stage, updated every {plural(r.update_every, 'iteration')}")
    else:
        schedule = {"none": "a constant learning rate",
                    "exponential": f"the learning rate multiplied by {r.lr_decay:g} per epoch",
                    "step": f"the learning rate multiplied by {r.lr_decay:g} every {plural(r.lr_step, 'iteration')}",
                    "cosine": "the learning rate following a cosine down to 0"}[r.schedule]
        if r.warmup:
            schedule += f", after a linear warm-up over the first {r.warmup:.0%} of the steps (one cycle)"
        text = (f"{plural(r.epochs, 'epoch')} in batches of {r.batch_size}, {OPTIMIZER_NAMES[r.optimizer]} at "
                f"lr {r.lr:g} with {schedule}")
    if r.weight_decay:
        text += (f"; weight decay {r.weight_decay:g}" + (" (decoupled)" if r.optimizer == "adamw" else
                                                         " (an L2 penalty on the gradient)"))
    loss = "multi-margin (hinge) loss" if r.loss == "multi_margin" else "cross-entropy"
    if r.label_smoothing:
        loss += f" with label smoothing {r.label_smoothing:g}"
    text += f"; {loss}; {r.augment or 'no augmentation'} of the training images"
    text += {"auto": "; forward passes in bf16 where the hardware computes it natively, else fp32",
             "bf16": "; forward passes in bf16", "fp16": "; forward passes in fp16 (with a gradient scaler)",
             "fp32": "; forward passes in fp32"}[r.precision]
    return "**Recipe.** " + text[0].upper() + text[1:] + "."


def fcn_against_cnn(models: dict, layers: dict, device: str, fcn: str = "fcn", cnn: str = "lenet5") -> str:
    """Lab 02's fully connected net against LeNet-5 in this run's numbers (`layers`: models.summary's rows)."""
    if not {fcn, cnn} <= set(models):
        return f"Train both {fcn} and {cnn} (the `models` parameter) to compare them here."
    fc, cv = models[fcn], models[cnn]
    fc_first = next(layer for layer in layers[fcn] if layer[1] == "Linear")
    conv_first = next(layer for layer in layers[cnn] if layer[1] == "Conv2d")
    memory = {n: 4 * sum(math.prod(layer[2]) for layer in layers[n]) for n in (fcn, cnn)}
    epoch = {n: epoch_seconds(models[n]["history"]) for n in (fcn, cnn)}
    ratio = fc["parameters"] / cv["parameters"]
    work = cv["macs_per_image"] / fc["macs_per_image"]
    return f"""**Connectivity.** Each of the FCN's {fc_first[2][0]} hidden units is connected to every pixel, so its first
layer alone holds {fc_first[3]:,} parameters and knows nothing of which pixels are neighbours. Each output of
LeNet-5's first convolution sees only a 5×5 patch: local connectivity, which builds in that nearby pixels belong
together.

**Weight sharing.** That first convolution has {conv_first[3]:,} parameters yet performs {conv_first[4]:,}
multiply-accumulates per image: the same filters slide over every position, each weight reused
{conv_first[4] // max(conv_first[3] - conv_first[2][0], 1):,} times per image. The FCN's first layer uses each
weight once ({fc_first[4]:,} MACs for {fc_first[3]:,} parameters).

**Parameters and memory.** The FCN has {fc['parameters']:,} parameters ({4 * fc['parameters'] / 1e6:.2f} MB in
float32), {ratio:.1f}× LeNet-5's {cv['parameters']:,} ({4 * cv['parameters'] / 1e3:.0f} kB). But per image, the
outputs of all layers (kept for the backward pass) take {memory[fcn] / 1e3:.1f} kB in the FCN and
{memory[cnn] / 1e3:.1f} kB in LeNet-5, whose feature maps are larger than the FCN's vectors.

**Compute.** LeNet-5 does {cv['macs_per_image']:,} MACs per image against the FCN's {fc['macs_per_image']:,}:
{work:.1f}× the work with {ratio:.1f}× fewer weights. Here an epoch took {epoch[cnn]:.1f} s for LeNet-5 and
{epoch[fcn]:.1f} s for the FCN ({device}).

**Accuracy.** {compare(cnn, fcn, {n: m['test_accuracy'] for n, m in models.items()})}"""


def grading(fit, layers: list, params: dict, accuracy: float, goal: float) -> str:
    """Lab 01's grading points, met or not, from what trained: its recipe, layers, initialization and accuracy."""
    kinds = [row[1] for row in layers]
    checks = {"at least 3 hidden layers": kinds.count("Linear") - 1 >= 3, "dropout": "Dropout" in kinds,
              "weight initialization (he, xavier or normal)": params["init"] != "default",
              "weight decay (L2)": fit.recipe.weight_decay > 0,
              f"test accuracy of at least {goal:g} % (this run: {pct(accuracy)})": 100 * accuracy >= goal}
    return "**Against the grading points:**\n\n" + "\n".join(
        f"- {'met' if met else '**not met**'}: {point}" for point, met in checks.items())


def sentences(run, classes) -> list:
    """The analysis of a finished run (a report.Run) as paragraphs, every number taken from the run."""
    models, params, paper = run.models, run.params, reported(run.assignment)
    accuracies = {n: m["test_accuracy"] for n, m in models.items()}
    diverged = [n for n in models if n in run.fits and run.fits[n].status != "ok"]
    lines = [grading(run.fits["mlp"], run.layers["mlp"], run.trained_with["mlp"], accuracies["mlp"], paper["goal"])] \
        if "goal" in paper and "mlp" in models else []
    lines.append(ranking(accuracies, diverged))
    best = run.best()
    validation = {n: final_val_accuracy(m) for n, m in models.items() if final_val_accuracy(m) is not None}
    if best and len(validation) > 1 and best not in diverged:
        lines.append(best_on_validation(best, validation, {n: a for n, a in accuracies.items() if n not in diverged}))
    same_data = params.get("dataset", paper.get("dataset")) == paper.get("dataset")
    if paper.get("models") and same_data and not params.get("synthetic"):   # the reports measured real images
        lines.append(against_report(accuracies, paper["models"], paper["source"]))
    single = {n: m["test_accuracy_single_view"] for n, m in models.items() if "test_accuracy_single_view" in m}
    if single:
        lines.append("Without test-time augmentation (one view per image) the test accuracy is "
                     + ", ".join(f"{n} {pct(a)}" for n, a in single.items()) + ".")
    lines += [learning_curve(n, m["history"], len(classes), m.get("val_images", 0), m.get(
        "val_accuracy_batch_statistics")) for n, m in models.items() if n not in run.ensembles]
    focus = next(iter(run.ensembles), None) or best or next(iter(models))
    lines.append(confusions(models[focus]["confusion_matrix"], classes, name=focus))
    if paper.get("published"):
        lines.append(f"*Published results for such networks, for scale (not measured here): {paper['published']}.*")
    return [line for line in lines if line]


def write(run, classes) -> Markdown:
    """The analysis of a finished run, for a notebook to show; first, the models whose training was stopped."""
    stopped = [f"**{md(run.untrained())}**"] if run.untrained() else []
    return Markdown("\n\n".join(stopped + (sentences(run, classes) if run.models else [])))
