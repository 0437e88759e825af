import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def labs(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run `python -m labutils ARGS` the way a user runs `labs`, capturing its output."""
    return subprocess.run([sys.executable, "-m", "labutils", *map(str, args)], cwd=cwd or ROOT, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def tiny_mnist():
    """Learnable synthetic MNIST, read through the real idx loader: 540 train, 60 validation, 200 test."""
    from labutils import data
    return data.load("mnist", synthetic=True, n_train=600, n_test=200, seed=0)
