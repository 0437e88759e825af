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
    reference: {he: 97.6}            # optional: the seed report's number per run, shown beside ours (the
                                     # course's sweeps take theirs from labutils/reports/<assignment>.yaml)
    notes: {he: "..."}               # optional: why a run may differ from the report, shown in the summary

Each run's parameters are (params.combine): notebook defaults, (smoke.yaml with --smoke), base, params, the
preset, the grid point; with --smoke each run is then shrunk to smoke size.
"""

import itertools
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from labutils import LabsError, results as results_file
from labutils.progress import Bar
from labutils.reported import reported
from labutils.vocab import did_you_mean, label, plural, shown

from . import records, runner, summary
from .params import ROOT, combine, declared, load_yaml, notebook

KEYS = ("assignment", "name", "base", "params", "grid", "runs", "seeds", "reference", "notes")


@dataclass
class Sweep:
    """A validated sweep file: every run's full parameters, and its setting (the run's name less its seed), by
    run name."""
    name: str
    assignment: str
    runs: dict
    settings: dict
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
    parts = ([preset] if preset else []) + [f"{k}-{label(v)}" for k, v in point.items()]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "_".join(parts))


MAX_NAME = 100   # characters of a sweep's or a run's name: a folder's name, far below the 255 bytes a system allows
RESERVED = ("sweep.yaml", "summary.csv", "summary.md", "summary.ipynb", "summary.html", "index.html")


def check_name(what: str, name: str) -> None:
    """Refuse a name that could not be a folder of its own inside the output folder: a path, `.` or `..`, control
    or other characters outside letters, digits and . _ + -, too long, or one of the sweep folder's own files."""
    if not re.fullmatch(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*", name) or len(name) > MAX_NAME or name in RESERVED:
        why = ("is one of the sweep folder's own files" if name in RESERVED else
               f"is longer than {MAX_NAME} characters" if len(name) > MAX_NAME else
               "may hold only letters, digits and . _ + - (and not start with a dot)")
        raise LabsError(f"the {what} name {shown(name)} {why}: it names a folder inside the output folder; "
                        f"rename it.")


def load(path, smoke: bool = False, max_runs: int = 1000) -> Sweep:
    """Read and validate a sweep file and every run's parameters; any fault is one LabsError and nothing runs.
    A sweep of more than `max_runs` runs is refused before its runs are even built."""
    path = Path(path)
    spec = load_yaml(path)
    try:
        return _plan(path, spec, smoke, max_runs)
    except LabsError as e:
        raise LabsError(f"{path}: {e}") from None


def _plan(path: Path, spec: dict, smoke: bool, max_runs: int) -> Sweep:
    for key in spec:
        if key not in KEYS:
            raise LabsError(f"unknown key {shown(key)}{did_you_mean(str(key)[:100], KEYS)}; a sweep file has "
                            f"{', '.join(KEYS)}.")
    if "assignment" not in spec:
        raise LabsError("it names no assignment; add a line `assignment: <name>` (see `labs list`).")
    assignment = str(spec["assignment"])
    notebook(assignment)
    sweep_name = str(spec.get("name") or path.stem)
    check_name("sweep", sweep_name)
    base = load_yaml(_find(str(spec["base"]), path)) if spec.get("base") else {}
    fixed, grid, presets, seeds = _parts(spec)
    for preset in presets:
        check_name("run", preset["name"])   # as written; a grid's values are made safe by run_name
    count = len(presets or [{}]) * math.prod(map(len, grid.values())) * len((seeds[:1] if smoke else seeds) or [0])
    if count > max_runs:
        raise LabsError(f"it makes {count:,} runs, more than --max-runs {max_runs:,}; check the grid, or give "
                        f"--max-runs {count} to run them all.")
    params, runs, settings = declared(assignment), {}, {}
    for preset in presets or [{}]:
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            setting = run_name(preset.get("name"), point)
            for seed in (seeds[:1] if smoke else seeds) or [None]:   # --smoke: the first seed only
                run = setting if seed is None else f"{setting}_seed-{seed}"
                check_name("run", run)
                if run in runs:
                    raise LabsError(f"two runs are named {run!r}; give each run its own name.")
                layers = [base, fixed, {k: v for k, v in preset.items() if k != "name"}, point,
                          {} if seed is None else {"seed": seed}]
                try:
                    runs[run] = combine(assignment, layers, smoke, params)
                except LabsError as e:
                    raise LabsError(f"run {run!r}: {e}") from None
                settings[run] = setting
    reference = spec.get("reference") or reported(assignment).get("sweeps", {}).get(sweep_name, {})
    notes = spec.get("notes") or {}
    _check_annotations(reference, notes, set(settings.values()))
    source = {**spec, "name": sweep_name, "reference": reference,
              "made": {run: {"setting": settings[run], "seed": runs[run].get("seed")} for run in runs}}
    return Sweep(sweep_name, assignment, runs, settings, reference, notes, source)


def _parts(spec: dict) -> tuple:
    """A sweep file's fixed parameters, grid, presets and seeds, each checked for its shape."""
    fixed, grid, presets, seeds = spec.get("params") or {}, spec.get("grid"), spec.get("runs") or [], spec.get("seeds")
    if not isinstance(fixed, dict):
        raise LabsError("`params` must be a mapping of parameter names to values.")
    if grid is not None and (not isinstance(grid, dict) or not grid):
        raise LabsError("the grid is empty; give each varied parameter a list of values, e.g. "
                        "`grid: {lr: [0.01, 0.001]}`.")
    for key, values in (grid or {}).items():
        if not isinstance(values, list) or not values:
            raise LabsError(f"grid entry {shown(key)} must be a non-empty list of values.")
    if not isinstance(presets, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"]
                                                for p in presets):
        raise LabsError("`runs` must be a list of mappings, each with a `name`, e.g. `- {name: he, init: he}`.")
    if not grid and not presets:
        raise LabsError("it has no runs: give a `grid`, a list of `runs`, or both.")
    for preset in presets:
        for key in preset.keys() & (grid or {}).keys():
            raise LabsError(f"run {shown(preset['name'])} sets {key}, which the grid also varies (the grid would "
                            f"silently win); set {key} in one of them only.")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) < len(seeds)
                              or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in seeds)):
        raise LabsError("`seeds` must be a list of different whole numbers of 0 or more, e.g. `seeds: [0, 1, 2]`.")
    if seeds and ("seed" in (grid or {}) or "seed" in fixed or any("seed" in p for p in presets)):
        raise LabsError("it sets `seeds` and a seed elsewhere; give the seeds in one place.")
    return fixed, grid or {}, presets, seeds or []


def _check_annotations(reference, notes, settings: set) -> None:
    """`reference` and `notes` name runs the sweep makes, with a number in % and a sentence."""
    for key, given in (("reference", reference), ("notes", notes)):
        if not isinstance(given, dict):
            raise LabsError(f"`{key}` must be a mapping of run names to "
                            f"{'test accuracies in %' if key == 'reference' else 'sentences'}.")
        for run, value in given.items():
            if run not in settings:
                raise LabsError(f"`{key}` names run {shown(run)}, which the sweep does not make"
                                f"{did_you_mean(str(run)[:100], settings)}.")
            if key == "reference" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise LabsError(f"`reference` of run {shown(run)} must be a test accuracy in %, not {shown(value)}.")
            if key == "notes" and not isinstance(value, str):
                raise LabsError(f"the note on run {shown(run)} must be a sentence, not {shown(value)}.")


def is_done(folder: Path, params: dict) -> bool:
    """True when the run folder holds a usable results.json made with these very parameters that ended ok or
    diverged (divergence is a result); a failed run is made again."""
    results = records.read(folder)
    return bool(results) and results["status"] in ("ok", "diverged") and \
        results["params"] == json.loads(json.dumps(results_file.json_safe(params)))


def run_one(assignment: str, params: dict, folder: str, setting: str) -> dict:
    """One run, in a worker process (local or Dask); always returns its results, failed ones included."""
    start = time.perf_counter()
    try:
        return runner.run(assignment, params, Path(folder), stream=False, setting=setting)
    except Exception as e:   # never lose a run's outcome: record it
        error = str(e) if isinstance(e, LabsError) else f"{type(e).__name__}: {e}"
        results = results_file.build(assignment, params, status="failed", error=error, setting=setting,
                                     wall_seconds=time.perf_counter() - start)
        try:
            results_file.write(Path(folder) / "results.json", results)
        except OSError:
            pass   # the outcome still reaches the sweep, which lists it
        return results


_busy, _stopping = False, False   # whether this worker process is running a task; whether it was told to stop


def _start_worker(threads: int) -> None:
    """Worker start-up: the runs' kernels share the cores instead of each taking all of them; a signal to stop
    (Ctrl-C reaches the whole process group, the parent sends SIGTERM) interrupts the task in progress, so that it
    cleans up, its kernel and partial files included, and no queued task starts after it; an idle worker just
    ends on SIGTERM. A watch ends the worker (and its kernel) if the parent dies."""
    signal.signal(signal.SIGINT, _stop_worker)
    signal.signal(signal.SIGTERM, _stop_worker)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()


def _stop_worker(signum, frame):
    """The first signal interrupts the run in progress, once: a second one (`timeout` signals the whole group, then
    the parent its workers) must not cut short its clean-up. An idle worker ends at once."""
    global _stopping
    first, _stopping = not _stopping, True
    if not _busy:
        os._exit(0)
    if first:
        raise KeyboardInterrupt


def _busy_call(fn, *args):
    """fn(*args) in a worker, marked busy meanwhile (see _stop_worker). A worker told to stop ends once its run has
    cleaned up; the parent, stopping too, reads the run's own results.json."""
    global _busy
    if _stopping:
        os._exit(0)
    _busy = True
    try:
        return fn(*args)
    finally:
        _busy = False
        if _stopping:
            os._exit(0)


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
    assignment, params, folder, setting = task
    results = results_file.build(assignment, params, status="failed", setting=setting,
                                 error=f"the worker running it was lost ({type(error).__name__}: {error})")
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
        futures = {self.pool.submit(_busy_call, fn, *args): key for key, args in tasks.items()}
        for future in as_completed(futures):
            yield futures[future], future

    def lost(self, error: Exception) -> bool:
        return False

    def close(self, stop: bool = False):
        """Let the workers go; with `stop`, end them now, runs in progress included."""
        if stop and hasattr(self.pool, "terminate_workers"):   # Python 3.14+
            self.pool.terminate_workers()
        elif stop:
            for process in list((self.pool._processes or {}).values()):
                process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)   # joined: no process or semaphore left behind


class SchedulerLost(Exception):
    """The Dask scheduler went away during a sweep."""


class _DaskWorkers:
    """The workers of a running Dask cluster; run folders must be on a filesystem that they share (checked)."""

    def __init__(self, address: str, wait: float = 30.0):
        try:
            from distributed import Client
        except ImportError:
            raise LabsError("--scheduler needs Dask: install it with `pip install -e \".[dask]\"`.") from None
        start = f"start one with `dask scheduler` and workers with `dask worker {address} --nthreads 1`"
        try:
            self.client = Client(address, timeout="5s")
        except (ValueError, TypeError):
            raise LabsError(f"{address!r} is not a Dask scheduler address (like tcp://10.0.0.5:8786); "
                            f"give the address `dask scheduler` printed.") from None
        except Exception:
            raise LabsError(f"Could not reach a Dask scheduler at {address} within 5 s; check the address, or "
                            f"{start}.") from None
        try:
            self.client.wait_for_workers(1, timeout=wait)
        except Exception:
            self.client.close()
            raise LabsError(f"The Dask scheduler at {address} has no workers (waited {wait:g} s); start one with "
                            f"`dask worker {address} --nthreads 1`, then run the sweep again.") from None
        self.tag, self.futures = uuid.uuid4().hex[:8], {}
        self.stop_event = f"labs-stop-{self.tag}"

    def check_folders(self, folders: dict) -> None:
        """Before any run: every worker sees these folders ({path: what it is}) as labs does. labs writes a marker
        file in each, and every worker reads it back; one LabsError names the first worker and folder that cannot."""
        markers = {}
        try:
            for folder in folders:
                marker = Path(folder) / f".labs-probe-{self.tag}"
                try:
                    marker.write_text(self.tag)
                except OSError:   # a data folder labs may read but not write: the workers' view of it goes unchecked
                    continue
                markers[folder] = str(marker)
            seen = self.client.run(_sees_markers, markers, self.tag)
        finally:
            for marker in markers.values():
                Path(marker).unlink(missing_ok=True)
        for worker, found in seen.items():
            for folder, ok in found.items():
                if not ok:
                    raise LabsError(f"The Dask worker at {worker} cannot see the {folders[folder]} {folder} (a file "
                                    f"labs wrote there is not there for it); put it on a filesystem every worker "
                                    f"shares, at the same path, then run the sweep again.")

    def map(self, fn, tasks: dict):
        from distributed import as_completed
        self.futures = {self.client.submit(_on_cluster, self.stop_event, fn, *args, pure=False,
                                           key=f"labs-{fn.__name__}-{key}-{self.tag}"): key
                        for key, args in tasks.items()}
        for future in as_completed(self.futures):
            yield self.futures[future], future

    def lost(self, error: Exception) -> bool:
        """Whether `error`, from a run's future, means the scheduler is gone (rather than a worker)."""
        from concurrent.futures import CancelledError
        return isinstance(error, CancelledError) and (self.client.status != "running"
                                                      or "scheduler-connection-lost" in str(error))

    def stop(self, wait: float = 30.0) -> tuple:
        """Tell the runs in flight to stop (each worker ends its run's kernel; the run's folder is left whole, its
        status "stopped"), drop the runs not begun, and wait for them up to `wait` seconds. Returns the runs that
        stopped and those that did not within the wait (cancelled, they may still write to their folders)."""
        from distributed import Event, wait as wait_for
        pending = [f for f in self.futures if not f.done()]
        if not pending:
            return [], []
        Event(self.stop_event, client=self.client).set()
        print(f"labs: stopping the sweep's runs on the Dask workers (waiting up to {wait:g} s) ...", file=sys.stderr,
              flush=True)
        try:
            wait_for(pending, timeout=wait)
        except Exception:   # the wait ran out (or the scheduler went): what finished is known below
            pass
        stopped = [self.futures[f] for f in pending if f.status == "finished" and (f.result() or {}).get("status")
                   == "stopped"]
        running = [f for f in pending if not f.done()]
        if running:
            self.client.cancel(running)
        return stopped, [self.futures[f] for f in running]

    def close(self, stop: bool = False):
        """Let the cluster go; with `stop`, cancel the runs not finished. A client whose scheduler is gone closes
        quietly: labs says what happened, in one line, not Dask's reconnection tracebacks."""
        if self.client.status != "running":
            for name in ("distributed", "distributed.client", "distributed.utils", "asyncio", "tornado"):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        elif stop and self.futures:
            self.client.cancel(list(self.futures))
        self.client.close(timeout=5)


def _sees_markers(markers: dict, tag: str) -> dict:
    """On a worker: whether each marker file labs wrote is there for it, as labs wrote it."""
    found = {}
    for what, path in markers.items():
        try:
            found[what] = Path(path).read_text() == tag
        except OSError:
            found[what] = False
    return found


def _on_cluster(stop: str, fn, assignment: str, params: dict, folder: str, setting: str):
    """A run on a Dask worker that honours labs' stop, as a local run honours SIGINT: once labs sets the Event
    `stop`, a run not begun does nothing (None), and one in progress has its kernel ended: the run's folder is left
    whole (its partial report) and its results.json says "stopped", so the same command makes it again."""
    from distributed import Event, get_client
    event = Event(stop, client=get_client())
    if event.is_set():
        return None
    finished, told = threading.Event(), []

    def watch():
        while not finished.wait(0.25):
            try:
                if event.is_set():
                    told.append(True)
                    runner.end_kernels(Path(folder))   # again each time: a kernel may still be starting
            except Exception:   # the scheduler is gone: the run goes on, and says so when it ends
                return
    threading.Thread(target=watch, daemon=True).start()
    try:
        results = fn(assignment, params, folder, setting)
    finally:
        finished.set()
    if told:
        results = {**results, "status": "stopped", "error": "stopped: labs sweep was stopped while this run trained; "
                                                            "the same command makes it again"}
        results_file.write(Path(folder) / "results.json", results)
    return results


def run(sweeps: list, workers: int = 1, scheduler: str | None = None, force: bool = False,
        wait: float = 30.0) -> list:
    """Run every run of `sweeps`, a list of (Sweep, folder), into folder/<run>/ on one set of workers, skipping
    the runs already done unless `force`; then render each sweep's summaries there too. Returns their outcomes.
    wait: how long a Dask scheduler may take to show a worker."""
    sweeps = [(plan, records.writable_folder(Path(out).resolve(), "sweep folder")) for plan, out in sweeps]
    locks = []
    try:
        for _, out in sweeps:
            locks.append(runner.lock(out, "labs sweep"))
            runner.claim_sweep_folder(out)
        return _run(sweeps, workers, scheduler, force, wait)
    finally:
        for path in locks:
            path.unlink(missing_ok=True)


def _run(sweeps: list, workers: int, scheduler: str | None, force: bool, wait: float) -> list:
    tasks = {}
    for plan, out in sweeps:
        todo = [n for n in plan.runs if force or not is_done(out / n, plan.runs[n])]
        if len(todo) < len(plan.runs):
            print(f"{plan.name}: {len(plan.runs) - len(todo)} of {len(plan.runs)} runs already done: skipped "
                  f"(--force runs them again)", flush=True)
        tasks.update({f"{plan.name}/{n}": (plan.assignment, plan.runs[n], str(out / n), plan.settings[n])
                      for n in todo})
    several = len(sweeps) > 1
    if scheduler:
        workers = _DaskWorkers(scheduler, wait)
        try:
            workers.check_folders({**{str(out): "output folder" for _, out in sweeps}, **_data_folders(tasks)})
        except BaseException:
            workers.close()
            raise
    else:
        workers = _LocalWorkers(workers)
    for plan, out in sweeps:
        results_file.write_atomic(out / "sweep.yaml", yaml.safe_dump(plan.source, sort_keys=False))
    started, reported = time.time(), set()
    try:
        bar = Bar(len(tasks), "runs", unit="run")
        for key, future in workers.map(run_one, tasks):
            try:
                results = future.result()
            except Exception as e:
                if workers.lost(e):
                    raise SchedulerLost from None
                results = _lost(tasks[key], e)   # the worker died (Dask makes a lost run again elsewhere first)
            if results is None:   # a run told to stop before it began
                continue
            bar.update(1)
            reported.add(key)
            bar.write(f"{key if several else key.split('/', 1)[1]}: {results_file.describe(results)}")
        bar.close()
    except SchedulerLost:
        bar.close()
        message = _after_the_scheduler(tasks, reported, started, scheduler, several)
        workers.close()
        _summaries(sweeps)
        raise LabsError(message) from None
    except KeyboardInterrupt:
        if scheduler:
            try:
                stopped, left = workers.stop()
                if stopped or left:
                    print(f"labs: stopped {len(stopped)} run{'s' if len(stopped) != 1 else ''} in flight "
                          f"({', '.join(k.split('/', 1)[1] for k in stopped) or 'none'}): their folders say "
                          f"\"stopped\"" + (f"; {len(left)} did not stop within the wait and may still write to "
                                             f"their folders ({', '.join(left)})" if left else ""), file=sys.stderr)
            except KeyboardInterrupt:   # a second Ctrl-C: no more waiting
                pass
        workers.close(stop=True)
        _summaries(sweeps, render=False)   # quick: the csv and markdown tables of what finished
        raise
    workers.close()
    print(f"rendering {len(sweeps)} summar{'ies' if several else 'y'}", flush=True)
    return _summaries(sweeps)


def _summaries(sweeps: list, render: bool = True) -> list:
    """Each sweep's summaries, written here by labs from what its run folders hold (never sent to a cluster)."""
    return [summary.write(out, render=render, reference=plan.reference, name=plan.name, notes=plan.notes)
            for plan, out in sweeps]


def _data_folders(tasks: dict) -> dict:
    """The data folders the runs read that labs can see here (a run given one by data_dir, on real data): the
    workers must see them too. A folder that holds no dataset here is left out (its runs download their own)."""
    from labutils.data import DATASETS
    from labutils.vocab import DATASET_OF
    found = {}
    for assignment, params, _, _ in tasks.values():
        name = params.get("dataset") or DATASET_OF.get(assignment)
        if params.get("synthetic") or not params.get("data_dir") or name not in DATASETS:
            continue
        folder = Path(params["data_dir"]).expanduser() / DATASETS[name].folder
        if DATASETS[name].present(folder):
            found[str(folder)] = "data folder"
    return found


def _after_the_scheduler(tasks: dict, reported: set, started: float, address: str, several: bool) -> str:
    """The scheduler was lost: each run not yet reported, as its folder says (finished wherever it ran, maybe still
    running on a worker, or not begun); the one line that says what happened and what to do."""
    counts = {"finished": 0, "running": 0, "not begun": 0}
    for key, (_, _, folder, _) in tasks.items():
        folder, name = Path(folder), key if several else key.split("/", 1)[1]
        record = records.read(folder, warn=False)
        begun = record is not None and (folder / "results.json").stat().st_mtime >= started
        if begun and record["status"] != "running":
            counts["finished"] += 1
            if key not in reported:
                print(f"{name}: {results_file.describe(record)}", flush=True)
        elif begun or (folder / runner.LOCK).exists():   # its record says running: it had begun, not finished
            counts["running"] += 1
            print(f"{name}: was running on a worker when the scheduler was lost", flush=True)
        else:
            counts["not begun"] += 1
            print(f"{name}: not begun", flush=True)
    return (f"the Dask scheduler at {address} was lost {time.time() - started:.0f} s into the sweep; "
            f"{plural(counts['finished'], 'run')} finished, {counts['running']} may still be running on the workers, "
            f"{counts['not begun']} did not begin; run the same command again to finish it.")
