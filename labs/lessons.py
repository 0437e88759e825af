"""labutils/lessons.py is generated from the notebooks' `#@save` cells, as d2l's d2l/torch.py is from its chapters:
each lab defines its networks (and lab 04 its L2 penalty) where it teaches them, and what another lab, a test or a
benchmark reuses is this generated copy, never a second hand-kept one. labutils/declared.py, the names and types
each notebook's parameters cell declares (so a line typed again without its annotation is still that parameter),
is generated the same way. After editing a `#@save` cell or a parameters cell:

    python -m labs.lessons          # rewrites both; tests/test_lessons.py fails until it is run
"""

import ast
import re
import sys
from pathlib import Path

import nbformat

from .params import assignments, declared

MARK = "#@save"
LIBRARY = Path(__file__).resolve().parent.parent / "labutils"
HEADER = '''"""The lessons' code that other labs, the tests and the benchmarks reuse: GENERATED from the notebooks' `#@save`
cells by `python -m labs.lessons`; do not edit here, edit the notebook that teaches it (and documents it: its
docstrings are there) and run that command. Each definition is the notebook's own, in the notebooks' order."""

import torch
from torch import nn
'''


def saved_cells(notebook: Path) -> list:
    """The source of each `#@save` cell of a notebook, without its mark and its docstrings (the notebook keeps them);
    `lessons.x` becomes `x` (the same module)."""
    cells = nbformat.read(notebook, as_version=4).cells
    return [without_docstrings(re.sub(r"\blessons\.", "", cell.source.split("\n", 1)[1]).strip()) for cell in cells
            if cell.cell_type == "code" and cell.source.startswith(MARK)]


def without_docstrings(source: str) -> str:
    """`source` less the lines of its functions' and classes' docstrings."""
    drop = {line for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and ast.get_docstring(node) is not None
            for line in range(node.body[0].lineno, node.body[0].end_lineno + 1)}
    return "\n".join(line for k, line in enumerate(source.splitlines(), 1) if k not in drop)


def generate() -> str:
    """The text of labutils/lessons.py, from the notebooks as they are."""
    parts = [HEADER]
    for notebook in assignments().values():
        if saved_cells(notebook):
            parts.append(f"\n# --- from notebooks/{notebook.name}\n\n" + "\n\n\n".join(saved_cells(notebook)) + "\n")
    return "\n".join(parts)


def generate_declared() -> str:
    """The text of labutils/declared.py: each notebook's parameters, name -> type, from its parameters cell."""
    table = {name: {p.name: p.type for p in declared(name).values()} for name in assignments()}
    lines = ",\n".join(f"    {name!r}: {types!r}" for name, types in table.items())
    head = ('"""The parameters each lab\'s notebook declares, name -> type: GENERATED from the notebooks\' parameters '
            'cells by\n`python -m labs.lessons`; do not edit."""\n\n')
    return head + "DECLARED = {\n" + lines + ",\n}\n"


def main() -> int:
    for path, text in ((LIBRARY / "lessons.py", generate()), (LIBRARY / "declared.py", generate_declared())):
        if path.exists() and path.read_text() == text:
            print(f"{path.name} is up to date")
        else:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
