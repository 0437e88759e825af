"""Faults, second round (continued): damaged results files, diverged runs on resume, a scheduler without workers,
a sweep ended by SIGTERM, and summaries of folders that are not one sweep; each through `labs`."""
import re
import signal
import subprocess
import sys
import time

import psutil
import yaml

from conftest import ROOT, all_ended, labs, one_line, wait_for
from labutils import results
from labs import records

SMALL = ["-p", "hidden", "[32, 32, 32]"]


# --- 3. results files that are valid JSON but not a run's record ----------------------------------

BROKEN = ["[1, 2]", '"a string"', '{"models": "x"}',
          '{"assignment": "mnist_mlp", "status": "ok", "params": {}, "models": {"mlp": {"test_accuracy": "0.9"}}}']


def test_unusable_results_files_are_named_once_and_break_no_command(tmp_path):
    for k, content in enumerate(BROKEN):
        folder = tmp_path / "outputs" / "sweeps" / "s" / f"bad-{k}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(content)
    empty = tmp_path / "outputs" / "mnist_mlp" / "empty"
    empty.mkdir(parents=True)
    (empty / "results.json").write_text("{}")
    sweep_dir = tmp_path / "outputs" / "sweeps" / "s"
    (sweep_dir / "sweep.yaml").write_text("assignment: mnist_mlp\nruns: [{name: good}]\n")
    good = sweep_dir / "good"
    good.mkdir()
    results.write(good / "results.json", results.build("mnist_mlp", {"lr": 0.1}, models={
        "mlp": {"test_accuracy": 0.9, "test_loss": 0.3, "history": [{"epoch": 1, "val_accuracy": 0.9}]}}))

    run = labs("run", "mnist_mlp", "--smoke", *SMALL, cwd=tmp_path)          # the index is rebuilt afterwards
    assert run.returncode == 0 and "Traceback" not in run.stderr and "mnist_mlp: ok" in run.stdout
    assert all(run.stderr.count(f"outputs/sweeps/s/bad-{k}/results.json") == 1 for k in range(len(BROKEN))), run.stderr
    index = labs("index", tmp_path / "outputs")
    assert index.returncode == 0 and index.stderr.count("labs: warning:") == len(BROKEN) + 1   # and the "{}"
    assert "bad-0" not in (tmp_path / "outputs" / "index.html").read_text()
    summary = labs("summary", sweep_dir)
    assert summary.returncode == 0 and "1 run: 1 ok" in summary.stdout and "Traceback" not in summary.stderr
    assert summary.stderr.count("labs: warning:") == len(BROKEN)


def test_a_sweep_redoes_a_run_whose_results_file_is_unusable(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"assignment": "mnist_mlp", "params": {"hidden": [32, 32, 32]},
                                    "runs": [{"name": "a"}]}))
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / ".labs-sweep").write_text("a sweep folder of labs\n")     # a sweep of labs' ...
    (tmp_path / "out" / "a" / "results.json").write_text('{"models": "x"}')      # ... whose run's record is damaged
    proc = labs("sweep", path, "--smoke", "--output", tmp_path / "out")
    assert proc.returncode == 0 and "a: ok" in proc.stdout and "already done" not in proc.stdout
    assert "is not a usable results.json" in proc.stderr and records.read(tmp_path / "out" / "a")["status"] == "ok"


# --- 4. a diverged run is a result --------------------------------------------------------------

def test_a_diverged_run_is_not_trained_again_on_resume(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"assignment": "mnist_mlp", "params": {"hidden": [32, 32, 32], "optimizer": "sgd"},
                                    "grid": {"lr": [1.0e+6]}}))
    out = tmp_path / "out"
    first = labs("sweep", path, "--smoke", "--output", out)
    assert first.returncode == 1 and "lr-1e+06: diverged" in first.stdout
    made = (out / "lr-1e+06" / "results.json").stat().st_mtime_ns
    again = labs("sweep", path, "--smoke", "--output", out)
    assert "1 of 1 runs already done: skipped" in again.stdout and "lr-1e+06: diverged" not in again.stdout
    assert (out / "lr-1e+06" / "results.json").stat().st_mtime_ns == made      # (--force: tests/test_sweep.py)


# --- 5. a scheduler without workers; a sweep ended by SIGTERM ---------------------------------------

def test_a_scheduler_without_workers_is_one_line_after_the_wait_and_the_lock_is_released(tmp_path):
    from distributed import LocalCluster
    path = tmp_path / "s.yaml"
    path.write_text("assignment: mnist_mlp\nruns: [{name: a}]\n")
    with LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address=None) as cluster:
        began = time.time()
        proc = labs("sweep", path, "--smoke", "--scheduler", cluster.scheduler_address, "--wait", "2",
                    "--output", tmp_path / "out")
    assert proc.returncode == 2 and one_line(proc) and time.time() - began < 60
    assert f"The Dask scheduler at {cluster.scheduler_address} has no workers (waited 2 s)" in proc.stderr
    assert f"dask worker {cluster.scheduler_address}" in proc.stderr and not (tmp_path / "out" / ".labs.lock").exists()


def test_an_unreachable_scheduler_is_named_without_a_misleading_exception(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("assignment: mnist_mlp\nruns: [{name: a}]\n")
    proc = labs("sweep", path, "--smoke", "--scheduler", "tcp://127.0.0.1:9", "--output", tmp_path / "out")
    assert proc.returncode == 2 and one_line(proc) and "Could not reach a Dask scheduler at tcp://127.0.0.1:9" in proc.stderr
    assert "Error)" not in proc.stderr


def test_a_sweep_ended_by_sigterm_ends_like_ctrl_c(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"assignment": "mnist_mlp", "grid": {"epochs": [1, 300, 2]}, "params": {
        "hidden": [32, 32, 32], "synthetic": True, "n_train": 600, "n_test": 200}}))   # not --smoke: 300 epochs
    out = tmp_path / "out"
    # Under coreutils' `timeout`, as users stop long sweeps: signalled, it sends SIGTERM to labs and then to its
    # whole process group (labs again, the worker, the kernel), and SIGKILL 10 s later (-k 10).
    proc = subprocess.Popen(["timeout", "-k", "10", "600", sys.executable, "-m", "labs", "sweep", str(path),
                             "--workers", "1", "--output", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: records.read(out / "epochs-1", warn=False) is not None
                        and list((out / "epochs-300").glob(".labs-kernel/kernel-*.json")), 120)
        family = psutil.Process(proc.pid).children(recursive=True)
        started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)                      # as when its time is up
        stdout, stderr = proc.communicate(timeout=60)
        seconds = time.perf_counter() - started
    finally:
        proc.kill()
    assert proc.returncode == 130 and "finished runs are kept" in stderr
    assert seconds < 10 and not (out / "epochs-2").exists()   # inside `timeout -k 10`; no queued run started
    assert "Traceback" not in stderr and "leaked semaphore" not in stderr
    assert wait_for(lambda: all_ended(family), 10)
    assert (out / "summary.md").is_file() and "epochs-1" in (out / "summary.md").read_text()   # what finished
    assert not (out / ".labs.lock").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(("kernel-", ".labs-kernel", ".report.partial", ".summary.partial"))]



# --- 8. summaries -----------------------------------------------------------------------------

def fake(folder, assignment="mnist_mlp", synthetic=True, test_loss=0.3, status="ok"):
    folder.mkdir(parents=True)
    results.write(folder / "results.json", results.build(assignment, {"synthetic": synthetic}, status=status, models={
        "m": {"test_accuracy": 0.5, "test_loss": test_loss, "history": [{"epoch": 1, "val_accuracy": 0.5}]}}))


def test_labs_summary_refuses_a_folder_that_is_not_one_sweep(tmp_path):
    fake(tmp_path / "runs" / "a")
    fake(tmp_path / "runs" / "b", assignment="cifar10_cnn")
    proc = labs("summary", tmp_path / "runs")
    assert proc.returncode == 2 and one_line(proc) and "is not a sweep's folder (it has no sweep.yaml)" in proc.stderr
    (tmp_path / "runs" / "sweep.yaml").write_text("assignment: mnist_mlp\nruns: [{name: a}]\n")
    proc = labs("summary", tmp_path / "runs")
    assert proc.returncode == 2 and "holds runs of cifar10_cnn, mnist_mlp" in proc.stderr


def test_a_summary_says_synthetic_where_runs_were_and_writes_a_huge_loss_short(tmp_path):
    from labs import summary
    fake(tmp_path / "s" / "real", synthetic=False)
    fake(tmp_path / "s" / "smoke", synthetic=True, test_loss=3.4e44, status="diverged")
    runs = summary.collect(tmp_path / "s")
    assert "2 runs of mnist_mlp on the real dataset (1 of them on synthetic data)" in summary.heading("s", runs, [])
    table = summary.to_markdown(summary.rows(runs), [])
    assert "3.4e+44" in table and not re.search(r"\d{20}", table)


def test_a_report_html_that_cannot_be_rendered_keeps_the_run_ok_and_says_why_in_one_line(tmp_path, monkeypatch, capsys):
    """nbconvert without its templates (seen on a GPU machine): the run is kept, ok, and report.html is missing."""
    import jinja2
    import nbconvert
    from labs import runner
    from labs.params import resolve

    def no_templates(*args, **kwargs):
        raise jinja2.TemplateNotFound("lab/index.html.j2")
    monkeypatch.setattr(nbconvert.HTMLExporter, "from_filename", no_templates)
    results = runner.run("mnist_mlp", resolve("mnist_mlp", smoke=True), tmp_path / "run", stream=False)
    assert results["status"] == "ok" and (tmp_path / "run" / "report.ipynb").is_file()
    assert not (tmp_path / "run" / "report.html").exists()
    assert capsys.readouterr().err == ("labs: warning: report.html is missing: nbconvert could not render the report "
                                       "(TemplateNotFound: lab/index.html.j2); report.ipynb holds all of it.\n")


# --- a record that says "running" (a run's first file) is a run begun, not one finished ----------------

def test_a_record_that_says_running_is_not_a_finished_run(tmp_path, capsys):
    from labs import runner, sweep
    started = time.time() - 1
    folders = {name: tmp_path / name for name in ("seed-1", "seed-2", "seed-3")}
    for name, status in (("seed-1", "running"), ("seed-2", "ok")):
        folders[name].mkdir()
        results.write(folders[name] / "results.json", results.build("mnist_mlp", {"seed": 1}, status=status))
    tasks = {f"d/{name}": ("mnist_mlp", {"seed": 1}, str(folder), name) for name, folder in folders.items()}
    line = sweep._after_the_scheduler(tasks, set(), started, "tcp://127.0.0.1:1", several=False)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "seed-1: was running on a worker when the scheduler was lost"
    assert printed[1].startswith("seed-2: ok") and printed[2] == "seed-3: not begun"
    assert "; 1 run finished, 1 may still be running on the workers, 1 did not begin; " in line
    # a notebook whose last cell (run.finish) did not run leaves "running": the run is failed, not running forever
    final = runner._final("mnist_mlp", {"seed": 1}, folders["seed-1"], None, 3.0, "seed-1")
    assert final["status"] == "failed" and final["error"] == ("the notebook finished without its last cell, "
                                                              "run.finish(), which completes results.json")
    assert records.read(folders["seed-1"])["status"] == "failed"
