"""The parameter rules, in one place: `labs` checks a run's parameters before the notebook starts, and every notebook
its own as its first step (check_notebook), with the same one-line errors. No torch here."""

import ast
import io
import math
import tokenize
from dataclasses import dataclass

from . import LabsError, in_notebook
from .declared import DECLARED
from .vocab import (ACTIVATIONS, DATASET_OF, INITS, LAB_MODELS, MIN_TRAIN, LOSSES, OPTIMIZERS, POOLS, PRECISIONS, SCHEDULES,
                    TRAIN_IMAGES, SYNTHETIC_IMAGES, check_stages, did_you_mean, plural, shown)

TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
MAX_SEED = 2 ** 32 - 1   # NumPy's seeds stop there
MAX_SHIFT = 27       # a reflect-padded shift must stay below the 28-pixel side of the labs' images
MAX_STAGES = 5       # model3: each stage halves CIFAR-10's 32 pixels; after five, one is left
WHERE = {True: "the notebook's parameters cell", False: "`labs list {}`"}   # where a user sees every parameter


@dataclass(frozen=True)
class Parameter:
    """One line of a parameters cell: `name: type = default  # help`."""
    name: str
    type: str
    default: object
    help: str


def read_cell(source: str) -> dict:
    """The parameters a `parameters` cell declares, as papermill reads them: `name: type = default  # help`."""
    comments = {t.start[0]: t.string.lstrip("#").strip()
                for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT}
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            try:
                default = ast.literal_eval(node.value)
            except ValueError:   # an expression, not a plain value
                default = None
            found[node.target.id] = Parameter(node.target.id, ast.unparse(node.annotation), default,
                                              comments.get(node.lineno, ""))
    return found


def _choices(assignment: str) -> dict:
    """The parameters that name one of a list of choices: name -> the choices."""
    available = LAB_MODELS.get(assignment, ())
    return {"pool": POOLS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "init": INITS, "precision": PRECISIONS,
            "activation": ACTIVATIONS, "loss": LOSSES, "dataset": ("mnist", "fashion_mnist"), "ensemble_of": available}


def _rules(assignment: str) -> dict:
    """Allowed values by parameter name, shared by every notebook: name -> (test, what is allowed)."""
    available = LAB_MODELS.get(assignment, ())
    widths = (lambda v: all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in v),
              "a list of layer widths, each a whole number of at least 1")
    positive = (lambda v: v > 0, "greater than 0")
    at_least_1 = (lambda v: v >= 1, "at least 1")
    not_negative = (lambda v: v >= 0, "0 or more")
    fraction = (lambda v: 0 <= v < 1, "in [0, 1)")
    return {
        "lr": positive, "init_std": positive, "epochs": at_least_1, "batch_size": at_least_1,
        "lr_step": at_least_1, "weight_decay": not_negative, "n_train": not_negative, "n_test": not_negative,
        "seed": (lambda v: 0 <= v <= MAX_SEED, f"from 0 to {MAX_SEED:,}"),
        "dropout": fraction, "momentum": fraction, "val_fraction": fraction,
        "warmup": fraction, "label_smoothing": fraction, "update_every": at_least_1, "eval_every": at_least_1,
        "members": at_least_1, "shift": (lambda v: 0 <= v <= MAX_SHIFT, f"from 0 to {MAX_SHIFT} pixels"),
        "lr_decay": (lambda v: 0 < v <= 1, "in (0, 1]"),
        "hidden": widths, "widths": widths, "blocks": at_least_1, "ensemble": not_negative,
        "model3_widths": (lambda v: 1 <= len(v) <= MAX_STAGES and widths[0](v),
                          f"a list of layer widths, each a whole number of at least 1, and at most {MAX_STAGES} of "
                          f"them (each stage halves the 32-pixel image)"),
        "device": (lambda v: v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"),
                   "auto, cpu, cuda (or cuda:N) or mps"),
        "models": (lambda v: 0 < len(v) == len(set(map(str, v))) and all(m in available for m in v),
                   "a list of different models from " + ", ".join(available)),
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
    expected = TYPES.get(p.type)
    if expected is None:
        return value
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        like = f" like {shown(p.default, 40)}" if isinstance(p.default, expected) else ""
        about = f" ({p.help})" if p.help else ""
        raise LabsError(f"{p.name} must be {'an' if p.type[0] in 'aeiou' else 'a'} {p.type}{like}{about}, "
                        f"not {shown(value)}.")
    if expected is float and not math.isfinite(value):
        raise LabsError(f"{p.name} must be a finite number, not {shown(value)}.")
    return value


def validate(assignment: str, values: dict, params: dict, hint: str = "") -> dict:
    """Check the names, types and ranges of `values` against the declared `params`; them typed, or a LabsError."""
    rules, choices = _rules(assignment), _choices(assignment)
    checked = {}
    for name, value in values.items():
        if name not in params:
            raise LabsError(f"Unknown parameter {shown(name)} for {assignment}{did_you_mean(str(name)[:100], params)}; "
                            f"{hint or WHERE[in_notebook()].format(assignment)} lists them all.")
        value = _typed(params[name], value)
        if name == "stages":
            check_stages(value)
        suffix = name.rsplit("_", 1)[-1]          # model3_pool follows the pool rule, lenet5_dropout the dropout rule
        allowed = choices.get(name) or choices.get(suffix)
        if allowed is not None and value not in allowed:
            raise LabsError(f"{name} must be one of {', '.join(map(str, allowed))}, not {shown(value)}"
                            f"{did_you_mean(str(value)[:100], allowed)}.")
        rule = rules.get(name) or rules.get(suffix)
        if rule:
            test, allowed = rule
            try:
                passed = test(value)
            except (TypeError, ValueError):   # a value of another type than the rule's (an edited annotation)
                passed = False
            if not passed:
                raise LabsError(f"{name} must be {allowed}, not {shown(value)}.")
        checked[name] = value
    return checked


def check_together(assignment: str, values: dict) -> None:
    """The rules that join two parameters or more: a loss and its smoothing, the size of the splits."""
    if values.get("loss") == "multi_margin" and values.get("label_smoothing"):
        raise LabsError("label_smoothing works with the cross_entropy loss only; "
                        "set label_smoothing to 0 to train with multi_margin.")
    dataset = values.get("dataset") or DATASET_OF.get(assignment)
    if dataset is None or "n_train" not in values:
        return
    synthetic, n_train = values.get("synthetic", False), values.get("n_train") or 0
    size = n_train or (SYNTHETIC_IMAGES[0] if synthetic else TRAIN_IMAGES[dataset])
    share = values.get("val_fraction", 0.0)
    left = size - round(size * share)
    if left < MIN_TRAIN:
        raise LabsError(f"n_train {n_train}{' (all: ' + format(size, ',') + ')' if not n_train else ''} with "
                        f"val_fraction {share:g} leaves {plural(left, 'training image')}, too few to learn from "
                        f"(at least {MIN_TRAIN}); raise n_train (0: all) or lower val_fraction.")


def _literal_assignments(source: str) -> list | None:
    """The names a cell of plain `name = value` lines assigns, or None for any other cell."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    names = []
    for node in body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return None
        try:
            ast.literal_eval(node.value)
        except ValueError:
            return None
        names.append(node.targets[0].id)
    return names


def notebook_cells(namespace: dict, assignment: str = "") -> tuple:
    """From the kernel's history (IPython's `In`): the declarations of the parameters cell that ran last (a line that
    assigns a parameter declares it, annotated or not) and the names later cells of plain assignments set (papermill's
    injected ones, a student's); ({}, []) without such history."""
    history = [cell for cell in namespace.get("In", [])[:-1] if isinstance(cell, str)]   # the last is this cell
    given = []
    for source in reversed(history):
        try:
            declared = read_cell(source)
        except SyntaxError:
            declared = {}
        if declared:
            known = DECLARED.get(assignment, {})
            retyped = [node.targets[0].id for node in ast.parse(source).body if isinstance(node, ast.Assign) and
                       len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                       and node.targets[0].id not in declared]   # lines added without their annotation
            for name in retyped:   # `epochs = 2` typed again without its annotation: still the parameter
                if name in known:
                    declared[name] = Parameter(name, known[name], namespace.get(name), "")
            return declared, [n for n in retyped if n not in known] + given
        names = _literal_assignments(source)
        if names is not None:
            given = names + given
    return {}, []


def check_notebook(assignment: str, namespace: dict) -> dict:
    """A notebook's first step: its parameters as the cells above set them, checked by the rules `labs` uses (a name
    the parameters cell does not declare is refused with the closest one), as a dict, or one LabsError."""
    declared, given = notebook_cells(namespace, assignment)
    if not declared:   # no history: the annotations of the parameters cell
        declared = {name: Parameter(name, getattr(kind, "__name__", str(kind)), namespace.get(name), "")
                    for name, kind in namespace.get("__annotations__", {}).items()}
    values = {name: namespace[name] for name in declared if name in namespace}
    for name in given:
        if name not in declared:
            validate(assignment, {name: namespace.get(name)}, declared)   # raises: an unknown parameter
    checked = validate(assignment, values, declared)
    check_together(assignment, checked)
    for name, value in checked.items():   # typed as declared: an int given for a float becomes a float
        namespace[name] = value
    return checked
