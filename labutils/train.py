"""Training and evaluation: the device, seeding, the recipe (optimizer, schedule, loss, augmentation, precision),
one fit loop, evaluation, ensembles, divergence."""

import copy
import functools
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy
import torch
from torch import nn

from . import LabsError
from .analysis import noise
from .models import check_outputs, explain
from .data import Augmentation, Data, Shuffled, Split, batches, images_layout
from .progress import Bar
from .vocab import LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES, check_choice, check_stages, plural

LOSS_FUNCTIONS = {"cross_entropy": nn.functional.cross_entropy, "multi_margin": nn.functional.multi_margin_loss}


def pick_device(name: str = "auto", gpu_advice: str = "") -> torch.device:
    """"auto": cuda, then mps, then cpu; a named device must exist. gpu_advice: said in one line on a CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(name.split(":")[0], False):
        raise LabsError(f"device {name!r} is not available on this machine; use device='auto' or 'cpu'.")
    if gpu_advice and name == "cpu":
        print(f"This notebook is meant for a GPU but runs on the CPU: on Colab choose Runtime > Change runtime type > "
              f"GPU; on a CPU, {gpu_advice}.", flush=True)
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: bit for bit on a CPU, to rounding on CUDA (atomic adds sum in varying order)."""
    for seeded in (random.seed, numpy.random.seed, torch.manual_seed):
        seeded(seed)


@functools.cache
def cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux; empty elsewhere), read once."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def native_bf16(device_type: str, capability: tuple = (0, 0), flags: frozenset = frozenset()) -> bool:
    """Whether a device computes bf16 natively: CUDA from Ampere on, CPUs with AMX or AVX512-BF16."""
    if device_type == "cuda":
        return capability[0] >= 8
    return device_type == "cpu" and bool({"amx_bf16", "avx512_bf16"} & set(flags))


def precision_for(device: torch.device, precision: str = "auto") -> str:
    """"bf16", "fp16" or "fp32": `precision`, or for "auto" bf16 where the hardware computes it natively (on
    CUDA, in captured steps only), never timed (README, Speed); `auto` never picks fp16 (for GPUs without bf16)."""
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        if precision != "fp32" and device.type == "mps":
            raise LabsError(f"precision {precision} is not available on Apple's mps; use precision 'fp32' or 'auto'.")
        if precision == "fp16" and device.type != "cuda":
            raise LabsError(f"precision fp16 is for CUDA GPUs without bf16 (such as Colab's T4), not {device.type}; "
                            f"use precision 'auto', 'fp32' or 'bf16'.")
        return precision
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else (0, 0)
    native = native_bf16(device.type, capability, cpu_flags())
    return "bf16" if native and (device.type != "cuda" or captures(device)) else "fp32"


def autocast(device: torch.device, precision: str):
    """Autocast of the forward pass to bf16 or fp16 when `precision` says so; weights, optimizer and losses stay fp32."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision in ("bf16", "fp16"))


def channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether `model` is faster channels-last on `device`: conv nets, on a CPU without narrow batch norm."""
    layers = list(model.modules())
    if images_layout(device) == torch.channels_last:   # the images are so already (CUDA)
        return any(isinstance(m, nn.Conv2d) for m in layers)
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in layers) and \
        not any(isinstance(m, nn.BatchNorm2d) and m.num_features < 32 for m in layers)


# cuDNN's autotuning (timing every algorithm for each new shape) cost 4-6 s in the first epoch of every conv net on
# an H200 (benchmarks/results/gpu.md); its heuristics pick at once. LABS_CUDNN_AUTOTUNE=1 turns it on.
CUDNN_AUTOTUNE = os.environ.get("LABS_CUDNN_AUTOTUNE", "0") == "1"


def prepare(model: nn.Module, device: torch.device) -> str:
    """Put `model` in its faster layout (returned) and cuDNN autotuning on where CUDNN_AUTOTUNE says."""
    if device.type == "cuda" and CUDNN_AUTOTUNE:   # else the user's own setting stands (PyTorch's default: off)
        torch.backends.cudnn.benchmark = True
    if channels_last(model, device):
        model.to(memory_format=torch.channels_last)
        return "channels_last"
    return "contiguous"


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, fused: bool = False):
    """One of OPTIMIZERS; weight_decay is an L2 gradient term (decoupled for adamw). fused: one kernel, its lr from
    the GPU (adam, adamw, sgd, on CUDA). SGD's momentum starts at zero here, never unset after a skipped fp16 step."""
    check_choice("optimizer", name, OPTIMIZERS)
    extra = {**({"momentum": momentum} if name in ("sgd", "rmsprop") else {}),
             **({"fused": True} if fused and name in FUSED else {})}
    optimizer = getattr(torch.optim, OPTIMIZER_CLASSES[name])(params, lr=lr, weight_decay=weight_decay, **extra)
    for p in (p for group in optimizer.param_groups for p in group["params"]) if name == "sgd" and momentum else ():
        optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return optimizer


OPTIMIZER_CLASSES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "adadelta": "Adadelta"}


@dataclass(frozen=True)
class Schedule:
    """A recipe over the iterations: at(i) is iteration i's (lr, batch size, l2), evaluated every `every` iterations.

    stages: each runs `iterations` steps; its lr, batch_size and l2 are a value or a [start, end] pair moved linearly,
    updated every `update_every` iterations (lab 04's report). An epoch recipe is one stage whose lr `curve` shapes:
    none, exponential (decay per epoch), step (decay every `step` iterations) or cosine, after `warmup` iterations
    rising from 0."""
    stages: tuple
    every: int
    update_every: int = 1
    staged: bool = True
    curve: str = "none"
    decay: float = 0.9
    step: int = 1000
    warmup: int = 0

    @property
    def total(self) -> int:
        return sum(stage["iterations"] for stage in self.stages)

    def at(self, i: int) -> tuple:
        start = 0
        for stage in self.stages:
            if i < start + stage["iterations"] or stage is self.stages[-1]:
                break
            start += stage["iterations"]
        into = i - start
        last_update = (stage["iterations"] - 1) // self.update_every * self.update_every
        share = (into - into % self.update_every) / last_update if last_update else 0.0

        def value(key):
            v = stage[key]
            return v[0] + (v[1] - v[0]) * share if isinstance(v, (list, tuple)) else v
        lr = value("lr") if self.staged else value("lr") * self.lr_factor(i)
        return lr, max(1, round(value("batch_size"))), value("l2")

    def lr_factor(self, i: int) -> float:
        """An epoch recipe's learning-rate multiplier at iteration i (schedules are stepped once per iteration)."""
        if i < self.warmup:
            return (i + 1) / self.warmup
        i -= self.warmup
        if self.curve == "exponential":
            return self.decay ** (i / self.every)
        if self.curve == "step":
            return self.decay ** (i // self.step)
        if self.curve == "cosine":
            rest = max(self.total - self.warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(i, rest) / rest))
        return 1.0


@dataclass
class Recipe:
    """How a model is trained; shown in a notebook, it reads as a sentence (analysis.describe_recipe).

    stages (see Schedule) replace lr, batch_size, epochs and schedule, evaluated every `eval_every` iterations. A
    stage's l2 adds l2 * penalty(model) / batch size to the mean loss (lab 04: the report's loss_p + l2 * loss_w);
    penalty is the notebook's own function. label_smoothing smooths the training loss alone."""
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    warmup: float = 0.0
    lr_decay: float = 0.9
    lr_step: int = 1000
    epochs: int = 1
    batch_size: int = 100
    stages: list | None = None
    update_every: int = 50
    eval_every: int = 0
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    augment: Augmentation | None = None
    precision: str = "auto"
    penalty: Callable | None = None

    def __post_init__(self):
        for what, value, choices in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("loss", self.loss, LOSSES), ("precision", self.precision, PRECISIONS)):
            check_choice(what, value, choices)
        if self.stages:
            check_stages(self.stages)
            if self.penalty is None and self.has_l2:
                raise LabsError("The stages give an L2 coefficient (l2) but the recipe has no penalty for it to "
                                "multiply; pass the notebook's own, e.g. train.Recipe(..., penalty=l2_penalty).")

    def laid_out(self, n_train: int) -> Schedule:
        """This recipe over the iterations of a training split of `n_train` images."""
        if self.stages:
            return Schedule(tuple(self.stages), self.eval_every or 100, self.update_every)
        every = max(1, math.ceil(n_train / self.batch_size))
        total = every * self.epochs
        epochs = {"iterations": total, "lr": self.lr, "batch_size": self.batch_size, "l2": 0.0}
        return Schedule((epochs,), every, staged=False, curve=self.schedule, decay=self.lr_decay, step=self.lr_step,
                        warmup=round(self.warmup * total))

    @property
    def has_l2(self) -> bool:
        """Whether a stage gives an L2 coefficient other than 0 (a number, or a [start, end] pair)."""
        return any(stage["l2"] != 0 for stage in self.stages or ())

    def record(self) -> dict:
        """The recipe as results.json keeps it: plain values, the augmentation in words, the penalty by name."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "augment": str(self.augment or "no augmentation"), "penalty": getattr(self.penalty, "__name__", None)}

    def criterion(self):
        smoothing = {"label_smoothing": self.label_smoothing} if self.label_smoothing else {}
        return functools.partial(LOSS_FUNCTIONS[self.loss], **smoothing)

    def _repr_markdown_(self) -> str:
        from .analysis import describe_recipe
        return describe_recipe(self)


def step(model: nn.Module, optimizer, criterion, x, y, l2=0.0, precision: str = "fp32", penalty=None,
         scaler=None) -> tuple:
    """One training step: forward (autocast in bf16 or fp16), loss in fp32 (+ l2 * penalty / batch when l2 is not 0),
    backward (through fp16's `scaler`), update. Returns the batch's mean loss and outputs, detached."""
    with autocast(x.device, precision):
        out = model(x)
    loss = criterion(out.float(), y)
    objective = loss + l2 * penalty(model) / len(y) if isinstance(l2, torch.Tensor) or l2 else loss
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        objective.backward()
        optimizer.step()
    else:
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach(), out.detach()


class Steps:
    """A fit's steps one at a time (the CPU's path); loss and correct predictions summed on the device."""
    kind = "eager"

    def __init__(self, model: nn.Module, optimizer, recipe: "Recipe", precision: str, split: Split):
        self.model, self.optimizer, self.recipe, self.precision, self.split = model, optimizer, recipe, precision, split
        self.criterion, self.penalty = recipe.criterion(), recipe.penalty
        self.scaler = torch.amp.GradScaler(split.x.device.type) if precision == "fp16" else None
        self.loss_sum = torch.zeros((), device=split.x.device)
        self.correct = torch.zeros((), device=split.x.device, dtype=torch.long)

    def __call__(self, idx: torch.Tensor, lr: float, l2: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.body(idx, l2)

    def body(self, idx: torch.Tensor, l2) -> None:
        x, y = self.split.x[idx], self.split.y[idx]
        loss, out = step(self.model, self.optimizer, self.criterion, self.recipe.augment(x) if self.recipe.augment
                         else x, y, l2, self.precision, self.penalty, self.scaler)
        self.loss_sum += loss * len(y)
        self.correct += (out.argmax(1) == y).sum()

    def totals(self) -> tuple:
        """The summed training loss and correct predictions since the last call, as numbers; then zero."""
        loss, correct = self.loss_sum.item(), self.correct.item()
        self.loss_sum.zero_()
        self.correct.zero_()
        return loss, correct


class CapturedSteps(Steps):
    """CUDA: each batch size's whole step captured as one CUDA graph and replayed (one launch, not hundreds), the lr
    and L2 coefficient device tensors filled before each replay, after `warmup` eager steps on a side stream. What
    cannot be captured steps eagerly from the start; a failed capture goes on eagerly, the process usable."""
    warmup = 2
    keep = 2   # graphs kept: an epoch's batch and its shorter last one; a staged ramp moves on to new sizes

    def __init__(self, *args, name: str = "model"):
        super().__init__(*args)
        device = self.split.x.device
        self.name, self.graphs, self.captured, self.side = name, {}, False, torch.cuda.Stream(device)
        self.lr = torch.zeros((), device=device)
        self.l2 = torch.zeros((), device=device) if self.recipe.has_l2 else 0.0
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
            if "capturable" in group:
                group["capturable"] = True
        self.eager = uncapturable(self.recipe, self.precision)
        if self.eager:
            print(f"{name}: training runs step by step (eager), slower: {self.eager}.", flush=True)

    @property
    def kind(self) -> str:
        """How the steps ran: "cuda graph", "eager" (no graph was captured) or "cuda graph, then eager"."""
        return ("cuda graph, then eager" if self.eager else "cuda graph") if self.captured else "eager"

    def __call__(self, idx: torch.Tensor, lr: float, l2: float) -> None:
        self.lr.fill_(lr)
        if self.recipe.has_l2:
            self.l2.fill_(l2)
        with warnings.catch_warnings():   # the optimizer is made for the graph: it warns of every step outside one
            warnings.filterwarnings("ignore", ".*capturable=True")
            self.body(idx, self.l2) if self.eager else self.graphed(idx)

    def graphed(self, idx: torch.Tensor) -> None:
        if len(idx) not in self.graphs:
            while len(self.graphs) >= self.keep:
                del self.graphs[next(iter(self.graphs))]
            self.graphs[len(idx)] = {"graph": None, "idx": torch.empty_like(idx), "eager": 0}
        entry = self.graphs[len(idx)]
        entry["idx"].copy_(idx)   # into the buffer the graph reads: never a new tensor
        if entry["graph"] is None and entry["eager"] < self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.body(entry["idx"], self.l2)
            torch.cuda.current_stream().wait_stream(self.side)
            entry["eager"] += 1
        elif entry["graph"] is None:
            self.capture(entry)
        else:
            entry["graph"].replay()

    def capture(self, entry: dict) -> None:
        """Capture the step over entry["idx"] and run it once. A failed capture puts the stream and fp16's scaler back
        and goes on eagerly, said in one line with the real cause; a CUDA generator left unusable is a LabsError."""
        graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
        self.optimizer.zero_grad(set_to_none=True)   # the graph's backward makes its gradients in its own pool
        try:
            with torch.cuda.graph(graph):
                self.body(entry["idx"], self.l2)
        except RuntimeError as e:
            cause = e.__context__ if "previous error during capture" in str(e) and e.__context__ else e
            self.eager = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:160]
            torch.cuda.set_stream(stream)   # torch.cuda.graph's exit failed before it put the stream back
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:     # its half-run step (unscaled, no inf check) is forgotten
                self.scaler = torch.amp.GradScaler(stream.device.type, init_scale=self.scaler.get_scale())
            self.graphs.clear()
            try:
                torch.rand(1, device=self.lr.device)   # some releases leave CUDA's generator in capture mode
            except RuntimeError:
                raise LabsError(f"{self.name}: its step could not be captured as a CUDA graph ({self.eager}), and "
                                f"torch {torch.__version__} cannot use its CUDA random generator again in this "
                                f"process; restart the kernel, then train eagerly (LABS_EAGER=1) or remove what reads "
                                f"the GPU inside the step.") from None
            print(f"{self.name}: training goes on step by step (eager), slower: its step could not be captured as "
                  f"a CUDA graph ({self.eager}).", flush=True)
            return self.body(entry["idx"], self.l2)
        entry["graph"], self.captured = graph, True
        graph.replay()


FUSED = ("adam", "adamw", "sgd")   # the optimizers that update in one kernel, and take fp16's scale without a sync


def uncapturable(recipe: Recipe, precision: str) -> str:
    """Why a step cannot be captured ('' when it can): fp16's scaler reads the GPU in non-fused updates."""
    return (f"in fp16 the gradient scaler reads the GPU in every {recipe.optimizer} step, which a CUDA graph cannot "
            f"hold (adam, adamw and sgd can)") if precision == "fp16" and recipe.optimizer not in FUSED else ""


def captures(device: torch.device) -> bool:
    """Whether training on `device` runs as CUDA graphs: on CUDA, unless LABS_EAGER is set."""
    return device.type == "cuda" and not os.environ.get("LABS_EAGER")


ATTEMPTS: dict = {}   # model name -> its latest training since the start cell (report.start clears it): the Fit
#                       when it finished, else why not ("stopped in epoch 2 of 5", "crashed: IndexError: ...")
RUN = 0               # the notebook's runs so far (report.start counts them); a Fit keeps the one it trained in


@dataclass
class Fit:
    """What training produced: a history row per evaluation, and whether it stayed healthy."""
    history: list = field(default_factory=list)
    status: str = "ok"              # "ok" or "diverged"
    error: str | None = None        # why it diverged
    note: str | None = None         # something to know that is no divergence (not learned yet, batch norm)
    train_samples_per_second: float = 0.0
    watched: list = field(default_factory=list)   # the watched split's evaluation at each history row
    precision: str = "fp32"         # what the forward passes ran in
    layout: str = "contiguous"      # the model's memory layout
    steps: str = "eager"            # how the steps ran: "eager", or "cuda graph" (CapturedSteps)
    train_seconds: list = field(default_factory=list)   # of training alone, per history row
    recipe: Recipe | None = None    # what trained: the record and the grading read it, not the notebook's globals
    val_images: int = 0             # the validation split's size, which bounds what its accuracy can tell
    batch_statistics: float | None = None   # validation accuracy with batch norm's batch statistics (nets with it)
    run: int | None = None          # the notebook's run it trained in (RUN)


def fit(model: nn.Module, data: Data, recipe: Recipe, *, name: str = "model", watch: Split | None = None,
        progress: bool = True) -> Fit:
    """Train `model` on data.train by `recipe`, validating on data.val at each evaluation (epoch, or eval_every
    iterations); on CUDA as captured graphs, the same batches and schedule. watch: a split evaluated too, for the
    curves (Fit.watched, test_loss and test_accuracy). ATTEMPTS keeps how it ended; an error in the network gets a
    note naming its layer."""
    device = data.train.x.device
    result = Fit(precision=precision_for(device, recipe.precision), layout=prepare(model, device), recipe=recipe,
                 val_images=len(data.val), run=RUN)
    optimizer = make_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.weight_decay, recipe.momentum,
                               fused=device.type == "cuda")
    steps = (CapturedSteps(model, optimizer, recipe, result.precision, data.train, name=name) if captures(device) else
             Steps(model, optimizer, recipe, result.precision, data.train))
    plan, stream, train_seconds, seen = recipe.laid_out(len(data.train)), Shuffled(data.train), 0.0, 0
    ATTEMPTS[name], start, stop, bar = "did not finish", 0, 0, None
    try:   # a stop or an error anywhere in the loop, between two intervals too, says where training was
        for start in range(0, plan.total, plan.every):
            stop, began, bar = min(start + plan.every, plan.total), time.perf_counter(), None
            where = f"iteration {stop:,}/{plan.total:,}" if plan.staged else \
                f"epoch {start // plan.every + 1}/{recipe.epochs}"
            bar = Bar(stream.count(plan.at(i)[1] for i in range(start, stop)), f"{name} {where}") if progress else bar
            if start == 0:   # a last layer of the wrong size would train, then fail in the confusion matrix
                check_outputs(model, data.train.x[:2], len(data.classes), name)
            row = _interval(model, data, recipe, plan, stream, steps, start, stop, bar, watch, result)
            images = row.pop("images")
            train_seconds, seen = train_seconds + result.train_seconds[-1], seen + images
            row["epoch"] = seen / len(data.train) if plan.staged else row["epoch"]
            result.history.append(row)
            bar and bar.close(progress_line(f"{name} {where}", row, images / (time.perf_counter() - began)))
            if not math.isfinite(row["train_loss"]):
                result.status, result.error = "diverged", (
                    f"{name}: the training loss became {'NaN' if math.isnan(row['train_loss']) else 'infinite'} "
                    f"{'by' if plan.staged else 'in'} {where.split('/')[0]}; training stopped. "
                    f"Try a smaller learning rate (lr={row['lr'] if plan.staged else recipe.lr:g}).")
                break
    except KeyboardInterrupt:
        bar and bar.close()
        ATTEMPTS[name] = "stopped in " + (f"epoch {start // plan.every + 1} of {recipe.epochs}" if not plan.staged
                                          else f"iterations {start + 1:,} to {stop:,} of {plan.total:,}")
        raise LabsError(f"{name}: training {ATTEMPTS[name]}; run this cell again to train from the start.") from None
    except Exception as e:
        bar and bar.close()
        ATTEMPTS[name] = "crashed: " + ("" if isinstance(e, LabsError) else f"{type(e).__name__}: ") + \
            (str(e).strip().splitlines() or [""])[0][:200]
        explain(e, model, data.train.x[:2], name, len(data.classes))
        raise
    result.train_samples_per_second, result.steps = seen / max(train_seconds, 1e-9), steps.kind
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) and len(data.val):
        result.batch_statistics = evaluate(model, data.val, recipe.loss, precision=result.precision,
                                           batch_size=recipe.batch_size, batch_statistics=True).accuracy
    _check_learned(result, name, len(data.classes), plan.total)
    if progress and (result.error or result.note):   # a divergence has no note
        print(f"DIVERGED: {result.error}" if result.error else f"NOTE: {result.note}", flush=True)
    ATTEMPTS[name] = result
    return result


def _interval(model, data, recipe, plan, stream, steps, start, stop, bar, watch, result) -> dict:
    """The steps between two evaluations, then the evaluation: the history's row (with the images trained)."""
    began, images = time.perf_counter(), 0
    model.train()
    for i in range(start, stop):
        lr, size, l2 = plan.at(i)
        steps(idx := stream.indices(size), lr, l2)
        images += len(idx)
        bar and bar.update(len(idx))
    loss_sum, correct = steps.totals()
    result.train_seconds.append(time.perf_counter() - began)
    row = history_row(plan, start, stop, 0.0, loss_sum / images, correct / images,
                      evaluate(model, data.val, recipe.loss, precision=result.precision) if len(data.val) else None)
    row["seconds"] = time.perf_counter() - began
    if watch is not None:
        result.watched.append(evaluate(model, watch, recipe.loss, precision=result.precision))
        row.update(test_loss=result.watched[-1].loss, test_accuracy=result.watched[-1].accuracy)
    return {**row, "images": images}


def history_row(plan: Schedule, start: int, stop: int, epochs: float, train_loss: float, train_accuracy: float,
                val) -> dict:
    """The history's row at an evaluation: where, training and validation loss and accuracy, lr."""
    row = {"iteration": stop, "epoch": epochs} if plan.staged else {"epoch": start // plan.every + 1}
    row.update(train_loss=train_loss, train_accuracy=train_accuracy, val_loss=val.loss if val else None,
               val_accuracy=val.accuracy if val else None, lr=plan.at(start)[0])
    if plan.staged:
        row.update(batch_size=plan.at(stop - 1)[1], l2=plan.at(stop - 1)[2])
    return row


def _check_learned(result: Fit, name: str, n_classes: int, steps: int) -> None:
    """Rules about what happened: a NaN, infinite or exploded loss diverged (a falling one never did); training near
    chance is not learned yet; evaluation mode far below batch statistics is batch norm's running statistics."""
    if result.status != "ok":
        return
    rows, chance, guess = result.history, 1 / n_classes, math.log(n_classes)
    first, last = rows[0]["train_loss"], rows[-1]["train_loss"]
    if last > 3 * max(first, guess):
        result.status, result.error = "diverged", (
            f"{name}: the training loss exploded, from {first:.3g} to {last:.3g}; try a smaller learning rate.")
        return
    notes, val = [], rows[-1]["val_accuracy"]
    if rows[-1]["train_accuracy"] <= 1.5 * chance + 1e-9 and (val is None or val <= 2.5 * chance):
        trend = f", its loss falling from {first:.3g} to {last:.3g}" if len(rows) > 1 and last < 0.95 * first else \
            f", its loss not falling ({first:.3g} to {last:.3g})" if len(rows) > 1 else ""
        notes.append(f"{name}: not learned yet: after {plural(steps, 'step')} training accuracy is "
                     f"{rows[-1]['train_accuracy']:.1%}, near chance ({chance:.0%}){trend}; train longer (more epochs "
                     f"or images){'' if trend.startswith(', its loss f') else ', or check the learning rate'}.")
    if result.batch_statistics is not None and val is not None and \
            result.batch_statistics - val > max(0.1, noise(val, result.val_images)):
        notes.append(f"{name}: validation accuracy is {val:.1%} in evaluation mode but {result.batch_statistics:.1%} "
                     f"on the same images with batch statistics: batch norm's running statistics, after "
                     f"{plural(steps, 'step')}, do not yet describe the images; train longer and it recovers.")
    result.note = " ".join(notes) or None


def progress_line(where: str, row: dict, per_second: float) -> str:
    """One line per evaluation, short enough not to wrap: where, training and validation loss and accuracy, lr,
    time and speed."""
    line = f"{where}  train {row['train_loss']:.4f} {row['train_accuracy']:.2%}"
    if row["val_loss"] is not None:
        line += f"  val {row['val_loss']:.4f} {row['val_accuracy']:.2%}"
    return line + f"  lr {row['lr']:.1e}  {row['seconds']:.1f} s, {per_second:,.0f} img/s"


@dataclass
class Evaluation:
    """A model's loss, accuracy and predictions on one split (tensors on the CPU)."""
    loss: float
    accuracy: float
    labels: torch.Tensor
    predictions: torch.Tensor
    probabilities: torch.Tensor
    single_view_accuracy: float | None = None   # with test-time augmentation: the accuracy without it
    input_shape: tuple = ()                     # of one image, (channels, height, width)

    def confusion_matrix(self, n_classes: int = 0) -> torch.Tensor:
        """Counts: row = true class, column = predicted class."""
        n = n_classes or self.probabilities.shape[1]
        return torch.bincount(self.labels * n + self.predictions, minlength=n ** 2).view(n, n)

    def per_class_accuracy(self, n_classes: int = 0) -> list:
        return ((cm := self.confusion_matrix(n_classes)).diag() / cm.sum(1).clamp(min=1)).tolist()


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, loss: str = "cross_entropy", tta: bool = False,
             precision: str = "fp32", batch_size: int = 0, batch_statistics: bool = False) -> Evaluation:
    """Loss and accuracy of `model` on `split` in eval mode, forward passes in `precision`. tta: average each image's
    outputs with its mirror image's. batch_statistics: batch norm on each batch's statistics (a copy of the model).
    batch_size 0: 1024 on a GPU, 128 on a CPU."""
    original, was_training, device = model, model.training, split.x.device
    batch_size = batch_size or (128 if device.type == "cpu" else 1024)
    check_choice("precision", precision, PRECISIONS[1:])
    model.eval()
    if batch_statistics:
        model = copy.deepcopy(model)
        for m in model.modules():
            m.train(isinstance(m, nn.modules.batchnorm._BatchNorm))
    total = torch.zeros((), device=device)
    single_view = torch.zeros((), device=device, dtype=torch.long)
    logits = []
    for x, y in batches(split, batch_size):
        n = len(y)
        if device.type == "cuda" and n < batch_size < len(split) and not batch_statistics:   # one shape for cuDNN
            x = torch.cat([x, x[:1].expand(batch_size - n, *x.shape[1:])])
        with autocast(device, precision):
            out = model(x).float()[:n]
            if tta:
                single_view += (out.argmax(1) == y).sum()
                out = (out + model(x.flip(3)).float()[:n]) / 2
        total += LOSS_FUNCTIONS[loss](out, y, reduction="sum")
        logits.append(out)
    original.train(was_training)
    logits = torch.cat(logits)
    predictions = logits.argmax(1)
    n = max(len(split), 1)
    return Evaluation(total.item() / n, (predictions == split.y).sum().item() / n, split.y.cpu(),
                      predictions.cpu(), logits.softmax(1).cpu(), single_view.item() / n if tta else None,
                      tuple(split.x.shape[1:]))


def ensemble(evaluations: list) -> Evaluation:
    """Average the softmax outputs of models evaluated on one split; loss: the average's cross-entropy."""
    probabilities = torch.stack([e.probabilities for e in evaluations]).mean(0)
    labels = evaluations[0].labels
    predictions = probabilities.argmax(1)
    loss = nn.functional.nll_loss(probabilities.clamp_min(1e-12).log(), labels).item()
    return Evaluation(loss, (predictions == labels).float().mean().item(), labels, predictions, probabilities,
                      input_shape=evaluations[0].input_shape)


def ensemble_history(fits: list) -> list:
    """The members' averaged softmax at each evaluation of their watched split: a row each."""
    rows = []
    for k, points in enumerate(zip(*(f.watched for f in fits))):
        averaged = ensemble(list(points))
        when = {key: fits[0].history[k][key] for key in ("iteration", "epoch") if key in fits[0].history[k]}
        rows.append({**when, "test_loss": averaged.loss, "test_accuracy": averaged.accuracy})
    return rows
