"""labutils/lessons.py is generated from the notebooks' `#@save` cells, as d2l's d2l/torch.py is from its chapters:
each lab defines its networks (and lab 04 its L2 penalty) where it teaches them, and what another lab, a test or a
benchmark reuses is this generated copy, never a second hand-kept one. After editing a `#@save` cell:

    python -m labs.lessons          # rewrites labutils/lessons.py; tests/test_lessons.py fails until it is run
"""

import re
import sys
from pathlib import Path

import nbformat

from .params import assignments

MARK = "#@save"
TARGET = Path(__file__).resolve().parent.parent / "labutils" / "lessons.py"
HEADER = '''"""The lessons' code that other labs, the tests and the benchmarks reuse: GENERATED from the notebooks' `#@save`
cells by `python -m labs.lessons`; do not edit here, edit the notebook that teaches it and run that command.
Each definition is the notebook's own, in the notebooks' order."""

import torch
from torch import nn
'''


def saved_cells(notebook: Path) -> list:
    """The source of each `#@save` cell of a notebook, without its mark; `lessons.x` becomes `x` (the same module)."""
    cells = nbformat.read(notebook, as_version=4).cells
    return [re.sub(r"\blessons\.", "", cell.source.split("\n", 1)[1]).strip() for cell in cells
            if cell.cell_type == "code" and cell.source.startswith(MARK)]


def generate() -> str:
    """The text of labutils/lessons.py, from the notebooks as they are."""
    parts = [HEADER]
    for notebook in assignments().values():
        for source in saved_cells(notebook):
            parts.append(f"\n# --- from notebooks/{notebook.name}\n\n{source}\n")
    return "\n".join(parts)


def main() -> int:
    text = generate()
    if TARGET.exists() and TARGET.read_text() == text:
        print(f"{TARGET.name} is up to date")
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
