"""Figures (curves, confusion matrix, samples, misclassified images, per-class accuracy) and results.json."""

import io
import math
import platform
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from . import __version__, results as results_file
from .models import count_parameters


# --- results.json -------------------------------------------------------------------------

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
        self.models[name] = {
            "parameters": count_parameters(model),
            "test_accuracy": test.accuracy, "test_loss": test.loss,
            "per_class_accuracy": test.per_class_accuracy(n_classes),
            "confusion_matrix": test.confusion_matrix(n_classes),
            "train_samples_per_second": fit.train_samples_per_second,
            "history": fit.history,
        }
        if fit.status != "ok":
            self.errors.append(fit.error)
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
                   "models": self.models}
        if self.errors:
            results["error"] = " ".join(self.errors)
        return results

    def finish(self) -> dict:
        """Write results.json (when there is an output dir) and say how the run ended."""
        results = self.results()
        if self.output_dir:
            results_file.write(self.output_dir / "results.json", results)
        accuracies = ", ".join(f"{name} {m['test_accuracy']:.2%}" for name, m in self.models.items())
        print(f"status: {results['status']}; test accuracy: {accuracies}; {results['wall_seconds']:.0f} s")
        if self.errors:
            print("WARNING: " + results["error"])
        return results


def notebook_parameters(namespace: dict) -> dict:
    """The notebook's parameters, taken from its namespace right after the parameters cell: JSON-friendly globals.

    output_dir is left out: where a run is written is not a parameter of the experiment.
    """
    skip = {"In", "Out", "exit", "quit", "get_ipython", "output_dir"}
    return {k: v for k, v in namespace.items() if not k.startswith("_") and k not in skip
            and isinstance(v, (bool, int, float, str, list, dict, type(None)))}


# --- figures ------------------------------------------------------------------------------

def plot_history(histories: dict):
    """Loss and accuracy per epoch for each model: training solid, validation dashed."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (name, history) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = [r["epoch"] for r in history]
        for key, style in (("train", "-"), ("val", "--")):
            if history and history[0][f"{key}_loss"] is not None:
                marker = "o" if len(epochs) < 15 else None
                ax_loss.plot(epochs, [r[f"{key}_loss"] for r in history], style, color=color, marker=marker,
                             label=f"{name} {key}")
                ax_acc.plot(epochs, [100 * r[f"{key}_accuracy"] for r in history], style, color=color,
                            marker=marker, label=f"{name} {key}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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


def plot_samples(data, per_class: int = 8):
    """A grid of training images, one row per class, drawn as a single picture (fast even for large grids)."""
    n_classes = len(data.classes)
    labels = data.train.y.cpu()
    c, h, w = data.train.x.shape[1:]
    grid = torch.ones(c, n_classes * (h + 2), per_class * (w + 2))   # white 2-pixel gaps between images
    for k in range(n_classes):
        idx = (labels == k).nonzero().flatten()[:per_class]
        for j, i in enumerate(idx.tolist()):
            grid[:, k * (h + 2):k * (h + 2) + h, j * (w + 2):j * (w + 2) + w] = data.images(data.train.x[i])
    fig, ax = plt.subplots(figsize=(per_class * 0.75 + 1, n_classes * 0.75))
    _show_image(ax, grid)
    ax.set_yticks([k * (h + 2) + h / 2 for k in range(n_classes)], data.classes)
    ax.tick_params(left=False, labelsize=8)
    ax.axis("on")
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{per_class} training images per class", fontsize=10)
    fig.tight_layout()
    return fig


def plot_misclassified(data, evaluation, n: int = 24, cols: int = 8):
    """The first `n` misclassified test images, titled "true → predicted (confidence)"."""
    wrong = (evaluation.predictions != evaluation.labels).nonzero().flatten()[:n]
    rows = max(1, math.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        true, pred = evaluation.labels[i].item(), evaluation.predictions[i].item()
        confidence = evaluation.probabilities[i, pred].item()
        _show_image(ax, data.images(data.test.x[i]), f"{data.classes[true]} → {data.classes[pred]} ({confidence:.0%})")
    if not len(wrong):
        axes.flat[0].set_title("no misclassified images")
    fig.suptitle(f"{(evaluation.predictions != evaluation.labels).sum().item()} of {len(evaluation.labels):,} "
                 "test images misclassified", fontsize=10)
    fig.tight_layout()
    return fig


def most_confused(confusion, classes, k: int = 5) -> list:
    """The k most frequent mistakes: (true class, predicted class, count), largest first."""
    confusion = torch.as_tensor(confusion).clone()
    confusion.fill_diagonal_(0)
    counts, flat = confusion.flatten().topk(min(k, confusion.numel()))
    n = len(classes)
    return [(classes[i // n], classes[i % n], c) for c, i in zip(counts.tolist(), flat.tolist()) if c > 0]


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
    fig, ax = plt.subplots(figsize=(max(6, len(classes) * 0.8), 3.5))
    width = 0.8 / len(accuracies)
    for i, (name, acc) in enumerate(accuracies.items()):
        ax.bar([c + i * width - 0.4 + width / 2 for c in range(len(classes))], [100 * a for a in acc], width,
               label=name)
    low = min(100 * a for acc in accuracies.values() for a in acc)
    ax.set(xticks=range(len(classes)), ylabel="test accuracy (%)", title="Accuracy per class",
           ylim=(max(0, low - 5), 100.5))
    ax.set_xticklabels(classes, rotation=30 if max(map(len, classes)) > 3 else 0, ha="right" if max(map(len, classes)) > 3 else "center")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

