"""Faults, third round, each met the way a user meets it, through `labs`: nothing of the user's is ever deleted, no
data file runs code, a stopped sweep stops, every range is checked before a run starts, downloads wait for each
other, a sweep file edited is summarized as it now stands, and names and files that could only fail late are
refused early."""
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
