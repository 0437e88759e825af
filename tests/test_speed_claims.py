"""What the GPU labs and the layout rule tell a CPU user is what benchmarks/results/speed-cpu.json measured: the
layout rule agrees with every CPU kind measured, and the figures in labs 03's and 04's CPU line are the measured
ones (no timing happens here: these read the committed results)."""
import json
import re

import nbformat
import pytest
import torch

from conftest import ROOT
from labutils import lessons, models, parameters, report, train

MEASURED = json.loads((ROOT / "benchmarks" / "results" / "speed-cpu.json").read_text())
AVX2 = next(entry for name, entry in MEASURED.items() if name.endswith("(flags: avx2)"))
BUILD = {"lenet5": lambda: lessons.lenet5(), "lenet5_modified": lambda: lessons.lenet5(modified=True, dropout=0.1),
         "ensemble_cnn": lambda: lessons.ensemble_cnn(), "model2": lambda: lessons.model2(), "model3": lambda: lessons.cnn()}


def faster(record: dict, precision: str) -> str | None:
    """The layout measured faster (by more than 5 % in every round), or None when they are level."""
    ratios = record.get("layout_ratios", {}).get(precision) or \
        [record[f"step_{precision}_channels_last"] / record[f"step_{precision}_contiguous"]]
    return "channels_last" if min(ratios) > 1.05 else "contiguous" if max(ratios) < 0.95 else None


@pytest.mark.parametrize("machine", list(MEASURED))
def test_the_layout_rule_picks_no_layout_measured_slower_on_any_cpu_kind_measured(machine):
    entry = MEASURED[machine]
    precisions = ["fp32", "bf16"] if entry["machine"]["auto"] == "bf16" else ["fp32"]   # what auto runs there
    judged = 0
    for name, record in entry["models"].items():
        if name in BUILD and "step_fp32_contiguous" in record:
            rule = "channels_last" if train.channels_last(BUILD[name](), torch.device("cpu")) else "contiguous"
            for precision in precisions:
                assert faster(record, precision) in (None, rule), (machine, name, precision)
                judged += faster(record, precision) is not None
    assert judged >= 3                                  # the table decides something on every kind


def test_the_gpu_labs_cpu_lines_carry_the_measured_figures():
    rate = {name: r["train_auto"] for name, r in AVX2["models"].items()}
    epoch = {name: 45_000 / rate[name] / 60 for name in ("model2", "model3")}   # minutes per epoch
    default = 20 * (45_000 / rate["lenet5"] + 45_000 / rate["model2"] + 3 * 45_000 / rate["model3"]) / 3600
    lab04 = AVX2["labs"]["mnist_cnn_ensemble"]["fp32"]["seconds"] / 60
    line = {path.stem: next(c.source for c in nbformat.read(path, as_version=4).cells if "gpu_advice" in c.source)
            for path in (ROOT / "notebooks").glob("0[34]_*.ipynb")}
    assert f"model3 takes about {epoch['model3']:.0f} minutes" in re.sub(r'"\s+"', "", line["03_cifar10_cnn"])
    assert f"model2 about {epoch['model2']:.0f}" in line["03_cifar10_cnn"]
    assert f"about {default:.0f} hours" in line["03_cifar10_cnn"]
    assert f"schedule takes about {lab04:.0f} minutes" in re.sub(r'"\s+"', "", line["04_mnist_cnn_ensemble"])


def test_a_gpu_lab_says_so_in_one_line_on_a_cpu_with_real_data_and_not_on_synthetic(capsys):
    cell = 'device: str = "cpu"  # d\nsynthetic: bool = False  # s\nepochs: int = 20  # e\n'
    namespace = {"In": ["", cell, "..."], "device": "cpu", "synthetic": False, "epochs": 20}
    report.start("cifar10_cnn", namespace, gpu_advice="lower `epochs`")
    assert capsys.readouterr().out.startswith("This notebook is meant for a GPU but runs on the CPU: on Colab choose "
                                              "Runtime > Change runtime type > GPU; on a CPU, lower `epochs`.")
    report.start("cifar10_cnn", {**namespace, "In": ["", cell.replace("False", "True"), "..."], "synthetic": True},
                 gpu_advice="lower `epochs`")
    assert "meant for a GPU" not in capsys.readouterr().out
    assert parameters.check_notebook("cifar10_cnn", dict(namespace)) == {"device": "cpu", "synthetic": False,
                                                                          "epochs": 20}
