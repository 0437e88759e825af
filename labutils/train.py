"""Training and evaluation: device choice, seeding, optimizers, schedules, losses, the fit loop, divergence."""

import functools
import math
import random
import sys
import time
from dataclasses import dataclass, field

import numpy
import torch
from torch import nn
from tqdm import tqdm

from . import LabsError
from .data import Data, Shuffled, Split, batches
from .params import OPTIMIZERS, SCHEDULES, check_stages

LOSS_FUNCTIONS = {"cross_entropy": nn.functional.cross_entropy, "multi_margin": nn.functional.multi_margin_loss}
FIT_OPTIONS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "schedule", "lr_decay",
               "lr_step", "warmup", "loss", "label_smoothing", "stages", "update_every", "eval_every")


def options(params: dict) -> dict:
    """The training settings among a notebook's parameters, as keyword arguments of fit()."""
    return {name: params[name] for name in FIT_OPTIONS if name in params}


def pick_device(name: str = "auto") -> torch.device:
    """"auto" picks cuda if available, then Apple's mps, then cpu; a named device must exist."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(name.split(":")[0], False):
        raise LabsError(f"device {name!r} is not available on this machine; use device='auto' or 'cpu'.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPUs), so a run repeats on the same machine."""
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    """One of OPTIMIZERS. weight_decay: the L2 penalty coefficient, added to the gradient as wd * w, except for
    adamw, which decays the weights directly (decoupled: w -= lr * wd * w)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    raise LabsError(f"Unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")


def lr_factor(schedule: str, decay: float, step: int, steps_per_epoch: int, total_steps: int = 0,
              warmup_steps: int = 0):
    """The learning-rate multiplier after `i` iterations (schedules are stepped once per iteration).

    none: 1; exponential: decay ** (epochs done), smoothly; step: decay ** (i // step), as StepLR every `step`
    iterations; cosine: from 1 down to 0 along half a cosine over the `total_steps` of training.
    With warmup_steps, the factor first rises linearly from 0 to 1 over those steps, and the schedule starts
    after them (for cosine: a one-cycle schedule).
    """
    if schedule == "none":
        curve = lambda i: 1.0
    elif schedule == "exponential":
        curve = lambda i: decay ** (i / steps_per_epoch)
    elif schedule == "step":
        curve = lambda i: decay ** (i // step)
    elif schedule == "cosine":
        rest = max(total_steps - warmup_steps, 1)
        curve = lambda i: 0.5 * (1 + math.cos(math.pi * min(i, rest) / rest))
    else:
        raise LabsError(f"Unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    if not warmup_steps:
        return curve
    return lambda i: (i + 1) / warmup_steps if i < warmup_steps else curve(i - warmup_steps)


def stage_values(stages: list, update_every: int = 50):
    """The staged schedule of the MNIST ensemble report: returns (total iterations, values), where values(i) is
    the (lr, batch_size, l2) of iteration i.

    Each stage runs `iterations` steps; each of its lr, batch_size and l2 is one value, or a [start, end] pair
    moved linearly from start (the stage's first iteration) to end (its last update), updated every
    `update_every` iterations.
    """
    check_stages(stages)
    starts = [sum(s["iterations"] for s in stages[:k]) for k in range(len(stages))]

    def values(i: int) -> tuple:
        k = max(j for j, start in enumerate(starts) if start <= i)
        stage, into = stages[k], i - starts[k]
        last_update = (stage["iterations"] - 1) // update_every * update_every
        share = (into - into % update_every) / last_update if last_update else 0.0

        def at(key):
            value = stage[key]
            return value[0] + (value[1] - value[0]) * share if isinstance(value, (list, tuple)) else value
        return at("lr"), max(1, round(at("batch_size"))), at("l2")
    return sum(s["iterations"] for s in stages), values


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """The MNIST ensemble report's loss_w: over the weight layers (conv and linear weights, no biases), the sum of
    each layer's mean squared weight."""
    return sum(p.pow(2).mean() for p in model.parameters() if p.dim() > 1)


@functools.cache
def _bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively (CUDA GPUs from Ampere on); asked once per device."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def _autocast(device: torch.device):
    """bf16 autocast where the GPU computes in bf16 natively; full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=_bf16(device))


def channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether `model` runs faster in the channels-last memory layout on `device`: conv nets on CUDA; on a CPU,
    conv nets unless batch norm has few channels there (benchmarks/layout.py on 2 CPU cores: LeNet-5 1.12x, the
    ensemble's CNN 1.29x, model2 1.16x and model3 1.13x as fast; LeNet-5 modified, 6- and 16-channel batch
    norm, 0.78x)."""
    layers = list(model.modules())
    if device.type == "cuda":
        return any(isinstance(m, nn.Conv2d) for m in layers)
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in layers) and \
        not any(isinstance(m, nn.BatchNorm2d) and m.num_features < 32 for m in layers)


def _for_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The faster memory layout for the device (see channels_last; on CUDA the images are stored so by data.load),
    and cuDNN autotuning on CUDA."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if channels_last(model, device):
        model.to(memory_format=torch.channels_last)
    return model


@dataclass
class Evaluation:
    """A model's loss, accuracy and predictions on one split (tensors on the CPU)."""
    loss: float
    accuracy: float
    labels: torch.Tensor
    predictions: torch.Tensor
    probabilities: torch.Tensor
    single_view_accuracy: float | None = None   # with test-time augmentation: the accuracy without it

    def confusion_matrix(self, n_classes: int) -> torch.Tensor:
        """Counts: row = true class, column = predicted class."""
        return torch.bincount(self.labels * n_classes + self.predictions, minlength=n_classes ** 2).view(n_classes, n_classes)

    def per_class_accuracy(self, n_classes: int) -> list:
        cm = self.confusion_matrix(n_classes)
        return (cm.diag() / cm.sum(1).clamp(min=1)).tolist()


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, batch_size: int = 0, loss: str = "cross_entropy",
             tta: bool = False) -> Evaluation:
    """Loss and accuracy of `model` on `split`, always in eval mode (dropout off, batch norm frozen).

    tta (test-time augmentation): classify each image and its mirror image, and average the two outputs.
    batch_size 0: large batches on a GPU (1024), cache-sized ones on a CPU (128, measured fastest for conv nets).
    """
    was_training = model.training
    device = split.x.device
    batch_size = batch_size or (128 if device.type == "cpu" else 1024)
    _for_device(model, device).eval()
    total = torch.zeros((), device=device)
    single_view = torch.zeros((), device=device, dtype=torch.long)
    logits = []
    for x, y in batches(split, batch_size):
        with _autocast(device):
            out = model(x).float()
            if tta:
                single_view += (out.argmax(1) == y).sum()
                out = (out + model(x.flip(3)).float()) / 2
        total += LOSS_FUNCTIONS[loss](out, y, reduction="sum")
        logits.append(out)
    model.train(was_training)
    logits = torch.cat(logits)
    predictions = logits.argmax(1)
    n = max(len(split), 1)
    return Evaluation(total.item() / n, (predictions == split.y).sum().item() / n, split.y.cpu(),
                      predictions.cpu(), logits.softmax(1).cpu(), single_view.item() / n if tta else None)


def ensemble(evaluations: list) -> Evaluation:
    """Average the softmax outputs of several models evaluated on the same split; loss: the averaged
    probabilities' cross-entropy."""
    probabilities = torch.stack([e.probabilities for e in evaluations]).mean(0)
    labels = evaluations[0].labels
    predictions = probabilities.argmax(1)
    loss = nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels).item()
    return Evaluation(loss, (predictions == labels).float().mean().item(), labels, predictions, probabilities)


def ensemble_history(fits: list) -> list:
    """The averaged softmax of members trained in the same steps, at each evaluation of their watched split:
    one row per evaluation, {iteration or epoch, test_loss, test_accuracy} (train.fit(..., watch=split))."""
    rows = []
    for k, points in enumerate(zip(*(f.watched for f in fits))):
        averaged = ensemble(list(points))
        when = {key: fits[0].history[k][key] for key in ("iteration", "epoch") if key in fits[0].history[k]}
        rows.append({**when, "test_loss": averaged.loss, "test_accuracy": averaged.accuracy})
    return rows


@dataclass
class Fit:
    """What training produced: a history row per evaluation (per epoch, or every eval_every iterations when
    training in stages), and whether it stayed healthy."""
    history: list = field(default_factory=list)
    status: str = "ok"              # "ok" or "diverged"
    error: str | None = None        # why it diverged
    train_samples_per_second: float = 0.0
    watched: list = field(default_factory=list)   # the watched split's evaluation at each history row


def fit(model: nn.Module, data: Data, *, epochs: int = 1, batch_size: int = 100, optimizer: str = "adam",
        lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9, schedule: str = "none",
        lr_decay: float = 0.9, lr_step: int = 1000, warmup: float = 0.0, loss: str = "cross_entropy",
        label_smoothing: float = 0.0, stages: list | None = None, update_every: int = 50, eval_every: int = 0,
        watch: Split | None = None, augment=None, name: str = "model", progress: bool = True) -> Fit:
    """Train `model` on data.train, validating on data.val after every epoch.

    warmup: the share of the steps over which the learning rate rises from 0 (see lr_factor).
    label_smoothing: of the training loss (cross-entropy only); validation and test losses are plain.
    stages: train in stages instead of epochs (see stage_values), evaluating every `eval_every` iterations; lr,
    batch_size and epochs are then the stages'. Their l2 adds l2 * l2_penalty(model) / batch size to the mean
    cross-entropy, which is the report's loss_p + l2 * loss_w with loss_p summed over the batch (Adam is blind
    to the scale of the loss).
    watch: a split evaluated too at every evaluation (for curves only: nothing is chosen by it); its
    evaluations are kept in Fit.watched and its loss and accuracy in the history (test_loss, test_accuracy).

    Stops early, with status "diverged", when the training loss stops being finite; a run that ends at
    chance accuracy is also reported as diverged. Losses are summed on the device and read only at evaluations.
    """
    device = data.train.x.device
    _for_device(model, device)
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
    if stages:
        total, values = stage_values(stages, update_every)
        every = eval_every or 100
    else:
        every = math.ceil(len(data.train) / batch_size)   # one evaluation per epoch
        total = every * epochs
        factor = lr_factor(schedule, lr_decay, lr_step, every, total, round(warmup * total))
        values = lambda i: (lr * factor(i), batch_size, 0.0)
    criterion = functools.partial(LOSS_FUNCTIONS[loss], **({"label_smoothing": label_smoothing}
                                                           if label_smoothing else {}))
    result, train_seconds, seen, stream = Fit(), 0.0, 0, Shuffled(data.train)
    for start in range(0, total, every):
        stop = min(start + every, total)
        model.train()
        began, images = time.perf_counter(), 0
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        label = f"{name} epoch {start // every + 1}/{epochs}" if not stages else f"{name} {stop:,}/{total:,}"
        images_due = sum(values(i)[1] for i in range(start, stop)) if stages else len(data.train)
        bar = tqdm(total=images_due, desc=label, unit="img", unit_scale=True,
                   leave=False, file=sys.stdout, mininterval=0.5, disable=not progress, ncols=100)
        first_lr = values(start)[0]
        for i in range(start, stop):
            step_lr, size, l2 = values(i)
            for group in opt.param_groups:
                group["lr"] = step_lr
            x, y = stream.take(size)
            if augment:
                x = augment(x)
            with _autocast(device):
                out = model(x)
                batch_loss = criterion(out.float(), y)
                objective = batch_loss + l2 * l2_penalty(model) / len(y) if l2 else batch_loss
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            total_loss += batch_loss.detach() * len(y)
            correct += (out.argmax(1) == y).sum()
            images += len(y)
            bar.update(len(y))
        bar.close()
        train_loss, train_accuracy = total_loss.item() / images, correct.item() / images   # the one sync
        train_seconds += time.perf_counter() - began
        seen += images
        val = evaluate(model, data.val, loss=loss) if len(data.val) else None
        row = {"epoch": start // every + 1 if not stages else seen / len(data.train),
               "train_loss": train_loss, "train_accuracy": train_accuracy,
               "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None,
               "lr": first_lr, "seconds": time.perf_counter() - began}
        if stages:
            row = {"iteration": stop, **row, "batch_size": values(stop - 1)[1], "l2": values(stop - 1)[2]}
        if watch is not None:
            result.watched.append(evaluate(model, watch, loss=loss))
            row.update(test_loss=result.watched[-1].loss, test_accuracy=result.watched[-1].accuracy)
        result.history.append(row)
        if progress:
            print(_progress_line(name, epochs, total, row, images / (time.perf_counter() - began)), flush=True)
        if not math.isfinite(train_loss):
            result.status = "diverged"
            when = f"in epoch {row['epoch']}" if not stages else f"by iteration {stop:,}"
            result.error = (f"{name}: the training loss became {'NaN' if math.isnan(train_loss) else 'infinite'} "
                            f"{when}; training stopped. Try a smaller learning rate (lr={first_lr if stages else lr:g}).")
            break
    result.train_samples_per_second = seen / max(train_seconds, 1e-9)
    last = result.history[-1]
    final_accuracy = last["val_accuracy"] if last["val_accuracy"] is not None else last["train_accuracy"]
    chance = 1 / len(data.classes)
    if result.status == "ok" and final_accuracy <= 1.5 * chance:
        result.status = "diverged"
        done = f"{last['epoch']} epochs" if not stages else f"{last['iteration']:,} iterations"
        result.error = (f"{name}: accuracy {final_accuracy:.1%} after {done} is at chance level "
                        f"({chance:.0%}); the model learned nothing. Check the learning rate and optimizer.")
    if result.error and progress:
        print(f"DIVERGED: {result.error}", flush=True)
    return result


def _progress_line(name: str, epochs: int, total: int, row: dict, per_second: float) -> str:
    """One line per evaluation, kept in the report: where training is, its losses and accuracies, its speed."""
    if "iteration" in row:
        line = f"{name} iteration {row['iteration']:>{len(f'{total:,}')},}/{total:,}  train loss {row['train_loss']:.4f}"
    else:
        line = f"{name} epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  train loss {row['train_loss']:.4f}"
    line += f" acc {row['train_accuracy']:.2%}"
    if row["val_loss"] is not None:
        line += f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}"
    if "test_loss" in row:
        line += f" | test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.2%}"
    return line + f" | lr {row['lr']:.2e} | {row['seconds']:.1f} s, {per_second:,.0f} img/s"
