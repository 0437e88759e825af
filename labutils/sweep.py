"""Sweeps: read and validate a sweep file, run its runs in local worker processes or on a Dask cluster,
skip the runs already done, and rebuild the summaries.

A sweep file names an assignment and the runs to make:

    assignment: mnist_mlp
    name: mlp-learning-rate          # optional; else the file's name
    base: params/mnist_mlp/seed.yaml # optional parameter file under everything else
    params: {epochs: 10}             # fixed for every run
    grid: {lr: [1.0e-4, 1.0e-3]}     # cartesian product
    runs:                            # and/or named presets (crossed with the grid when both are given)
      - {name: he, init: he}
    seeds: [0, 1, 2]                 # optional: every run once per seed (named <run>_seed-N; --smoke: the first)
    reference: {he: 97.6}            # optional: the seed report's number per run, shown beside ours
    notes: {he: "..."}               # optional: why a run may differ from the report, shown in the summary

Each run's parameters are (params.combine): notebook defaults, (smoke.yaml with --smoke), base, params, the
preset, the grid point; with --smoke each run is then shrunk to smoke size.
"""

import itertools
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from . import LabsError, results as results_file, runner, summary
from .params import ROOT, _did_you_mean, combine, declared, load_yaml, notebook

KEYS = ("assignment", "name", "base", "params", "grid", "runs", "seeds", "reference", "notes")


@dataclass
class Sweep:
    """A validated sweep file: every run's full parameters by run name."""
    name: str
    assignment: str
    runs: dict
    reference: dict   # run name (without its seed) -> the seed report's test accuracy in %
    notes: dict       # run name (without its seed) -> why it may differ from the report
    source: dict      # the sweep file as written (and its name), kept beside the runs as sweep.yaml


def _find(path: str, sweep_file: Path) -> Path:
    """A file named in a sweep file: as given, else beside the sweep file, else in the repository."""
    for candidate in (Path(path), sweep_file.parent / path, ROOT / path):
        if candidate.is_file():
            return candidate
    return Path(path)


def run_name(preset: str | None, point: dict) -> str:
    """A readable, stable name: the preset's name and the grid values, e.g. `he_lr-0.001`."""
    parts = ([preset] if preset else []) + [f"{k}-{summary.label(v)}" for k, v in point.items()]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "_".join(parts))


def load(path, smoke: bool = False) -> Sweep:
    """Read and validate a sweep file and every run's parameters; any fault is one LabsError and nothing runs."""
    path = Path(path)
    spec = load_yaml(path)

    def fail(message):
        raise LabsError(f"{path}: {message}")

    for key in spec:
        if key not in KEYS:
            fail(f"unknown key {key!r}{_did_you_mean(key, KEYS)}; a sweep file has {', '.join(KEYS)}.")
    if "assignment" not in spec:
        fail("it names no assignment; add a line `assignment: <name>` (see `labs list`).")
    assignment = str(spec["assignment"])
    notebook(assignment)
    params = declared(assignment)
    base = load_yaml(_find(str(spec["base"]), path)) if spec.get("base") else {}
    fixed = spec.get("params") or {}
    grid = spec.get("grid")
    presets = spec.get("runs") or []
    if not isinstance(fixed, dict):
        fail("`params` must be a mapping of parameter names to values.")
    if grid is not None and (not isinstance(grid, dict) or not grid):
        fail("the grid is empty; give each varied parameter a list of values, e.g. `grid: {lr: [0.01, 0.001]}`.")
    for key, values in (grid or {}).items():
        if not isinstance(values, list) or not values:
            fail(f"grid entry {key!r} must be a non-empty list of values.")
    if not isinstance(presets, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"]
                                                for p in presets):
        fail("`runs` must be a list of mappings, each with a `name`, e.g. `- {name: he, init: he}`.")
    if not grid and not presets:
        fail("it has no runs: give a `grid`, a list of `runs`, or both.")
    for preset in presets:
        for key in preset.keys() & (grid or {}).keys():
            fail(f"run {preset['name']!r} sets {key}, which the grid also varies (the grid would silently win); "
                 f"set {key} in one of them only.")

    seeds = spec.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) < len(seeds)
                              or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in seeds)):
        fail("`seeds` must be a list of different whole numbers of 0 or more, e.g. `seeds: [0, 1, 2]`.")
    if seeds and ("seed" in (grid or {}) or "seed" in fixed or any("seed" in p for p in presets)):
        fail("it sets `seeds` and a seed elsewhere; give the seeds in one place.")

    grid = grid or {}
    runs, settings = {}, []
    for preset in presets or [{}]:
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            setting = run_name(preset.get("name"), point)
            settings.append(setting)
            for seed in (seeds[:1] if smoke and seeds else seeds) or [None]:   # --smoke: the first seed only
                name = setting if seed is None else f"{setting}_seed-{seed}"
                if name in runs:
                    fail(f"two runs are named {name!r}; give each run its own name.")
                layers = [base, fixed, {k: v for k, v in preset.items() if k != "name"}, point,
                          {} if seed is None else {"seed": seed}]
                try:
                    runs[name] = combine(assignment, layers, smoke, params)
                except LabsError as e:
                    fail(f"run {name!r}: {e}")
    for key in ("reference", "notes"):
        for name, value in (spec.get(key) or {}).items():
            if name not in settings:
                fail(f"`{key}` names run {name!r}, which the sweep does not make{_did_you_mean(str(name), settings)}.")
            if key == "reference" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                fail(f"`reference` of run {name!r} must be a test accuracy in %, not {value!r}.")
            if key == "notes" and not isinstance(value, str):
                fail(f"the note on run {name!r} must be a sentence, not {value!r}.")
    name = str(spec.get("name") or path.stem)
    return Sweep(name, assignment, runs, spec.get("reference") or {}, spec.get("notes") or {}, {**spec, "name": name})


def is_done(folder: Path, params: dict) -> bool:
    """True when the run folder holds an ok results.json made with these very parameters."""
    results = results_file.read(folder)
    return bool(results) and results.get("status") == "ok" and \
        results.get("params") == json.loads(json.dumps(results_file.json_safe(params)))


def run_one(assignment: str, params: dict, folder: str) -> dict:
    """One run, in a worker process (local or Dask); always returns its results, failed ones included."""
    start = time.perf_counter()
    try:
        return runner.run(assignment, params, Path(folder), stream=False)
    except Exception as e:   # never lose a run's outcome: record it
        results = results_file.failed(assignment, params, f"{type(e).__name__}: {e}", time.perf_counter() - start)
        results_file.write(Path(folder) / "results.json", results)
        return results


def _start_worker(threads: int) -> None:
    """Worker start-up: the runs' kernels share the cores instead of each taking all of them, Ctrl-C is left to
    the parent, which stops the workers itself, and a watch ends the worker (and its kernel) if the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()


def _end_with_parent(parent: int, every: float = 0.5) -> None:
    """When `labs` is killed outright (SIGKILL, the out-of-memory killer, a closed terminal) its workers are
    orphaned: end this one's children (the notebook kernel) and then itself, within a second."""
    import psutil
    while os.getppid() == parent:
        time.sleep(every)
    for child in psutil.Process().children(recursive=True):
        child.kill()
    os._exit(1)


def _lost(task: tuple, error: Exception) -> dict:
    """The results of a run whose worker died: written here, so the summary lists it."""
    assignment, params, folder = task
    results = results_file.failed(assignment, params, f"the worker running it was lost ({type(error).__name__}: "
                                  f"{error})", 0.0)
    results_file.write(Path(folder) / "results.json", results)
    return results


class _LocalWorkers:
    """Worker processes on this machine (never threads: papermill is process-safe, not thread-safe)."""

    def __init__(self, workers: int):
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                        initargs=(max(1, (os.cpu_count() or 1) // workers),))

    def map(self, fn, tasks: dict):
        """Yield (key, future) as each of fn(*args) for tasks {key: args} finishes."""
        from concurrent.futures import as_completed
        futures = {self.pool.submit(fn, *args): key for key, args in tasks.items()}
        for future in as_completed(futures):
            yield futures[future], future

    def close(self, stop: bool = False):
        """Let the workers go; with `stop`, end them now, runs in progress included."""
        if stop and hasattr(self.pool, "terminate_workers"):   # Python 3.14+
            self.pool.terminate_workers()
        elif stop:
            for process in list(self.pool._processes.values()):
                process.terminate()
        self.pool.shutdown(wait=False, cancel_futures=True)


class _DaskWorkers:
    """The workers of a running Dask cluster; run folders must be on a filesystem that they share."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise LabsError("--scheduler needs Dask: install it with `pip install -e \".[dask]\"`.") from None
        try:
            self.client = Client(address, timeout="5s")
        except Exception as e:
            raise LabsError(f"Could not reach a Dask scheduler at {address} ({type(e).__name__}); start one with "
                            f"`dask scheduler` and workers with `dask worker {address} --nthreads 1`.") from None
        self.tag, self.futures = uuid.uuid4().hex[:8], {}

    def map(self, fn, tasks: dict):
        from distributed import as_completed
        self.futures = {self.client.submit(fn, *args, pure=False, key=f"labs-{fn.__name__}-{key}-{self.tag}"): key
                        for key, args in tasks.items()}
        for future in as_completed(self.futures):
            yield self.futures[future], future

    def close(self, stop: bool = False):
        """Let the cluster go; with `stop`, cancel the runs not finished (those running finish on their workers)."""
        if stop and self.futures:
            self.client.cancel(list(self.futures))
        self.client.close()


LOCK = ".labs-sweep.lock"


def lock(folder: Path) -> Path:
    """Claim a sweep folder for this process: a lock file naming it. A folder claimed by a live `labs sweep` is
    refused with one line; the lock of a process that is gone (killed) is stale and taken over."""
    import psutil
    path = Path(folder) / LOCK
    me = psutil.Process()
    claim = {"pid": me.pid, "started": me.create_time(), "host": socket.gethostname()}
    tmp = path.with_name(f"{LOCK}.{me.pid}")
    tmp.write_text(json.dumps(claim))
    try:
        while True:
            try:
                os.link(tmp, path)   # atomic: fails when the lock exists, and never leaves half a file
                return path
            except FileExistsError:
                holder = _holder(path)
                if holder:
                    since = time.strftime("%H:%M:%S", time.localtime(holder["started"]))
                    raise LabsError(f"{folder} is in use by another `labs sweep` (process {holder['pid']} on "
                                    f"{holder['host']}, running since {since}); wait for it to end, or give this "
                                    f"sweep another --output.") from None
                path.unlink(missing_ok=True)   # stale
    finally:
        tmp.unlink(missing_ok=True)


def _holder(path: Path) -> dict | None:
    """Who holds a lock, if that process still lives (on another machine it is taken to live)."""
    import psutil
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if holder.get("host") != socket.gethostname():
        return holder
    try:
        alive = abs(psutil.Process(holder["pid"]).create_time() - holder["started"]) < 1
    except (psutil.Error, KeyError, TypeError):
        alive = False
    return holder if alive else None


def run(sweeps: list, workers: int = 1, scheduler: str | None = None, force: bool = False) -> list:
    """Run every run of `sweeps`, a list of (Sweep, folder), into folder/<run>/ on one set of workers, skipping
    the runs already done unless `force`; then render each sweep's summaries there too. Returns their outcomes."""
    sweeps = [(plan, results_file.writable_folder(Path(out).resolve(), "sweep folder")) for plan, out in sweeps]
    locks = []
    try:
        for _, out in sweeps:
            locks.append(lock(out))
        return _run(sweeps, workers, scheduler, force)
    finally:
        for path in locks:
            path.unlink(missing_ok=True)


def _run(sweeps: list, workers: int, scheduler: str | None, force: bool) -> list:
    tasks = {}
    for plan, out in sweeps:
        results_file.write_atomic(out / "sweep.yaml", yaml.safe_dump(plan.source, sort_keys=False))
        todo = [n for n in plan.runs if force or not is_done(out / n, plan.runs[n])]
        if len(todo) < len(plan.runs):
            print(f"{plan.name}: {len(plan.runs) - len(todo)} of {len(plan.runs)} runs already done: skipped "
                  f"(--force runs them again)", flush=True)
        tasks.update({f"{plan.name}/{n}": (plan.assignment, plan.runs[n], str(out / n)) for n in todo})
    several = len(sweeps) > 1
    counts = {"ok": 0, "failed or diverged": 0}
    workers = _DaskWorkers(scheduler) if scheduler else _LocalWorkers(workers)
    try:
        with tqdm(total=len(tasks), desc="runs", unit="run", file=sys.stdout, dynamic_ncols=True) as bar:
            for key, future in workers.map(run_one, tasks):
                try:
                    results = future.result()
                except Exception as e:   # the worker died
                    results = _lost(tasks[key], e)
                counts["ok" if results["status"] == "ok" else "failed or diverged"] += 1
                bar.update(1)
                bar.set_postfix({**counts, "left": len(tasks) - sum(counts.values())})
                name = key if several else key.split("/", 1)[1]
                bar.write(f"{name}: {results_file.describe(results)}", file=sys.stdout)
        print(f"rendering {len(sweeps)} summar{'ies' if several else 'y'}", flush=True)
        renders = {plan.name: (out, True, plan.reference, plan.name, plan.notes) for plan, out in sweeps}
        outcomes = {name: future.result() for name, future in workers.map(summary.write, renders)}
    except KeyboardInterrupt:
        workers.close(stop=True)
        for plan, out in sweeps:   # quick: the csv and markdown tables of what finished
            summary.write(out, render=False, reference=plan.reference, name=plan.name, notes=plan.notes)
        raise
    workers.close()
    return [outcomes[plan.name] for plan, _ in sweeps]
