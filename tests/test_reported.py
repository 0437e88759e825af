"""The original reports' numbers live in labutils/reports/<assignment>.yaml; every one that the notebooks' prose and
README quote as the report's is checked against those files here, so a quote cannot drift from its source."""
import re

import nbformat
import pytest
import yaml

from conftest import ROOT
from labutils.reported import reported

LABS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def numbers(value) -> set:
    """Every number in a (nested) yaml value, rounded to 2 decimals."""
    if isinstance(value, dict):
        return set().union(*map(numbers, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(numbers, value)) if value else set()
    return {round(float(value), 2)} if isinstance(value, (int, float)) and not isinstance(value, bool) else set()


def quoted(text: str) -> set:
    """The percentages a text quotes: 88.4 %, 66.89-69.13 %, 99.49 % and 99.41 %."""
    found = set()
    for match in re.finditer(r"(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))? ?%", text):
        found |= {round(float(g), 2) for g in match.groups() if g}
    return found


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_the_assignment_cell_quotes_only_the_reports_numbers(path):
    intro = nbformat.read(path, as_version=4).cells[0].source          # what the assignment asks and the report got
    assignment = path.stem.split("_", 1)[1]
    source = numbers(reported(assignment))
    assert quoted(intro) and quoted(intro) <= source, sorted(quoted(intro) - source)


def test_readmes_report_columns_quote_only_the_reports_numbers():
    every = set().union(*(numbers(yaml.safe_load(p.read_text())) for p in (ROOT / "labutils" / "reports").glob("*.yaml")))
    columns = 0
    for table in re.findall(r"(?:^\|.*\|\n)+", (ROOT / "README.md").read_text(), flags=re.M):
        lines = table.strip().splitlines()
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        if "the report" in header:
            columns += 1
            k = header.index("the report")
            for line in lines[2:]:
                cell = line.strip("|").split("|")[k]
                assert quoted(cell) <= every, (cell, sorted(quoted(cell) - every))
    assert columns >= 5                                                  # the accuracy table and the four analyses
