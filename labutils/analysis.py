"""Sentences about a run, written from its own numbers, so a report's analysis can never contradict them."""

import torch


def pct(accuracy: float) -> str:
    """0.9241 -> '92.41 %'."""
    return f"{100 * accuracy:.2f} %"


def _when(row: dict) -> str:
    return f"iteration {row['iteration']:,}" if "iteration" in row else f"epoch {row['epoch']}"


def learning_curve(name: str, history: list) -> str:
    """What a model's curves say: overfitting or not, and whether more training would still help."""
    rows = [r for r in history if r.get("val_loss") is not None]
    if len(rows) < 2:
        return f"**{name}**: too few evaluations to read a curve from."
    last, lowest = rows[-1], min(rows, key=lambda r: r["val_loss"])
    gap = last["train_accuracy"] - last["val_accuracy"]
    if lowest is not last and last["val_loss"] > 1.1 * lowest["val_loss"]:
        text = (f"validation loss was lowest at {_when(lowest)} ({lowest['val_loss']:.4f}) and ended at "
                f"{last['val_loss']:.4f}: it overfits in the later part of training")
    elif gap > 0.02:
        text = (f"training accuracy ends {100 * gap:.1f} points above validation accuracy ({pct(last['train_accuracy'])} "
                f"against {pct(last['val_accuracy'])}): it fits its training images better than new ones, "
                f"a mild overfit, while the validation loss stayed near its lowest")
    elif gap < -0.005:
        text = (f"training accuracy ({pct(last['train_accuracy'])}, measured while training, with dropout or "
                f"augmentation on) ends below validation accuracy ({pct(last['val_accuracy'])}): the "
                f"regularization is at work and there is no sign of overfitting")
    else:
        text = (f"training and validation accuracy end close ({pct(last['train_accuracy'])} and "
                f"{pct(last['val_accuracy'])}): no sign of overfitting")
    best = max(rows, key=lambda r: r["val_accuracy"])
    recent = last["val_accuracy"] - rows[-3 if len(rows) >= 3 else 0]["val_accuracy"]
    if best is last and recent > 0.003:
        text += (f"; validation accuracy was still rising at the end ({100 * recent:+.2f} points over the last "
                 f"evaluations), so longer training would likely help")
    elif best is not last and best["val_accuracy"] - last["val_accuracy"] > 0.003:
        text += (f"; validation accuracy peaked at {_when(best)} ({pct(best['val_accuracy'])}), "
                 f"{100 * (best['val_accuracy'] - last['val_accuracy']):.2f} points above where it ended")
    else:
        text += "; validation accuracy had levelled off by the end"
    return f"**{name}**: {text}."


def ranking(accuracies: dict) -> str:
    """Which model is the most accurate on the test set, and by how much over each other one."""
    order = sorted(accuracies, key=accuracies.get, reverse=True)
    best = order[0]
    if len(order) == 1:
        return f"**{best}** reached {pct(accuracies[best])} on the test set."
    others = ", ".join(f"{100 * (accuracies[best] - accuracies[n]):.2f} points above {n} ({pct(accuracies[n])})"
                       if accuracies[best] > accuracies[n] else f"level with {n}" for n in order[1:])
    return f"**{best}** is the most accurate on the test set ({pct(accuracies[best])}): {others}."


def against_report(accuracies: dict, reported: dict, source: str = "the original report") -> str:
    """This run's test accuracy beside the seed report's number (in %) for each model that has one."""
    shared = [n for n in accuracies if n in reported]
    if not shared:
        return ""
    parts = [f"{n} {pct(accuracies[n])} against {reported[n]:.2f} % ({100 * accuracies[n] - reported[n]:+.2f} "
             f"points)" for n in shared]
    below = [n for n in shared if 100 * accuracies[n] < reported[n]]
    verdict = (f"every model beats {source}" if not below else
               f"{' and '.join(below)} stay{'s' if len(below) == 1 else ''} below {source} in this run")
    return f"Against {source}: {'; '.join(parts)}: {verdict}."


def most_confused(confusion, classes, k: int = 5) -> list:
    """The k most frequent mistakes: (true class, predicted class, count), largest first."""
    confusion = torch.as_tensor(confusion).clone()
    confusion.fill_diagonal_(0)
    counts, flat = confusion.flatten().topk(min(k, confusion.numel()))
    n = len(classes)
    return [(classes[i // n], classes[i % n], c) for c, i in zip(counts.tolist(), flat.tolist()) if c > 0]


def confusions(confusion, classes, k: int = 3, whose: str = "The") -> str:
    """The k most frequent mistakes of a confusion matrix (rows: true class), and their share of all mistakes;
    `whose` starts the sentence ("The", "**lenet5**'s")."""
    errors = int(torch.as_tensor(confusion).sum() - torch.as_tensor(confusion).trace())
    if not errors:
        return "No test image was misclassified."
    pairs = most_confused(confusion, classes, k)
    listed = ", ".join(f"{true} taken for {predicted} ({count})" for true, predicted, count in pairs)
    share = sum(c for *_, c in pairs) / errors
    n = len(classes)
    return (f"{whose} most frequent mistakes: {listed}; these {len(pairs)} of the {n * (n - 1)} possible confusions "
            f"make {share:.0%} of the {errors:,} errors.")


OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with momentum", "rmsprop": "RMSprop",
                   "adadelta": "Adadelta"}


def training_recipe(p: dict, n_train: int) -> str:
    """The training settings of a run, in words, from its own parameters."""
    if p.get("stages"):
        steps = "; ".join(
            f"stage {k}: {s['iterations']:,} iterations, " + ", ".join(
                f"{key.replace('_', ' ')} " + (f"{s[key][0]:g} → {s[key][1]:g}" if isinstance(s[key], list)
                                               else f"{s[key]:g}") for key in ("lr", "batch_size", "l2"))
            for k, s in enumerate(p["stages"], 1))
        text = (f"{OPTIMIZER_NAMES[p['optimizer']]} in {len(p['stages'])} stage(s) ({steps}); the values move "
                f"linearly within a stage, updated every {p.get('update_every', 50)} iterations")
    else:
        schedule = {"none": "a constant learning rate",
                    "exponential": f"the learning rate multiplied by {p.get('lr_decay')} per epoch",
                    "step": f"the learning rate multiplied by {p.get('lr_decay')} every {p.get('lr_step')} "
                            f"iterations",
                    "cosine": "the learning rate following a cosine down to 0"}[p.get("schedule", "none")]
        if p.get("warmup"):
            schedule += f", after a linear warm-up over the first {p['warmup']:.0%} of the steps (one cycle)"
        text = (f"{p['epochs']} epochs of {n_train:,} images in batches of {p['batch_size']}, "
                f"{OPTIMIZER_NAMES[p['optimizer']]} at lr {p['lr']:g} with {schedule}")
    if p.get("weight_decay"):
        text += (f"; weight decay {p['weight_decay']:g}" + (" (decoupled)" if p["optimizer"] == "adamw" else
                                                            " (an L2 penalty on the gradient)"))
    loss = "multi-margin (hinge) loss" if p.get("loss") == "multi_margin" else "cross-entropy"
    if p.get("label_smoothing"):
        loss += f" with label smoothing {p['label_smoothing']:g}"
    text += f"; {loss}"
    shown = [what for what, on in (("random horizontal flips", p.get("flip")),
                                   (f"random shifts of up to {p.get('shift')} pixels", p.get("shift")),
                                   ("random crops (padding 4) and flips", p.get("augment"))) if on]
    text += f"; {' and '.join(shown) if shown else 'no augmentation'} of the training images"
    if p.get("tta"):
        text += ("; at evaluation, each image and its mirror image are classified and the two outputs averaged "
                 "(test-time augmentation)")
    return text[0].upper() + text[1:] + "."


def ensemble_gain(members: dict, ensemble: float, name: str = "ensemble") -> str:
    """Markdown: each member's test accuracy, their mean, the ensemble's, and its gain over the mean and the best
    member."""
    mean, best = sum(members.values()) / len(members), max(members.values())
    rows = "\n".join(f"| {member} | {pct(accuracy)} |" for member, accuracy in members.items())
    gain = 100 * (ensemble - best)
    verdict = ("beats its best member" if gain > 0 else "only ties its best member" if gain == 0 else
               "falls below its best member")
    return (f"| | test accuracy |\n|---|---:|\n{rows}\n| mean of the members | {pct(mean)} |\n"
            f"| **{name} of {len(members)}** | **{pct(ensemble)}** |\n\n"
            f"The {name} {verdict}: {100 * (ensemble - mean):+.2f} points over the mean member, {gain:+.2f} over "
            f"the best one.")


def extremes(histories: dict, loss_scale: float = 1.0) -> str:
    """Markdown, as the MNIST ensemble report tabulates its runs: for each network, the minimum test loss and the
    maximum test accuracy over the evaluations, each with its iteration and the other metric there, and the final
    test accuracy. loss_scale multiplies the losses (the report sums them over the test set)."""
    lines = ["| network | minimum test loss (iteration) | accuracy there | maximum test accuracy (iteration) | "
             "loss there | final test accuracy |", "|---|---:|---:|---:|---:|---:|"]
    for name, history in histories.items():
        rows = [r for r in history if r.get("test_loss") is not None]
        low, high, last = min(rows, key=lambda r: r["test_loss"]), max(rows, key=lambda r: r["test_accuracy"]), rows[-1]
        at = "iteration" if "iteration" in last else "epoch"
        lines.append(f"| {name} | {loss_scale * low['test_loss']:.4g} ({low[at]:,}) | {pct(low['test_accuracy'])} | "
                     f"{pct(high['test_accuracy'])} ({high[at]:,}) | {loss_scale * high['test_loss']:.4g} | "
                     f"{pct(last['test_accuracy'])} |")
    return "\n".join(lines)
