"""A layer-by-layer summary of any model: shapes, parameters, multiply-accumulates. (The course's networks are
the notebooks' own; what other labs reuse is labutils.lessons, generated from them.)"""

import torch
from torch import nn

from . import LabsError


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one linear or conv layer for one image, given its output."""
    per_image = output[0].numel()
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    return 0


def summary(model: nn.Module, input_shape: tuple) -> dict:
    """One image through `model`: {"layers": [(name, kind, output shape, parameters, macs)], "parameters", "macs"}."""
    rows, hooks = [], []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:  # leaf layers only
            def hook(m, _, out, name=name):
                rows.append((name, type(m).__name__, tuple(out.shape[1:]),
                             sum(p.numel() for p in m.parameters()), macs(m, out)))
            hooks.append(module.register_forward_hook(hook))
    x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    try:
        check_outputs(model, x)
    except Exception as e:
        explain(e, model, x)
        raise
    finally:
        for h in hooks:
            h.remove()
    return {"layers": rows, "parameters": count_parameters(model), "macs": sum(r[4] for r in rows)}


def describe(model: nn.Module, input_shape: tuple) -> str:
    """A printable table of `summary`: one line per layer, totals at the bottom."""
    s = summary(model, input_shape)
    return "\n".join([f"{'layer':<7}{'kind':<19}{'output':<14}{'parameters':>12}{'MACs':>14}"] + [
        f"{name:<7}{kind:<19}{'x'.join(map(str, shape)):<14}{params:>12,}{mac:>14,}" for name, kind, shape, params, mac
        in s["layers"]] + [f"{'total':<40}{s['parameters']:>12,}{s['macs']:>14,}"])


def check_outputs(model: nn.Module, x: torch.Tensor, n_classes: int = 0, name: str = "") -> None:
    """A forward pass in evaluation mode (the mode is kept); a LabsError unless it gives one output per class."""
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x)
    finally:
        model.train(was_training)
    if n_classes and out.dim() == 2 and out.shape[-1] != n_classes:
        raise LabsError(f"{name or 'The model'} gives {out.shape[-1]} outputs per image, but the data has {n_classes} "
                        f"classes: its last layer must give {n_classes}.")


def explain(error: BaseException, model: nn.Module, x: torch.Tensor, name: str = "", n_classes: int = 0) -> None:
    """Note on `error` where it lies in `model` (the layer that raised it), or its outputs against the classes."""
    leaves, entered = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None], []
    who = f"{name}: " if name else ""
    hooks = [m.register_forward_pre_hook(lambda m, args, k=k: entered.append((k, args))) for k, (_, m) in
             enumerate(leaves)]
    try:
        check_outputs(model, x, n_classes, name)
        note = f"{who}a forward pass runs, so the error lies in the loss, the backward pass or the update."
    except LabsError as e:
        note = str(e)
    except Exception:
        k, args = entered[-1] if entered else (-1, (x,))
        given = " and ".join("x".join(map(str, a.shape)) for a in args if isinstance(a, torch.Tensor))
        j = entered[-2][0] if len(entered) > 1 else None   # the layer that ran before it
        before = f" by layer {leaves[j][0]} ({type(leaves[j][1]).__name__})" if j is not None else ""
        note = f"{who}the error is in layer {leaves[k][0]}, {leaves[k][1]!r}, which was given {given}{before}." \
            if k >= 0 else f"{who}the error is in the model's own forward, given {given}, before its first layer ran."
    finally:
        for hook in hooks:
            hook.remove()
    if hasattr(error, "add_note") and note not in (str(error), *getattr(error, "__notes__", ())):
        error.add_note(note)
