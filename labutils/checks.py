"""An assignment's public checks as a student's notebook runs them: what an exercise gives against what the reference
gave (`labs assign` writes the cells that call `check`; `labs grade` runs the same in its own process, and more)."""

import inspect
import math

import torch
from torch import nn

from . import LabsError
from .data import Data, Split, synthetic_images


class NotWritten(LabsError):
    """An exercise the student has not written yet (its stub)."""


def network(obj):
    """The network `obj` builds with its defaults (a function returning a module, or a module class), else None."""
    needs = callable(obj) and any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                                  for p in inspect.signature(obj).parameters.values())
    built = obj() if callable(obj) and not needs else None
    return built if isinstance(built, nn.Module) and any(True for _ in built.parameters()) else None


def probes(obj, shape: tuple, seed: int = 0) -> dict | None:
    """Seeded inputs for `obj`'s parameters by name (model, split, optimizer, batch_size, x); None if one has none."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(shape[0], 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * shape[1] * shape[2], 10))
    known = {"model": model, "split": Split(torch.randn(32, *shape), torch.randint(10, (32,))), "batch_size": 8,
             "optimizer": torch.optim.SGD(model.parameters(), lr=0.1), "x": torch.randn(4, *shape)}
    target = obj.forward if isinstance(obj, nn.Module) else obj
    needed = [p.name for p in inspect.signature(target).parameters.values() if p.default is p.empty]
    return {name: known[name] for name in needed} if set(needed) <= set(known) else None


def fingerprint(value) -> list:
    """A value as a list of plain numbers and words: a tensor's shape, sum and mean magnitude; a module's parameters';
    a table's entries."""
    if isinstance(value, torch.Tensor):
        return [*value.shape, round(float(value.double().sum()), 4), round(float(value.double().abs().mean()), 6)]
    if isinstance(value, nn.Module):
        return [x for p in value.parameters() for x in fingerprint(p.detach())]
    if isinstance(value, dict):
        return [f"{k}: {getattr(v, '__name__', type(v).__name__)}" for k, v in value.items()]
    return [round(float(value), 6)] if isinstance(value, (int, float)) else []


def describe(obj, shape: tuple, seed: int = 0) -> dict:
    """What an exercise gives: a network's layers and parameters, or a function's value on seeded inputs."""
    from .models import summary
    built = network(obj)
    if built is not None:
        leaves, failed = [(n, m) for n, m in built.named_modules() if next(m.children(), None) is None], {}
        try:
            shapes = [list(row[2]) for row in summary(built, shape)["layers"]]
        except Exception as e:   # the layers are still compared: the first that differs is named
            shapes, failed = [None] * len(leaves), {"fails": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
        return {"layers": [[n, repr(m), s, sum(p.numel() for p in m.parameters())] for (n, m), s in zip(leaves, shapes)],
                "parameters": sum(p.numel() for p in built.parameters()), **failed}
    call = obj() if isinstance(obj, type) else obj   # a layer without weights is called on a batch
    args = probes(call, shape, seed) if callable(call) else None
    if args is None:
        return {"value": fingerprint(obj)} if isinstance(obj, dict) else {}
    torch.manual_seed(seed)
    with torch.no_grad() if "optimizer" not in args else torch.enable_grad():
        value = call(**args)
    return {"value": fingerprint(value if value is not None else args.get("model"))}   # else: the model it changed


def differences(expected: dict, found: dict) -> list:
    """What differs between the reference's description and the student's, where; [] when nothing does."""
    shown = lambda shape: "x".join(map(str, shape))   # noqa: E731
    for k, (want, got) in enumerate(zip(expected.get("layers", []), found.get("layers", []))):
        if want[1] != got[1]:
            before = f": the layer before it gives {shown(expected['layers'][k - 1][2])}" if k else ""
            return [f"layer {got[0]}: {got[1]} where the reference has {want[1]}{before}"]
        if want[2] != got[2] and got[2] is not None:
            return [f"layer {got[0]} ({got[1]}) gives {shown(got[2])} where the reference's gives {shown(want[2])}"]
    if "fails" in found:
        return [f"fails: {found['fails']}"]
    layers, want = len(found.get("layers", [])), len(expected.get("layers", []))
    value, reference = found.get("value", []), expected.get("value")
    return [line for wrong, line in (
        (layers != want, f"{layers} layers where the reference has {want}"),
        (expected.get("parameters") != found.get("parameters"),
         f"{found.get('parameters')} parameters where the reference has {expected.get('parameters')}"),
        (reference is not None and not (len(value) == len(reference) and all(
            a == b or isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-3)
            for a, b in zip(value, reference))), f"gives {value} on the seeded inputs where the reference gives "
                                                 f"{reference}")) if wrong]


def overfit(obj, shape: tuple, images: int = 16, epochs: int = 50) -> float:
    """The accuracy on `images` seeded synthetic images of the network `obj` builds, after a short run on them alone."""
    from . import train
    torch.manual_seed(0)
    model, (x, y) = network(obj), synthetic_images(images, shape)
    split = Split((x.float() / 255 - 0.5) / 0.5, y)
    data = Data("overfit", "synthetic", tuple(range(10)), (0.5,), (0.5,), split, Split(x[:0].float(), y[:0]), split)
    train.fit(model, data, train.Recipe(epochs=epochs, batch_size=16, precision="fp32"), progress=False)
    return train.evaluate(model, split).accuracy


def check(name: str, obj, expected: dict) -> None:
    """Exercise `name`'s public checks against the reference's numbers, one line each: passed, or what differs."""
    run(name, obj, expected)


def run(name: str, obj, expected: dict) -> list:
    """check's lines, printed, and its results: [(check, passed)]."""
    shape, results = tuple(expected["shape"]), []
    try:
        if isinstance(obj, dict) and not obj:
            raise NotWritten(f"{name} is not written yet: it is empty.")
        lines = differences(expected, describe(obj, shape))
        results.append(("matches the reference", not lines))
        print(f"{name}: " + ("; ".join(lines) or "matches the reference"))
        if "overfit" in expected and not lines:
            accuracy = overfit(obj, shape)
            results.append(("overfits 16 images", accuracy >= expected["overfit"] - 0.1))
            print(f"{name}: {accuracy:.0%} on the 16 images it trained on (the reference: {expected['overfit']:.0%})")
    except Exception as e:   # a stub, or code that fails: one line, never a traceback
        why = str(e) if isinstance(e, NotWritten) else f"fails: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        results.append(("matches the reference", False))
        print(why if why.startswith(name) else f"{name}: {why}")
    return results
