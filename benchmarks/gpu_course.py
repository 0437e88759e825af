"""The whole course on a CUDA GPU in one command, `python benchmarks/speed.py --gpu-course`: `labs check --device
cuda`, every lab's default run (the real FashionMNIST where it is in the data folder, else synthetic data of the
real sizes: 60,000 and 50,000 training images), and for each model its training speed in its lab's own loop beside
the seed reports' pipeline and the GPU's limit for it (its whole training step captured as one CUDA graph at the
lab's batch size, measured in the same run); then two checks of the captured path (its losses against eager
steps', fp32, the same seed; fp16 with a gradient scaler). Writes benchmarks/results/gpu.json and gpu.md.

    python benchmarks/speed.py --gpu-course [--data-dir DIR] [--variants]

--variants also runs lab 02 eagerly (LABS_EAGER=1), in fp32, and with cuDNN's autotuning: what each part of the
fast path gains.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labutils import data, lessons, models, train

FLIP = data.augmentation(flip=True)
CROPS = data.augmentation(flip=True, shift=4)
# lab -> (dataset, training images of the real set, its default models: results.json name -> (build, batch, augment))
LABS = {
    "mnist_mlp": ("mnist", 60000, {"mlp": (lambda: lessons.mlp(dropout=0.2), 128, None)}),
    "fashion_fcn_vs_lenet": ("fashion_mnist", 60000, {
        "fcn": (lessons.fcn, 256, FLIP), "lenet5": (lessons.lenet5, 256, FLIP),
        "lenet5_modified": (lambda: lessons.lenet5(modified=True, dropout=0.1), 256, FLIP)}),
    "cifar10_cnn": ("cifar10", 50000, {
        "lenet5": (lambda: lessons.lenet5(in_channels=3, padding=0, dropout=0.05), 128, CROPS),
        "model2": (lessons.model2, 128, CROPS), "model3": (lessons.cnn, 128, CROPS)}),
    "mnist_cnn_ensemble": ("fashion_mnist", 60000, {"member 1": (lessons.ensemble_cnn, 128, None),
                                                     "member 2": (lessons.ensemble_cnn, 128, None)}),
}


def sync():
    torch.cuda.synchronize()


# --- the GPU's limit: the bare step, captured --------------------------------------------------

def captured_step_rate(build, shape: tuple, batch: int, precision: str, steps: int = 300, autotune: bool = True) -> float:
    """Images per second of the whole training step (forward, loss, backward, Adam's update) captured as one CUDA
    graph and replayed on a batch already on the GPU: what the GPU can do for this model at this batch size."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build().to(device)
    train.prepare(model, device)
    torch.backends.cudnn.benchmark = autotune
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=data.images_layout(device))
    y = torch.randint(0, 10, (batch,), device=device)
    opt = train.make_optimizer("adam", model.parameters(), torch.tensor(1e-3, device=device), fused=True)
    for group in opt.param_groups:
        group["capturable"] = True
    criterion = torch.nn.functional.cross_entropy
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            train.step(model, opt, criterion, x, y, precision=precision)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        train.step(model, opt, criterion, x, y, precision=precision)
    for _ in range(20):
        graph.replay()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        graph.replay()
    sync()
    return steps * batch / (time.perf_counter() - start)


def seed_rate(build, dataset: str, root: str, batch: int, augment, seconds: float = 2.0) -> float:
    """Images per second of the seed reports' pipeline (torchvision dataset, per-image transforms, DataLoader,
    fp32, eager), after a warm-up of 20 batches."""
    from speed import seed_loaders
    device = torch.device("cuda")
    model = build().to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loader, _ = seed_loaders(dataset, root, 20000 if dataset != "cifar10" else 20000, batch, augment)
    model.train()
    seen, start = 0, None
    while True:
        for k, (x, y) in enumerate(loader):
            if k == 20 and start is None:
                sync()
                start, seen = time.perf_counter(), 0
            x, y = x.to(device), y.to(device)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            seen += len(y)
            if start is not None and time.perf_counter() - start > seconds:
                sync()
                return seen / (time.perf_counter() - start)


# --- the labs' default runs ----------------------------------------------------------------------

def lab_arguments(lab: str, data_dir: str, real: bool) -> list:
    """`labs run` arguments for a lab's default configuration: its real dataset from data_dir, else synthetic data
    of the real sizes."""
    dataset, n_train, _ = LABS[lab]
    args = ["-p", "data_dir", data_dir, "-p", "download", "false"]
    if lab == "mnist_cnn_ensemble":
        args += ["-p", "dataset", "fashion_mnist"]
    if not real:
        args += ["-p", "synthetic", "true", "-p", "n_train", str(n_train), "-p", "n_test", "10000"]
    return args


def run_lab(lab: str, data_dir: str, real: bool, out: Path, env: dict | None = None, extra=()) -> dict:
    """One default `labs run`: its wall time (the command, as a user waits for it) and results.json."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "labs", "run", lab, *lab_arguments(lab, data_dir, real), *extra,
                           "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    record = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr, flush=True)
    return {"wall": wall, "ok": proc.returncode == 0, "record": record, "log": proc.stdout}


def train_images_per_row(history: list, n_split: int) -> list:
    """Images trained between two history rows (epochs are whole passes; a staged row counts its epochs)."""
    if history and "iteration" in history[0]:
        done = [0.0] + [row["epoch"] for row in history]
        return [(b - a) * n_split for a, b in zip(done, done[1:])]
    return [n_split] * len(history)


def speeds(model: dict, n_split: int) -> dict:
    """A model's training speed from its results.json entry: after the first evaluation interval (warm-up,
    capture and cuDNN's tuning fall in the first), and the first interval's cost above a later one's."""
    seconds, history = model["train_seconds"], model["history"]
    images = train_images_per_row(history, n_split)
    later = seconds[1:] or seconds
    return {"images_per_second": sum(images[1:] or images) / sum(later),
            "training_seconds": sum(seconds),
            "first_interval_extra_seconds": history[0]["seconds"] - statistics.median(
                [row["seconds"] for row in history[1:]] or [history[0]["seconds"]])}


# --- checks of the captured path -----------------------------------------------------------------

def captured_against_eager(root_dir: str, steps: int = 300) -> dict:
    """The same steps (fp32, the same seed, the same batches, the same fused kernels, cuDNN deterministic, no TF32) as
    captured graphs and as eager ones, the loss of every step read back: where they part, and by how much. Two cases: no randomness
    inside the step (LeNet-5, no augmentation), and dropout with flips (the modified LeNet-5)."""
    device = torch.device("cuda")
    split = data.load("fashion_mnist", root_dir, download=False, n_train=12000, n_test=1000, device=device)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32, train.CUDNN_AUTOTUNE = True, False, False
    found = {}
    try:
        for case, build, augment in (("lenet5, no augmentation", lessons.lenet5, None),
                                     ("lenet5_modified, dropout and flips",
                                      lambda: lessons.lenet5(modified=True, dropout=0.1), FLIP)):
            losses = {}
            for path in ("eager", "graph"):
                train.seed_everything(0)
                model = build().to(device)
                train.prepare(model, device)
                recipe = train.Recipe(optimizer="adamw", lr=2e-3, weight_decay=0.05, schedule="cosine", epochs=7,
                                      batch_size=256, augment=augment, precision="fp32")
                opt = train.make_optimizer("adamw", model.parameters(), 2e-3, 0.05, fused=True)   # one change: the graph
                stepper = (train.CapturedSteps if path == "graph" else train.Steps)(model, opt, recipe, "fp32",
                                                                                    split.train)
                plan, stream, per_step, before = recipe.laid_out(len(split.train)), data.Shuffled(split.train), [], 0.0
                model.train()
                for i in range(min(steps, plan.total)):
                    lr, size, _ = plan.at(i)
                    idx = stream.indices(size)
                    stepper(idx, lr, 0.0)
                    total = stepper.loss_sum.item()
                    per_step.append((total - before) / len(idx))
                    before = total
                losses[path] = per_step
            diffs = [abs(a - b) / abs(a) for a, b in zip(losses["eager"], losses["graph"])]
            parted = next((i for i, d in enumerate(diffs) if d > 1e-4), None)
            found[case] = {"steps": len(diffs), "first_losses": {p: v[:5] for p, v in losses.items()},
                           "largest_relative_difference_first_10": max(diffs[:10]),
                           "largest_relative_difference": max(diffs), "first_step_above_1e-4": parted,
                           "mean_loss_last_50": {p: statistics.mean(v[-50:]) for p, v in losses.items()}}
            print(case, found[case], flush=True)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32, train.CUDNN_AUTOTUNE = False, True, False
    return found


def ramp_check(root_dir: str) -> dict:
    """Lab 04's kind of schedule, a batch size that moves (32 -> 96 over 60 iterations, a new size every 5): the
    seconds it takes with cuDNN's autotuning off and on (a graph is captured per size)."""
    device = torch.device("cuda")
    split = data.load("fashion_mnist", root_dir, download=False, n_train=6000, n_test=500, device=device)
    found = {}
    for autotune in (False, True):
        train.CUDNN_AUTOTUNE = autotune
        train.seed_everything(0)
        recipe = train.Recipe(stages=[{"iterations": 60, "lr": [1e-4, 2e-3], "batch_size": [32, 96], "l2": 100}],
                              update_every=5, eval_every=60,
                              penalty=lessons.l2_penalty)
        start = time.perf_counter()
        fit = train.fit(lessons.ensemble_cnn().to(device), split, recipe, progress=False)
        found[f"autotune {'on' if autotune else 'off'}"] = {"seconds": time.perf_counter() - start, "steps": fit.steps}
    train.CUDNN_AUTOTUNE = False
    return found


def fp16_check(root_dir: str, real: bool) -> dict:
    """fp16 autocast with a gradient scaler against fp32 and bf16: the modified LeNet-5, 5 epochs, validation
    accuracy, the path the steps ran and the speed."""
    device = torch.device("cuda")
    split = data.load("fashion_mnist", root_dir, download=False, synthetic=not real, n_train=0 if real else 60000,
                      n_test=2000, device=device)
    found = {}
    for precision in ("fp32", "bf16", "fp16"):
        train.seed_everything(0)
        model = lessons.lenet5(modified=True, dropout=0.1).to(device)
        recipe = train.Recipe(optimizer="adamw", lr=1e-2, weight_decay=0.05, schedule="cosine", warmup=0.2, epochs=5,
                              batch_size=256, augment=FLIP, label_smoothing=0.1, precision=precision)
        fit = train.fit(model, split, recipe, progress=False)
        found[precision] = {"val_accuracy": fit.history[-1]["val_accuracy"], "steps": fit.steps,
                            "status": fit.status, "images_per_second": len(split.train) / statistics.median(
                                fit.train_seconds[1:])}
    return found


# --- all of it ---------------------------------------------------------------------------------

def nbval(log: Path) -> dict:
    """labs check --device cuda: assignment -> "passed" or "failed"."""
    proc = subprocess.run([sys.executable, "-m", "labs", "check", "--device", "cuda"], cwd=ROOT, capture_output=True,
                          text=True)
    log.write_text(proc.stdout + proc.stderr)
    print(proc.stdout, flush=True)
    return {lab: ("passed" if f"{lab}: ok" in proc.stdout else "failed") for lab in LABS}


def course(data_dir: str, variants: bool, out: Path) -> dict:
    device = torch.device("cuda")
    spec = data.DATASETS["fashion_mnist"]
    real = bool(data_dir) and spec.present(Path(data_dir) / spec.folder)
    record = {"gpu": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
              "date": time.strftime("%Y-%m-%d"), "data": "real FashionMNIST (labs 02, 04); synthetic elsewhere" if real
              else "synthetic data of the real sizes", "auto": train.precision_for(device, "auto")}
    record["nbval"] = nbval(out / "check.log")
    record["labs"], record["models"], runs = {}, {}, {}
    for lab, (dataset, n_real, lab_models) in LABS.items():
        lab_real = real and dataset == "fashion_mnist"
        runs[lab] = run_lab(lab, data_dir, lab_real, out / lab)
        (out / f"{lab}.log").write_text(runs[lab]["log"])
        r = runs[lab]["record"]
        record["labs"][lab] = {"wall_seconds": runs[lab]["wall"], "ok": runs[lab]["ok"],
                               "data": "real" if lab_real else "synthetic",
                               "test_accuracy": {n: m["test_accuracy"] for n, m in r.get("models", {}).items()},
                               "steps": r.get("env", {}).get("steps"), "precision": r.get("env", {}).get("precision"),
                               "peak_memory_gb": r.get("env", {}).get("peak_memory_gb")}
        print(f"{lab}: {runs[lab]['wall']:.1f} s, {record['labs'][lab]['test_accuracy']}", flush=True)
    roots = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lab, (dataset, n_real, lab_models) in LABS.items():
            r = runs[lab]["record"]
            n_split = n_real - round(n_real * 0.1)
            spec = data.DATASETS[dataset]
            if dataset not in roots:
                roots[dataset] = data_dir if real and dataset == "fashion_mnist" else \
                    str(data.write_synthetic(dataset, Path(tmp) / dataset, 20000, 2000))
            for name, (build, batch, augment) in lab_models.items():
                key = f"{lab}.{name}"
                entry = speeds(r["models"][name], n_split) if name in r.get("models", {}) else {}
                precision = r.get("env", {}).get("precision") or "fp32"
                tuned = {autotune: captured_step_rate(build, spec.shape, batch, precision, autotune=autotune)
                         for autotune in (False, True)}
                limit = max(tuned.values())
                seed = seed_rate(build, dataset, roots[dataset], batch, augment) if name != "member 2" else \
                    record["models"][f"{lab}.member 1"]["seed_images_per_second"]
                entry.update(seed_images_per_second=seed, limit_images_per_second=limit, batch=batch,
                             limit_autotune_off=tuned[False], limit_autotune_on=tuned[True],
                             precision=precision, steps=(r.get("env", {}).get("steps") or {}).get(name))
                if "images_per_second" in entry:
                    entry["share_of_limit"] = entry["images_per_second"] / limit
                record["models"][key] = entry
                print(f"{key}: {entry}", flush=True)
        fashion_root = data_dir if real else str(Path(roots["fashion_mnist"]))
        record["checks"] = {"captured_against_eager": captured_against_eager(fashion_root),
                            "fp16": fp16_check(data_dir, real), "ramp": ramp_check(fashion_root)}
    ok_labs = [lab for lab in record["labs"].values() if lab["wall_seconds"]]
    record["course_seconds"] = sum(lab["wall_seconds"] for lab in ok_labs)
    record["training_seconds"] = sum(m.get("training_seconds", 0) for m in record["models"].values())
    record["peak_memory_gb"] = max((lab["peak_memory_gb"] or 0) for lab in record["labs"].values())
    if variants:
        record["variants"] = {}
        for label, env, extra in (("eager steps (LABS_EAGER=1; auto is fp32 then)", {"LABS_EAGER": "1"}, ()),
                                  ("graphs, fp32", {}, ("-p", "precision", "fp32")),
                                  ("graphs, cuDNN autotuning on", {"LABS_CUDNN_AUTOTUNE": "1"}, ())):
            lab = "fashion_fcn_vs_lenet"
            v = run_lab(lab, data_dir, real, out / f"variant-{len(record['variants'])}", env, extra)
            models_ = v["record"].get("models", {})
            record["variants"][label] = {
                "wall_seconds": v["wall"], "test_accuracy": {n: m["test_accuracy"] for n, m in models_.items()},
                "models": {n: speeds(m, 54000) for n, m in models_.items()}}
            print(f"variant {label}: {record['variants'][label]}", flush=True)
    return record


def table(r: dict) -> str:
    lines = [f"# The course on a GPU", "", f"Written by `python benchmarks/speed.py --gpu-course`.", "",
             f"## {r['gpu']}, {r['date']}", "",
             f"torch {r['torch']} (CUDA {r['cuda']}); `precision: auto` is **{r['auto']}** here; data: {r['data']}.",
             "", f"`labs check --device cuda`: " + ", ".join(f"{lab} {v}" for lab, v in r["nbval"].items()) + ".", "",
             "Each lab's default run (`labs run`, wall time as the user waits, kernel start and report included):", "",
             "| lab | data | wall time | test accuracy | steps | precision |", "|---|---|---:|---|---|---|"]
    for lab, x in r["labs"].items():
        acc = ", ".join(f"{n} {100 * a:.2f} %" for n, a in x["test_accuracy"].items()) or "failed"
        steps = ", ".join(sorted(set((x["steps"] or {}).values()))) or "?"
        lines.append(f"| {lab} | {x['data']} | {x['wall_seconds']:.1f} s | {acc} | {steps} | {x['precision']} |")
    lines += ["", f"The four together: **{r['course_seconds']:.0f} s** of wall time, of which training "
                  f"{r['training_seconds']:.0f} s; at most {r['peak_memory_gb']:.2f} GB of GPU memory.", "",
              "Training speed, images per second: *lab loop*: the lab's own run, after its first evaluation interval "
              "(validation included); *seed*: the seed reports' pipeline (DataLoader, per-image transforms, eager, "
              "fp32); *limit*: the bare training step captured as one CUDA graph at the lab's batch size (measured in "
              "the same run, the lab's precision); *first interval*: what the first epoch (or evaluation interval) "
              "cost above a later one's.", "",
              "| model | batch | precision | steps | lab loop | seed | limit (cuDNN autotuning off / on) | share of "
              "limit | lab / seed | first interval |", "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, m in r["models"].items():
        ips = m.get("images_per_second")
        lines.append(f"| {key} | {m['batch']} | {m['precision']} | {m.get('steps') or '?'} | "
                     f"{ips or 0:,.0f} | {m['seed_images_per_second']:,.0f} | {m['limit_images_per_second']:,.0f} "
                     f"({m['limit_autotune_off']:,.0f} / {m['limit_autotune_on']:,.0f}) | "
                     f"{m.get('share_of_limit', 0):.0%} | {(ips or 0) / m['seed_images_per_second']:.1f}x | "
                     f"+{m.get('first_interval_extra_seconds', 0):.2f} s |")
    checks = r.get("checks", {})
    if checks:
        lines += ["", "Captured steps against eager ones (fp32, the same seed and batches, cuDNN deterministic, no "
                      "TF32), the loss of every step: the largest relative difference over the first 10 steps and "
                      "over all, the first step where they differ by more than 1e-4, and the mean loss of the last 50 "
                      "steps.", "", "| case | steps | first 10 | all | parted at | last 50, eager / graph |",
                  "|---|---:|---:|---:|---:|---|"]
        for case, c in checks["captured_against_eager"].items():
            last = c["mean_loss_last_50"]
            lines.append(f"| {case} | {c['steps']} | {c['largest_relative_difference_first_10']:.1e} | "
                         f"{c['largest_relative_difference']:.1e} | {c['first_step_above_1e-4']} | "
                         f"{last['eager']:.4f} / {last['graph']:.4f} |")
        lines += ["", "fp16 (autocast and a gradient scaler) beside fp32 and bf16: the modified LeNet-5, 5 epochs.", "",
                  "| precision | steps | validation accuracy | images per second |", "|---|---|---:|---:|"]
        for precision, c in checks["fp16"].items():
            lines.append(f"| {precision} | {c['steps']} | {100 * c['val_accuracy']:.2f} % | "
                         f"{c['images_per_second']:,.0f} |")
    if checks.get("ramp"):
        lines += ["", "A batch size that moves (lab 04's kind of schedule; a graph captured per size): " + ", ".join(
            f"{k} {v['seconds']:.1f} s ({v['steps']})" for k, v in checks["ramp"].items()) + "."]
    if r.get("variants"):
        lines += ["", "What each part gains: lab 02's default run again, one part changed.", "",
                  "| variant | wall time | fcn / lenet5 / lenet5_modified images per second | test accuracy |",
                  "|---|---:|---|---|"]
        for label, v in r["variants"].items():
            rates = " / ".join(f"{m['images_per_second']:,.0f}" for m in v["models"].values())
            acc = ", ".join(f"{100 * a:.2f} %" for a in v["test_accuracy"].values())
            lines.append(f"| {label} | {v['wall_seconds']:.1f} s | {rates} | {acc} |")
    return "\n".join(lines) + "\n"


def main(data_dir: str, variants: bool, logs: Path | None = None) -> dict:
    """Run it all; write benchmarks/results/gpu.json and gpu.md (and the runs' logs to `logs`, when given)."""
    if not torch.cuda.is_available():
        sys.exit("--gpu-course needs a CUDA GPU; this machine has none.")
    with tempfile.TemporaryDirectory() as tmp:
        out = logs or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        record = course(data_dir, variants, out)
    folder = ROOT / "benchmarks" / "results"
    (folder / "gpu.json").write_text(json.dumps(record, indent=1) + "\n")
    (folder / "gpu.md").write_text(table(record))
    print(table(record), flush=True)
    return record
