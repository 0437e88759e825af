"""Faults, third round, each met the way a user meets it, through `labs`: nothing of the user's is ever deleted, no
data file runs code, a stopped sweep stops, every range is checked before a run starts, downloads wait for each
other, and names and files that could only fail late are refused early. (A sweep file edited is summarized as it
now stands: tests/test_sweep.py, on its sweep.)"""
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, labs, one_line, wait_for
from labutils import LabsError, data

SMALL = ["-p", "hidden", "[32, 32, 32]"]


# --- 1. nothing of the user's is deleted --------------------------------------------------------

def test_a_folder_of_someone_elses_files_is_refused_and_a_run_folder_keeps_what_was_added(tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("holiday.png", ".notes.tmp", "kernel-1.json", "params.yaml"):
        (pics / name).write_text("mine")
    proc = labs("run", "mnist_mlp", "--smoke", *SMALL, "--output", pics)
    assert proc.returncode == 2 and one_line(proc) and "already holds files that labs did not write" in proc.stderr
    assert proc.stdout == "" and sorted(p.name for p in pics.iterdir()) == sorted(
        ["holiday.png", ".notes.tmp", "kernel-1.json", "params.yaml"]) and all(
        (pics / n).read_text() == "mine" for n in ("holiday.png", "params.yaml"))
    sweep = tmp_path / "s.yaml"
    sweep.write_text("assignment: mnist_mlp\nparams: {hidden: [32, 32, 32]}\ngrid: {lr: [0.01]}\n")
    proc = labs("sweep", sweep, "--smoke", "--output", pics)
    assert proc.returncode == 2 and one_line(proc) and "already holds files that labs did not write" in proc.stderr

    run = tmp_path / "run"
    assert labs("run", "mnist_mlp", "--smoke", *SMALL, "--output", run).returncode == 0
    assert not stat.S_ISVTX & run.stat().st_mode                        # no sticky bit left by the kernel's files
    (run / "mine.png").write_text("mine")                               # added by the user between two runs
    (run / ".mine.tmp").write_text("mine")
    assert labs("run", "mnist_mlp", "--smoke", *SMALL, "--output", run).returncode == 0
    assert (run / "mine.png").read_text() == "mine" and (run / ".mine.tmp").read_text() == "mine"
    assert (run / "curves.png").is_file() and "mine.png" not in json.loads((run / ".labs-run").read_text())["files"]


# --- 2. no data file runs code ------------------------------------------------------------------

class _Payload:
    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def test_a_crafted_cifar_batch_runs_nothing_and_is_the_damaged_file_sentence(tmp_path):
    root = data.write_synthetic("cifar10", tmp_path / "data", n_train=50, n_test=20)
    flag = tmp_path / "ran"
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({"data": _Payload(flag), "labels": []}))
    with pytest.raises(LabsError, match="data_batch_1 is damaged or not a CIFAR-10 batch file"):
        data.load("cifar10", str(root), download=False)
    proc = labs("run", "cifar10_cnn", "-p", "data_dir", root, "-p", "download", "false", "-p", "models", "[lenet5]",
                "-p", "ensemble", "0", "--output", tmp_path / "run")
    assert proc.returncode == 1 and "data_batch_1 is damaged or not a CIFAR-10 batch file" in proc.stdout + proc.stderr
    assert not flag.exists()                                                  # the payload never ran
    ours = data.load("cifar10", synthetic=True, n_train=50, n_test=20)        # real batches still read
    assert len(ours.train) == 45


# --- 3. a stopped sweep stops: tests/test_faults_results.py (SIGTERM) and tests/test_sweep.py (Ctrl-C) ------------


# --- 4. every bound checked before anything runs --------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["mnist_mlp", "-p", "seed", "99999999999999999999999"], "seed must be from 0 to 4,294,967,295"),
    (["fashion_fcn_vs_lenet", "-p", "shift", "30"], "shift must be from 0 to 27 pixels, not 30"),
    (["cifar10_cnn", "-p", "model3_widths", "[8,8,8,8,8,8]"], "and at most 5 of them (each stage halves"),
    (["mnist_mlp", "--smoke", "-p", "val_fraction", "0.995", "-p", "n_train", "0"],
     "n_train 0 (all: 1,000) with val_fraction 0.995 leaves 5 training images"),
])
def test_values_that_would_fail_inside_the_notebook_are_refused_before_it_starts(argv, message, tmp_path):
    proc = labs("run", *argv, "--output", tmp_path / "run")
    assert proc.returncode == 2 and one_line(proc) and message in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


# --- 5. two downloads into one folder -------------------------------------------------------------

def test_a_second_download_into_a_folder_waits_for_the_first_and_then_finds_the_files(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with data.download_lock(root, "fashion_mnist"):          # the first download, in progress
        second = subprocess.Popen([sys.executable, "-m", "labs", "data", "download", "fashion_mnist", "--data-dir",
                                   str(root)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert second.poll() is None                          # it waits; it does not download beside the first
        data.write_synthetic("fashion_mnist", root, n_train=50, n_test=20)   # the first one's files arrive
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0 and f"fashion_mnist: in {root}" in stdout, stderr


# --- 6. a sweep file edited since: tests/test_sweep.py, on its sweep ---------------------------------

# --- 7. misleading or late ------------------------------------------------------------------------

def test_labs_summary_with_a_reference_that_is_no_mapping_is_one_line(tmp_path):
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    from labutils import results
    results.write(out / "a" / "results.json", results.build("mnist_mlp", {"seed": 0}, setting="a"))
    (out / "sweep.yaml").write_text("assignment: mnist_mlp\nreference: [1, 2]\n")
    proc = labs("summary", out)
    assert proc.returncode == 2 and one_line(proc) and "`reference` must be a mapping" in proc.stderr


def test_a_fifo_named_results_json_does_not_hang_the_index_and_symlinked_runs_are_listed(tmp_path):
    from labutils import results
    outputs, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    (outputs / "mnist_mlp" / "stuck").mkdir(parents=True)
    os.mkfifo(outputs / "mnist_mlp" / "stuck" / "results.json")
    (elsewhere / "run").mkdir(parents=True)
    results.write(elsewhere / "run" / "results.json", results.build("mnist_mlp", {"seed": 0}))
    (outputs / "linked").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(outputs)                               # a link back up: walked once
    proc = labs("index", outputs, timeout=30)
    assert proc.returncode == 0 and "not a regular file" in proc.stderr
    assert "linked/run" in (outputs / "index.html").read_text()


def test_unknown_datasets_are_refused_before_any_download(tmp_path):
    proc = labs("data", "download", "fashion_mnist", "fooo", "--data-dir", tmp_path)
    assert proc.returncode == 2 and one_line(proc) and "Unknown dataset 'fooo'" in proc.stderr
    assert "(did you mean" in proc.stderr or "choose one of mnist, fashion_mnist, cifar10" in proc.stderr
    assert list(tmp_path.iterdir()) == []
