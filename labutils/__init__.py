"""The library the course notebooks import: data, models, training, reports and analysis (see README, "Layout").

In Jupyter and Colab, a LabsError shows as its one sentence, not as a traceback: the cell still fails, so Run All
and papermill stop there.
"""

import os
import sys

__version__ = "0.2.0"   # the one place the version is written: pyproject.toml reads it, and so do the Colab cells


class LabsError(Exception):
    """A fault the user can fix; the message names it and says what to do."""


def _kernel():
    """The running Jupyter or Colab kernel's shell (not a plain IPython), or None."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def in_notebook() -> bool:
    """Whether a person reads this run in Jupyter or Colab (or its papermill output), rather than `labs`, whose
    kernels have LABS_BATCH set, or a terminal."""
    return not os.environ.get("LABS_BATCH") and _kernel() is not None


def _one_sentence(shell, etype, value, tb, tb_offset=None):
    shell._showtraceback(etype, value, [str(value)])   # the cell's error output: the sentence alone


if _kernel() is not None:
    _kernel().set_custom_exc((LabsError,), _one_sentence)
