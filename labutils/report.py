"""Figures (curves, confusion matrix, samples, misclassified images, per-class accuracy) and results.json."""

import io
import platform
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from . import __version__, results as results_file
from .models import count_parameters
from .style import legend_outside


# --- a run's results ----------------------------------------------------------------------

def environment(device) -> dict:
    """Versions and hardware, as results.json records them."""
    device = torch.device(device)
    return {"python": platform.python_version(), "torch": torch.__version__, "device": device.type,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "labutils": __version__}


class Run:
    """One notebook run: collects each model's results and figures, then writes results.json.

    With an empty output_dir nothing is written: the notebook only shows its results.
    """

    def __init__(self, assignment: str, params: dict, device, output_dir: str = ""):
        self.assignment, self.params, self.device = assignment, params, device
        self.output_dir = Path(output_dir) if output_dir else None
        self.started = time.perf_counter()
        self.models, self.errors = {}, []

    def add(self, name: str, model, fit, test, n_classes: int) -> dict:
        """Record a trained model: its parameter count, test evaluation and training history."""
        return self.add_ensemble(name, [model], [fit], test, n_classes, fit.history)

    def add_ensemble(self, name: str, members: list, fits: list, test, n_classes: int, history=()) -> dict:
        """Record models whose predictions were averaged: their parameters summed, the test evaluation of the
        average, their mean training speed (and no history of its own)."""
        self.models[name] = {
            "parameters": sum(count_parameters(m) for m in members),
            "test_accuracy": test.accuracy, "test_loss": test.loss,
            **({"test_accuracy_single_view": test.single_view_accuracy}
               if test.single_view_accuracy is not None else {}),
            "per_class_accuracy": test.per_class_accuracy(n_classes),
            "confusion_matrix": test.confusion_matrix(n_classes),
            "train_samples_per_second": sum(f.train_samples_per_second for f in fits) / len(fits),
            "history": list(history),
        }
        self.errors += [f.error for f in fits if f.status != "ok" and f.error not in self.errors]
        return self.models[name]

    def save(self, fig, name: str) -> None:
        """Show a figure, and save it as <output_dir>/<name>.png when there is an output dir.

        The figure is drawn once, to PNG, for both; then it is closed.
        """
        from IPython.display import Image, display
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        if self.output_dir:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / f"{name}.png").write_bytes(buffer.getvalue())
        display(Image(buffer.getvalue()))

    def results(self) -> dict:
        status = "diverged" if self.errors else "ok"
        results = {"assignment": self.assignment, "status": status, "params": self.params,
                   "env": environment(self.device), "wall_seconds": time.perf_counter() - self.started,
                   "finished": results_file.now(), "models": self.models}
        if self.errors:
            results["error"] = " ".join(self.errors)
        return results

    def finish(self) -> dict:
        """Write results.json (when there is an output dir) and say how the run ended."""
        results = self.results()
        if self.output_dir:
            results_file.write(self.output_dir / "results.json", results)
        print(("" if results["status"] == "ok" else "WARNING: ") + results_file.describe(results))
        return results


def parameter_table(params: dict, columns: int = 3) -> str:
    """The run's parameters as one compact markdown table: `columns` name-value pairs per row."""
    from .summary import label
    def shown(value):
        if value == "":
            return "(empty)"
        if isinstance(value, list) and not all(isinstance(v, (int, float)) for v in value):
            return ", ".join(map(str, value)) if all(isinstance(v, str) for v in value) else str(value)
        return label(value)
    cells = [f"`{name}` | {shown(value)}" for name, value in params.items()]
    cells += [" | "] * (-len(cells) % columns)
    rows = [" | ".join(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    return "\n".join(["| parameter | value " * columns + "|", "|---|---" * columns + "|"]
                     + [f"| {row} |" for row in rows])


def notebook_parameters(namespace: dict) -> dict:
    """The notebook's parameters, taken from its namespace right after the parameters cell: JSON-friendly globals.

    output_dir is left out: where a run is written is not a parameter of the experiment.
    """
    skip = {"In", "Out", "exit", "quit", "get_ipython", "output_dir"}
    return {k: v for k, v in namespace.items() if not k.startswith("_") and k not in skip
            and isinstance(v, (bool, int, float, str, list, dict, type(None)))}


# --- figures ------------------------------------------------------------------------------

def plot_history(histories: dict, title: str = ""):
    """Loss and accuracy of each model over training: training solid, validation dashed (and test dotted, for
    the runs that watched it), per epoch or, for staged training, per iteration."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 3.8))
    by_iteration = any("iteration" in r for h in histories.values() for r in h)
    x_key = "iteration" if by_iteration else "epoch"
    for i, (name, history) in enumerate(histories.items()):
        xs = [r[x_key] for r in history]
        for key, style in (("train", "-"), ("val", "--"), ("test", ":")):
            if history and history[0].get(f"{key}_loss") is not None:
                marker = "o" if len(xs) < 15 else None
                label = f"{name} {'validation' if key == 'val' else key}"
                ax_loss.plot(xs, [r[f"{key}_loss"] for r in history], style, color=f"C{i}", marker=marker, label=label)
                ax_acc.plot(xs, [100 * r[f"{key}_accuracy"] for r in history], style, color=f"C{i}", marker=marker,
                            label=label)
    names = ", ".join(histories)
    ax_loss.set(xlabel=x_key, ylabel="loss (cross-entropy per image)", title=f"Loss: {names}")
    ax_acc.set(xlabel=x_key, ylabel="accuracy (%)", title=f"Accuracy: {names}")
    if not by_iteration:
        ax_loss.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax_acc.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    legend_outside(ax_acc)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ensemble(histories: dict, ensemble: str = "ensemble"):
    """Test loss and accuracy over the iterations of each member (thin) and of their ensemble (thick), as the
    MNIST ensemble report draws them; the accuracy axis zooms on the last three quarters of training."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 3.8))
    late = []
    for i, (name, history) in enumerate(histories.items()):
        xs = [r["iteration"] for r in history]
        width = 2.6 if name == ensemble else 1.2
        ax_loss.plot(xs, [r["test_loss"] for r in history], color=f"C{i}", linewidth=width, label=name)
        ax_acc.plot(xs, [100 * r["test_accuracy"] for r in history], color=f"C{i}", linewidth=width, label=name)
        late += [100 * r["test_accuracy"] for r in history[len(history) // 4:]]
    if late:
        ax_acc.set_ylim(min(late) - 0.1, min(100, max(late) + 0.1))
    ax_loss.set(xlabel="iteration", ylabel="test loss (cross-entropy per image)", title="Test loss: members and ensemble")
    ax_acc.set(xlabel="iteration", ylabel="test accuracy (%)", title="Test accuracy: members and ensemble")
    legend_outside(ax_acc)
    fig.tight_layout()
    return fig


def plot_schedule(stages: list, update_every: int):
    """The staged schedule over the iterations: learning rate (log scale), batch size and L2 coefficient."""
    from .train import stage_values
    total, values = stage_values(stages, update_every)
    xs = list(range(total))
    lrs, sizes, l2s = zip(*(values(i) for i in xs))
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
    for ax, ys, label, log in ((axes[0], lrs, "learning rate", True), (axes[1], sizes, "batch size (images)", False),
                               (axes[2], l2s, "L2 coefficient", False)):
        ax.plot(xs, ys, color="C0")
        ax.set(xlabel="iteration", ylabel=label, title=label.split(" (")[0].capitalize())
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.1 * max(max(ys), 1e-9))      # from zero: a constant reads as constant
        for start in [sum(s["iterations"] for s in stages[:k]) for k in range(1, len(stages))]:
            ax.axvline(start, color="0.6", linestyle="--", linewidth=1)
    fig.tight_layout()
    return fig


def plot_confusion(confusion, classes, title: str = "Confusion matrix (test set)"):
    """Counts of true (rows) against predicted (columns) classes."""
    import seaborn as sns  # imported here: it is slow and only this figure needs it
    confusion = torch.as_tensor(confusion)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.heatmap(confusion.numpy(), annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                xticklabels=classes, yticklabels=classes, annot_kws={"fontsize": 7})
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def _show_image(ax, image, title: str = ""):
    image = image.permute(1, 2, 0).squeeze(-1)  # CHW -> HWC, or HW for one channel
    ax.imshow(image.numpy(), cmap="gray" if image.dim() == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _tile(rows: list, gap: int = 2) -> torch.Tensor:
    """One picture of images (CHW, values in [0, 1]) laid out in rows, with white gaps; short rows stay blank."""
    c, h, w = rows[0][0].shape
    picture = torch.ones(c, len(rows) * (h + gap), max(map(len, rows)) * (w + gap))
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            picture[:, i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = image
    return picture


def plot_samples(data, per_class: int = 8):
    """A grid of training images, one row per class, drawn as a single picture (fast even for large grids)."""
    labels = data.train.y.cpu()
    rows = [[data.images(data.train.x[i]) for i in (labels == k).nonzero().flatten()[:per_class].tolist()]
            or [torch.ones(data.train.x.shape[1:])] for k in range(len(data.classes))]
    h = data.train.x.shape[2]
    fig, ax = plt.subplots(figsize=(per_class * 0.75 + 1, len(rows) * 0.75))
    _show_image(ax, _tile(rows), f"{per_class} training images per class")
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([k * (h + 2) + h / 2 for k in range(len(rows))], data.classes)
    ax.tick_params(left=False, labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    return fig


def plot_augmented(data, augment, n: int = 6, copies: int = 5):
    """Training images (first column) and `copies` random augmentations of each, as the model sees them."""
    x = data.train.x[:n]
    columns = [data.images(x)] + [data.images(augment(x)) for _ in range(copies)]
    fig, ax = plt.subplots(figsize=((copies + 1) * 0.9 + 0.5, n * 0.9 + 0.5))
    _show_image(ax, _tile([[column[i] for column in columns] for i in range(len(x))]),
                "original, then random crops and flips")
    fig.tight_layout()
    return fig


def plot_misclassified(data, evaluation, n: int = 24, cols: int = 8):
    """The first `n` misclassified test images, each captioned "true → predicted (confidence)"."""
    wrong = (evaluation.predictions != evaluation.labels).nonzero().flatten()
    shown = wrong[:n].tolist()
    rows = [[data.images(data.test.x[i]) for i in shown[r:r + cols]] for r in range(0, len(shown), cols)]
    fig, ax = plt.subplots(figsize=(cols * 1.35, max(1, len(rows)) * 1.55 + 0.4))
    title = f"{len(wrong)} of {len(evaluation.labels):,} test images misclassified"
    if not shown:
        fig.set_size_inches(6, 0.4)
        ax.axis("off")
        ax.set_title(title, fontsize=10)
        return fig
    _show_image(ax, _tile(rows, gap=12), title)
    h, w = data.test.x.shape[2:]
    for k, i in enumerate(shown):
        true, pred = evaluation.labels[i].item(), evaluation.predictions[i].item()
        caption = f"{data.classes[true]} → {data.classes[pred]} ({evaluation.probabilities[i, pred].item():.0%})"
        ax.text((k % cols) * (w + 12) + w / 2, (k // cols) * (h + 12) + h + 1, caption, ha="center", va="top",
                fontsize=6)
    fig.tight_layout()
    return fig


def model_table(models: dict, macs: dict) -> str:
    """Markdown: per trained model (results.json entries) its parameters, MACs per image, seconds per epoch,
    training images per second and test accuracy."""
    lines = ["| model | parameters | MACs per image | seconds per epoch | training images/s | test accuracy |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        seconds = [h["seconds"] for h in m["history"]]
        lines.append(f"| {name} | {m['parameters']:,} | {macs[name]:,} | {sum(seconds) / len(seconds):.1f} | "
                     f"{m['train_samples_per_second']:,.0f} | {m['test_accuracy']:.2%} |")
    return "\n".join(lines)


def plot_per_class(accuracies: dict, classes):
    """Test accuracy per class, one bar group per class and one bar per model."""
    fig, ax = plt.subplots(figsize=(max(7, len(classes) * 0.9), 3.6))
    width = 0.8 / len(accuracies)
    for i, (name, acc) in enumerate(accuracies.items()):
        ax.bar([c + i * width - 0.4 + width / 2 for c in range(len(classes))], [100 * a for a in acc], width,
               label=name)
    low = min(100 * a for acc in accuracies.values() for a in acc)
    ax.set(xticks=range(len(classes)), ylabel="test accuracy (%)", ylim=(max(0, low - 5), 100.5),
           title=f"Test accuracy per class: {', '.join(accuracies)}")
    long_names = max(map(len, classes)) > 3
    ax.set_xticklabels(classes, rotation=30 if long_names else 0, ha="right" if long_names else "center")
    ax.grid(axis="x", visible=False)
    legend_outside(ax)
    fig.tight_layout()
    return fig
