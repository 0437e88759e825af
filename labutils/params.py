"""Assignments and their parameters: read a notebook's parameters cell, merge YAML files and overrides, validate.

Everything here runs before a notebook starts, so a bad name, type or value costs nothing and writes nothing.
"""

import ast
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import LabsError
from .vocab import (ACTIVATIONS, INITS, LOSSES, OPTIMIZERS, POOLS, PRECISIONS, SCHEDULES, check_stages,
                    did_you_mean)

ROOT = Path(__file__).resolve().parent.parent
RUNNER_OWNED = {"output_dir": "--output DIR"}   # parameters that labs sets itself

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
        raise LabsError(f"Unknown assignment {assignment!r}{did_you_mean(assignment, known)}; "
                        f"choose one of {', '.join(known)}.")
    return known[assignment]


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str       # as annotated in the parameters cell: int, float, str, bool, list, dict
    default: object
    help: str


@functools.cache
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
        "precision": one_of(PRECISIONS),
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
            raise LabsError(f"Unknown parameter {name!r} for {assignment}{did_you_mean(name, params)}; "
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


def shrink(values: dict, smoke: dict, keep=()) -> dict:
    """Make a run a smoke run whatever its files say: smoke.yaml's data settings (synthetic, n_train, n_test)
    hold, and it trains at most smoke.yaml's epochs (its other values sit below every file, as defaults).
    Values named in `keep` (given with -p) are the user's and stay as given."""
    values = {**values, **{k: smoke[k] for k in ("synthetic", "n_train", "n_test") if k in smoke and k not in keep}}
    for key in ("epochs", "eval_every"):
        if key in smoke and key not in keep:
            values[key] = min(values[key], smoke[key])
    if smoke.get("stages") and values.get("stages") and "stages" not in keep:   # shrunk in proportion
        cap, length = (sum(stage["iterations"] for stage in s) for s in (smoke["stages"], values["stages"]))
        if length > cap:
            values["stages"] = [{**stage, "iterations": max(1, stage["iterations"] * cap // length)}
                                for stage in values["stages"]]
    return values


MIN_TRAIN = 10   # training images below which nothing can be learned (one per class of the labs' datasets)


def check_split(values: dict) -> None:
    """Refuse, before anything runs, a training split too small to learn from (when n_train fixes its size)."""
    n_train, share = values.get("n_train") or 0, values.get("val_fraction", 0.0)
    if n_train and n_train - round(n_train * share) < MIN_TRAIN:
        left = n_train - round(n_train * share)
        raise LabsError(f"n_train {n_train} with val_fraction {share:g} leaves {left} training image"
                        f"{'' if left == 1 else 's'}, too few to learn from (at least {MIN_TRAIN}); raise n_train "
                        f"(0: all) or lower val_fraction.")


def combine(assignment: str, layers: list, smoke: bool = False, params: dict | None = None, keep=()) -> dict:
    """The full, validated parameters of a run: notebook defaults, then (with `smoke`) smoke.yaml, then each
    layer of values, later ones winning; a smoke run is then shrunk to smoke size, but for the names in `keep`."""
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
    values = shrink(values, small, keep) if smoke else values
    check_split(values)
    return values


def resolve(assignment: str, files=(), overrides: dict | None = None, smoke: bool = False) -> dict:
    """The parameters of `labs run`: parameter files (paths, or their values already read) in order, then single
    overrides, which --smoke keeps as given (see combine)."""
    overrides = overrides or {}
    layers = [f if isinstance(f, dict) else load_yaml(f) for f in files]
    return combine(assignment, [*layers, overrides], smoke, keep=overrides.keys())
