"""The course's assignments and a run's parameters: read parameter files (with limits: they may come from anyone),
layer them over the notebook's defaults, and check them by the library's rules (labutils.parameters).

Everything here runs before a notebook starts, so a bad name, type, value or file costs nothing and writes nothing.
"""

import functools
import json
from pathlib import Path

import yaml

from labutils import LabsError
from labutils.parameters import check_together, read_cell, validate
from labutils.vocab import did_you_mean, shown

ROOT = Path(__file__).resolve().parent.parent
RUNNER_OWNED = {"output_dir": "--output DIR"}   # parameters that labs sets itself
MAX_FILE_BYTES = 1_000_000   # a parameter or sweep file is a page of YAML, never megabytes
MAX_VALUES = 100_000         # values a file may expand to, its aliases expanded (an alias bomb is refused)
MAX_DEPTH = 30               # levels of nesting a file may have


def course_dir(name: str) -> Path:
    """The course's notebooks/ or params/ folder, which sit beside labs/ in the repository."""
    path = ROOT / name
    if not path.is_dir():
        raise LabsError(f"{path} is missing: labs needs the course's notebooks/ and params/ folders; "
                        f"install it from a clone of the repository with `pip install -e \".[dev]\"`.")
    return path


def assignments() -> dict:
    """Assignment name -> notebook path, from notebooks/NN_<name>.ipynb."""
    return {path.stem.split("_", 1)[1]: path for path in sorted(course_dir("notebooks").glob("[0-9][0-9]_*.ipynb"))}


def notebook(assignment: str) -> Path:
    known = assignments()
    if assignment not in known:
        raise LabsError(f"Unknown assignment {shown(assignment)}{did_you_mean(str(assignment), known)}; "
                        f"choose one of {', '.join(known)}.")
    return known[assignment]


@functools.cache
def declared_in(path: Path) -> dict:
    """The parameters that a notebook declares in its `parameters` cell, by name (the cell is where the defaults are
    written, once)."""
    cells = [c for c in json.loads(Path(path).read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
    return read_cell("".join(cells[0]["source"])) if cells else {}


def declared(assignment: str) -> dict:
    """The parameters of an assignment's notebook, by name."""
    return declared_in(notebook(assignment))


# --- files, read with limits ---------------------------------------------------------------------

class _Limited(yaml.SafeLoader):
    """YAML's safe loader, refusing a document nested deeper than MAX_DEPTH or whose aliases expand past MAX_VALUES
    values, before anything is built from it."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth, self.sizes = 0, {}

    def compose_node(self, parent, index):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooBig(f"it is nested deeper than {MAX_DEPTH} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if id(node) not in self.sizes:   # an alias is its anchor's node: counted again, whole, wherever it appears
            children = node.value if isinstance(node, yaml.SequenceNode) else \
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
            self.sizes[id(node)] = (node, 1 + sum(self.sizes[id(c)][1] for c in children))
        if self.sizes[id(node)][1] > MAX_VALUES:
            raise _TooBig(f"it expands to more than {MAX_VALUES:,} values (aliases that multiply)")
        return node


class _TooBig(Exception):
    pass


def parse(text: str, what: str):
    """YAML text, safely and with limits; a fault is one LabsError naming `what`."""
    try:
        return yaml.load(text, Loader=_Limited)
    except _TooBig as e:
        raise LabsError(f"{what} is refused: {e}; fix it.") from None
    except yaml.YAMLError as e:
        where = f" at line {e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        problem = getattr(e, "problem", None) or "it does not parse"
        raise LabsError(f"{what} is not valid YAML{where}: {problem}; fix it.") from None


def load_yaml(path) -> dict:
    """A parameter (or sweep) file: a YAML mapping. Missing, malformed, huge or hostile files are one clear error."""
    path = Path(path)
    if not path.is_file():
        raise LabsError(f"Parameter file {path} does not exist; check the path.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise LabsError(f"{path} is refused: it holds {path.stat().st_size:,} bytes, more than a parameter file "
                        f"can ({MAX_FILE_BYTES:,}); give the right file.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise LabsError(f"{path} cannot be read ({type(e).__name__}); give a YAML text file.") from None
    content = parse(text, str(path))
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise LabsError(f"{path} must be a mapping of names to values (e.g. `lr: 0.001`), "
                        f"not a {type(content).__name__}.")
    return content


def parse_value(text: str):
    """A command-line value, read as YAML: `0.01` -> float, `[512, 256]` -> list, `he` -> str."""
    if len(text) > MAX_FILE_BYTES:
        raise LabsError(f"A -p value of {len(text):,} characters is refused; give a short value.")
    try:
        return parse(text, f"The -p value {shown(text)}")
    except LabsError as e:
        if "is refused" in str(e):
            raise
        return text


# --- a run's parameters --------------------------------------------------------------------------

def smoke_values(assignment: str) -> dict:
    """The assignment's params/<assignment>/smoke.yaml."""
    return load_yaml(course_dir("params") / assignment / "smoke.yaml")


def shrink(values: dict, smoke: dict, keep=()) -> dict:
    """Make a run a smoke run whatever its files say: smoke.yaml's data settings (synthetic, n_train, n_test)
    hold, and it trains at most smoke.yaml's epochs, or a staged schedule at most its iterations and its largest
    batch (its other values sit below every file, as defaults).
    Values named in `keep` (given with -p) are the user's and stay as given."""
    values = {**values, **{k: smoke[k] for k in ("synthetic", "n_train", "n_test") if k in smoke and k not in keep}}
    for key in ("epochs", "eval_every"):
        if key in smoke and key not in keep:
            values[key] = min(values[key], smoke[key])
    if smoke.get("stages") and values.get("stages") and "stages" not in keep:   # shrunk in proportion, and no
        cap, length = (sum(stage["iterations"] for stage in s) for s in (smoke["stages"], values["stages"]))
        largest = max(max(s["batch_size"]) if isinstance(s["batch_size"], list) else s["batch_size"]
                      for s in smoke["stages"])   # batch larger than smoke.yaml's largest
        values["stages"] = [{**stage, "iterations": max(1, stage["iterations"] * cap // length) if length > cap
                             else stage["iterations"],
                             "batch_size": [min(b, largest) for b in stage["batch_size"]]
                             if isinstance(stage["batch_size"], list) else min(stage["batch_size"], largest)}
                            for stage in values["stages"]]
    return values


def combine(assignment: str, layers: list, smoke: bool = False, params: dict | None = None, keep=()) -> dict:
    """The full, validated parameters of a run: notebook defaults, then (with `smoke`) smoke.yaml, then each
    layer of values, later ones winning; a smoke run is then shrunk to smoke size, but for the names in `keep`."""
    params = params if params is not None else declared(assignment)
    small = smoke_values(assignment) if smoke else {}
    merged = {}
    for layer in [small, *layers]:
        merged.update(layer)
    for name in merged:
        if name in RUNNER_OWNED:
            raise LabsError(f"{name} is set by labs itself; use {RUNNER_OWNED[name]} instead.")
    values = {name: p.default for name, p in params.items() if name not in RUNNER_OWNED}
    values.update(validate(assignment, merged, params, hint=f"`labs list {assignment}`"))
    values = shrink(values, small, keep) if smoke else values
    check_together(assignment, values)
    return values


def resolve(assignment: str, files=(), overrides: dict | None = None, smoke: bool = False) -> dict:
    """The parameters of `labs run`: parameter files (paths, or their values already read) in order, then single
    overrides, which --smoke keeps as given (see combine)."""
    overrides = overrides or {}
    layers = [f if isinstance(f, dict) else load_yaml(f) for f in files]
    return combine(assignment, [*layers, overrides], smoke, keep=overrides.keys())
