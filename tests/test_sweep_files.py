"""The course's sweep files with --smoke.

Every run of every sweep file is validated (and shrunk to smoke size) by `sweep.load`, which is cheap. Running
costs about 15 s of CPU per run (a kernel, torch, the figures, the HTML), so one `labs sweep --smoke` runs only the
file whose runs take a path nothing else takes: FashionMNIST's losses (the multi-margin loss). Lab 04's method file
(one stage against two) trains its one-stage run in tests/test_ensemble.py. The other files vary values along
paths that the labs' own smoke runs and the unit tests take: pooling kinds and members (tests/test_models.py, lab
04's smoke run), optimizers (tests/test_params.py), batch sizes beyond the training split (tests/test_train.py),
learning rates, weight decays, dropouts, inits, depths and epochs.
"""
import csv

import pytest

from conftest import ROOT, labs
from labs import sweep

SWEEP_FILES = sorted((ROOT / "params" / "sweeps").glob("*.yaml"))
RUN = [ROOT / "params" / "sweeps" / "fashion_fcn_vs_lenet-loss.yaml"]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_run_of_every_sweep_file_is_valid_at_smoke_size(path):
    plan = sweep.load(path, smoke=True)
    assert plan.runs and all(run["synthetic"] for run in plan.runs.values())


@pytest.fixture(scope="module")
def some_sweeps(tmp_path_factory):
    """The sweep files in RUN, with --smoke, in one `labs sweep`."""
    out = tmp_path_factory.mktemp("all")
    proc = labs("sweep", *RUN, "--smoke", "--workers", "2", "--output", out, timeout=900)
    return out, proc


@pytest.mark.parametrize("path", RUN, ids=lambda p: p.stem)
def test_sweep_files_run_with_smoke(path, some_sweeps):
    out, proc = some_sweeps
    plan = sweep.load(path, smoke=True)
    folder = out / f"{plan.name}-smoke" if len(RUN) > 1 else out      # one sweep file: the output folder itself
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert {r["run"] for r in rows} == set(plan.runs), proc.stdout + proc.stderr
    assert all(r["status"] in ("ok", "diverged") for r in rows), proc.stdout     # nothing failed to run
    assert any(r["status"] == "ok" for r in rows) and (folder / "summary.html").is_file()
