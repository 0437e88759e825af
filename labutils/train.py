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
from .data import Data, Split, batches
from .params import OPTIMIZERS, SCHEDULES

LOSS_FUNCTIONS = {"cross_entropy": nn.functional.cross_entropy, "multi_margin": nn.functional.multi_margin_loss}
FIT_OPTIONS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "schedule", "lr_decay",
               "lr_step", "loss")


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
    """One of OPTIMIZERS; weight_decay is the L2 penalty coefficient (added to the gradient as wd * w)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    raise LabsError(f"Unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")


def lr_factor(schedule: str, decay: float, step: int, steps_per_epoch: int, total_steps: int = 0):
    """The learning-rate multiplier after `i` iterations (schedules are stepped once per iteration).

    none: 1; exponential: decay ** (epochs done), smoothly; step: decay ** (i // step), as StepLR every `step`
    iterations; cosine: from 1 down to 0 along half a cosine over the `total_steps` of training.
    """
    if schedule == "none":
        return lambda i: 1.0
    if schedule == "exponential":
        return lambda i: decay ** (i / steps_per_epoch)
    if schedule == "step":
        return lambda i: decay ** (i // step)
    if schedule == "cosine":
        return lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total_steps) / max(total_steps, 1)))
    raise LabsError(f"Unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")


@functools.cache
def _bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively (CUDA GPUs from Ampere on); asked once per device."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def _autocast(device: torch.device):
    """bf16 autocast where the GPU computes in bf16 natively; full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=_bf16(device))


def _for_device(model: nn.Module, device: torch.device) -> nn.Module:
    """On CUDA: the channels-last memory layout of the weights (the images are stored so by data.load), which
    convolutions run faster in, and cuDNN autotuning."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
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

    def confusion_matrix(self, n_classes: int) -> torch.Tensor:
        """Counts: row = true class, column = predicted class."""
        return torch.bincount(self.labels * n_classes + self.predictions, minlength=n_classes ** 2).view(n_classes, n_classes)

    def per_class_accuracy(self, n_classes: int) -> list:
        cm = self.confusion_matrix(n_classes)
        return (cm.diag() / cm.sum(1).clamp(min=1)).tolist()


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, batch_size: int = 0, loss: str = "cross_entropy") -> Evaluation:
    """Loss and accuracy of `model` on `split`, always in eval mode (dropout off, batch norm frozen).

    batch_size 0: large batches on a GPU (1024), cache-sized ones on a CPU (128, measured fastest for conv nets).
    """
    was_training = model.training
    device = split.x.device
    batch_size = batch_size or (128 if device.type == "cpu" else 1024)
    _for_device(model, device).eval()
    total = torch.zeros((), device=device)
    logits = []
    for x, y in batches(split, batch_size):
        with _autocast(device):
            out = model(x).float()
        total += LOSS_FUNCTIONS[loss](out, y, reduction="sum")
        logits.append(out)
    model.train(was_training)
    logits = torch.cat(logits)
    predictions = logits.argmax(1)
    n = max(len(split), 1)
    return Evaluation(total.item() / n, (predictions == split.y).sum().item() / n, split.y.cpu(),
                      predictions.cpu(), logits.softmax(1).cpu())


def ensemble(evaluations: list) -> Evaluation:
    """Average the softmax outputs of several models evaluated on the same split; loss: the averaged
    probabilities' cross-entropy."""
    probabilities = torch.stack([e.probabilities for e in evaluations]).mean(0)
    labels = evaluations[0].labels
    predictions = probabilities.argmax(1)
    loss = nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels).item()
    return Evaluation(loss, (predictions == labels).float().mean().item(), labels, predictions, probabilities)


@dataclass
class Fit:
    """What training produced: a history row per epoch, and whether it stayed healthy."""
    history: list = field(default_factory=list)
    status: str = "ok"              # "ok" or "diverged"
    error: str | None = None        # why it diverged
    train_samples_per_second: float = 0.0


def fit(model: nn.Module, data: Data, *, epochs: int, batch_size: int, optimizer: str = "adam", lr: float = 1e-3,
        weight_decay: float = 0.0, momentum: float = 0.9, schedule: str = "none", lr_decay: float = 0.9,
        lr_step: int = 1000, loss: str = "cross_entropy", augment=None, name: str = "model",
        progress: bool = True) -> Fit:
    """Train `model` on data.train, validating on data.val after every epoch.

    Stops early, with status "diverged", when the training loss stops being finite; a run that ends at
    chance accuracy is also reported as diverged. Losses are summed on the device and read once per epoch.
    """
    device = data.train.x.device
    _for_device(model, device)
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_factor(schedule, lr_decay, lr_step, steps_per_epoch, steps_per_epoch * epochs))
    criterion = LOSS_FUNCTIONS[loss]
    result, train_seconds, seen = Fit(), 0.0, 0
    chance = 1 / len(data.classes)
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_lr = opt.param_groups[0]["lr"]
        start = time.perf_counter()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        bar = tqdm(total=len(data.train), desc=f"{name} epoch {epoch}/{epochs}", unit="img", unit_scale=True,
                   leave=False, file=sys.stdout, mininterval=0.5, disable=not progress, ncols=100)
        for x, y in batches(data.train, batch_size, shuffle=True, augment=augment):
            with _autocast(device):
                out = model(x)
                batch_loss = criterion(out.float(), y)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            scheduler.step()
            total_loss += batch_loss.detach() * len(y)
            correct += (out.argmax(1) == y).sum()
            bar.update(len(y))
        bar.close()
        n = len(data.train)
        train_loss, train_accuracy = total_loss.item() / n, correct.item() / n   # the one sync per epoch
        train_seconds += time.perf_counter() - start
        seen += n
        val = evaluate(model, data.val, loss=loss) if len(data.val) else None
        row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
               "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None,
               "lr": epoch_lr, "seconds": time.perf_counter() - start}
        result.history.append(row)
        if progress:
            print(_epoch_line(name, epochs, row, n / (time.perf_counter() - start)), flush=True)
        if not math.isfinite(train_loss):
            result.status = "diverged"
            result.error = (f"{name}: the training loss became {'NaN' if math.isnan(train_loss) else 'infinite'} "
                            f"in epoch {epoch}; training stopped. "
                            f"Try a smaller learning rate (lr={lr:g}).")
            break
    result.train_samples_per_second = seen / max(train_seconds, 1e-9)
    last = result.history[-1]
    final_accuracy = last["val_accuracy"] if last["val_accuracy"] is not None else last["train_accuracy"]
    if result.status == "ok" and final_accuracy <= 1.5 * chance:
        result.status = "diverged"
        result.error = (f"{name}: accuracy {final_accuracy:.1%} after {last['epoch']} epochs is at chance level "
                        f"({chance:.0%}); the model learned nothing. Check the learning rate and optimizer.")
    if result.error and progress:
        print(f"DIVERGED: {result.error}", flush=True)
    return result


def _epoch_line(name: str, epochs: int, row: dict, per_second: float) -> str:
    width = len(str(epochs))
    line = (f"{name} epoch {row['epoch']:>{width}}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.2%}")
    if row["val_loss"] is not None:
        line += f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}"
    return line + f" | lr {row['lr']:.2e} | {row['seconds']:.1f} s, {per_second:,.0f} img/s"
