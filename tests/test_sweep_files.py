"""The course's sweep files with --smoke.

Every run of every sweep file is validated (and shrunk to smoke size) by `sweep.load`, which is cheap. Running
costs about 10 s of CPU per run (a kernel, torch, the figures, the HTML), so one `labs sweep --smoke` runs the
files whose runs take different code paths: lab 04's three (pooling kinds, 1 to 4 members, one stage against
two), the MLP's optimizers, and FashionMNIST's batch sizes (10 to 1,000, beyond the smoke data's 540 images) and
losses. The other files vary numbers along paths that these runs, the labs' own smoke runs and the unit tests
take (a learning rate, a weight decay, a dropout, an init, a depth, epochs).
"""
import csv

import pytest

from conftest import ROOT, labs
from labs import sweep

SWEEP_FILES = sorted((ROOT / "params" / "sweeps").glob("*.yaml"))
RUN = [ROOT / "params" / "sweeps" / f"{name}.yaml" for name in (
    "mnist_cnn_ensemble-pool", "mnist_cnn_ensemble-members", "mnist_cnn_ensemble-method", "mnist_mlp-optimizer",
    "fashion_fcn_vs_lenet-batch-size", "fashion_fcn_vs_lenet-loss")]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_run_of_every_sweep_file_is_valid_at_smoke_size(path):
    plan = sweep.load(path, smoke=True)
    assert plan.runs and all(run["synthetic"] for run in plan.runs.values())


@pytest.fixture(scope="module")
def some_sweeps(tmp_path_factory):
    """The sweep files in RUN, with --smoke, in one `labs sweep` (one set of workers for all)."""
    out = tmp_path_factory.mktemp("all")
    proc = labs("sweep", *RUN, "--smoke", "--workers", "2", "--output", out, timeout=900)
    return out, proc


@pytest.mark.parametrize("path", RUN, ids=lambda p: p.stem)
def test_sweep_files_run_with_smoke(path, some_sweeps):
    out, proc = some_sweeps
    plan = sweep.load(path, smoke=True)
    folder = out / f"{plan.name}-smoke"
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert {r["run"] for r in rows} == set(plan.runs), proc.stdout + proc.stderr
    assert all(r["status"] in ("ok", "diverged") for r in rows), proc.stdout     # nothing failed to run
    assert any(r["status"] == "ok" for r in rows) and (folder / "summary.html").is_file()
