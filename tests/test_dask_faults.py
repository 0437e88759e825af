"""Sweeps on a Dask cluster keep the promises of local sweeps when the cluster fails. A real `dask scheduler` and
`dask worker` (two worker processes, one thread each) run as subprocesses on loopback: the scheduler killed during
a sweep, labs stopped with SIGTERM, a worker killed, and workers that cannot see the output folder (a worker in its
own mount namespace, with another tmpfs over that folder). A worker killed during a sweep loses no run."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from conftest import ROOT, wait_for

SPEC = {"assignment": "mnist_mlp", "name": "d", "params": {"hidden": [128, 128, 128], "epochs": 2},
        "grid": {"seed": [1, 2, 3]}}   # two runs in flight on the two worker processes, one waiting
ALL_OK = {"seed-1": "ok", "seed-2": "ok", "seed-3": "ok"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`dask scheduler` and `dask worker --nworkers 2 --nthreads 1`, each in its own process group."""

    def __init__(self, folder, worker_prefix=()):
        self.folder, self.port = folder, _port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = self._start("scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                                   "127.0.0.1", "--port", str(self.port), "--dashboard-address", ":0"])
        self.workers = self._start("workers", [*worker_prefix, sys.executable, "-m", "distributed.cli.dask_worker",
                                               self.address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                                               "--death-timeout", "120"])

    def _start(self, name, command):
        log = open(self.folder / f"{name}-{self.port}.log", "w")
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @staticmethod
    def kill(process):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self):
        self.kill(self.workers)
        self.kill(self.scheduler)


@pytest.fixture
def sweep(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def start_sweep(path, cluster, out):
    return subprocess.Popen([sys.executable, "-m", "labs", "sweep", str(path), "--smoke", "--scheduler",
                             cluster.address, "--output", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def statuses(out) -> dict:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in sorted(out.glob("*/results.json"))}


def files(out) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def kill_a_worker_in_flight(cluster):
    """SIGKILL one worker process with its nanny and the kernel of the run it is making."""
    kernels = [p for p in psutil.Process(cluster.workers.pid).children(recursive=True)
               if "ipykernel" in " ".join(p.cmdline())]
    nanny = next(p for p in psutil.Process(cluster.workers.pid).children() if kernels[0] in p.children(recursive=True))
    for process in [*nanny.children(recursive=True), nanny]:
        process.kill()


def test_a_lost_scheduler_is_one_line_with_true_statuses_and_a_summary_and_the_same_command_finishes(sweep, tmp_path):
    out, cluster = tmp_path / "out", Cluster(tmp_path)
    try:
        labs = start_sweep(sweep, cluster, out)
        assert wait_for(lambda: "ok" in statuses(out).values(), 120)          # a run has finished
        time.sleep(1)
        Cluster.kill(cluster.scheduler)
        stdout, stderr = labs.communicate(timeout=120)
    finally:
        cluster.close()
    assert labs.returncode == 2 and stderr.count("\n") == 1 and "Traceback" not in stdout + stderr
    line = stderr.strip()
    assert line.startswith(f"labs: error: the Dask scheduler at {cluster.address} was lost ")
    assert line.endswith(" did not begin; run the same command again to finish it.")
    finished = int(line.split("; ")[1].split(" run")[0])
    on_disk = statuses(out)
    assert finished >= 1 and list(on_disk.values()).count("ok") >= finished     # nothing marked failed by the loss
    for run, status in on_disk.items():                                          # what was printed is what is there
        assert f"{run}: {status}" in stdout or f"{run}: was running on a worker" in stdout
    assert (out / "summary.csv").exists() and (out / "summary.html").exists()   # written by labs, from disk
    # the same command on a new cluster finishes the sweep, though one of its workers is killed in the middle
    again = Cluster(tmp_path)
    try:
        labs = start_sweep(sweep, again, out)
        assert wait_for(lambda: [p for p in psutil.Process(again.workers.pid).children(recursive=True)
                                 if "ipykernel" in " ".join(p.cmdline())], 120)
        time.sleep(1)
        kill_a_worker_in_flight(again)
        stdout, stderr = labs.communicate(timeout=240)
    finally:
        again.close()
    assert labs.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert f"Running on the Dask cluster at {again.address}" in stdout and "Traceback" not in stderr
    assert statuses(out) == ALL_OK and "3 runs: 3 ok" in stdout
    assert {json.loads((out / run / "results.json").read_text())["params"]["seed"] for run in ALL_OK} == {1, 2, 3}


def test_sigterm_stops_the_runs_on_the_workers_and_nothing_writes_after_labs_exits(sweep, tmp_path):
    out, cluster = tmp_path / "out", Cluster(tmp_path)
    try:
        labs = start_sweep(sweep, cluster, out)
        assert wait_for(lambda: len(list(out.glob("*/.labs.lock"))) == 2, 120)   # two runs in flight
        time.sleep(2)
        labs.send_signal(signal.SIGTERM)
        stdout, stderr = labs.communicate(timeout=60)
        at_exit = files(out)
        time.sleep(6)                                                           # longer than a run takes (4 s)
        assert files(out) == at_exit                                            # nothing written after the exit
    finally:
        cluster.close()
    assert labs.returncode == 130 and "Traceback" not in stderr
    assert 'labs: stopped 2 runs in flight (' in stderr and 'their folders say "stopped"' in stderr
    stopped = statuses(out)
    assert list(stopped.values()) == ["stopped", "stopped"]
    again = Cluster(tmp_path)
    try:
        labs = start_sweep(sweep, again, out)
        stdout, stderr = labs.communicate(timeout=240)
    finally:
        again.close()
    assert labs.returncode == 0 and "already done" not in stdout                  # the stopped runs are made again
    assert statuses(out) == ALL_OK


def test_workers_that_cannot_see_the_output_folder_are_refused_in_one_line_before_any_run(sweep, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    hide = ("unshare", "-m", "sh", "-c", f'mount -t tmpfs none {out} && exec "$0" "$@"')   # their own, empty one
    cluster = Cluster(tmp_path, hide)
    try:
        proc = subprocess.run([sys.executable, "-m", "labs", "sweep", str(sweep), "--smoke", "--scheduler",
                               cluster.address, "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    finally:
        cluster.close()
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("labs: error: The Dask worker at tcp://127.0.0.1:")
    assert f"cannot see the output folder {out} " in proc.stderr and "filesystem every worker shares" in proc.stderr
    assert not [p for p in out.iterdir() if p.is_dir()]                          # no run began
