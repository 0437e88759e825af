"""Faults found by hand, each through `labs` as a user meets it: one clear line, before any work."""
import gzip
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
import yaml

from conftest import all_ended, kernels, labs, start_labs, wait_for
from labutils import data, results


# --- output folders that cannot be written ------------------------------------------------

@pytest.mark.parametrize("where, cause", [
    ("/proc/no/such", "No such file or directory"),
    ("FILE/run", "Not a directory"),
])
def test_an_output_folder_that_cannot_be_made_is_one_line_before_anything_runs(tmp_path, where, cause):
    (tmp_path / "FILE").write_text("in the way")
    folder = where.replace("FILE", str(tmp_path / "FILE"))
    proc = labs("run", "mnist_mlp", "--smoke", "--output", folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and folder in proc.stderr and cause in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "epoch" not in proc.stdout


def test_a_sweep_into_an_unwritable_folder_is_refused_too(tmp_path):
    (tmp_path / "FILE").write_text("in the way")
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("assignment: mnist_mlp\nruns: [{name: a}]\n")
    proc = labs("sweep", sweep_file, "--smoke", "--output", tmp_path / "FILE" / "sweep")
    assert proc.returncode == 2 and "Not a directory" in proc.stderr and proc.stderr.count("\n") == 1


def test_an_error_while_writing_is_one_line_not_a_traceback(tmp_path):
    """`labs summary` into a sweep folder whose summary.md is a folder: the write fails with an OSError."""
    run = tmp_path / "sweep" / "a"
    run.mkdir(parents=True)
    results.write(run / "results.json", results.build("mnist_mlp", {}))
    (tmp_path / "sweep" / "sweep.yaml").write_text("assignment: mnist_mlp\nruns: [{name: a}]\n")
    (tmp_path / "sweep" / "summary.csv").mkdir()
    proc = labs("summary", tmp_path / "sweep")
    assert proc.returncode == 2 and "could not write" in proc.stderr and "summary.csv" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# --- data that is not what it claims to be ------------------------------------------------

def run_on(tmp_path, assignment="mnist_mlp"):
    """`labs run` on the data in tmp_path/data, as placed by hand; returns the process and its results."""
    proc = labs("run", assignment, "-p", "data_dir", tmp_path / "data", "-p", "download", "false", "-p", "epochs", "1",
                "-p", "n_train", "300", "-p", "n_test", "100", "--output", tmp_path / "run")
    return proc, json.loads((tmp_path / "run" / "results.json").read_text())


def assert_refused_before_training(proc, results, *fragments):
    assert proc.returncode == 1 and results["status"] == "failed" and results["models"] == {}
    for fragment in fragments + ("replace it with the original file",):
        assert fragment in results["error"], results["error"]
    assert "data.load(" in results["error"] and "Traceback" not in proc.stdout + proc.stderr
    assert " epoch " not in proc.stdout                       # nothing trained


def mnist_files(tmp_path, **replace):
    folder = data.write_synthetic("mnist", tmp_path / "data", n_train=300, n_test=100) / "MNIST" / "raw"
    for name, array in replace.items():
        data.write_idx(folder / data.IDX_FILES[name], array)
    return folder


def test_labels_that_disagree_in_number_with_the_images_are_refused(tmp_path):
    folder = mnist_files(tmp_path, train_y=torch.zeros(120, dtype=torch.uint8))
    proc, results = run_on(tmp_path)
    assert_refused_before_training(proc, results, str(folder / "train-labels-idx1-ubyte"), "holds 120 labels",
                                   "train-images-idx3-ubyte holds 300 images")


def test_a_label_outside_the_classes_is_refused(tmp_path):
    labels = torch.zeros(100, dtype=torch.uint8)
    labels[7] = 200
    folder = mnist_files(tmp_path, test_y=labels)
    proc, results = run_on(tmp_path)
    assert_refused_before_training(proc, results, str(folder / "t10k-labels-idx1-ubyte"), "the label 200",
                                   "outside the 10 classes")


def test_a_truncated_gz_file_is_refused(tmp_path):
    folder = mnist_files(tmp_path)
    raw = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:5000])   # cut short
    proc, results = run_on(tmp_path)
    assert_refused_before_training(proc, results, str(folder / "train-images-idx3-ubyte.gz"), "is damaged")
    assert "EOFError" not in results["error"]


def cifar_files(tmp_path, batch="data_batch_1", **change):
    folder = data.write_synthetic("cifar10", tmp_path / "data", n_train=300, n_test=100) / "cifar-10-batches-py"
    content = pickle.loads((folder / batch).read_bytes())
    content.update(change)
    (folder / batch).write_bytes(pickle.dumps(content))
    return folder


def test_a_cifar_batch_with_images_of_the_wrong_size_is_refused(tmp_path):
    folder = cifar_files(tmp_path, data=torch.zeros(60, 1000, dtype=torch.uint8).numpy())
    proc, results = run_on(tmp_path, "cifar10_cnn")
    assert_refused_before_training(proc, results, str(folder / "data_batch_1"), "not 3,072")


def test_a_cifar_batch_with_a_label_outside_0_to_9_is_refused(tmp_path):
    folder = cifar_files(tmp_path, batch="test_batch", labels=[12] + [0] * 99)
    proc, results = run_on(tmp_path, "cifar10_cnn")
    assert_refused_before_training(proc, results, str(folder / "test_batch"), "the label 12")


# --- a killed sweep, and two sweeps into one folder ---------------------------------------

def sweep_file(tmp_path, runs=4):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"assignment": "mnist_mlp", "params": {"hidden": [64, 64, 64]},
                                    "grid": {"seed": list(range(runs))}}))
    return path


def start_sweep(tmp_path, out, workers=2, runs=4):
    return start_labs("sweep", sweep_file(tmp_path, runs), "--smoke", "--workers", workers, "--output", out)


def test_a_killed_sweep_leaves_no_worker_or_kernel_running(tmp_path):
    out = tmp_path / "out"
    proc = start_sweep(tmp_path, out, runs=2)
    parent = psutil.Process(proc.pid)
    assert wait_for(lambda: len(kernels(proc.pid)) >= 1, 120), "no notebook kernel started"
    family = parent.children(recursive=True)                   # workers and their kernels
    os.kill(proc.pid, signal.SIGKILL)                          # killed outright: no chance to clean up
    proc.communicate(timeout=10)
    assert wait_for(lambda: all_ended(family), 10), [p.pid for p in family if p.is_running()]
    # made again, the sweep takes over the stale lock and clears what the killed runs left in their folders
    again = labs("sweep", sweep_file(tmp_path, runs=2), "--smoke", "--workers", "2", "--output", out)
    assert again.returncode == 0, again.stdout + again.stderr
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(("kernel-ipc", ".report.partial", ".labs-kernel"))]
    assert leftovers == [] and not (out / ".labs.lock").exists()


def test_a_second_sweep_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "out"
    first = start_sweep(tmp_path, out, workers=1)
    try:
        assert wait_for(lambda: (out / ".labs.lock").exists(), 60)
        second = labs("sweep", sweep_file(tmp_path), "--smoke", "--output", out)
        assert second.returncode == 2 and second.stderr.count("\n") == 1
        assert str(out) in second.stderr and f"process {first.pid}" in second.stderr
    finally:
        first.kill()
        first.communicate()


def test_a_stale_lock_of_a_dead_process_does_not_block(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".labs.lock").write_text(json.dumps({"pid": dead.pid, "started": time.time() - 5,
                                                      "host": __import__("socket").gethostname()}))
    path = tmp_path / "one.yaml"
    path.write_text("assignment: mnist_mlp\nparams: {hidden: [32, 32, 32]}\nruns: [{name: a}]\n")
    proc = labs("sweep", path, "--smoke", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert not (out / ".labs.lock").exists()


def test_a_preset_and_the_grid_setting_the_same_parameter_are_refused(tmp_path):
    path = tmp_path / "clash.yaml"
    path.write_text("assignment: mnist_mlp\nruns: [{name: fast, lr: 0.1}]\ngrid: {lr: [0.001, 0.01]}\n")
    proc = labs("sweep", path, "--smoke", "--output", tmp_path / "out")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "run 'fast' sets lr, which the grid also varies" in proc.stderr
    assert not (tmp_path / "out").exists()
