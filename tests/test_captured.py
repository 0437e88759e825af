"""The CUDA fast path on the CPU: train.CapturedSteps with CUDA's graph calls replaced by stand-ins that behave as
CUDA's do where a captured step can go wrong (the Cuda class below). A capture runs nothing and records what the
step reads; a replay runs it again against those very tensors; PyTorch's rules for a capture are checked; a step
that reads the GPU fails mid-capture. So the usual CUDA-graph bugs fail these tests: a batch buffer bound anew
instead of copied, gradients left over from the warm-up, warm-up steps on the current stream, an optimizer not made
capturable, a capturing step replayed twice. The real capture is checked on a GPU by benchmarks/gpu_course.py."""

import contextlib
import importlib
import warnings

import pytest
import torch

from labutils import LabsError, data, lessons, train

SYNC = "CUDA error: operation not permitted when stream is capturing"


class Stream:
    def __init__(self, name: str = "side"):
        self.name, self.device = name, torch.device("cpu")

    def wait_stream(self, other):
        pass


class Graph:
    """A captured step: the tensors its capture saw, replayed against."""

    def __init__(self, cuda):
        self.cuda, self.replays = cuda, 0

    def replay(self):
        groups = self.cuda.steps.optimizer.param_groups
        live = [group["lr"] for group in groups]
        for group, lr in zip(groups, self.lrs):   # the graph reads the learning-rate tensors it captured
            group["lr"] = lr
        try:
            self.cuda.body(self.idx, self.l2)       # ... and the batch buffer and L2 tensor it captured
        finally:
            for group, lr in zip(groups, live):
                group["lr"] = lr
        self.replays += 1


class Cuda:
    """CUDA's graph calls on the CPU, for one CapturedSteps (attach):
    - streams: the current one is tracked (torch.cuda.stream, set_stream, current_stream);
    - a capture (torch.cuda.graph) runs the step and then puts back every tensor it touched (a capture runs nothing),
      recording what the step read: its batch buffer, L2 tensor and the optimizer's learning-rate tensors. It holds
      PyTorch's rules: no gradient may exist when it begins, and the warm-up steps of its batch size ran on a side
      stream; an optimizer must be capturable, and one that is warns when it steps outside a capture (torch's health
      check, which runs only where CUDA is);
    - a step that reads the GPU during a capture (`sync`) fails there, mid-step, and the capture's exit then fails in
      turn ("operation failed due to a previous error during capture") without putting the stream back, as
      torch.cuda.graph's does; with `generator_survives` False, CUDA's generator is left unusable too."""

    def __init__(self, monkeypatch):
        self.default = self.current = Stream("default")
        self.capturing, self.eager_steps, self.generator_survives, self.broken = None, [], True, False
        for name, value in (("Stream", lambda device=None: Stream()),
                            ("current_stream", lambda device=None: self.current), ("set_stream", self.set_stream),
                            ("stream", self.stream), ("is_current_stream_capturing", lambda: self.capturing is not None),
                            ("CUDAGraph", lambda: Graph(self)), ("graph", self.graph)):
            monkeypatch.setattr(torch.cuda, name, value)
        for module in map(importlib.import_module, ("torch.optim.adam", "torch.optim.rmsprop", "torch.optim.adadelta")):
            monkeypatch.setattr(module, "_get_capturable_supported_devices", lambda supports_xla=True: ["cpu"])
        rand = torch.rand
        monkeypatch.setattr(torch, "rand", lambda *a, **k: self.check_generator() or rand(*a, **k))

    def attach(self, steps):
        self.steps, self.body, self.eager_steps = steps, steps.body, []
        steps.body = self.step
        return steps

    def set_stream(self, stream):
        self.current = stream

    @contextlib.contextmanager
    def stream(self, stream):
        before, self.current = self.current, stream
        try:
            yield
        finally:
            self.current = before

    def check_generator(self):
        if self.broken:
            raise RuntimeError("Offset increment outside graph capture encountered unexpectedly.")

    def sync(self):
        """What .item() or float() of a GPU tensor does: fine, except during a capture."""
        if self.capturing is not None:
            raise RuntimeError(SYNC)

    def step(self, idx, l2):
        groups = self.steps.optimizer.param_groups
        if self.capturing is None:
            self.eager_steps.append((self.current, len(idx)))
            if any(group.get("capturable") for group in groups):   # torch's health check, outside a capture
                warnings.warn("This instance was constructed with capturable=True or some of all the param_groups "
                              "came with capturable=True, but step() is running without CUDA graph capture.")
        else:
            assert all(stream is not self.default for stream, size in self.eager_steps if size == len(idx)), \
                "the warm-up steps ran on the current stream: a capture needs them on a side stream"
            graph = self.capturing
            graph.idx, graph.l2 = idx, l2
            graph.lrs = [group["lr"] for group in groups]
            if not all(group.get("capturable", True) for group in groups):   # torch's health check, in a capture
                raise RuntimeError(f"Attempting CUDA graph capture of step() for an instance of "
                                   f"{type(self.steps.optimizer).__name__} but param_groups' capturable is False.")
        return self.body(idx, l2)

    @contextlib.contextmanager
    def graph(self, graph):
        steps = self.steps
        assert all(p.grad is None for p in steps.model.parameters()), \
            "gradients existed when the capture began: its backward would write to memory outside the graph's pool"
        tensors = [*steps.model.state_dict().values(), steps.loss_sum, steps.correct,
                   *(v for state in steps.optimizer.state.values() for v in state.values() if torch.is_tensor(v))]
        saved, rng, before = [t.clone() for t in tensors], torch.get_rng_state(), self.current
        self.current, self.capturing = Stream("capture"), graph
        try:
            yield
        except RuntimeError:   # the step failed mid-capture: the exit fails in turn, the real cause its __context__
            self.broken = not self.generator_survives
            raise RuntimeError("operation failed due to a previous error during capture")
        finally:
            self.capturing = None
            for tensor, value in zip(tensors, saved):
                tensor.copy_(value)
            torch.set_rng_state(rng)
        self.current = before   # only a capture that ends well puts the stream back


@pytest.fixture
def cuda(monkeypatch):
    return Cuda(monkeypatch)


LR = {"sgd": 0.05, "rmsprop": 0.002, "adadelta": 1.0}


def losses_per_step(kind, split, sizes, cuda=None, optimizer="sgd", precision="fp32", penalty=None, **extra):
    """The loss of every step of a fit (eager: train.Steps; captured: train.CapturedSteps with the stand-ins)."""
    torch.manual_seed(0)
    model = lessons.mlp([32], in_features=28 * 28)
    opt = train.make_optimizer(optimizer, model.parameters(), LR[optimizer])
    stages = [{"iterations": 1, "lr": 0.05, "batch_size": 8, "l2": 0.5}] if penalty else None
    recipe = train.Recipe(optimizer=optimizer, precision=precision, stages=stages, penalty=penalty)
    steps = kind(model, opt, recipe, precision, split, **extra)
    if cuda is not None:
        cuda.attach(steps)
    stream, found, before = data.Shuffled(split), [], 0.0
    torch.manual_seed(1)
    for i, size in enumerate(sizes):
        idx = stream.indices(size)
        steps(idx, LR[optimizer] * (1 - i / len(sizes)), 0.5 if penalty else 0.0)
        found.append((steps.loss_sum.item() - before) / len(idx))
        before = steps.loss_sum.item()
    return found, steps


SIZES = [64] * 7 + [20] + [64] * 7 + [20] + [48, 48, 48, 32, 32, 32, 32]   # epochs' batches, then a ramp


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adadelta"])
def test_captured_steps_run_each_step_once_against_the_tensors_they_captured_and_match_eager_steps(
        cuda, tiny_mnist, optimizer):
    eager, _ = losses_per_step(train.Steps, tiny_mnist.train, SIZES, optimizer=optimizer)
    captured, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES, cuda, optimizer=optimizer,
                                      name="mlp")
    assert captured == pytest.approx(eager, rel=1e-5, abs=1e-6)
    assert eager[-1] < eager[0] and steps.kind == "cuda graph"
    assert len(steps.graphs) == steps.keep and 64 not in steps.graphs   # the ramp's sizes evicted the epoch's
    assert steps.graphs[32]["graph"].replays >= 1 and steps.graphs[32]["eager"] == steps.warmup
    assert all(stream.name == "side" for stream, _ in cuda.eager_steps)


def test_no_capturable_warning_reaches_the_training_cell(cuda, tiny_mnist, recwarn):
    losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES[:4], cuda, optimizer="rmsprop", name="mlp")
    assert [str(w.message) for w in recwarn] == []


def syncing_penalty(cuda):
    """A student's penalty that reads the GPU (float() of a tensor), which CUDA refuses during a capture."""
    def penalty(model):
        total = sum(p.pow(2).mean() for p in model.parameters() if p.dim() > 1)
        cuda.sync()
        return total
    return penalty


def test_a_capture_that_fails_mid_step_goes_on_eagerly_naming_the_cause_and_leaves_the_process_usable(
        cuda, tiny_mnist, capsys):
    eager, _ = losses_per_step(train.Steps, tiny_mnist.train, SIZES[:8], penalty=syncing_penalty(cuda))
    captured, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES[:8], cuda,
                                      penalty=syncing_penalty(cuda), name="mlp")
    assert captured == pytest.approx(eager, rel=1e-6, abs=1e-7)
    assert steps.kind == "eager" and steps.graphs == {} and cuda.current is cuda.default   # the stream put back
    assert capsys.readouterr().out == (f"mlp: training goes on step by step (eager), slower: its step could not be "
                                       f"captured as a CUDA graph ({SYNC}).\n")
    # a second fit in the same process captures
    again, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES[:8], cuda, name="mlp")
    assert steps.kind == "cuda graph"


def test_a_failed_capture_in_fp16_forgets_the_scalers_half_run_step(cuda, tiny_mnist, monkeypatch, capsys):
    """fp16's scaler reads the GPU in a non-fused optimizer's step: a capture fails there after unscaling."""
    step = torch.amp.GradScaler._maybe_opt_step

    def syncing(self, *args, **kwargs):
        cuda.sync()
        return step(self, *args, **kwargs)
    monkeypatch.setattr(torch.amp.GradScaler, "_maybe_opt_step", syncing)
    eager, _ = losses_per_step(train.Steps, tiny_mnist.train, SIZES[:8], precision="fp16")
    captured, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES[:8], cuda, precision="fp16",
                                      name="mlp")
    assert captured == pytest.approx(eager, rel=1e-5, abs=1e-6) and steps.kind == "eager"
    assert steps.scaler.get_scale() == 2.0 ** 16 and SYNC in capsys.readouterr().out


def test_a_generator_left_in_capture_mode_is_one_line_saying_what_to_do(cuda, tiny_mnist):
    cuda.generator_survives = False
    with pytest.raises(LabsError) as refused:
        losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES[:4], cuda, penalty=syncing_penalty(cuda),
                        name="mlp")
    message = str(refused.value)
    assert message.startswith(f"mlp: its step could not be captured as a CUDA graph ({SYNC}), and torch ")
    assert message.endswith("cannot use its CUDA random generator again in this process; restart the kernel, then "
                            "train eagerly (LABS_EAGER=1) or remove what reads the GPU inside the step.")


def test_what_cannot_be_captured_steps_eagerly_from_the_first_step(cuda, tiny_mnist, capsys):
    for optimizer in ("rmsprop", "adadelta"):
        _, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, SIZES[:4], cuda, optimizer=optimizer,
                                   precision="fp16", name="mlp")
        assert steps.kind == "eager" and steps.graphs == {}
        assert capsys.readouterr().out == (f"mlp: training runs step by step (eager), slower: in fp16 the gradient "
                                           f"scaler reads the GPU in every {optimizer} step, which a CUDA graph cannot "
                                           f"hold (adam, adamw and sgd can).\n")
    for optimizer, precision in (("sgd", "fp16"), ("adam", "fp16"), ("rmsprop", "fp32"), ("adadelta", "bf16")):
        assert train.uncapturable(train.Recipe(optimizer=optimizer), precision) == ""


def test_the_record_says_eager_where_no_graph_was_captured(cuda, tiny_mnist):
    _, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, [64, 64], cuda, name="mlp")   # the warm-up only
    assert steps.kind == "eager"
    _, steps = losses_per_step(train.CapturedSteps, tiny_mnist.train, [64, 64, 64], cuda, name="mlp")
    assert steps.kind == "cuda graph"


def test_sgds_momentum_starts_at_zero_so_a_first_step_that_fp16s_scaler_skips_leaves_nothing_unset(tiny_mnist):
    torch.manual_seed(0)
    model = lessons.mlp([16], in_features=28 * 28)
    sgd = train.make_optimizer("sgd", model.parameters(), 0.1, fused=True)   # fused, as on CUDA
    buffers = lambda: [sgd.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(torch.equal(b, torch.zeros_like(b)) for b in buffers())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 30)   # the first steps overflow in fp16 and are skipped
    x, y = tiny_mnist.train.x[:32], tiny_mnist.train.y[:32]
    skipped = 0
    while skipped < 30:
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        sgd.zero_grad(set_to_none=True)
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(sgd)
        scaler.update()
        if scaler.get_scale() == scale:   # a step that was taken
            break
        skipped += 1
        assert all(torch.equal(b, torch.zeros_like(b)) for b in buffers())
    assert 0 < skipped < 30 and all(torch.isfinite(b).all() and b.any() for b in buffers())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_training_captures_on_cuda_only_unless_labs_eager_is_set(monkeypatch):
    monkeypatch.delenv("LABS_EAGER", raising=False)
    assert train.captures(torch.device("cuda")) and not train.captures(torch.device("cpu"))
    assert not train.captures(torch.device("mps"))
    monkeypatch.setenv("LABS_EAGER", "1")
    assert not train.captures(torch.device("cuda"))


def test_a_users_own_cudnn_autotuning_setting_stands(monkeypatch):
    monkeypatch.setattr(train, "CUDNN_AUTOTUNE", False)
    for setting in (True, False):
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", setting)
        train.prepare(lessons.lenet5(), torch.device("cuda"))
        assert torch.backends.cudnn.benchmark is setting


def test_the_schedule_reaches_a_captured_step_as_a_device_tensor(cuda, tiny_mnist):
    """The learning rate and the L2 coefficient are tensors the graph reads, filled before each replay."""
    torch.manual_seed(0)
    model = lessons.mlp([16], in_features=28 * 28)
    optimizer = train.make_optimizer("sgd", model.parameters(), 0.1)
    recipe = train.Recipe(optimizer="sgd", stages=[{"iterations": 4, "lr": 0.1, "batch_size": 8, "l2": [100, 0]}],
                          penalty=lessons.l2_penalty)
    steps = cuda.attach(train.CapturedSteps(model, optimizer, recipe, "fp32", tiny_mnist.train, name="net"))
    assert all(group["lr"] is steps.lr for group in optimizer.param_groups) and steps.recipe.has_l2
    steps(torch.arange(8), 0.03, 42.0)
    assert steps.lr.item() == pytest.approx(0.03) and steps.l2.item() == 42.0
    plain = train.CapturedSteps(model, optimizer, train.Recipe(optimizer="sgd"), "fp32", tiny_mnist.train)
    assert plain.l2 == 0.0 and not plain.recipe.has_l2   # an epoch recipe: no penalty term in the graph
