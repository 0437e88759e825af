"""`labs assign`: an assignment for a course, made from the notebooks as they are (one source, no hand-kept student
copy). In OUTPUT/student/, each exercise (a `#@save` cell, or a cell tagged `exercise`: lab 01's epoch by hand) keeps
its signatures and docstrings, each body becomes a one-line stub, and a cell of public checks follows it, with the
numbers the reference gives (labutils.checks). OUTPUT/grader/ gets what grading needs and the student never sees:
the reference's code and the band of accuracies the reference reaches at grading size over several seeds."""

import ast
import copy
import functools
import inspect
import json
import statistics
import tempfile
from pathlib import Path

import nbformat

from labutils import LabsError, checks
from labutils.analysis import noise
from labutils.results import write_atomic
from labutils.vocab import DATASET_OF

from .lessons import MARK
from .params import assignments, notebook, resolve

SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def shape_of(assignment: str) -> tuple:
    return SHAPES[DATASET_OF.get(assignment, "mnist")]


def is_exercise(cell) -> bool:
    return cell.cell_type == "code" and (cell.source.startswith(MARK) or "exercise" in cell.metadata.get("tags", []))


def section(cells: list, i: int) -> str:
    """The heading of the section a cell is in."""
    heading = next((c.source for c in reversed(cells[:i]) if c.cell_type == "markdown" and c.source.startswith("#")),
                   "# the notebook")
    return heading.splitlines()[0].lstrip("# ").strip()


def stubbed(source: str, where: str) -> tuple:
    """An exercise cell as the student gets it, and the names it defines: each function and method keeps its
    signature, decorators and docstring, its body one line; a table (a dict) is left empty."""
    tree = ast.parse(source.removeprefix(MARK))
    names = []

    def stub(node, name):
        docstring = [node.body[0]] if ast.get_docstring(node) else []
        message = f"{name} is not written yet: the cell under '{where}'."
        node.body = docstring + [ast.parse(f"raise NotWritten({message!r})").body[0]]

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            stub(node, node.name)
        elif isinstance(node, ast.ClassDef):
            for method in (n for n in node.body if isinstance(n, ast.FunctionDef)):
                stub(method, node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            node.value = ast.Dict(keys=[], values=[])
        else:
            continue
        names.append(node.name if hasattr(node, "name") else node.targets[0].id)
    body = "\n\n\n".join(ast.unparse(node) for node in tree.body)
    return "from labutils.checks import NotWritten\n\n" + body, names


def reference(cells_source: str) -> dict:
    """The definitions of the reference's exercise cells, run in a namespace of their own."""
    namespace = {}
    exec(compile("import torch\nfrom torch import nn\nfrom labutils import lessons\n" + cells_source, "<reference>",
                 "exec"), namespace)
    return namespace


def variants(obj) -> list:
    """The keyword arguments a network's public checks call it with: its defaults, then each yes/no argument turned
    the other way and each rate that is off (0.0) turned on (lab 02's lenet5(modified=True), lenet5(dropout=0.5))."""
    if checks.network(obj) is None:
        return [{}]
    parameters = inspect.signature(obj).parameters.values()
    return [{}] + [{p.name: not p.default} if isinstance(p.default, bool) else {p.name: 0.5} for p in parameters
                   if isinstance(p.default, bool) or isinstance(p.default, float) and p.default == 0.0]


def student_version(assignment: str) -> tuple:
    """(the student's notebook, the reference's exercise source, {name: public expectations})."""
    nb = nbformat.read(notebook(assignment), as_version=4)
    shape, cells, sources, expected = shape_of(assignment), [], [], {}
    for i, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if not is_exercise(cell):
            cells.append(cell)
            continue
        reference_source = cell.source.removeprefix(MARK).strip()
        sources.append(reference_source)
        cell.source, names = stubbed(reference_source, section(nb.cells, i))
        cell.metadata["tags"] = sorted({*cell.metadata.get("tags", []), "exercise"})
        defined = reference("\n\n".join(sources))
        lines = ["from labutils.checks import check   # the public checks: the reference's numbers, from `labs assign`"]
        for name, kwargs in ((n, k) for n in names for k in variants(defined[n])):
            label = name + (f"({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")
            obj = functools.partial(defined[name], **kwargs) if kwargs else defined[name]
            expected[label] = {"shape": list(shape), "of": name, "kwargs": kwargs, **checks.describe(obj, shape)}
            if checks.network(obj) is not None:
                expected[label]["overfit"] = checks.overfit(obj, shape)
            call = f"lambda: {name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else name
            lines.append(f"check({label!r}, {call}, {expected[label]!r})")
        cells += [cell, nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["check"]})]
    nb.cells = cells
    nb.metadata["labs"] = {"assignment": assignment}
    return nb, "\n\n".join(sources), expected


def band(assignment: str, params: dict, seeds: int) -> dict:
    """Each model's test accuracy, run by the reference notebook at grading size (`params`) with seeds 0 to
    seeds - 1 on this machine: {model: [lowest, highest]}, widened by twice the binomial standard error."""
    from .runner import run
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            results = run(assignment, {**params, "seed": seed}, Path(tmp) / str(seed), stream=False)
            if results["status"] != "ok":
                raise LabsError(f"The reference {assignment} did not run at grading size ({results['error']}).")
            for name, m in results["models"].items():
                found.setdefault(name, []).append(m["test_accuracy"])
    n_test = params["n_test"]
    return {name: [min(a) - noise(statistics.mean(a), n_test), max(a) + noise(statistics.mean(a), n_test)]
            for name, a in found.items()}


def assign(names: list, output: Path, seeds: int = 3, overrides: dict | None = None) -> list:
    """Write OUTPUT/student/<notebook> and OUTPUT/grader/<assignment>.json for each assignment; returns the paths.
    Grading size: each assignment's smoke parameters, with `overrides`."""
    written = []
    for assignment in names or list(assignments()):
        params = resolve(assignment, [], overrides or {}, smoke=True)
        nb, source, expected = student_version(assignment)
        student = output / "student" / notebook(assignment).name
        write_atomic(student, nbformat.writes(nb))
        grader = output / "grader" / f"{assignment}.json"
        material = {"assignment": assignment, "shape": list(shape_of(assignment)), "reference": source,
                    "public": expected, "params": params, "band": band(assignment, params, seeds)}
        write_atomic(grader, json.dumps(material, indent=1) + "\n")
        written += [student, grader]
    return written
