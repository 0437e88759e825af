"""The original reports' numbers, one file per lab (labutils/reports/<assignment>.yaml, shipped with the package
so that a notebook on Colab reads them too): read by the notebooks, the sweep summaries and
benchmarks/accuracy.py."""

from importlib.resources import files

import yaml


def reported(assignment: str) -> dict:
    """The lab's file: source, dataset, models (name -> %), recipes, sweeps, published; {} for an unknown lab."""
    path = files("labutils") / "reports" / f"{assignment}.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}
