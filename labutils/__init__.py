"""The library the course notebooks import (README, "Layout"). In Jupyter a LabsError shows as its one sentence, a
stop as one line, other errors without labutils' and torch's frames; the cell still fails."""

import os
import sys
import types

__version__ = "0.2.0"   # the one place the version is written: pyproject.toml reads it, and so do the Colab cells


class LabsError(Exception):
    """A fault the user can fix; the message names it and says what to do."""


def _kernel():
    """The running Jupyter or Colab kernel's shell (not a plain IPython), or None."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def in_notebook() -> bool:
    """Whether a person reads this in Jupyter or Colab, not `labs` (LABS_BATCH) or a terminal."""
    return not os.environ.get("LABS_BATCH") and _kernel() is not None


def _shown(shell, etype, value, tb, tb_offset=None):
    """How an error shows in Jupyter: a LabsError or a stop as one line; others without labutils' and torch's frames."""
    if issubclass(etype, (LabsError, KeyboardInterrupt)):
        stop = "Stopped before this cell finished; run it again to do what it does."
        return shell._showtraceback(etype, value, [str(value) if issubclass(etype, LabsError) else stop])
    stack, chain = [], None
    while tb is not None:
        stack, tb = stack + [tb], tb.tb_next
    for t in reversed([t for t in stack if not t.tb_frame.f_code.co_filename.startswith(_LIBRARIES)]):
        chain = types.TracebackType(chain, t.tb_frame, t.tb_lasti, t.tb_lineno)
    shell._showtraceback(etype, value, shell.InteractiveTB.structured_traceback(etype, value, chain, tb_offset))


if _kernel() is not None:
    import importlib.util
    _LIBRARIES = (os.path.dirname(__file__), os.path.dirname(importlib.util.find_spec("torch").origin))
    _kernel().set_custom_exc((Exception, KeyboardInterrupt), _shown)
