"""`labs run` end to end: the smoke run, a run that fails, a run that diverges, nbval over the notebook."""
import json
import re
import subprocess
import sys
from html import unescape

import pytest
import yaml

from conftest import labs, smoke_params

SMOKE = smoke_params("mnist_mlp")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`labs run mnist_mlp --smoke`, with a broken `python3` kernelspec on JUPYTER_PATH that must not be used."""
    tmp = tmp_path_factory.mktemp("smoke")
    spec = tmp / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "display_name": "other", "language": "python"}))
    env = {"JUPYTER_PATH": str(tmp / "jupyter")}
    check = subprocess.run([sys.executable, "-c", "from jupyter_client.kernelspec import KernelSpecManager as K;"
                            "print(K().get_kernel_spec('python3').argv[0])"], capture_output=True, text=True, env={
                                **__import__("os").environ, **env})
    assert check.stdout.strip() == "/nonexistent/python"   # the trap is set: a plain python3 kernel would fail
    folder = tmp / "run"
    proc = labs("run", "mnist_mlp", "--smoke", "--output", folder, env=env)
    return proc, folder, json.loads((folder / "results.json").read_text())


def test_smoke_run_succeeds_on_this_python_and_writes_the_run_folder(smoke):
    proc, folder, results = smoke
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mnist_mlp: ok, test accuracy mlp" in proc.stdout
    for name in ("report.ipynb", "report.html", "params.yaml", "results.json", "curves.png", "confusion_matrix.png",
                 "misclassified.png", "per_class_accuracy.png", "samples.png"):
        assert (folder / name).is_file(), name
    assert results["env"]["python"] == __import__("platform").python_version()


def test_smoke_results_learn_far_above_chance_with_the_default_model(smoke):
    _, folder, results = smoke
    assert results["assignment"] == "mnist_mlp" and results["status"] == "ok"
    mlp = results["models"]["mlp"]
    assert mlp["parameters"] == 2_913_290                   # the default model, unchanged by --smoke
    assert "BatchNorm" not in mlp["network"] and "Dropout(p=0.2" in mlp["network"]   # batch_norm false (reach: true)
    assert mlp["test_accuracy"] > 0.7                        # chance is 0.1
    assert len(mlp["history"]) == SMOKE["epochs"] == results["params"]["epochs"]
    assert sum(map(sum, mlp["confusion_matrix"])) == SMOKE["n_test"]
    assert len(mlp["per_class_accuracy"]) == 10 and mlp["train_samples_per_second"] > 0
    assert results["wall_seconds"] > 0 and results["env"]["device"] == "cpu"


def test_report_html_reads_as_a_document_without_the_plumbing_code(smoke):
    _, folder, results = smoke
    html = (folder / "report.html").read_text()
    text = unescape(re.sub(r"<[^>]+>", "", html))                         # what a reader sees: code unhighlighted
    assert "return init_weights(mlp(" in text and "model = new_network()" in text and "train.fit(model, mnist, recipe" in text   # the lesson
    assert "def train_epoch(model, split, optimizer, batch_size):" in text and "model.train()" in text
    assert "recipe = train.Recipe(optimizer=optimizer, lr=lr" in text
    for plumbing in ("%pip install", "report.start(", "report.show_", "analysis.write(", "run.finish()"):
        assert plumbing not in text, plumbing                                 # tagged cells: code left out
    assert html.count("<img") >= 5 and html.count("<table") >= 1           # figures; the parameter table
    assert html.count("<td><code>hidden</code></td>") == 1                  # the parameters appear once
    assert "Against the grading points" in html and "In&nbsp;[" not in html


def test_smoke_params_are_recorded_in_full(smoke):
    _, folder, results = smoke
    written = yaml.safe_load((folder / "params.yaml").read_text())
    assert written == results["params"]
    assert written["synthetic"] is True and written["lr"] == 0.001 and "output_dir" not in written


def test_epoch_lines_stream_to_the_terminal_and_stay_readable_in_the_report(smoke):
    proc, folder, _ = smoke
    assert "mlp epoch 2/2  train " in proc.stdout and "\r" not in proc.stdout   # not a terminal: lines only
    report = json.loads((folder / "report.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in report["cells"] for o in c.get("outputs", []))
    assert "mlp epoch 1/2  train " in text and "\r" not in text and "img/s]" not in text   # no bar frames


def test_a_run_that_fails_names_the_cell_keeps_the_partial_report_and_records_failure(tmp_path):
    folder = tmp_path / "run"
    proc = labs("run", "mnist_mlp", "-p", "download", "false", "-p", "data_dir", tmp_path / "empty",
                "--output", folder)
    assert proc.returncode == 1
    assert "failed" in proc.stdout and "data.load(" in proc.stdout and "download is off" in proc.stdout
    assert "--smoke" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "failed" and "download is off" in results["error"] and results["models"] == {}
    assert (folder / "report.ipynb").is_file() and (folder / "report.html").is_file()


def test_a_diverged_run_says_so_and_exits_non_zero(tmp_path):
    folder = tmp_path / "run"
    proc = labs("run", "mnist_mlp", "--smoke", "-p", "optimizer", "sgd", "-p", "lr", "1e6", "--output", folder)
    assert proc.returncode == 1
    assert "mnist_mlp: diverged" in proc.stdout and "NaN" in proc.stdout
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "diverged" and "NaN" in results["error"]
    assert len(results["models"]["mlp"]["history"]) == 1       # stopped after the first epoch



def test_labs_list_shows_each_parameter_with_type_default_and_help():
    proc = labs("list", "mnist_mlp")
    assert proc.returncode == 0
    assert any(line.split()[:3] == ["lr", "float", "0.001"] and "learning rate" in line
               for line in proc.stdout.splitlines())
    assert "params/mnist_mlp/seed.yaml" in proc.stdout
    assert "mnist_mlp" in labs("list").stdout


def test_a_smoke_run_in_the_precision_given_learns_and_records_it(tmp_path):
    precision = "bf16"       # fp32 (auto on a CPU without native bf16) is every other smoke run's
    folder = tmp_path / "run"
    proc = labs("run", "fashion_fcn_vs_lenet", "--smoke", "-p", "models", "[lenet5]", "-p", "precision", precision,
                "--output", folder)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((folder / "results.json").read_text())
    assert results["env"]["precision"] == precision and results["params"]["precision"] == precision
    assert results["env"]["layout"] == {"lenet5": "channels_last"}                # the CPU's layout rule
    assert results["models"]["lenet5"]["test_accuracy"] > 0.5                      # chance is 0.1
    html = (folder / "report.html").read_text()
    assert f"Forward passes in <strong>{precision}</strong>" in html and "channels-last" in html
