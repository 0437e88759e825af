"""The run's record is true however the notebook is worked: the cells run in a real kernel (nbclient, as JupyterLab
runs them) and are edited, run again, out of order, stopped (SIGINT, as the stop button sends) and made to crash,
and results.json, the grading, the analysis and the finish line say what trained in this kernel since the start
cell, and what did not."""
import json
import os
import re
import signal
import threading
import time

import nbformat

from conftest import Kernel, text

STOP = "Stopped before this cell finished; run it again to do what it does."


def plain(traceback: list) -> list:
    """A traceback's lines as the student reads them (no colour codes)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback)).splitlines()


def record(folder) -> dict:
    return json.loads((folder / "results.json").read_text())


def stop_after(lab: Kernel, seconds: float) -> threading.Thread:
    """The stop button, pressed `seconds` from now: SIGINT to the kernel."""
    def press():
        time.sleep(seconds)
        os.kill(lab.client.km.provisioner.pid, signal.SIGINT)
    thread = threading.Thread(target=press)
    thread.start()
    return thread


def test_lab_01_parameters_edited_after_the_start_and_a_start_cell_run_again(tmp_path):
    lab, out = Kernel("01_mnist_mlp", tmp_path), tmp_path / "run"
    lab.retype(synthetic="True", epochs="2", n_train="300", n_test="100", hidden="[32, 32, 32]",
               output_dir=repr(str(out)))
    params_cell, recipe_cell = lab.index("seed: int ="), lab.index("recipe = train.Recipe(")
    analysis_cell, last = lab.index("analysis.write(run"), lab.index("results = run.finish()")
    with lab.client.setup_kernel():
        assert lab.run_from(0) == []
        assert record(out)["params"]["lr"] == 0.001 and record(out)["status"] == "ok"
        # case 1: the parameters edited, that cell and the cells from the recipe on run again
        lab.retype(lr="0.01", epochs="3", init='"default"', dropout="0.0")
        assert lab.run(params_cell) == [] and lab.run_from(recipe_cell) == []
        trained = record(out)
        assert {k: trained["params"][k] for k in ("lr", "epochs", "init", "dropout")} == \
            {"lr": 0.01, "epochs": 3, "init": "default", "dropout": 0.0}
        mlp = trained["models"]["mlp"]
        assert (mlp["recipe"]["lr"], mlp["recipe"]["epochs"], len(mlp["history"])) == (0.01, 3, 3)
        assert "Dropout" not in mlp["network"] and "params" not in mlp   # the run's parameters are the model's
        grading = text(lab.nb.cells[analysis_cell])
        assert "**not met**: weight initialization" in grading and "**not met**: dropout" in grading
        finish = text(lab.nb.cells[last])
        assert finish.startswith("The parameters changed after the start cell: dropout 0.2 → 0, init he → default, "
                                 "lr 0.001 → 0.01, epochs 2 → 3; the record gives the values that trained.\nok, ")
        assert "s since the start cell)" in finish                      # case 7: what the wall time counts from
        # case 3: the start cell again, then the cells below the training and the last cell
        assert lab.run(lab.index("run = report.start(")) == []
        views = [lab.index(needle) for needle in ("report.show_curves(run)", "report.show_confusions(",
                                                  "report.show_misclassified(", "report.show_per_class(")]
        assert lab.run(*views, analysis_cell, last) == []
        for i in views:
            assert text(lab.nb.cells[i]) == "No model has been trained since the start cell: run the training cells first.\n"
        assert "Not trained: mlp (not trained since the start cell)" in text(lab.nb.cells[analysis_cell])
        assert record(out) == trained                                   # the finished record is kept, whole
        assert text(lab.nb.cells[last]).startswith("No model was trained since the start cell, so results.json keeps "
                                                   "the earlier run's record (ok, finished ")


def test_lab_02_a_crashed_training_is_named_and_a_mistake_in_the_network_names_its_layer(tmp_path):
    lab, out = Kernel("02_fashion_fcn_vs_lenet", tmp_path), tmp_path / "run"
    lab.retype(synthetic="True", n_train="200", n_test="100", epochs="1", output_dir=repr(str(out)))
    train_cell, describe_cell = lab.index("for name in models:\n    train.seed_everything"), lab.index("builders = {")
    net, last = lab.index("def lenet5("), lab.index("results = run.finish()")
    with lab.client.setup_kernel():
        assert lab.run_from(0) == [] and record(out)["status"] == "ok"
        # case 2: LeNet-5's last layer edited to 5 outputs, its cell and every cell below run again (errors allowed)
        lab.edit("def lenet5(", "nn.Linear(84, n_classes))", "nn.Linear(84, 5))")
        [(where, traceback)] = lab.run_from(net)                         # refused before its first step
        message = "lenet5 gives 5 outputs per image, but the data has 10 classes: its last layer must give 10."
        assert where == train_cell and plain(traceback) == [message]
        crashed = record(out)
        assert crashed["status"] == "failed" and "lenet5" not in crashed["models"]   # its earlier record is undone
        assert crashed["error"].startswith(f"Not trained: lenet5 (crashed: {message})")
        assert text(lab.nb.cells[last]).startswith("WARNING: failed, test accuracy fcn ")
        assert "Not trained: lenet5 (crashed" in text(lab.nb.cells[lab.index("report.show_curves(run)")])
        # the same after the start cell: the models it did not reach are named too
        assert lab.run(lab.index("run = report.start(")) == []
        assert len(lab.run(train_cell)) == 1 and lab.run(last) == []
        again = record(out)
        assert again["status"] == "failed" and list(again["models"]) == ["fcn"]
        assert again["error"] == (f"Not trained: lenet5 (crashed: {message}); lenet5_modified (not trained since the "
                                  f"start cell). Run the cells that train them.")
        # case 5: Linear(120, 84) edited to Linear(100, 84): the describe and training cells name the layer
        lab.edit("def lenet5(", "nn.Linear(84, 5))", "nn.Linear(84, n_classes))")
        lab.edit("def lenet5(", "nn.Linear(120, 84)", "nn.Linear(100, 84)")
        assert lab.run(net) == []
        for cell, who in ((describe_cell, ""), (train_cell, "lenet5: ")):
            [(_, traceback)] = lab.run(cell)
            lines = plain(traceback)
            assert len(lines) <= 12 and "labutils" not in "\n".join(lines) and "torch/" not in "\n".join(lines)
            assert lines[-2].startswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied (")
            assert lines[-1] == (f"{who}the error is in layer 9, Linear(in_features=100, out_features=84, bias=True), "
                                 f"which was given {'1' if not who else '2'}x120 by layer 8 (Flatten).")


def test_a_stop_in_the_data_cell_or_a_figures_cell_is_one_line_and_leaves_no_half_file(tmp_path):
    lab, out = Kernel("02_fashion_fcn_vs_lenet", tmp_path), tmp_path / "run"
    lab.retype(synthetic="True", n_train="200", n_test="100", epochs="1", models='["fcn"]', output_dir=repr(str(out)))
    start, data_cell = lab.index("run = report.start("), lab.index("fashion = data.load(")
    train_cell, curves = lab.index("for name in models:\n    train.seed_everything"), lab.index("report.show_curves(run)")
    with lab.client.setup_kernel():
        assert lab.run_from(0) == [] and record(out)["status"] == "ok"
        assert lab.run(start) == []
        slow = ("import time, os\n_read, _fsync = data.read_idx, os.fsync\n"
                "data.read_idx = lambda path: (time.sleep(30), _read(path))[1]   # a slow disk")
        lab.nb.cells.append(nbformat.v4.new_code_cell(slow))
        assert lab.run(len(lab.nb.cells) - 1) == []
        stopper = stop_after(lab, 2)
        [(where, traceback)] = lab.run(data_cell)                       # case 4: the stop button in the data cell
        stopper.join()
        assert where == data_cell and traceback == [STOP]
        lab.nb.cells[-1].source = "data.read_idx = _read"
        assert lab.run(len(lab.nb.cells) - 1) == []
        assert lab.run(data_cell, lab.index("report.show_samples("), train_cell) == []
        assert record(out)["status"] == "running"                       # this run's first file: no earlier "ok"
        earlier, inode = (out / "curves.png").read_bytes(), (out / "curves.png").stat().st_ino
        lab.nb.cells[-1].source = "os.fsync = lambda fd: time.sleep(30)   # a slow disk"
        assert lab.run(len(lab.nb.cells) - 1) == []
        stopper = stop_after(lab, 2)
        [(where, traceback)] = lab.run(curves)                          # and in a figures cell, while it writes
        stopper.join()
        assert where == curves and traceback == [STOP]
        assert not list(out.glob(".*.tmp")) and (out / "curves.png").read_bytes() == earlier   # whole, or not written
        assert record(out)["status"] == "running"
        lab.nb.cells[-1].source = "os.fsync = _fsync"
        assert lab.run(len(lab.nb.cells) - 1) == [] and lab.run(curves) == []
        assert (out / "curves.png").stat().st_ino != inode                # written again, whole
