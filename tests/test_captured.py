"""The CUDA fast path's control flow, on the CPU: train.CapturedSteps with CUDA's graph calls replaced by stand-ins
that behave as CUDA's do (a capture runs nothing; a replay runs what was captured). Each step must run exactly once,
in order, so the losses equal eager steps' (the H200 check that found a capturing step replayed twice:
benchmarks/results/gpu.md). The real capture is checked on a GPU by benchmarks/gpu_course.py."""

import contextlib

import pytest
import torch

from labutils import data, lessons, models, train


class FakeGraph:
    """A replay runs the step its capture recorded (CapturedSteps.body over the indices of its entry)."""
    steps = None

    def replay(self):
        entry = next(e for e in self.steps.graphs.values() if e["graph"] is self)
        self.steps.body(entry["idx"], self.steps.l2)


@contextlib.contextmanager
def fake_capture(graph, fail=False):
    """As CUDA's stream capture: what runs inside leaves no trace (state restored); `fail` raises as a failed one."""
    steps = FakeGraph.steps
    tensors = [*steps.model.state_dict().values(), steps.loss_sum, steps.correct,
               *(v for state in steps.optimizer.state.values() for v in state.values() if torch.is_tensor(v))]
    saved, rng = [t.clone() for t in tensors], torch.get_rng_state()
    try:
        yield
        if fail:
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
    finally:
        for tensor, value in zip(tensors, saved):
            tensor.copy_(value)
        torch.set_rng_state(rng)


@pytest.fixture
def cuda_stand_ins(monkeypatch):
    stream = type("Stream", (), {"wait_stream": lambda self, other: None})
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    return monkeypatch


def losses_per_step(kind, split, sizes, **extra):
    """The loss of every step of an SGD fit (its update takes a tensor learning rate on the CPU too)."""
    torch.manual_seed(0)
    model = lessons.mlp([32], in_features=28 * 28)
    optimizer = train.make_optimizer("sgd", model.parameters(), 0.05)
    recipe = train.Recipe(optimizer="sgd", precision="fp32")
    steps = kind(model, optimizer, recipe, "fp32", split, **extra)
    FakeGraph.steps = steps
    stream, found, before = data.Shuffled(split), [], 0.0
    torch.manual_seed(1)
    for i, size in enumerate(sizes):
        idx = stream.indices(size)
        steps(idx, 0.05 * (1 - i / len(sizes)), 0.0)
        found.append((steps.loss_sum.item() - before) / len(idx))
        before = steps.loss_sum.item()
    return found, steps


SIZES = [64] * 7 + [20] + [64] * 7 + [20] + [48, 48, 48, 32, 32, 32, 32]   # epochs' batches, then a ramp


def test_captured_steps_run_each_step_once_and_match_eager_steps(cuda_stand_ins, tiny_mnist):
    cuda_stand_ins.setattr(torch.cuda, "graph", fake_capture)
    eager, _ = losses_per_step(train.Steps, tiny_mnist.train, SIZES)
    captured, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES, name="mlp")
    assert captured == pytest.approx(eager, rel=1e-6, abs=1e-7)
    assert eager[-1] < eager[0] and steps.kind == "cuda graph"
    assert len(steps.graphs) == steps.keep and 64 not in steps.graphs   # the ramp's sizes evicted the epoch's
    assert steps.graphs[32]["graph"] is not None and steps.graphs[32]["eager"] == steps.warmup


def test_a_failed_capture_goes_on_eagerly_and_says_why_in_one_line(cuda_stand_ins, tiny_mnist, capsys):
    cuda_stand_ins.setattr(torch.cuda, "graph", lambda graph: fake_capture(graph, fail=True))
    eager, _ = losses_per_step(train.Steps, tiny_mnist.train, SIZES)
    captured, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES, name="mlp")
    assert captured == pytest.approx(eager, rel=1e-6, abs=1e-7)
    assert steps.kind == "eager" and steps.graphs == {}
    assert capsys.readouterr().out == ("mlp: training goes on step by step (eager), slower: its step could not be "
                                       "captured as a CUDA graph (operation not permitted when stream is "
                                       "capturing).\n")


def test_training_captures_on_cuda_only_unless_labs_eager_is_set(monkeypatch):
    monkeypatch.delenv("LABS_EAGER", raising=False)
    assert train.captures(torch.device("cuda")) and not train.captures(torch.device("cpu"))
    assert not train.captures(torch.device("mps"))
    monkeypatch.setenv("LABS_EAGER", "1")
    assert not train.captures(torch.device("cuda"))


def test_the_schedule_reaches_a_captured_step_as_a_device_tensor(cuda_stand_ins, tiny_mnist):
    """The learning rate and the L2 coefficient are tensors the graph reads, filled before each replay."""
    cuda_stand_ins.setattr(torch.cuda, "graph", fake_capture)
    torch.manual_seed(0)
    model = lessons.mlp([16], in_features=28 * 28)
    optimizer = train.make_optimizer("sgd", model.parameters(), 0.1)
    recipe = train.Recipe(optimizer="sgd", stages=[{"iterations": 4, "lr": 0.1, "batch_size": 8, "l2": [100, 0]}],
                          penalty=lessons.l2_penalty)
    steps = train.CapturedSteps(model, optimizer, recipe, "fp32", tiny_mnist.train, name="net")
    FakeGraph.steps = steps
    assert all(group["lr"] is steps.lr for group in optimizer.param_groups) and steps.recipe.has_l2
    steps(torch.arange(8), 0.03, 42.0)
    assert steps.lr.item() == pytest.approx(0.03) and steps.l2.item() == 42.0
    plain = train.CapturedSteps(model, optimizer, train.Recipe(optimizer="sgd"), "fp32", tiny_mnist.train)
    assert plain.l2 == 0.0 and not plain.recipe.has_l2   # an epoch recipe: no penalty term in the graph
