"""Progress of long work, shown where it is read:

- in Jupyter and Colab, a live bar that is replaced by its closing line, so the saved notebook (and its HTML)
  keeps one line per epoch and no bar;
- on a terminal, a tqdm bar that vanishes when done, then the closing line;
- in a log, a pipe or a `labs` run (LABS_BATCH is set for its kernels), the closing lines only.
"""

import os
import sys
import time


def mode() -> str:
    """'notebook', 'terminal' or 'lines'."""
    if os.environ.get("LABS_BATCH"):
        return "lines"
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if shell is not None and hasattr(shell, "kernel"):   # a Jupyter or Colab kernel, not a plain IPython
        return "notebook"
    return "terminal" if sys.stdout.isatty() else "lines"


class Bar:
    """A bar over `total` units: update(n) as work is done, close(line) when it is; only `line` stays."""

    def __init__(self, total: int, label: str, unit: str = "img", every: float = 0.5):
        self.total, self.label, self.unit, self.every = total, label, unit, every
        self.done, self.started, self.shown = 0, time.perf_counter(), 0.0
        self.mode, self.handle, self.tqdm = mode(), None, None
        if self.mode == "terminal":
            from tqdm import tqdm
            self.tqdm = tqdm(total=total, desc=label, unit=unit, unit_scale=True, leave=False, file=sys.stderr,
                             mininterval=every, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.tqdm is not None:
            self.tqdm.update(n)
        elif self.mode == "notebook" and time.perf_counter() - self.shown >= self.every:
            self._show(self._bar())

    def _bar(self, width: int = 30) -> str:
        share = min(self.done / self.total, 1.0) if self.total else 1.0
        seconds = time.perf_counter() - self.started
        rate = self.done / seconds if seconds else 0.0
        left = f", about {(self.total - self.done) / rate:.0f} s left" if rate and share < 1 else ""
        filled = round(width * share)
        return (f"{self.label} |{'█' * filled}{'·' * (width - filled)}| {share:4.0%} "
                f"{self.done:,}/{self.total:,} {self.unit} ({rate:,.0f} {self.unit}/s{left})")

    def _show(self, text: str) -> None:
        from IPython.display import display
        bundle = {"text/plain": text}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)
        self.shown = time.perf_counter()

    def write(self, line: str) -> None:
        """A line above the bar (which stays)."""
        if self.tqdm is not None:
            self.tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self, line: str = "") -> None:
        """Take the bar away and leave `line` (if any) in its place."""
        if self.tqdm is not None:
            self.tqdm.close()
        if self.handle is not None and line:
            self._show(line)
        elif self.handle is not None:
            self.handle.update({"text/plain": ""}, raw=True)
        elif line:
            print(line, flush=True)
