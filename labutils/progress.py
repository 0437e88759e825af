"""Progress of long work where it is read: in Jupyter a live bar replaced by its closing line (the saved notebook keeps
one line per epoch); on a terminal a bar on stderr that vanishes; in a log or a `labs` run, the lines only."""

import os
import sys
import time

from . import in_notebook


def mode() -> str:
    """'notebook', 'terminal' or 'lines'."""
    return "notebook" if in_notebook() else ("terminal" if not os.environ.get("LABS_BATCH") and sys.stderr.isatty()
                                             else "lines")


class Bar:
    """A bar over `total` units: update(n) as work is done, close(line) when it is; only `line` stays."""

    def __init__(self, total: int, label: str, unit: str = "img", every: float = 0.5):
        self.total, self.label, self.unit, self.every = total, label, unit, every
        self.done, self.started, self.shown = 0, time.perf_counter(), 0.0
        self.mode, self.handle, self.drawn = mode(), None, False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.mode != "lines" and time.perf_counter() - self.shown >= self.every:
            self._show(self.text())

    def text(self, width: int = 20) -> str:
        """The bar as one line: share done, count, speed and, once the speed is known, the time left."""
        share = min(self.done / self.total, 1.0) if self.total else 1.0
        seconds = time.perf_counter() - self.started
        rate = self.done / seconds if seconds else 0.0
        known = seconds >= 1 and share >= 0.03   # before that, a guess of the time left is noise
        left = f", about {(self.total - self.done) / rate:.0f} s left" if known and rate and share < 1 else ""
        filled = round(width * share)
        return (f"{self.label} |{'█' * filled}{'·' * (width - filled)}| {share:4.0%} "
                f"{self.done:,}/{self.total:,} {self.unit} ({rate:,.0f} {self.unit}/s{left})")

    def _show(self, text: str) -> None:
        if self.mode == "terminal":
            sys.stderr.write("\r\x1b[K" + text)
            sys.stderr.flush()
            self.drawn = True
        else:
            from IPython.display import DisplayHandle
            bundle = {"text/plain": text}
            if self.handle is None:   # the handle first: a stop that lands while the bar is sent can still close it
                self.handle = DisplayHandle()
                self.handle.display(bundle, raw=True)
            else:
                self.handle.update(bundle, raw=True)
        self.shown = time.perf_counter()

    def _erase(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.drawn, self.shown = False, 0.0

    def write(self, line: str) -> None:
        """A line above the bar (which stays)."""
        self._erase()
        print(line, flush=True)

    def close(self, line: str = "") -> None:
        """Take the bar away and leave `line` (if any) in its place."""
        self._erase()
        if self.handle is not None:
            self.handle.update({"text/plain": line}, raw=True)
        elif line:
            print(line, flush=True)
