"""Helpers shared by the course notebooks (data, models, training, reports) and the `labs` runner.

Two layers: the notebook library (data, models, train, progress, report, analysis, style, and the torch-free
vocab, results and reported) never imports the batch side (params, runner, sweep, summary, index, cli).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labutils")   # pyproject.toml's, the one place the version is written
except PackageNotFoundError:            # imported from a source folder that was never installed
    __version__ = "unknown"


class LabsError(Exception):
    """A fault the user can fix; the message names it and says what to do."""
