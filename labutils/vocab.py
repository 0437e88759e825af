"""The course's named choices and their checks, without torch: the library implements exactly these and `labs`
validates against them (tests/test_params.py keeps the two in step)."""

import difflib
import html
import math
import re
import reprlib

from . import LabsError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adadelta")
SCHEDULES = ("none", "exponential", "step", "cosine")
LOSSES = ("cross_entropy", "multi_margin")
INITS = ("default", "he", "xavier", "normal")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "elu")
POOLS = ("max", "avg", "mixed")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STAGE_KEYS = ("iterations", "lr", "batch_size", "l2")
LAB_MODELS = {"fashion_fcn_vs_lenet": ("fcn", "lenet5", "lenet5_modified"),   # the `models` a lab can train
              "cifar10_cnn": ("lenet5", "model2", "model3")}
DATASET_OF = {"mnist_mlp": "mnist", "fashion_fcn_vs_lenet": "fashion_mnist", "cifar10_cnn": "cifar10"}  # lab 04: `dataset`
TRAIN_IMAGES = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}   # the real training sets
MIN_TRAIN = 10   # training images below which nothing can be learned (one per class of the labs' datasets)
SYNTHETIC_IMAGES = (1000, 500)   # training and test images of synthetic data when n_train, n_test are 0

ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "l2": "weight_decay", "bs": "batch_size",
           "epoch": "epochs", "num_epochs": "epochs", "hidden_layers": "hidden", "drop_rate": "dropout"}


def did_you_mean(name: str, known) -> str:
    """' (did you mean 'lr'?)' for the closest of `known`, or ''."""
    close = [ALIASES[name]] if ALIASES.get(name) in known else \
        difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(what: str, value, choices) -> None:
    """Refuse a value that is not one of `choices`, in one line."""
    if value not in choices:
        raise LabsError(f"Unknown {what} {shown(value)}{did_you_mean(str(value)[:100], choices)}; "
                        f"choose one of {', '.join(choices)}.")


def is_number(value, finite: bool = False) -> bool:
    """An int or a float (not a bool), and with `finite` not NaN or infinite either."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (not finite or math.isfinite(value))


def shown(value, width: int = 80) -> str:
    """A value as an error message shows it: its repr, cut to `width` characters (a value from a file may be huge)."""
    text = _short.repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxdict, _short.maxstring, _short.maxother = 3, 8, 6, 60, 60


def check_stages(stages) -> None:
    """Refuse a malformed `stages` list (see train.stage_values) with one line naming the stage and the key."""
    if not isinstance(stages, list) or not stages:
        raise LabsError("stages must be a non-empty list of mappings, e.g. "
                        "[{iterations: 1000, lr: [0.001, 0.0001], batch_size: 100, l2: 0}].")
    for k, stage in enumerate(stages, 1):
        if not isinstance(stage, dict):
            raise LabsError(f"stage {k} must be a mapping of {', '.join(STAGE_KEYS)}, not {shown(stage)}.")
        for key in stage:
            if key not in STAGE_KEYS:
                raise LabsError(f"stage {k}: unknown key {shown(key)}{did_you_mean(str(key)[:100], STAGE_KEYS)}; "
                                f"a stage has {', '.join(STAGE_KEYS)}.")
        for key in STAGE_KEYS:
            if key not in stage:
                raise LabsError(f"stage {k}: the key {key!r} is missing; a stage has {', '.join(STAGE_KEYS)}.")
        iterations = stage["iterations"]
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
            raise LabsError(f"stage {k}: iterations must be a whole number of at least 1, not {shown(iterations)}.")
        for key, test, allowed in (("lr", lambda v: v > 0, "greater than 0"),
                                   ("batch_size", lambda v: v >= 1, "at least 1"),
                                   ("l2", lambda v: v >= 0, "0 or more")):
            value = stage[key]
            pair = isinstance(value, (list, tuple))
            numbers = list(value) if pair else [value]
            if pair and len(numbers) != 2 or not all(map(lambda v: is_number(v, finite=True), numbers)):
                raise LabsError(f"stage {k}: {key} must be a number or a [start, end] pair of numbers, "
                                f"not {shown(value)}.")
            if not all(test(v) for v in numbers):
                raise LabsError(f"stage {k}: {key} must be {allowed}, not {shown(value)}.")


def label(value) -> str:
    """A parameter value as a short label, for run names and tables: [256, 256] -> 256x256, 1e-05 -> 1e-05."""
    if isinstance(value, list):
        return "x".join(map(label, value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def md(value) -> str:
    """A value as Markdown showing it as given (HTML escaped, markup backslashed), for what users and files control."""
    text = re.sub(r"([\\`*\[\]|~])", r"\\\1", str(value).replace("\n", " "))
    text = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)
    return html.escape(text, quote=True)


def plural(n: int, word: str) -> str:
    """1 epoch, 2 epochs, 1,200 images."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
