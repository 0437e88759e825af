"""A notebook's run and what it shows: the Run and its results.json, the figures, one-call views (show_*)."""

import contextlib
import copy
import functools
import inspect
import io
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Image, Markdown, display

from . import analysis, results as results_file
from .models import count_parameters, summary
from .style import legend_outside
from .parameters import check_notebook
from . import train
from .train import pick_device, precision_for
from .vocab import label, md


def start(assignment: str, namespace: dict, gpu_advice: str = "") -> "Run":
    """A notebook's first step: check its parameters by the rules `labs` uses (one line for a bad one), pick the device
    and precision (run.device, run.precision), show them. The run lasts to run.finish(): what trained before is not
    its own. output_dir is kept apart; gpu_advice: what to lower on a CPU, for a lab meant for a GPU."""
    params = check_notebook(assignment, namespace)
    train.ATTEMPTS.clear()
    train.RUN += 1
    output_dir = params.pop("output_dir", "")
    device = pick_device(params.get("device", "auto"), "" if params.get("synthetic") else gpu_advice)
    run = Run(assignment, params, device, output_dir, precision_for(device, params.get("precision", "auto")), namespace)
    shown = {**params, **({"precision": f"{params['precision']} ({run.precision} here)"} if "precision" in params
                          else {})}
    display(Markdown(f"Running on **{md(device)}** with these parameters:\n\n" + parameter_table(shown)))
    return run


def named_models(assignment: str, params: dict) -> list:
    """The models a run's parameters ask for: what a finished run records."""
    if assignment == "mnist_cnn_ensemble":
        return [f"member {k + 1}" for k in range(params["members"])] + ["ensemble"]
    return ["mlp"] if assignment == "mnist_mlp" else [*params["models"], *["ensemble"] * bool(params.get("ensemble"))]


class Run:
    """One notebook run, start cell to finish: each model's results with the parameters that stood when it was recorded
    (and in memory its fit, test evaluation, layers), the figures, results.json (none without an output_dir)."""

    def __init__(self, assignment: str, params: dict, device, output_dir: str = "", precision: str = "fp32",
                 namespace: dict | None = None):
        self.assignment, self.started_with, self.device = assignment, params, torch.device(device)
        self.precision = precision   # what the forward passes run in: fp32, bf16 or fp16
        self.output_dir = Path(output_dir) if output_dir else None
        self.namespace = {} if namespace is None else namespace   # the notebook's globals, read at each record
        self.started, self.previous, self.claimed = time.perf_counter(), None, False
        self.recorded, self.fits, self.evaluations, self.layers, self.ensembles = {}, {}, {}, {}, {}
        self.trained_with = {}   # model name -> the parameters when it was recorded

    @property
    def models(self) -> dict:
        """The models recorded, less those whose training was tried again since and did not finish."""
        return {n: m for n, m in self.recorded.items() if not isinstance(train.ATTEMPTS.get(n), str)}

    @property
    def params(self) -> dict:
        """The parameters that trained: as they stood when the last model was recorded (at the start, before)."""
        return list(self.trained_with.values())[-1] if self.trained_with else self.started_with

    def _record(self, name: str, fits, entry: dict) -> bool:
        if any(f.run not in (None, train.RUN) for f in fits):
            print(f"{name} is not recorded: it was trained before the start cell last ran, so it is not this run's; "
                  f"run its training cell again.")
            return False
        self.recorded[name] = entry
        self.trained_with[name] = {n: copy.deepcopy(self.namespace.get(n, v)) for n, v in self.started_with.items()}
        return True

    def add(self, name: str, model, fit, test) -> None:
        """Record a trained model: parameters, work per image, test evaluation, training history and speed."""
        shape = summary(model, test.input_shape)
        entry = self._entry(shape["parameters"], test, fit.train_samples_per_second, fit.history)
        if self._record(name, [fit], {**entry, "macs_per_image": shape["macs"], "train_seconds": fit.train_seconds,
                                      "recipe": fit.recipe.record() if fit.recipe else None, "network": repr(model),
                                      "val_images": fit.val_images, "note": fit.note,
                                      "val_accuracy_batch_statistics": fit.batch_statistics}):
            self.fits[name], self.evaluations[name], self.layers[name] = fit, test, shape["layers"]
            print(f"{name}: test accuracy {test.accuracy:.2%}, test loss {test.loss:.4f}, "
                  f"{fit.train_samples_per_second:,.0f} training images per second")

    def add_ensemble(self, name: str, members: dict, test, history=()) -> None:
        """Record averaged models (members: {label: (model, fit, test)}) with the ensemble's own `history`."""
        fits = [fit for _, fit, _ in members.values()]
        if self._record(name, fits, self._entry(sum(count_parameters(m) for m, _, _ in members.values()), test,
                                                sum(f.train_samples_per_second for f in fits) / len(fits), history)):
            self.ensembles[name] = {member: t.accuracy for member, (_, _, t) in members.items()}
            self.evaluations[name] = test
            for member, fit in zip(members, fits):
                if not any(fit is known for known in self.fits.values()):   # a member trained above is there already
                    self.fits[member] = fit

    @staticmethod
    def _entry(parameters: int, test, speed: float, history) -> dict:
        return {"parameters": parameters, "test_accuracy": test.accuracy, "test_loss": test.loss,
                **({} if test.single_view_accuracy is None else {"test_accuracy_single_view": test.single_view_accuracy}),
                "per_class_accuracy": test.per_class_accuracy(), "confusion_matrix": test.confusion_matrix(),
                "train_samples_per_second": speed, "history": list(history)}

    def best(self) -> str | None:
        """The model best on validation (results.best: the test set chooses nothing)."""
        return results_file.best(self.models)

    def save(self, fig, name: str) -> None:
        """Show a figure and, with an output dir, save it as <name>.png (whole or not at all), drawn once."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        if self.output_dir:
            self._claim()
            results_file.write_atomic(self.output_dir / f"{name}.png", buffer.getvalue())
        display(Image(buffer.getvalue()))

    def _claim(self) -> None:
        """Before this run's first file, results.json says running (an earlier record is kept in memory for finish)."""
        if not self.claimed:
            with contextlib.suppress(OSError, ValueError):
                self.previous = json.loads((self.output_dir / "results.json").read_text())
            self.claimed = True
            results_file.write(self.output_dir / "results.json", results_file.build(
                self.assignment, self.started_with, status="running", env=self._env()))

    def unfinished(self, expected: bool = True) -> dict:
        """name -> why, for trainings stopped or crashed since the start cell and (`expected`) models not recorded."""
        asked = named_models(self.assignment, self.params) if expected else []
        return {**{n: "not trained since the start cell" for n in asked if n not in self.models},
                **{n: why for n, why in train.ATTEMPTS.items() if isinstance(why, str)}}

    def untrained(self, expected: bool = True) -> str:
        """One line naming what did not finish, or that nothing has been trained yet; '' when neither."""
        why = self.unfinished(expected)
        return ("Not trained: " + "; ".join(f"{n} ({reason})" for n, reason in why.items()) + ". Run the cells that "
                "train them." if why else "" if self.models else "No model has been trained since the start cell: "
                "run the training cells first.")

    def results(self) -> dict:
        why, params = self.unfinished(), self.params
        models = {n: {**m, **({"params": own} if (own := {k: v for k, v in self.trained_with[n].items()
                                                          if v != params.get(k)}) else {})}
                  for n, m in self.models.items()}   # a model recorded with other values keeps those as its own
        errors = list(dict.fromkeys(f.error for n, f in self.fits.items() if f.status != "ok" and n in models))
        status = ("failed" if any(r.startswith(("crashed", "did not")) for r in why.values()) else "stopped" if why
                  else "diverged" if errors else "ok")
        return results_file.build(self.assignment, params, status=status, models=models, env=self._env(),
                                  error=self.untrained() or " ".join(errors) or None,
                                  wall_seconds=time.perf_counter() - self.started)

    def _env(self) -> dict:
        cuda, fits = self.device.type == "cuda", list(self.fits.values())
        return {"device": self.device.type, "gpu": torch.cuda.get_device_name(self.device) if cuda else None,
                "precision": fits[0].precision if fits else self.precision,
                "layout": {name: fit.layout for name, fit in self.fits.items()},
                "steps": {name: fit.steps for name, fit in self.fits.items()},
                "peak_memory_gb": torch.cuda.max_memory_reserved(self.device) / 1e9 if cuda else None}

    def finish(self) -> dict:
        """Write results.json and say how the run ended; a record with no model never replaces one that has models."""
        results = self.results()
        changed = ", ".join(f"{n} {label(v)} → {label(self.params[n])}" for n, v in self.started_with.items()
                            if self.params[n] != v)
        lines = [f"The parameters changed after the start cell: {changed}; the record gives the values that "
                 f"trained."] if changed else []
        if self.output_dir:
            self._claim()
            keep = not results["models"] and isinstance(self.previous, dict) and self.previous.get("models")
            results_file.write(self.output_dir / "results.json", self.previous if keep else results)
            if keep:
                lines.append(f"No model was trained since the start cell, so results.json keeps the earlier run's "
                             f"record ({self.previous['status']}, finished {self.previous.get('finished')}).")
        print("\n".join(lines + [("" if results["status"] == "ok" else "WARNING: ") +
                                 results_file.describe(results, " since the start cell")]))
        return results


def parameter_table(params: dict, columns: int = 3) -> str:
    """The run's parameters as a compact markdown table, `columns` pairs a row, every value shown as given."""
    def shown(value):
        if value == "":
            return "(empty)"
        if isinstance(value, list) and not all(isinstance(v, (int, float)) for v in value):
            return ", ".join(map(str, value)) if all(isinstance(v, str) for v in value) else str(value)
        return label(value)
    cells = [f"`{name}` | {md(shown(value))}" for name, value in params.items()]   # names: the cell's own
    cells += [" | "] * (-len(cells) % columns)
    rows = [" | ".join(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    return "\n".join(["| parameter | value " * columns + "|", "|---|---" * columns + "|"]
                     + [f"| {row} |" for row in rows])


def _naming_untrained(view):
    """A view that first names what did not finish, then shows what was trained (nothing, if none)."""
    @functools.wraps(view)
    def shown(run: Run, *args, **kwargs):
        given = inspect.signature(view).bind(run, *args, **kwargs)
        given.apply_defaults()
        asked = given.arguments.get("only") or given.arguments.get("name")   # the model it shows, if one
        missing = f"{asked} is not trained since the start cell, so there is nothing of it to show." \
            if asked and asked not in run.models and run.models else ""
        for line in (line for line in (run.untrained(expected=False), missing) if line):
            print(line)
        return view(run, *args, **kwargs) if run.models and not missing else None
    return shown


def show_samples(run: Run, data) -> None:
    run.save(plot_samples(data), "samples")


def show_augmentation(run: Run, data, augmentation) -> None:
    """Training images beside random augmentations of them, as the model sees them."""
    if augmentation is None:
        print("no augmentation: the model sees the training images as they are")
    else:
        run.save(plot_augmented(data, augmentation), "augmentation")


@_naming_untrained
def show_curves(run: Run, file: str = "curves") -> None:
    """The training curves of every model that has them (ensembles' own curves aside), saved as `file`.png."""
    run.save(plot_history({n: m["history"] for n, m in run.models.items() if n not in run.ensembles}), file)


@_naming_untrained
def show_models(run: Run) -> None:
    """Side by side: parameters, work per image, seconds per epoch, speed, memory layout, test accuracy."""
    display(Markdown(model_table(run)))


@_naming_untrained
def show_confusions(run: Run, classes, only: str | None = None) -> None:
    """Each model's confusion matrix on the test set (or `only` that model's), then the most frequent mistakes."""
    shown = {only: run.models[only]} if only else run.models
    for name, m in shown.items():
        file = f"confusion_matrix_{name}".replace(" ", "_") if len(shown) > 1 else "confusion_matrix"
        run.save(plot_confusion(m["confusion_matrix"], classes, f"{name}: confusion matrix (test set)"), file)
    display(Markdown(analysis.mistakes_table(shown, classes)))


@_naming_untrained
def show_per_class(run: Run, classes) -> None:
    run.save(plot_per_class({n: m["per_class_accuracy"] for n, m in run.models.items()}, classes), "per_class_accuracy")


@_naming_untrained
def show_misclassified(run: Run, data, name: str | None = None) -> None:
    """Misclassified test images of `name`, by default the model best on validation."""
    name = name or run.best() or next(iter(run.models))
    print(f"misclassified test images of {name}" + (" (best on validation)" if name == run.best() else ""))
    run.save(plot_misclassified(data, run.evaluations[name]), "misclassified")


@_naming_untrained
def show_comparison(run: Run) -> None:
    """The fully connected net against LeNet-5 in this run's numbers (lab 02), when both were trained."""
    if {"fcn", "lenet5"} <= run.models.keys():
        display(Markdown(analysis.fcn_against_cnn(run.models, run.layers, run.device.type)))


@_naming_untrained
def show_divergence(run: Run) -> None:
    """Each model's training: ok, or why it diverged."""
    display(Markdown(analysis.divergence(run.fits)))


@_naming_untrained
def show_ensemble(run: Run, name: str = "ensemble") -> None:
    """The members' test accuracies beside their ensemble's."""
    display(Markdown(analysis.ensemble_gain(run.ensembles[name], run.models[name]["test_accuracy"], name)))


@_naming_untrained
def show_ensemble_curves(run: Run, name: str = "ensemble") -> None:
    """Test loss and accuracy over the iterations, members and ensemble; then the members' training curves."""
    run.save(plot_ensemble({n: m["history"] for n, m in run.models.items()}, name), "ensemble_curves")
    show_curves.__wrapped__(run)


@_naming_untrained
def show_extremes(run: Run) -> None:
    """The report's table: each network's lowest test loss and highest test accuracy over training."""
    display(Markdown(analysis.extremes({n: m["history"] for n, m in run.models.items()})))


def plot_history(histories: dict, title: str = ""):
    """Each model's loss and accuracy over training: training solid, validation dashed, test dotted."""
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
    """Each member's (thin) and the ensemble's (thick) test loss and accuracy over the iterations."""
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


def plot_schedule(recipe, n_train: int):
    """A recipe's learning rate (log scale), batch size and L2 coefficient over its iterations, stages marked."""
    plan = recipe.laid_out(n_train)
    xs = list(range(plan.total))
    lrs, sizes, l2s = zip(*(plan.at(i) for i in xs))
    starts = [sum(s["iterations"] for s in plan.stages[:k]) for k in range(1, len(plan.stages))]
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
    for ax, ys, what, log in ((axes[0], lrs, "learning rate", True), (axes[1], sizes, "batch size (images)", False),
                              (axes[2], l2s, "L2 coefficient", False)):
        ax.plot(xs, ys, color="C0")
        ax.set(xlabel="iteration", ylabel=what, title=what.split(" (")[0].capitalize())
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.1 * max(max(ys), 1e-9))      # from zero: a constant reads as constant
        for start in starts:
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
    rows = [[data.unnormalize(data.train.x[i]) for i in (labels == k).nonzero().flatten()[:per_class].tolist()]
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
    columns = [data.unnormalize(x)] + [data.unnormalize(augment(x)) for _ in range(copies)]
    fig, ax = plt.subplots(figsize=((copies + 1) * 0.9 + 0.5, n * 0.9 + 0.5))
    _show_image(ax, _tile([[column[i] for column in columns] for i in range(len(x))]), f"original, then {augment}")
    fig.tight_layout()
    return fig


def plot_misclassified(data, evaluation, n: int = 24, cols: int = 8):
    """The first `n` misclassified test images, each captioned "true → predicted (confidence)"."""
    wrong = (evaluation.predictions != evaluation.labels).nonzero().flatten()
    shown = wrong[:n].tolist()
    rows = [[data.unnormalize(data.test.x[i]) for i in shown[r:r + cols]] for r in range(0, len(shown), cols)]
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


def model_table(run: Run) -> str:
    """Markdown: each model's parameters, MACs, seconds per epoch, speed, layout and test accuracy."""
    lines = ["| model | parameters | MACs per image | seconds per epoch | training images/s | memory layout | "
             "test accuracy |", "|---|---:|---:|---:|---:|---|---:|"]
    for name, m in run.models.items():
        if name in run.ensembles:
            continue
        layout = run.fits[name].layout.replace("_", "-")
        lines.append(f"| {name} | {m['parameters']:,} | {m['macs_per_image']:,} | "
                     f"{results_file.epoch_seconds(m['history']):.1f} | {m['train_samples_per_second']:,.0f} | {layout} | "
                     f"{m['test_accuracy']:.2%} |")
    fits = list(run.fits.values())
    return "\n".join(lines) + (f"\n\nForward passes in **{fits[0].precision}** on {run.device.type}." if fits else "")


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
