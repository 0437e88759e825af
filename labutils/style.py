"""The one look of every figure labutils draws (reports and sweep summaries), set once when it is imported."""

import matplotlib.pyplot as plt
from cycler import cycler

COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]  # Okabe-Ito

plt.rcParams.update({
    "figure.dpi": 100, "savefig.bbox": "tight", "font.size": 10, "axes.titlesize": 11,
    "axes.labelsize": 10, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "axes.prop_cycle": cycler(color=COLORS),
    "legend.fontsize": 8, "legend.frameon": False, "lines.linewidth": 1.6,
})


def legend_outside(ax, **kwargs) -> None:
    """The legend to the right of the axes, where it never covers the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)
