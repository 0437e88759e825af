"""Helpers shared by the course notebooks: data, models, training, reports, and the `labs` runner."""

__version__ = "0.1.0"


class LabsError(Exception):
    """A fault the user can fix; the message names it and says what to do."""
