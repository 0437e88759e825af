"""Faults, second round, each through `labs` as a user meets it: two runs in one folder and SIGTERM, a full disk,
values given on the command line, splits too small to learn from, and what a failed rerun leaves behind
(tests/test_faults_results.py has the rest)."""
import json
import resource
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, all_ended, kernels, labs, one_line, start_labs, wait_for
from labutils import results
from labs import records

SMALL = ["-p", "hidden", "[32, 32, 32]"]


def whole(folder):
    """Every file of a run folder is whole: PNGs end with their IEND chunk, JSON files parse, no temporary files."""
    for path in folder.iterdir():
        assert not path.name.endswith(".tmp") and not path.name.startswith(".report.partial"), path
        if path.suffix == ".png":
            assert path.read_bytes().endswith(b"IEND\xaeB`\x82"), path
        if path.suffix in (".json", ".ipynb"):
            json.loads(path.read_text())


# --- 1. two runs, one folder ------------------------------------------------------------------

def test_a_second_run_into_a_folder_in_use_is_refused_and_sigterm_ends_the_first_cleanly(tmp_path):
    out = tmp_path / "run"
    first = start_labs("run", "mnist_mlp", "--smoke", *SMALL, "-p", "epochs", "400", "--output", out)
    try:
        assert wait_for(lambda: list(out.glob(".labs-kernel/kernel-*.json")), 60), "the first run's kernel never started"
        second = labs("run", "mnist_mlp", "--smoke", *SMALL, "--output", out)
        assert second.returncode == 2 and one_line(second)
        assert str(out) in second.stderr and f"another `labs run` (process {first.pid}" in second.stderr
        kernel = kernels(first.pid)
        first.send_signal(signal.SIGTERM)                       # `timeout`, a closed terminal: like Ctrl-C
        stdout, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert wait_for(lambda: all_ended(kernel), 10)
    assert json.loads((out / "results.json").read_text())["status"] == "failed"
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(("kernel-", ".labs.", ".labs-kernel", ".report"))]
    assert leftovers == []                                      # no lock, no connection file, no partial report
    whole(out)


# --- 2. a full disk ---------------------------------------------------------------------------

def run_with_file_limit(limit: int, out, *given):
    """`labs run` where no file may grow past `limit` bytes: writes beyond it fail as on a full disk."""
    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "labs", "run", "mnist_mlp", "--smoke", *SMALL, *given,
                           "--output", str(out)], cwd=ROOT, capture_output=True, text=True, preexec_fn=cap, timeout=300)


@pytest.fixture(scope="module")
def smoke_folder(tmp_path_factory):
    """A smoke run's folder."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert labs("run", "mnist_mlp", "--smoke", *SMALL, "--output", out).returncode == 0
    return out


@pytest.fixture(scope="module")
def sizes(smoke_folder):
    """The sizes of a smoke run's files, to put the limit between them."""
    return {p.name: p.stat().st_size for p in smoke_folder.iterdir()}


def test_a_full_disk_early_in_a_run_is_one_line_and_leaves_only_whole_files(tmp_path, sizes):
    out = tmp_path / "run"
    # 80 images: the synthetic data files fit under the limit, the first figure does not
    proc = run_with_file_limit(max(sizes["samples.png"] // 2, 70_000), out, "-p", "n_train", "80", "-p", "n_test", "40")
    assert proc.returncode == 2 and one_line(proc), proc.stdout + proc.stderr
    assert "could not write" in proc.stderr and "samples.png" in proc.stderr and "free some disk space" in proc.stderr
    whole(out)
    assert not (out / "samples.png").exists()
    assert records.read(out)["status"] == "failed" and "samples.png" in records.read(out)["error"]


def test_a_full_disk_that_cuts_the_report_short_leaves_no_report_and_says_so(tmp_path, sizes):
    out = tmp_path / "run"
    proc = run_with_file_limit(sizes["report.ipynb"] // 2, out, "-p", "n_train", "80", "-p", "n_test", "40")
    assert proc.returncode == 2 and one_line(proc) and "report.ipynb: File too large" in proc.stderr, proc.stderr
    whole(out)
    assert not (out / "report.ipynb").exists() and not (out / "report.html").exists()
    assert records.read(out)["status"] == "failed"


def test_a_full_disk_late_in_a_run_is_not_ok_and_a_sweep_would_redo_it(tmp_path, sizes):
    out = tmp_path / "run"
    assert sizes["report.html"] > sizes["report.ipynb"]
    limit = (sizes["report.ipynb"] + sizes["report.html"]) // 2                                # only the HTML fails
    proc = run_with_file_limit(limit, out)
    assert proc.returncode == 2 and one_line(proc) and "report.html" in proc.stderr, proc.stdout + proc.stderr
    whole(out)
    assert not (out / "report.html").exists() and (out / "report.ipynb").is_file()
    record = records.read(out)
    assert record["status"] == "failed" and "report.html" in record["error"]
    from labs import sweep
    assert not sweep.is_done(out, record["params"])


# --- 6. values the user gave ------------------------------------------------------------------

def test_smoke_keeps_the_values_given_with_p_and_names_those_of_files_it_replaces(tmp_path):
    (tmp_path / "mine.yaml").write_text("n_train: 0\nlr: 0.002\n")
    proc = labs("run", "mnist_mlp", "--smoke", *SMALL, "-f", tmp_path / "mine.yaml", "-p", "epochs", "3",
                "-p", "n_test", "50", "--output", tmp_path / "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--smoke replaces n_train 0 by 600 from your files (give a value with -p to keep it)" in proc.stdout
    record = records.read(tmp_path / "run")
    assert len(record["models"]["mlp"]["history"]) == 3 and sum(map(sum, record["models"]["mlp"]["confusion_matrix"])) == 50
    assert record["params"]["lr"] == 0.002


@pytest.mark.parametrize("given, message", [
    (["-p", "val_fraction", "0.99"], "n_train 600 with val_fraction 0.99 leaves 6 training images, too few"),
    (["-p", "n_train", "3"], "n_train 3 with val_fraction 0.1 leaves 3 training images, too few to learn from"),
])
def test_a_split_too_small_to_learn_from_is_refused_before_anything_runs(tmp_path, given, message):
    proc = labs("run", "mnist_mlp", "--smoke", *given, "--output", tmp_path / "run")
    assert proc.returncode == 2 and one_line(proc) and message in proc.stderr and not (tmp_path / "run").exists()


# --- 8. what runs leave behind ------------------------------------------------------------------

def test_a_failed_rerun_into_a_folder_leaves_nothing_of_the_run_before(tmp_path, sizes, smoke_folder):
    out = smoke_folder                                          # the sizes are taken: this folder may change now
    assert list(out.glob("*.png"))
    failed = labs("run", "mnist_mlp", "-p", "download", "false", "-p", "data_dir", tmp_path / "none", "--output", out)
    assert failed.returncode == 1 and records.read(out)["status"] == "failed"
    assert not list(out.glob("*.png")) and not list(out.glob(".labs-kernel"))      # a report never mixes two runs
