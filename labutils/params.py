"""Assignments and their parameters: read a notebook's parameters cell, merge YAML files and overrides, validate.

Everything here runs before a notebook starts, so a bad name, type or value costs nothing and writes nothing.
"""

import ast
import difflib
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import LabsError

ROOT = Path(__file__).resolve().parent.parent
RUNNER_OWNED = {"output_dir": "--output DIR"}   # parameters that labs sets itself

# The named choices of the parameters, here without torch so that validation is fast;
# labutils.models and labutils.train implement exactly these (a test keeps them in step).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adadelta")
SCHEDULES = ("none", "exponential", "step", "cosine")
LOSSES = ("cross_entropy", "multi_margin")
INITS = ("default", "he", "xavier", "normal")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "elu")
POOLS = ("max", "avg", "mixed")
STAGE_KEYS = ("iterations", "lr", "batch_size", "l2")


def check_stages(stages) -> None:
    """Refuse a malformed `stages` list (see train.stage_values) with one line naming the stage and the key."""
    if not isinstance(stages, list) or not stages:
        raise LabsError("stages must be a non-empty list of mappings, e.g. "
                        "[{iterations: 1000, lr: [0.001, 0.0001], batch_size: 100, l2: 0}].")
    for k, stage in enumerate(stages, 1):
        if not isinstance(stage, dict):
            raise LabsError(f"stage {k} must be a mapping of {', '.join(STAGE_KEYS)}, not {stage!r}.")
        for key in stage:
            if key not in STAGE_KEYS:
                raise LabsError(f"stage {k}: unknown key {key!r}{_did_you_mean(str(key), STAGE_KEYS)}; "
                                f"a stage has {', '.join(STAGE_KEYS)}.")
        for key in STAGE_KEYS:
            if key not in stage:
                raise LabsError(f"stage {k}: the key {key!r} is missing; a stage has {', '.join(STAGE_KEYS)}.")
        iterations = stage["iterations"]
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
            raise LabsError(f"stage {k}: iterations must be a whole number of at least 1, not {iterations!r}.")
        for key, test, allowed in (("lr", lambda v: v > 0, "greater than 0"),
                                   ("batch_size", lambda v: v >= 1, "at least 1"),
                                   ("l2", lambda v: v >= 0, "0 or more")):
            value = stage[key]
            numbers = list(value) if isinstance(value, (list, tuple)) else [value]
            if isinstance(value, (list, tuple)) and len(numbers) != 2 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
                raise LabsError(f"stage {k}: {key} must be a number or a [start, end] pair of numbers, "
                                f"not {value!r}.")
            if not all(test(v) for v in numbers):
                raise LabsError(f"stage {k}: {key} must be {allowed}, not {value!r}.")


def course_dir(name: str) -> Path:
    """The course's notebooks/ or params/ folder, which sit beside labutils/ in the repository."""
    path = ROOT / name
    if not path.is_dir():
        raise LabsError(f"{path} is missing: labs needs the course's notebooks/ and params/ folders; "
                        f"install labutils from a clone of the repository with `pip install -e .`.")
    return path


def assignments() -> dict:
    """Assignment name -> notebook path, from notebooks/NN_<name>.ipynb."""
    found = {}
    for path in sorted(course_dir("notebooks").glob("[0-9][0-9]_*.ipynb")):
        found[path.stem.split("_", 1)[1]] = path
    return found


def notebook(assignment: str) -> Path:
    known = assignments()
    if assignment not in known:
        raise LabsError(f"Unknown assignment {assignment!r}{_did_you_mean(assignment, known)}; "
                        f"choose one of {', '.join(known)}.")
    return known[assignment]


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str       # as annotated in the parameters cell: int, float, str, bool, list, dict
    default: object
    help: str


def declared_in(path: Path) -> dict:
    """The parameters that a notebook declares in its `parameters` cell, by name, as papermill reads them."""
    import papermill  # slow to import: only when needed
    found = {}
    for name, p in papermill.inspect_notebook(str(path)).items():
        found[name] = Parameter(name, p["inferred_type_name"], ast.literal_eval(p["default"]), p["help"])
    return found


def declared(assignment: str) -> dict:
    """The parameters of an assignment's notebook, by name."""
    return declared_in(notebook(assignment))


def load_yaml(path) -> dict:
    """A parameter (or sweep) file: a YAML mapping. Missing or malformed files are one clear error."""
    path = Path(path)
    if not path.is_file():
        raise LabsError(f"Parameter file {path} does not exist; check the path.")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = f" at line {e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        problem = getattr(e, "problem", None) or "it does not parse"
        raise LabsError(f"{path} is not valid YAML{where}: {problem}; fix the file.") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise LabsError(f"{path} must be a mapping of names to values (e.g. `lr: 0.001`), "
                        f"not a {type(content).__name__}.")
    return content


def parse_value(text: str):
    """A command-line value, read as YAML: `0.01` -> float, `[512, 256]` -> list, `he` -> str."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "l2": "weight_decay", "bs": "batch_size",
           "epoch": "epochs", "num_epochs": "epochs", "hidden_layers": "hidden", "drop_rate": "dropout"}


def _did_you_mean(name: str, known) -> str:
    close = [ALIASES[name]] if ALIASES.get(name) in known else \
        difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _rules(params: dict) -> dict:
    """Allowed values by parameter name, shared by every notebook: name -> (test, what is allowed)."""
    def one_of(choices):
        return lambda v: v in choices, "one of " + ", ".join(map(str, choices))

    available = params["models"].default if "models" in params else []   # a notebook's default trains them all

    widths = (lambda v: all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in v),
              "a list of layer widths, each a whole number of at least 1")
    positive = (lambda v: v > 0, "greater than 0")
    at_least_1 = (lambda v: v >= 1, "at least 1")
    not_negative = (lambda v: v >= 0, "0 or more")
    fraction = (lambda v: 0 <= v < 1, "in [0, 1)")
    return {
        "lr": positive, "init_std": positive, "epochs": at_least_1, "batch_size": at_least_1,
        "lr_step": at_least_1, "weight_decay": not_negative, "n_train": not_negative, "n_test": not_negative,
        "seed": not_negative, "dropout": fraction, "momentum": fraction, "val_fraction": fraction,
        "warmup": fraction, "label_smoothing": fraction, "update_every": at_least_1, "eval_every": at_least_1,
        "members": at_least_1, "shift": not_negative, "dataset": one_of(("mnist", "fashion_mnist")),
        "lr_decay": (lambda v: 0 < v <= 1, "in (0, 1]"),
        "hidden": widths, "widths": widths, "blocks": at_least_1, "ensemble": not_negative,
        "pool": one_of(POOLS),
        "optimizer": one_of(OPTIMIZERS), "schedule": one_of(SCHEDULES), "init": one_of(INITS),
        "activation": one_of(ACTIVATIONS), "loss": one_of(LOSSES),
        "device": (lambda v: v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"),
                   "auto, cpu, cuda (or cuda:N) or mps"),
        "models": (lambda v: 0 < len(v) == len(set(map(str, v))) and all(m in available for m in v),
                   "a list of different models from " + ", ".join(map(str, available))),
        "ensemble_of": one_of(available),
    }


def _typed(p: Parameter, value):
    """`value` as the parameter's annotated type, or a LabsError naming the mismatch."""
    if p.type == "float" and isinstance(value, str):   # YAML reads `1e-3` as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if p.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    expected = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}.get(p.type)
    if expected is None:
        return value
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise LabsError(f"{p.name} must be {'an' if p.type[0] in 'aeiou' else 'a'} {p.type} like {p.default!r} "
                        f"({p.help}), not {value!r}.")
    if expected is float and not math.isfinite(value):
        raise LabsError(f"{p.name} must be a finite number, not {value!r}.")
    return value


def validate(assignment: str, values: dict, params: dict | None = None) -> dict:
    """Check names, types and ranges of `values` against the notebook's parameters; returns them typed."""
    params = params if params is not None else declared(assignment)
    rules = _rules(params)
    checked = {}
    for name, value in values.items():
        if name in RUNNER_OWNED:
            raise LabsError(f"{name} is set by labs itself; use {RUNNER_OWNED[name]} instead.")
        if name not in params:
            raise LabsError(f"Unknown parameter {name!r} for {assignment}{_did_you_mean(name, params)}; "
                            f"`labs list {assignment}` shows them all.")
        value = _typed(params[name], value)
        if name == "stages":
            check_stages(value)
        rule = rules.get(name) or rules.get(name.rsplit("_", 1)[-1])   # model3_widths follows the widths rule
        if rule:
            test, allowed = rule
            if not test(value):
                raise LabsError(f"{name} must be {allowed}, not {value!r}.")
        checked[name] = value
    return checked


def smoke_values(assignment: str) -> dict:
    """The assignment's params/<assignment>/smoke.yaml."""
    return load_yaml(course_dir("params") / assignment / "smoke.yaml")


def shrink(values: dict, smoke: dict) -> dict:
    """Make a run a smoke run whatever its other files say: smoke.yaml's data settings (synthetic, n_train, n_test)
    hold, and it trains at most smoke.yaml's epochs. (Its other values sit below every file, as defaults.)"""
    values = {**values, **{k: smoke[k] for k in ("synthetic", "n_train", "n_test") if k in smoke}}
    for key in ("epochs", "eval_every"):
        if key in smoke:
            values[key] = min(values[key], smoke[key])
    if smoke.get("stages") and values.get("stages"):   # stages shrink in proportion to smoke.yaml's length
        cap, length = (sum(stage["iterations"] for stage in s) for s in (smoke["stages"], values["stages"]))
        if length > cap:
            values["stages"] = [{**stage, "iterations": max(1, stage["iterations"] * cap // length)}
                                for stage in values["stages"]]
    return values


def combine(assignment: str, layers: list, smoke: bool = False, params: dict | None = None) -> dict:
    """The full, validated parameters of a run: notebook defaults, then (with `smoke`) smoke.yaml, then each
    layer of values, later ones winning; a smoke run is then shrunk to smoke size."""
    params = params if params is not None else declared(assignment)
    small = smoke_values(assignment) if smoke else {}
    merged = {}
    for layer in [small, *layers]:
        merged.update(layer)
    values = {name: p.default for name, p in params.items() if name not in RUNNER_OWNED}
    values.update(validate(assignment, merged, params))
    if values.get("loss") == "multi_margin" and values.get("label_smoothing"):
        raise LabsError("label_smoothing works with the cross_entropy loss only; "
                        "set label_smoothing to 0 to train with multi_margin.")
    return shrink(values, small) if smoke else values


def resolve(assignment: str, files=(), overrides: dict | None = None, smoke: bool = False) -> dict:
    """The parameters of `labs run`: parameter files in order, then single overrides (see combine)."""
    return combine(assignment, [*(load_yaml(f) for f in files), overrides or {}], smoke)
