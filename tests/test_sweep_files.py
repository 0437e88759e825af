"""Every sweep file of the course runs with --smoke (all of them in one `labs sweep`, sharing the workers)."""
import csv

import pytest

from conftest import ROOT, labs
from labutils import sweep

SWEEP_FILES = sorted((ROOT / "params" / "sweeps").glob("*.yaml"))


@pytest.fixture(scope="module")
def all_sweeps(tmp_path_factory):
    """Every sweep file of the course, run with --smoke in one `labs sweep` (one set of workers for all)."""
    out = tmp_path_factory.mktemp("all")
    proc = labs("sweep", *SWEEP_FILES, "--smoke", "--workers", "2", "--output", out, timeout=900)
    return out, proc


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_sweep_file_runs_with_smoke(path, all_sweeps):
    out, proc = all_sweeps
    plan = sweep.load(path, smoke=True)
    folder = out / f"{plan.name}-smoke"
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert {r["run"] for r in rows} == set(plan.runs), proc.stdout + proc.stderr
    assert all(r["status"] in ("ok", "diverged") for r in rows), proc.stdout     # nothing failed to run
    assert any(r["status"] == "ok" for r in rows) and (folder / "summary.html").is_file()
