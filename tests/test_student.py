"""What a student does in a notebook in JupyterLab gets a true answer: the cells run in a real kernel (nbclient, as
JupyterLab runs them), edited as a student edits them: a parameter typed again without its annotation, a network
or lab 04's penalty changed (the numbers change with it), the training cell run twice (the same numbers: it
trains afresh), training stopped with the kernel's interrupt (one line; the cells below name what was not
trained; the run says "stopped")."""
import json
import os
import signal
import threading
import time

from conftest import Kernel, text


def test_lab_01_retyped_parameters_a_second_training_run_and_an_edited_network(tmp_path):
    lab = Kernel("01_mnist_mlp", tmp_path)
    lab.retype(synthetic="True", epochs="2", n_train="300", n_test="100", hidden="[64, 64, 64]")
    train_cell = lab.index("fit = train.fit(")
    with lab.client.setup_kernel():
        assert lab.run_from(0, train_cell) == []                          # a retyped line is that parameter
        assert lab.value("[synthetic, epochs, len(mnist.train)]") == [True, 2, 270]
        first = lab.value("[fit.history, train.evaluate(model, mnist.test).accuracy]")
        assert lab.run(train_cell) == []                                  # the training cell again: afresh
        second = lab.value("[fit.history, train.evaluate(model, mnist.test).accuracy]")
        for row in first[0] + second[0]:
            row.pop("seconds")
        assert second == first and [r["epoch"] for r in second[0]] == [1, 2]
        assert "afresh" in lab.nb.cells[train_cell].source
        # the network edited: an extra hidden layer of 32 in `mlp` changes what trains
        model_cell = lab.edit("def mlp(", "    layers.append(nn.Linear(in_features, n_classes))",
                              "    layers += [nn.Linear(in_features, 32), nn.ReLU()]\n"
                              "    layers.append(nn.Linear(32, n_classes))")
        assert lab.run_from(model_cell, train_cell) == []
        edited = lab.value("[sum(p.numel() for p in model.parameters()), fit.history[-1]['train_loss']]")
    assert edited[0] == 784 * 64 + 64 + 2 * (64 * 64 + 64) + 64 * 32 + 32 + 32 * 10 + 10
    assert edited[1] != first[0][-1]["train_loss"]


def test_lab_04_trains_its_own_penalty_and_its_own_network(tmp_path):
    lab = Kernel("04_mnist_cnn_ensemble", tmp_path)
    lab.retype(synthetic="True", n_train="300", n_test="100", members="1", eval_every="10",
               stages='[{"iterations": 20, "lr": 0.002, "batch_size": 32, "l2": 400}]')
    train_cell = lab.index("networks = {}")
    losses = "[r['train_loss'] for r in networks['member 1'][1].history]"
    with lab.client.setup_kernel():
        assert lab.run_from(0, train_cell) == []
        plain = lab.value(losses)
        penalty_cell = lab.edit("def l2_penalty(", "    return sum(", "    return 0 * sum(")
        assert lab.run_from(penalty_cell, train_cell) == []
        assert "loss_w of a freshly initialized network: 0.0000" in text(lab.nb.cells[penalty_cell + 1])
        without = lab.value(losses)
        assert max(abs(a - b) for a, b in zip(without, plain)) > 1e-3   # the L2 term of 400 x loss_w is gone
        net_cell = lab.edit("class MixedPool2d(", "*dense(1024, 512), nn.Linear(512, n_classes)",
                            "nn.Linear(1024, n_classes)")
        net_cell_run = lab.run_from(net_cell, train_cell)
        assert net_cell_run == []
        assert lab.value("sum(p.numel() for p in networks['member 1'][0].parameters())") == 2_720_778 - (
            1024 * 512 + 512 + 512 * 10 + 10) + 1024 * 10 + 10


def test_lab_02_and_03_train_their_own_edited_networks(tmp_path):
    lab = Kernel("02_fashion_fcn_vs_lenet", tmp_path)
    lab.retype(synthetic="True", n_train="200", n_test="100", epochs="1", models='["lenet5"]')
    train_cell = lab.index("for name in models:\n    train.seed_everything")
    count = "sum(p.numel() for p in model.parameters())"
    with lab.client.setup_kernel():
        assert lab.run_from(0, train_cell) == []
        assert lab.value(count) == 61_706
        edited = lab.edit("def lenet5(", "*conv(16, 120)", "*conv(16, 100)")
        edited_src = lab.nb.cells[edited].source
        assert "nn.Linear(120, 84)" in edited_src
        lab.nb.cells[edited].source = edited_src.replace("nn.Linear(120, 84)", "nn.Linear(100, 84)")
        assert lab.run_from(edited, train_cell) == []
        assert lab.value(count) == 61_706 - 20 * (16 * 25 + 1) - 20 * 84
    lab = Kernel("03_cifar10_cnn", tmp_path)
    lab.retype(synthetic="True", n_train="120", n_test="50", epochs="1", models='["model2"]', ensemble="0")
    train_cell = lab.index("def train_model(")
    with lab.client.setup_kernel():
        edited = lab.edit("def model2(", "nn.Linear(8 * 8 * 128, 1024)", "nn.Linear(8 * 8 * 128, 512)")
        lab.nb.cells[edited].source = lab.nb.cells[edited].source.replace("nn.Linear(1024, n_classes)",
                                                                           "nn.Linear(512, n_classes)")
        assert lab.run_from(0, train_cell) == []
        assert lab.value("sum(p.numel() for p in trained['model2'][0].parameters())") == (
            3 * 64 * 25 + 64 + 64 * 64 * 25 + 64 + 64 * 128 * 9 + 128 + 2 * (128 * 128 * 9 + 128)
            + 8192 * 512 + 512 + 512 * 10 + 10)


def test_stopping_training_says_one_line_and_the_cells_below_name_what_was_not_trained(tmp_path):
    lab = Kernel("02_fashion_fcn_vs_lenet", tmp_path)
    lab.retype(synthetic="True", n_train="200", n_test="100", epochs="400", models='["fcn", "lenet5_modified"]')
    train_cell = lab.index("for name in models:\n    train.seed_everything")
    with lab.client.setup_kernel():
        assert lab.run_from(0, train_cell - 1) == []
        cell = lab.nb.cells[train_cell]

        def interrupt_once_fcn_is_done():
            deadline = time.time() + 240
            while "lenet5_modified epoch 1/400" not in text(cell) and time.time() < deadline:
                time.sleep(0.2)                                          # its bar: into lenet5_modified's epochs
            time.sleep(1.0)
            os.kill(lab.client.km.provisioner.pid, signal.SIGINT)   # what JupyterLab's stop button sends
        stopper = threading.Thread(target=interrupt_once_fcn_is_done)
        stopper.start()
        [(where, traceback)] = lab.run(train_cell)
        stopper.join()
        assert where == train_cell and len(traceback) == 1
        assert traceback[0].startswith("lenet5_modified: training stopped in epoch ")
        assert traceback[0].endswith(" of 400; run this cell again to train from the start.")
        assert "fcn: test accuracy" in text(cell) and cell.outputs[-1]["output_type"] == "error"
        below = lab.index("report.show_curves(run)")
        assert lab.run(below) == []
        assert "Not trained: lenet5_modified (stopped in epoch " in text(lab.nb.cells[below])
        last = lab.index("results = run.finish()")
        assert lab.run(last) == []
        assert lab.value("[results['status'], list(results['models'])]") == ["stopped", ["fcn"]]
        assert "WARNING: stopped" in text(lab.nb.cells[last])
