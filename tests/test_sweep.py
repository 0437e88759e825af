"""`labs sweep` and `labs summary`: validation, local workers, failures, resume, --force, Dask, the sweep files."""
import csv
import json
import socket

import pytest
import yaml

from conftest import ROOT, labs
from labutils import LabsError, results
from labs import cli, sweep

SMALL = {"hidden": [256, 256, 256]}   # smaller than the default: these tests are about the machinery


def write(tmp_path, spec, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def load_error(tmp_path, spec):
    with pytest.raises(LabsError) as e:
        sweep.load(write(tmp_path, spec))
    return str(e.value)


@pytest.mark.parametrize("spec, message", [
    ({"assignment": "mnist_mlp", "grid": {"lr": [0.1]}, "grids": {}}, "unknown key 'grids' (did you mean 'grid'?)"),
    ({"grid": {"lr": [0.1]}}, "names no assignment"),
    ({"assignment": "mnist_mpl", "grid": {"lr": [0.1]}}, "Unknown assignment 'mnist_mpl'"),
    ({"assignment": "mnist_mlp", "grid": {"lrr": [0.1]}}, "run 'lrr-0.1': Unknown parameter 'lrr'"),
    ({"assignment": "mnist_mlp", "grid": {"lr": ["fast"]}}, "run 'lr-fast': lr must be a float"),
    ({"assignment": "mnist_mlp", "grid": {"lr": [0.1, -1.0]}}, "run 'lr--1': lr must be greater than 0"),
    ({"assignment": "mnist_mlp", "params": {"epochs": 0}, "grid": {"lr": [0.1]}}, "epochs must be at least 1"),
    ({"assignment": "mnist_mlp", "grid": {}}, "the grid is empty"),
    ({"assignment": "mnist_mlp", "grid": {"lr": []}}, "grid entry 'lr' must be a non-empty list"),
    ({"assignment": "mnist_mlp"}, "it has no runs"),
    ({"assignment": "mnist_mlp", "runs": [{"name": "a"}, {"name": "a", "lr": 0.1}]}, "two runs are named 'a'"),
    ({"assignment": "mnist_mlp", "runs": [{"lr": 0.1}]}, "each with a `name`"),
    ({"assignment": "mnist_mlp", "runs": [{"name": "a"}], "reference": {"b": 90}}, "names run 'b'"),
    ({"assignment": "mnist_mlp", "runs": [{"name": "a"}], "reference": {"a": "high"}}, "must be a test accuracy"),
    ({"assignment": "mnist_mlp", "base": "nope.yaml", "runs": [{"name": "a"}]}, "nope.yaml does not exist"),
])
def test_bad_sweep_files_are_one_clear_error(tmp_path, spec, message):
    assert message in load_error(tmp_path, spec)


def test_bad_sweep_file_runs_nothing_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, {"assignment": "mnist_mlp", "grid": {"lr": [0.1, 0.0]}})
    assert cli.main(["sweep", str(path), "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "run 'lr-0': lr must be greater than 0" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]


def test_runs_are_named_from_presets_and_grid_values_and_layered_in_order(tmp_path):
    (tmp_path / "base.yaml").write_text("dropout: 0.3\nepochs: 7\n")
    plan = sweep.load(write(tmp_path, {
        "assignment": "mnist_mlp", "base": str(tmp_path / "base.yaml"), "params": {"epochs": 5},
        "grid": {"lr": [1.0e-3, 0.1], "hidden": [[64, 64]]},
        "runs": [{"name": "he", "init": "he"}, {"name": "xavier", "init": "xavier", "epochs": 6}]}))
    assert list(plan.runs) == ["he_lr-0.001_hidden-64x64", "he_lr-0.1_hidden-64x64",
                               "xavier_lr-0.001_hidden-64x64", "xavier_lr-0.1_hidden-64x64"]
    run = plan.runs["xavier_lr-0.1_hidden-64x64"]
    assert (run["lr"], run["hidden"], run["init"], run["epochs"], run["dropout"]) == (0.1, [64, 64], "xavier", 6, 0.3)
    assert plan.runs["he_lr-0.001_hidden-64x64"]["epochs"] == 5
    assert run["batch_size"] == 128 and plan.name == "s"        # notebook default; the file's name


def test_smoke_keeps_the_sweeps_values_but_caps_data_and_epochs(tmp_path):
    plan = sweep.load(write(tmp_path, {"assignment": "mnist_mlp", "params": {"epochs": 30, "dropout": 0.3},
                                       "grid": {"batch_size": [100, 200]}, "runs": [{"name": "long", "epochs": 50}]}),
                      smoke=True)
    assert [r["batch_size"] for r in plan.runs.values()] == [100, 200]     # varied: kept
    assert all(r["dropout"] == 0.3 for r in plan.runs.values())            # fixed: kept
    assert all(r["epochs"] == 2 and r["synthetic"] and r["n_train"] == 600 for r in plan.runs.values())


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """Four smoke runs on two local workers; one of them fails at run time (a last batch of one image meets batch
    norm, which needs two)."""
    tmp = tmp_path_factory.mktemp("sweep")
    path = write(tmp, {"assignment": "mnist_mlp", "name": "four", "params": SMALL,
                       "runs": [{"name": "a"}, {"name": "b", "lr": 0.002}, {"name": "c", "seed": 1},
                                {"name": "broken", "batch_norm": True, "batch_size": 539}]})
    out = tmp / "out"
    first = labs("sweep", path, "--smoke", "--workers", "2", "--output", out)
    return path, out, first


def test_a_failing_run_does_not_stop_the_others(local_sweep):
    _, out, proc = local_sweep
    assert proc.returncode == 1                                   # not all ok
    statuses = {d.name: json.loads((d / "results.json").read_text())["status"] for d in out.iterdir() if d.is_dir()}
    assert statuses == {"a": "ok", "b": "ok", "c": "ok", "broken": "failed"}
    assert "broken: failed" in proc.stdout and "Expected more than 1 value per channel" in proc.stdout
    assert "4 runs: 3 ok, 1 failed or diverged" in proc.stdout
    assert "\r" not in proc.stdout + proc.stderr                   # a log, not a terminal: no bar frames


def test_summaries_list_every_run_with_metrics_and_the_failures(local_sweep):
    _, out, _ = local_sweep
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 4 and {r["run"] for r in rows} == {"a", "b", "c", "broken"}
    assert set(rows[0]) >= {"seed", "lr", "test_accuracy", "test_loss", "val_accuracy", "epochs",
                            "wall_seconds", "status", "error"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(float(r["test_accuracy"]) > 0.5 and r["epochs"] == "2" for r in ok)
    broken = [r for r in rows if r["run"] == "broken"]
    assert broken[0]["status"] == "failed" and "`trial = copy.deepcopy(model)` failed" in broken[0]["error"]
    md = (out / "summary.md").read_text()
    assert md.startswith("# Sweep four\n") and "4 runs of mnist_mlp on synthetic data" in md   # the sweep's name
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0].startswith("| run |") and table[-1].startswith("| [broken](broken/report.html) |")
    assert all((out / line.split("](")[1].split(")")[0]).is_file() for line in table[2:])     # links that work
    html = (out / "summary.html").read_text()
    assert "Failed and diverged runs" in html and "Expected more than 1 value per channel" in html
    report = json.loads((out / "summary.ipynb").read_text())
    images = sum("image/png" in o.get("data", {}) for c in report["cells"] for o in c.get("outputs", []))
    assert images >= 4            # lr, seed, batch norm, batch size against the metric; the overlaid curves


def test_started_again_it_skips_what_is_done_and_force_redoes_it(local_sweep, tmp_path):
    path, out, _ = local_sweep
    ok_files = {f: f.stat().st_mtime_ns for d in (out / "a", out / "b", out / "c") for f in d.iterdir()}
    again = labs("sweep", path, "--smoke", "--workers", "2", "--output", out)
    assert "3 of 4 runs already done: skipped" in again.stdout
    assert {f: f.stat().st_mtime_ns for f in ok_files} == ok_files      # the done runs were not touched
    assert "broken: failed" in again.stdout                              # the failed one was tried again
    import shutil
    out = shutil.copytree(out, tmp_path / "copy")                       # the other tests keep the original
    ok_files = {out / f.relative_to(path.parent / "out"): t for f, t in ok_files.items()}
    path = write(tmp_path, {**yaml.safe_load(path.read_text()), "runs": [{"name": "a"}]})
    forced = labs("sweep", path, "--smoke", "--force", "--output", out)   # the file now makes run a alone
    assert forced.returncode == 0 and "already done" not in forced.stdout, forced.stdout + forced.stderr
    changed = {f.parent.name for f, t in ok_files.items() if f.name == "results.json" and f.stat().st_mtime_ns != t}
    assert changed == {"a"}                                              # made again; b and c left as they were


def test_an_edited_sweep_file_is_summarized_as_it_now_stands(local_sweep, tmp_path):
    import shutil
    path, out, _ = local_sweep
    out = shutil.copytree(out, tmp_path / "copy")                       # the other tests keep the original
    path = write(tmp_path, {**yaml.safe_load(path.read_text()), "runs": [{"name": "a"}, {"name": "b", "lr": 0.002}]})
    again = labs("sweep", path, "--smoke", "--output", out)              # c and the broken run taken out
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 of 2 runs already done: skipped" in again.stdout and "2 runs: 2 ok, 0 failed" in again.stdout
    assert "2 older runs in" in again.stdout and "(broken, c) left out of the summary" in again.stdout
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["run"] for r in rows} == {"a", "b"} and "broken" not in (out / "summary.md").read_text()
    assert (out / "broken" / "results.json").is_file() and (out / "c" / "results.json").is_file()   # kept


def test_ctrl_c_stops_the_workers_at_once_and_keeps_the_finished_runs(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    path = write(tmp_path, {"assignment": "mnist_mlp", "params": SMALL, "grid": {"seed": [1, 2, 3, 4]}})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "labs", "sweep", str(path), "--smoke", "--output", str(out)],
                            cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "seed-1" / "results.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)        # Ctrl-C reaches the whole process group
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    finished = [d.name for d in out.iterdir() if (d / "results.json").exists()]
    assert "seed-1" in finished and len(finished) < 4
    assert not (out / "seed-3").exists() and not (out / "seed-4").exists()   # after the signal, no run starts
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["run"] for r in rows} == set(finished)


def test_a_changed_parameter_reruns_that_run(tmp_path):
    plan = sweep.load(write(tmp_path, {"assignment": "mnist_mlp", "runs": [{"name": "a"}]}), smoke=True)
    folder = tmp_path / "a"
    folder.mkdir()
    def record(status):
        results.write(folder / "results.json", results.build("mnist_mlp", plan.runs["a"], status=status))
    record("ok")
    assert sweep.is_done(folder, plan.runs["a"])
    assert not sweep.is_done(folder, {**plan.runs["a"], "lr": 0.5})
    record("diverged")                                   # divergence is a result: not made again
    assert sweep.is_done(folder, plan.runs["a"])
    record("failed")
    assert not sweep.is_done(folder, plan.runs["a"])


def test_summary_rebuilds_by_hand_from_the_results_files(local_sweep, tmp_path):
    _, out, _ = local_sweep
    (out / "summary.csv").unlink()
    proc = labs("summary", out)
    assert proc.returncode == 0 and (out / "summary.csv").is_file()
    assert "4 runs: 3 ok, 1 failed or diverged" in proc.stdout
    empty = labs("summary", tmp_path)
    assert empty.returncode == 2 and "holds no runs" in empty.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path):
    path = write(tmp_path, {"assignment": "mnist_mlp", "runs": [{"name": "a"}]})
    proc = labs("sweep", path, "--smoke", "--scheduler", f"tcp://127.0.0.1:{_free_port()}", "--output", tmp_path / "o")
    assert proc.returncode == 2 and "Could not reach a Dask scheduler" in proc.stderr
    assert "Traceback" not in proc.stderr


def fake_run(folder, val, test, seed=0, lr=0.01, status="ok", setting=None):
    """A run's results.json as the runner writes it; `setting` names its setting in the sweep."""
    from labutils import results
    folder.mkdir(parents=True)
    history = [{"epoch": 1, "val_accuracy": val - 0.05}, {"epoch": 2, "val_accuracy": val}]
    results.write(folder / "results.json", results.build(
        "mnist_mlp", {"lr": lr, "seed": seed}, status=status, wall_seconds=10, setting=setting or folder.name,
        models={"mlp": {"test_accuracy": test, "test_loss": 0.3, "history": history}}))


def test_the_best_run_is_chosen_by_validation_accuracy_not_by_the_test_set(tmp_path):
    from labs import summary
    fake_run(tmp_path / "lr-0.01", val=0.95, test=0.90, lr=0.01)
    fake_run(tmp_path / "lr-0.1", val=0.93, test=0.92, lr=0.1)      # better on test, worse on validation
    outcome = summary.write(tmp_path, render=False, name="my-sweep")
    assert outcome["best"] == "lr-0.01"
    md = (tmp_path / "summary.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| [")]
    assert md.startswith("# Sweep my-sweep\n") and rows[0].startswith("| [lr-0.01](lr-0.01/report.html) |")


def test_seeds_repeat_every_run_and_the_summary_merges_them_with_their_range(tmp_path):
    from labs import summary
    plan = sweep.load(write(tmp_path, {"assignment": "mnist_mlp", "grid": {"lr": [0.01, 0.1]}, "seeds": [0, 1, 2],
                                       "reference": {"lr-0.1": 54.21}, "notes": {"lr-0.1": "The report ran once."}}))
    assert list(plan.runs) == [f"lr-{lr}_seed-{s}" for lr in ("0.01", "0.1") for s in (0, 1, 2)]
    assert [plan.runs[f"lr-0.1_seed-{s}"]["seed"] for s in (0, 1, 2)] == [0, 1, 2]
    smoke = sweep.load(tmp_path / "s.yaml", smoke=True)                         # --smoke checks the first seed only
    assert list(smoke.runs) == ["lr-0.01_seed-0", "lr-0.1_seed-0"]
    out = tmp_path / "out"
    for s, test in enumerate((0.30, 0.50, 0.70)):
        fake_run(out / f"lr-0.1_seed-{s}", val=test, test=test, seed=s, lr=0.1, setting="lr-0.1")
        fake_run(out / f"lr-0.01_seed-{s}", val=0.9, test=0.89, seed=s, setting="lr-0.01")
    table = summary.rows(summary.collect(out))
    merged = {r["run"]: r for r in summary.settings(table)}
    assert merged["lr-0.1"]["seeds"] == 3 and merged["lr-0.1"]["test_accuracy"] == pytest.approx(0.5)
    assert (merged["lr-0.1"]["test_min"], merged["lr-0.1"]["test_max"]) == (0.3, 0.7)
    [gap] = summary.differences(table, plan.reference, plan.notes)
    assert "ours 50.00 % against the report's 54.21 % (-4.21 points)" in gap
    assert "from 30.00 to 70.00 % (40.0 points)" in gap and "lies inside that range" in gap
    assert gap.endswith("The report ran once.")
    md = summary.to_markdown(table, summary.varied(summary.collect(out)), plan.reference)
    assert "50.00 % (30.00-70.00)" in md and "[0](lr-0.1_seed-0/report.html)" in md and "54.21 %" in md


@pytest.mark.parametrize("spec, message", [
    ({"assignment": "mnist_mlp", "runs": [{"name": "a"}], "seeds": [0, 0]}, "`seeds` must be a list of different"),
    ({"assignment": "mnist_mlp", "grid": {"seed": [1, 2]}, "seeds": [0, 1]}, "sets `seeds` and a seed elsewhere"),
    ({"assignment": "mnist_mlp", "runs": [{"name": "a"}], "notes": {"b": "why"}}, "`notes` names run 'b'"),
])
def test_bad_seeds_and_notes_are_refused(tmp_path, spec, message):
    assert message in load_error(tmp_path, spec)


def test_best_is_one_rule_everywhere_the_validation_accuracy_where_training_ended(tmp_path):
    from labs import summary
    from labutils import report
    peaked = {"history": [{"epoch": 1, "val_accuracy": 0.97}, {"epoch": 2, "val_accuracy": 0.90}]}
    steady = {"history": [{"epoch": 1, "val_accuracy": 0.91}, {"epoch": 2, "val_accuracy": 0.93}]}
    assert results.best({"peaked": peaked, "steady": steady}) == "steady"
    run = report.Run("mnist_mlp", {}, "cpu")
    run.recorded.update(peaked=peaked, steady=steady)
    assert run.best() == "steady"
    for name, m in (("peaked", peaked), ("steady", steady)):
        folder = tmp_path / name
        folder.mkdir()
        results.write(folder / "results.json", results.build("mnist_mlp", {"seed": 0}, setting=name,
                                                             models={"mlp": {"test_accuracy": 0.9, **m}}))
    assert summary.best_run(summary.rows(summary.collect(tmp_path)))["run"] == "steady"


def test_the_summary_counts_epochs_trained_not_evaluations(tmp_path):
    from labs import summary
    staged = [{"iteration": k * 200, "epoch": k * 200 * 128 / 54000, "val_accuracy": 0.9} for k in range(1, 7)]
    results.write(tmp_path / "members" / "results.json", results.build(
        "mnist_cnn_ensemble", {"seed": 0}, setting="members", models={
            "member 1": {"test_accuracy": 0.9, "history": staged}, "ensemble": {"test_accuracy": 0.91, "history": []}}))
    rows = {r["model"]: r for r in summary.rows(summary.collect(tmp_path))}
    assert rows["member 1"]["epochs"] == pytest.approx(2.844, abs=1e-3) and rows["ensemble"]["epochs"] is None
    summary.write(tmp_path, render=False, name="m")
    assert "| 2.84 |" in (tmp_path / "summary.md").read_text()
