"""Training and evaluation speed of every model of the course, side by side in one process, and the wall time
of each lab's default run; written to benchmarks/results/speed-<device>.md and .json (device: cpu or cuda).

    python benchmarks/speed.py                                 # every model, on this machine's device
    python benchmarks/speed.py --labs fashion_fcn_vs_lenet mnist_cnn_ensemble --data-dir ~/data
    python benchmarks/speed.py --models lenet5 model3 --rounds 2

Per model, with the batch size and augmentation of its lab's defaults, images per second of training and of
test evaluation for:
  - the seed reports' pipeline: a torchvision dataset with per-image ToTensor, Normalize (and RandomCrop,
    RandomHorizontalFlip where the lab augments), through a DataLoader; fp32, the default memory layout;
  - ours in fp32 (today's path: whole dataset in memory, batch slices, whole-batch augmentation, the memory
    layout train.channels_last picks);
  - ours as `precision: auto` picks for this device (train.precision_for), with the same layout rule;
and, for the conv nets, training steps in fp32 and bf16 autocast, each in the default and the channels-last
layout (what decides `auto` and the layout rule). Pipelines alternate; each one's best of --rounds counts.

--labs also times one default `labs run` of each lab whose dataset is in the data folder (with -p precision
fp32 and with the default auto, when they differ on this device); --lab-runs DIR instead reads the default runs
that benchmarks/accuracy.py made (DIR/<lab>/<dataset>/default{,-fp32}/seed-N/results.json) and takes the median
wall time over their seeds. The same command runs unchanged on a CUDA
machine (Colab too) and writes speed-cuda.md there. The file keeps one section per machine: a run replaces
its own machine's section.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labutils import data, lessons, models, train

# name -> (build, dataset, batch size and augmentation of its lab's defaults)
MODELS = {
    "mlp": (lambda: lessons.mlp(), "mnist", 128, None),
    "fcn": (lambda: lessons.fcn(), "fashion_mnist", 256, data.augmentation(flip=True)),
    "lenet5": (lambda: lessons.lenet5(), "fashion_mnist", 256, data.augmentation(flip=True)),
    "lenet5_modified": (lambda: lessons.lenet5(modified=True, dropout=0.1), "fashion_mnist", 256,
                        data.augmentation(flip=True)),
    "ensemble_cnn": (lambda: lessons.ensemble_cnn(), "mnist", 128, None),
    "model2": (lambda: lessons.model2(), "cifar10", 128, data.augmentation(flip=True, shift=4)),
    "model3": (lambda: lessons.cnn(), "cifar10", 128, data.augmentation(flip=True, shift=4)),
}
LABS = {"mnist_mlp": "mnist", "fashion_fcn_vs_lenet": "fashion_mnist", "cifar10_cnn": "cifar10",
        "mnist_cnn_ensemble": "mnist"}
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    info = {"device": device.type, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or platform.machine()
    info["cpu_flags"] = [flag for flag in FLAGS if flag in train.cpu_flags()]
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    info["auto"] = train.precision_for(device, "auto")
    return info


def machine_name(info: dict) -> str:
    if info["device"] == "cuda":
        return f"{info['gpu']} (compute capability {info['gpu_capability']})"
    flags = ", ".join(info["cpu_flags"]) or "none of " + ", ".join(FLAGS)
    return f"{info['cores']}-core {info['cpu']} (flags: {flags})"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def sgemm_gflops(device, n: int = 2048, rounds: int = 5) -> float:
    """The hardware's own limit, as a reader can compare each model with, in GFLOPS: on a CPU an n x n fp32 matrix
    product; on a GPU a bf16 one of 8192 x 8192 (its tensor cores: what its limit for this work is)."""
    dtype, n = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, n)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def training_gflops(macs_per_image: int, images_per_second: float) -> float:
    """Training work done per second: 2 FLOPs per multiply-accumulate, forward and backward about 3 forwards."""
    return 6 * macs_per_image * images_per_second / 1e9


# --- the seed reports' pipeline --------------------------------------------------------------

def seed_loaders(name: str, root: str, n_train: int, batch: int, augment):
    """torchvision dataset + per-image transforms + DataLoader, as the seed reports read their data."""
    import torchvision
    from torchvision import transforms
    spec = data.DATASETS[name]
    dataset = getattr(torchvision.datasets, spec.torchvision_class)
    if name == "cifar10":
        class dataset(dataset):   # synthetic files cannot match the originals' md5: skip that check, here only
            def _check_integrity(self):
                return True

            def _load_meta(self):
                self.classes = list(spec.classes)
    normalize = [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    extra = ([transforms.RandomCrop(spec.shape[1], padding=augment.shift, padding_mode="reflect")]
             if augment and augment.shift else []) + ([transforms.RandomHorizontalFlip()] if augment and augment.flip
                                                      else [])
    train_set = torch.utils.data.Subset(dataset(root, train=True, download=False,
                                                transform=transforms.Compose(extra + normalize)), range(n_train))
    test_set = dataset(root, train=False, download=False, transform=transforms.Compose(normalize))
    return (torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True),
            torch.utils.data.DataLoader(test_set, batch_size=100))


def seed_train(model, loader, opt, device) -> float:
    model.train()
    sync(device)
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()            # the seed reports read the loss every step
        seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - start)


@torch.no_grad()
def seed_evaluate(model, loader, device) -> float:
    model.eval()
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        (model(x).argmax(1) == y).sum().item()
        seen += len(y)
    return seen / (time.perf_counter() - start)


# --- ours --------------------------------------------------------------------------------------

def ours_train(model, split_data, batch, augment, precision) -> float:
    """Training images per second of train.fit, warm-up excluded: 4 epochs, the last 3 timed (the first holds the
    capture of the step on CUDA and cuDNN's tuning of each new shape)."""
    recipe = train.Recipe(epochs=4, batch_size=batch, optimizer="adam", lr=1e-3, augment=augment, precision=precision)
    fit = train.fit(model, split_data, recipe, progress=False)
    return 3 * len(split_data.train) / sum(fit.train_seconds[1:])


def ours_evaluate(model, split, precision, device) -> float:
    sync(device)
    start = time.perf_counter()
    train.evaluate(model, split, precision=precision)
    sync(device)
    return len(split) / (time.perf_counter() - start)


def step_rate(model, x, y, precision: str, steps: int) -> float:
    """Training steps on one batch (Adam), the forward pass in `precision`."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    criterion = torch.nn.functional.cross_entropy
    train.step(model, opt, criterion, x, y, precision=precision)
    sync(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        train.step(model, opt, criterion, x, y, precision=precision)
    sync(x.device)
    return steps * len(x) / (time.perf_counter() - start)


def measure_model(name: str, device, rounds: int, seconds: float, root_of, layout_rounds: int = 0,
                  precisions=("fp32", "bf16")) -> dict:
    build, dataset, batch, augment = MODELS[name]
    spec = data.DATASETS[dataset]
    layout_rounds = layout_rounds or rounds
    torch.manual_seed(0)
    probe = build().to(device)
    x = torch.randn(batch, *spec.shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    step_rate(probe, x, y, "fp32", 2)
    per_second = step_rate(probe, x, y, "fp32", 3)
    n_train = max(batch * 4, min(20000, int(per_second * seconds) // batch * batch))
    root = root_of(dataset)
    ours = data.load(dataset, root, download=False, n_train=n_train, n_test=2000, val_fraction=0.0, device=device)
    auto = train.precision_for(device, "auto")
    loader, test_loader = seed_loaders(dataset, root, n_train, batch, augment)
    nets = {key: build().to(device) for key in ("seed", "fp32", "auto")}
    opt = torch.optim.Adam(nets["seed"].parameters(), 1e-3)
    rates = {f"{kind}_{key}": 0.0 for kind in ("train", "eval") for key in nets}
    for _ in range(rounds):
        rates["train_seed"] = max(rates["train_seed"], seed_train(nets["seed"], loader, opt, device))
        rates["train_fp32"] = max(rates["train_fp32"], ours_train(nets["fp32"], ours, batch, augment, "fp32"))
        rates["train_auto"] = max(rates["train_auto"], ours_train(nets["auto"], ours, batch, augment, auto))
        rates["eval_seed"] = max(rates["eval_seed"], seed_evaluate(nets["seed"], test_loader, device))
        rates["eval_fp32"] = max(rates["eval_fp32"], ours_evaluate(nets["fp32"], ours.test, "fp32", device))
        rates["eval_auto"] = max(rates["eval_auto"], ours_evaluate(nets["auto"], ours.test, auto, device))
    result = {"batch": batch, "augment": str(augment or "none"), "train_images": n_train, "auto": auto,
              "layout": "channels_last" if train.channels_last(build(), device) else "contiguous",
              "macs": models.summary(build(), spec.shape)["macs"], **rates}
    if device.type == "cuda":   # the GPU's limit for this model: its whole step captured at the lab's batch size
        from gpu_course import captured_step_rate
        result["limit"] = captured_step_rate(build, spec.shape, batch, auto)
    if any(isinstance(m, torch.nn.Conv2d) for m in probe.modules()):   # what decides auto and the layout
        steps = max(3, int(seconds * per_second / batch / 4))
        grid, ratios = {}, {precision: [] for precision in precisions}
        for _ in range(layout_rounds):   # alternating, so that the machine's drift falls on both layouts alike
            for precision in precisions:
                pair = {}
                for layout in ("contiguous", "channels_last"):
                    torch.manual_seed(0)
                    net = build().to(device)
                    xx = x
                    if layout == "channels_last":
                        net.to(memory_format=torch.channels_last)
                        xx = x.contiguous(memory_format=torch.channels_last)
                    key = f"step_{precision}_{layout}"
                    pair[layout] = step_rate(net, xx, y, precision, steps)
                    grid[key] = max(grid.get(key, 0.0), pair[layout])
                ratios[precision].append(pair["channels_last"] / pair["contiguous"])
        result.update(grid)
        result["layout_ratios"] = ratios   # channels-last / contiguous, round by round: the benchmark's noise
    return result


def lab_runs(folder: Path) -> dict:
    """Lab -> precision -> {seconds (median over seeds), accuracy (mean), seeds}, from benchmarks/accuracy.py's runs."""
    import statistics
    found = {}
    for lab in LABS:
        for recipe in ("default-fp32", "default"):
            runs = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{lab}/fashion_mnist/{recipe}/seed-*/results.json"))]
            runs = [r for r in runs if r.get("status") == "ok"]
            if runs:
                found.setdefault(lab, {})[runs[0]["env"]["precision"]] = {
                    "seconds": statistics.median(r["wall_seconds"] for r in runs), "seeds": len(runs),
                    "accuracy": {n: statistics.mean(r["models"][n]["test_accuracy"] for r in runs)
                                 for n in runs[0]["models"]}}
    return found


def time_lab(lab: str, data_dir: str, precision: str) -> float | None:
    """Wall seconds of one default `labs run` of `lab` (its dataset read from data_dir), or None if it failed.
    Lab 04 takes FashionMNIST as its `dataset`; lab 01, which has no such parameter, reads FashionMNIST's files
    where it looks for MNIST's when MNIST is missing (the same format and size: the same time)."""
    extra = ["-p", "dataset", "fashion_mnist"] if lab == "mnist_cnn_ensemble" else []
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as stand_in:
        mnist, fashion = data.DATASETS["mnist"], data.DATASETS["fashion_mnist"]
        if lab == "mnist_mlp" and not mnist.present(Path(data_dir) / mnist.folder):
            (Path(stand_in) / mnist.folder).parent.mkdir(parents=True)
            (Path(stand_in) / mnist.folder).symlink_to((Path(data_dir) / fashion.folder).resolve())
            data_dir = stand_in
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "labs", "run", lab, "-p", "data_dir", data_dir, "-p",
                               "download", "false", "-p", "precision", precision, *extra, "--output", out],
                              cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stdout[-2000:] + proc.stderr[-2000:], file=sys.stderr)
            return None
        record = json.loads((Path(out) / "results.json").read_text())
        return {"seconds": seconds, "accuracy": {n: m["test_accuracy"] for n, m in record["models"].items()}}


def schedule_images(stages: list) -> int:
    """Training images of one network over a staged schedule (each stage's batch size moving linearly)."""
    plan = train.Recipe(stages=stages, update_every=50, penalty=lessons.l2_penalty).laid_out(1)
    return sum(plan.at(i)[1] for i in range(plan.total))


def estimates(measured: dict) -> dict:
    """Training time of the schedules too long to run here, from the measured training speeds (ours, auto)."""
    import yaml
    rate = {name: r["train_auto"] for name, r in measured.items()}
    found, cifar = {}, 45_000   # CIFAR-10's training split at val_fraction 0.1
    if {"lenet5", "model2", "model3"} <= rate.keys():
        per_epoch = {name: cifar / rate[name] for name in ("lenet5", "model2", "model3")}
        for name in per_epoch:
            found[f"cifar10_cnn, one epoch of {name}"] = {"what": name, "images": cifar, "seconds": per_epoch[name]}
        found["cifar10_cnn default (20 epochs of lenet5, model2, model3, and 2 more model3 for the ensemble of 3)"] = {
            "what": "5 networks", "images": 20 * cifar, "seconds": 20 * (per_epoch["lenet5"] + per_epoch["model2"]
                                                                         + 3 * per_epoch["model3"])}
        found["cifar10_cnn seed-model2.yaml (model2, 20 epochs)"] = {"what": "model2", "images": 20 * cifar,
                                                                      "seconds": 20 * per_epoch["model2"]}
    if "ensemble_cnn" in rate:
        stages = yaml.safe_load((ROOT / "params" / "mnist_cnn_ensemble" / "seed.yaml").read_text())["stages"]
        images = schedule_images(stages)
        found["mnist_cnn_ensemble seed.yaml (the report's 7,400 iterations, 2 networks)"] = {
            "what": "2 networks", "images": images, "seconds": 2 * images / rate["ensemble_cnn"]}
    return found


def measured_epochs(found: dict, device, folder: str) -> None:
    """On a GPU, where an epoch of CIFAR-10 takes seconds: time the second of two epochs of lenet5, model2 and model3
    on 45,000 synthetic images, each beside its estimate ("measured")."""
    root = str(data.write_synthetic("cifar10", Path(folder) / "cifar-epoch", 50000, 1000))
    split = data.load("cifar10", root, download=False, device=device)
    for name in ("lenet5", "model2", "model3"):
        key = f"cifar10_cnn, one epoch of {name}"
        if key in found:
            build, _, batch, augment = MODELS[name]
            recipe = train.Recipe(epochs=2, batch_size=batch, augment=augment)
            found[key]["measured"] = train.fit(build().to(device), split, recipe, progress=False).train_seconds[1]


def profile_step(name: str, device, steps: int = 30) -> str:
    """Where a training step of `name` spends its time (torch.profiler, its lab's batch, ours as auto picks): the
    operators by their own CPU time, as a markdown table."""
    from torch.profiler import ProfilerActivity, profile
    build, dataset, batch, augment = MODELS[name]
    spec = data.DATASETS[dataset]
    torch.manual_seed(0)
    model = build().to(device)
    layout = train.prepare(model, device)
    x = torch.randn(batch, *spec.shape, device=device).contiguous(memory_format=data.images_layout(device))
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    precision = train.precision_for(device, "auto")
    for _ in range(5):
        train.step(model, opt, torch.nn.functional.cross_entropy, augment(x) if augment else x, y, precision=precision)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train.step(model, opt, torch.nn.functional.cross_entropy, augment(x) if augment else x, y,
                       precision=precision)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    lines = [f"Where a training step of **{name}** goes (batch {batch}, {layout.replace('_', '-')}, {precision}, "
             f"{steps} steps under torch.profiler: {total / steps / 1000:.1f} ms of CPU per step), operators by their "
             f"own CPU time:", "", "| operator | share | ms per step | calls per step |", "|---|---:|---:|---:|"]
    for e in events[:12]:
        lines.append(f"| `{e.key}` | {e.self_cpu_time_total / total:.1%} | {e.self_cpu_time_total / steps / 1000:.2f} | "
                     f"{e.count / steps:.0f} |")
    return "\n".join(lines)


# --- the tables --------------------------------------------------------------------------------

def duration(seconds: float) -> str:
    """12 s, 4 min, 9.4 h."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def verdict(ratios: list, noise: float = 0.05) -> str:
    """channels-last against contiguous over the rounds: faster or slower only when every round agrees by more
    than `noise`, else level."""
    if min(ratios) > 1 + noise:
        return "channels-last faster"
    if max(ratios) < 1 - noise:
        return "contiguous faster"
    return "level"


def matrix_product(info: dict) -> str:
    return "an 8192 x 8192 bf16 matrix product" if info["device"] == "cuda" else "a 2048 x 2048 fp32 matrix product"


def table(info: dict, measured: dict, labs: dict, estimates: dict | None = None, profile: str = "") -> str:
    auto = info["auto"]
    limit = info.get("sgemm_gflops")
    lines = [f"## {machine_name(info)}", "",
             f"torch {info['torch']}, Python {info['python']}, {info['threads']} threads, {info['date']}; "
             f"`precision: auto` is **{auto}** here." + (f" The hardware's own limit, {matrix_product(info)}: "
                                                          f"**{limit:,.0f} GFLOPS**." if limit else ""), "",
             "Images per second, each pipeline's best of its rounds; the batch size and augmentation of each "
             "model's lab. *seed*: the seed reports' pipeline (torchvision dataset, per-image transforms, "
             "DataLoader, fp32); *fp32*: ours in fp32; *auto*: ours as `precision: auto` and the layout rule "
             "pick here. *GFLOPS*: ours (auto) at 6 FLOPs per multiply-accumulate per image (forward and backward),"
             " and its share of the matrix product's.", "",
             "| model | batch | layout | training: seed | fp32 | auto | auto / fp32 | auto / seed | GFLOPS (of the "
             "limit) | evaluation: seed | fp32 | auto | auto / seed |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in measured.items():
        gflops = training_gflops(r["macs"], r["train_auto"]) if "macs" in r else None
        share = f"{gflops:,.1f} ({gflops / limit:.0%})" if gflops and limit else ""
        lines.append(f"| {name} | {r['batch']} | {r['layout'].replace('_', '-')} | {r['train_seed']:,.0f} | "
                     f"{r['train_fp32']:,.0f} | {r['train_auto']:,.0f} | {r['train_auto'] / r['train_fp32']:.2f}x | "
                     f"{r['train_auto'] / r['train_seed']:.2f}x | {share} | {r['eval_seed']:,.0f} | "
                     f"{r['eval_fp32']:,.0f} | {r['eval_auto']:,.0f} | {r['eval_auto'] / r['eval_seed']:.2f}x |")
    captured = {name: r for name, r in measured.items() if "limit" in r}
    if captured:
        lines += ["", "The GPU's limit for each model: its whole training step (Adam) captured as one CUDA graph and "
                      "replayed on a batch already on the GPU, at its lab's batch size, in the precision auto picks; "
                      "ours (auto) as a share of it.", "", "| model | batch | captured step | ours (auto) | share |",
                  "|---|---:|---:|---:|---:|"]
        for name, r in captured.items():
            lines.append(f"| {name} | {r['batch']} | {r['limit']:,.0f} | {r['train_auto']:,.0f} | "
                         f"{r['train_auto'] / r['limit']:.0%} |")
    convs = {n: r for n, r in measured.items() if "step_fp32_contiguous" in r}
    if convs:
        precisions = [p for p in ("fp32", "bf16") if all(f"step_{p}_contiguous" in r for r in convs.values())]
        lines += ["", "Training steps of the conv nets (one batch, Adam), images per second, each layout's best of "
                      "its rounds (the layouts alternate within a round); *ratio*: channels-last / contiguous, "
                      "best round and the range over the rounds; *measured*: a layout counts as faster only when "
                      "every round agrees by more than 5 %; *rule*: what train.channels_last picks here.", "",
                  "| model | precision | contiguous | channels-last | ratio (range) | GFLOPS, best | measured | "
                  "rule | rule right |", "|---|---|---:|---:|---|---:|---|---|---|"]
        for name, r in convs.items():
            for precision in precisions:
                a, b = r[f"step_{precision}_contiguous"], r[f"step_{precision}_channels_last"]
                ratios = r.get("layout_ratios", {}).get(precision) or [b / a]
                found = verdict(ratios)
                rule = r["layout"]
                right = (found == "level" or (found == "channels-last faster") == (rule == "channels_last"))
                gflops = f"{training_gflops(r['macs'], max(a, b)):,.1f}" if "macs" in r else ""
                lines.append(f"| {name} | {precision} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x ({min(ratios):.2f}-"
                             f"{max(ratios):.2f}) | {gflops} | {found} | {rule.replace('_', '-')} | "
                             f"{'yes' if right else '**no**'} |")
    if labs:
        lines += ["", "Wall time of a default `labs run`, and its test accuracy (mean): real FashionMNIST (lab 04 "
                      "takes it as its `dataset`; for lab 01, FashionMNIST's files stand in for MNIST's, the same "
                      "format and size); the median over its seeds where there were several:", "",
                  "| lab | precision | wall time | seeds | test accuracy |", "|---|---|---:|---:|---|"]
        for lab, runs in labs.items():
            for precision, r in runs.items():
                accuracy = ", ".join(f"{n} {100 * a:.2f} %" for n, a in r["accuracy"].items()) if r else "failed"
                lines.append(f"| {lab} | {precision} | {r['seconds']:.0f} s | {r.get('seeds', 1)} | {accuracy} |"
                             if r else f"| {lab} | {precision} | | | failed |")
            if {"fp32", "bf16"} <= runs.keys() and all(runs.values()):
                lines.append(f"| {lab} | bf16 against fp32 | {runs['fp32']['seconds'] / runs['bf16']['seconds']:.2f}x "
                             f"as fast | | |")
    if estimates:
        lines += ["", "Estimated from the training speeds above (ours, auto) where a run is too long to make here "
                      "(CIFAR-10 cannot be downloaded on this machine; its speed does not depend on the pixels): the "
                      "training images of each schedule divided by the model's images per second; evaluation and "
                      "figures add a few percent.", "",
                  "| lab and schedule | what trains | images per network | estimated training time | measured |",
                  "|---|---|---:|---:|---:|"]
        for key, e in estimates.items():
            measured_time = f"{e['measured']:.1f} s" if "measured" in e else ""
            lines.append(f"| {key} | {e['what']} | {e['images']:,} | {duration(e['seconds'])} | {measured_time} |")
    if profile:
        lines += ["", profile]
    return "\n".join(lines) + "\n"


def write(device: str, info: dict, section: str, record: dict) -> Path:
    """Replace this machine's section of speed-<device>.md and its entry in speed-<device>.json."""
    folder = ROOT / "benchmarks" / "results"
    md, js = folder / f"speed-{device}.md", folder / f"speed-{device}.json"
    entries = json.loads(js.read_text()) if js.exists() else {}
    entries[machine_name(info)] = record
    js.write_text(json.dumps(entries, indent=1) + "\n")
    sections = {}
    if md.exists():
        for part in md.read_text().split("\n## ")[1:]:
            sections[part.split("\n", 1)[0]] = "## " + part.rstrip("\n") + "\n"
    sections[machine_name(info)] = section
    md.write_text(f"# Speed on {device.upper() if device == 'cuda' else 'the CPU'}\n\nWritten by "
                  f"`python benchmarks/speed.py`; one section per machine measured.\n\n" + "\n".join(sections.values()))
    return md


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--labs", nargs="*", default=[], choices=list(LABS),
                   help="also time one default run of these labs (their dataset must be in --data-dir)")
    p.add_argument("--lab-runs", metavar="DIR", help="take the labs' wall times from benchmarks/accuracy.py's runs "
                                                     "in DIR (e.g. outputs/accuracy) instead of timing new runs")
    p.add_argument("--data-dir", default=os.environ.get("LABS_DATA_DIR", ""))
    p.add_argument("--device", default="auto")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0, help="about how long one measurement trains")
    p.add_argument("--layout-rounds", type=int, default=0, help="rounds of the layout comparison (default: --rounds)")
    p.add_argument("--profile", nargs="*", default=[], choices=list(MODELS), help="profile a training step of these")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--gpu-course", action="store_true", help="on a CUDA GPU: labs check, every lab's default run, "
                   "each model against its captured-step limit; writes benchmarks/results/gpu.json and gpu.md")
    p.add_argument("--variants", action="store_true", help="with --gpu-course: lab 02 again eager, in fp32 and "
                   "without cuDNN's autotuning")
    p.add_argument("--logs", help="with --gpu-course: keep the runs' logs in this folder")
    args = p.parse_args()
    if args.gpu_course:
        import gpu_course
        gpu_course.main(args.data_dir, args.variants, Path(args.logs) if args.logs else None)
        return
    device = train.pick_device(args.device)
    info = machine(device)
    info["sgemm_gflops"] = sgemm_gflops(device)
    precisions = ("fp32", "bf16") if info["auto"] == "bf16" else ("fp32",)   # bf16 counts where auto picks it
    print(f"measuring on {machine_name(info)}: sgemm {info['sgemm_gflops']:,.0f} GFLOPS", flush=True)
    measured, labs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}

        def root_of(dataset):   # synthetic files in each dataset's real format, full test set
            if dataset not in roots:
                roots[dataset] = str(data.write_synthetic(dataset, Path(tmp) / dataset, 20000, 2000))
            return roots[dataset]
        for name in args.models:
            measured[name] = measure_model(name, device, args.rounds, args.seconds, root_of, args.layout_rounds,
                                           precisions)
            r = measured[name]
            print(f"{name}: training {r['train_seed']:,.0f} / {r['train_fp32']:,.0f} / {r['train_auto']:,.0f}, "
                  f"evaluation {r['eval_seed']:,.0f} / {r['eval_fp32']:,.0f} / {r['eval_auto']:,.0f} images/s "
                  f"(seed / fp32 / auto)", flush=True)
    if args.lab_runs:
        labs = lab_runs(Path(args.lab_runs))
    for lab in args.labs:
        spec = data.DATASETS["fashion_mnist" if lab in ("mnist_cnn_ensemble", "mnist_mlp") else LABS[lab]]
        if not args.data_dir or not spec.present(Path(args.data_dir) / spec.folder):
            print(f"{lab}: {spec.title} is not in --data-dir: not timed", flush=True)
            continue
        labs[lab] = {precision: time_lab(lab, args.data_dir, precision)
                     for precision in dict.fromkeys(["fp32", info["auto"]])}
        print(f"{lab}: {labs[lab]}", flush=True)
    profile = "\n\n".join(profile_step(name, device) for name in args.profile)
    found = estimates(measured)
    if device.type == "cuda":
        with tempfile.TemporaryDirectory() as tmp:
            measured_epochs(found, device, tmp)
    section = table(info, measured, labs, found, profile)
    print(section)
    if not args.no_write:
        print(f"wrote {write(device.type, info, section, {'machine': info, 'models': measured, 'labs': labs})}")


if __name__ == "__main__":
    main()
