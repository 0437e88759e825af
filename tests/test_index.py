"""outputs/index.html: every run and sweep, newest first, linked, built from the results.json files alone."""
import json
import re
from urllib.parse import unquote

from conftest import labs


def links(html: str) -> list:
    return [unquote(href) for href in re.findall(r'href="([^"]+)"', html)]


def test_labs_run_writes_an_index_that_lists_the_run_with_its_accuracy_and_a_working_link(tmp_path):
    ok = labs("run", "mnist_mlp", "--smoke", "-p", "hidden", "[64, 64, 64]", cwd=tmp_path)
    failed = labs("run", "mnist_mlp", "-p", "download", "false", "-p", "data_dir", tmp_path / "none", cwd=tmp_path)
    assert ok.returncode == 0 and failed.returncode == 1, ok.stdout + ok.stderr
    index = tmp_path / "outputs" / "index.html"
    assert "index of every run" in ok.stdout and index.is_file()
    html = index.read_text()
    [run] = [p for p in (tmp_path / "outputs" / "mnist_mlp").iterdir() if p.name.endswith("-smoke")]
    accuracy = json.loads((run / "results.json").read_text())["models"]["mlp"]["test_accuracy"]
    assert f"mlp {100 * accuracy:.2f} %" in html and "mnist_mlp" in html
    assert f"mnist_mlp/{run.name}/report.html" in links(html)
    assert all((index.parent / link).is_file() for link in links(html))     # every link leads somewhere
    rows = re.findall(r'<tr class="(\w+)">', html)
    assert rows == ["failed", "ok"]                                       # newest first; the failure stands out
    assert "download is off" in html


def test_labs_index_lists_sweeps_with_their_best_run_by_validation(tmp_path):
    sweep = tmp_path / "outputs" / "sweeps" / "lr"
    for name, val, test in (("lr-0.1", 0.9, 0.95), ("lr-0.01", 0.95, 0.9)):
        (sweep / name).mkdir(parents=True)
        (sweep / name / "report.html").write_text("<html></html>")
        (sweep / name / "results.json").write_text(json.dumps({
            "assignment": "mnist_mlp", "status": "ok", "params": {}, "wall_seconds": 3, "finished": "2026-11-23T10:00:00",
            "models": {"mlp": {"test_accuracy": test, "history": [{"epoch": 1, "val_accuracy": val}]}}}))
    (sweep / "sweep.yaml").write_text("assignment: mnist_mlp\nname: lr\n")
    (sweep / "summary.html").write_text("<html></html>")
    proc = labs("index", tmp_path / "outputs")
    assert proc.returncode == 0 and "index.html" in proc.stdout
    html = (tmp_path / "outputs" / "index.html").read_text()
    assert "sweeps/lr/summary.html" in links(html) and "2 ok, 0 failed" in html
    assert re.search(r"lr-0\.01</a> mlp: test 90\.00 %", html)              # best by validation, not by test
    assert "Runs (0)" in html
    missing = labs("index", tmp_path / "nowhere")
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
