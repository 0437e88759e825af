"""The `labs` command line (also `python -m labs`): its subcommands, and how faults end (one line, exit status 2)."""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from labutils import LabsError

USAGE_ERROR, RUN_FAILED = 2, 1
OUTPUTS = Path("outputs")   # where runs and sweeps land without --output


def _list(args) -> int:
    from .params import assignments, course_dir, declared, notebook
    if not args.assignment:
        for name, path in assignments().items():
            presets = sorted(p.stem for p in (course_dir("params") / name).glob("*.yaml"))
            print(f"{name:<24}{path.name}\n{'':<24}presets: {', '.join(presets) or '-'}")
        return 0
    notebook(args.assignment)
    params = {n: p for n, p in declared(args.assignment).items() if n != "output_dir"}
    width = max(map(len, params)) + 2
    print(f"Parameters of {args.assignment} (type, default, help):")
    for p in params.values():
        print(f"  {p.name:<{width}}{p.type:<7}{p.default!r:<22} {p.help}")
    presets = sorted(str(p) for p in (course_dir("params") / args.assignment).glob("*.yaml"))
    if presets:
        print("Parameter files (-f):\n  " + "\n  ".join(presets))
    return 0


def _run(args) -> int:
    from .params import load_yaml, parse_value, resolve
    from .runner import describe_outcome, earlier_files, new_folder, run
    overrides = {name: parse_value(value) for name, value in args.p}
    files = [load_yaml(f) for f in args.f]
    params = resolve(args.assignment, files, overrides, smoke=args.smoke)   # validated here, once
    if args.smoke:
        given = {k: v for values in files for k, v in values.items() if k not in overrides}
        replaced = [f"{k} {given[k]!r} by {params[k]!r}" for k in given if k in params and params[k] != given[k]]
        if replaced:
            print(f"--smoke replaces {', '.join(replaced)} from your files (give a value with -p to keep it)")
    if args.output:
        folder = Path(args.output)
    else:
        name = "-".join([time.strftime("%Y%m%d-%H%M%S")] + [Path(f).stem for f in args.f]
                        + (["smoke"] if args.smoke else []))
        folder = new_folder(OUTPUTS / args.assignment, name)
    if folder.is_dir():
        earlier_files(folder)   # someone's folder is refused before a word is said (run checks again, locked)
    print(f"Running {args.assignment} into {folder}", flush=True)
    results = run(args.assignment, params, folder)
    print(describe_outcome(results, folder))
    _refresh_index(folder)
    return 0 if results["status"] == "ok" else RUN_FAILED


def _sweep(args) -> int:
    from labutils.vocab import plural

    from . import sweep
    from .runner import claim_sweep_folder
    if args.workers < 1:
        raise LabsError(f"--workers must be at least 1, not {args.workers}.")
    plans = [sweep.load(f, smoke=args.smoke, max_runs=args.max_runs) for f in args.files]   # all checked before any runs
    names = [p.name + ("-smoke" if args.smoke else "") for p in plans]
    if len(set(names)) < len(names):
        raise LabsError(f"Two sweep files have the same name ({', '.join(n for n in names if names.count(n) > 1)}); "
                        f"give each a different `name:`.")
    if len(plans) == 1:
        outs = [Path(args.output) if args.output else OUTPUTS / "sweeps" / names[0]]
    else:
        outs = [Path(args.output or OUTPUTS / "sweeps") / n for n in names]
    where = f"on the Dask cluster at {args.scheduler}" if args.scheduler else \
        f"in {args.workers} worker process{'es' if args.workers > 1 else ''}"
    for out in (o for o in outs if o.is_dir()):
        claim_sweep_folder(out, mark=False)   # someone's folder is refused before a word is said
    for plan, out in zip(plans, outs):
        print(f"Sweep {plan.name}: {plural(len(plan.runs), 'run')} of {plan.assignment} into {out}", flush=True)
    print(f"Running {where}", flush=True)
    outcomes = sweep.run(list(zip(plans, outs)), workers=args.workers, scheduler=args.scheduler, force=args.force,
                         wait=args.wait)
    for plan, out, outcome in zip(plans, outs, outcomes):
        print(f"{plan.name}: " + _summary_line(outcome, out))
    _refresh_index(*outs)
    return 0 if all(o["failed"] == 0 for o in outcomes) else RUN_FAILED


def _summary(args) -> int:
    from . import summary
    from .params import load_yaml
    folder = Path(args.sweep_dir)
    if not any(folder.glob("*/results.json")):
        raise LabsError(f"{folder} holds no runs (no <run>/results.json); give the folder `labs sweep` wrote.")
    summary.check_one_sweep(folder, summary.collect(folder, warn=False))
    spec = load_yaml(folder / "sweep.yaml")
    for key in ("reference", "notes"):
        if not isinstance(spec.get(key) or {}, dict):
            raise LabsError(f"{folder / 'sweep.yaml'}: `{key}` must be a mapping of run names to "
                            f"{'test accuracies in %' if key == 'reference' else 'sentences'}; fix it.")
    print(_summary_line(summary.write(folder, reference=spec.get("reference") or {}, name=spec.get("name") or "",
                                      notes=spec.get("notes") or {}), folder))
    return 0


def _summary_line(outcome: dict, folder: Path) -> str:
    from labutils.vocab import plural
    best = f"; best: {outcome['best']}" if outcome["best"] else ""
    older = outcome.get("older") or []
    apart = (f"\n  {plural(len(older), 'older run')} in {folder} that the sweep file no longer makes "
             f"({', '.join(older[:5])}{', ...' if len(older) > 5 else ''}) left out of the summary" if older else "")
    return (f"{plural(outcome['runs'], 'run')}: {outcome['ok']} ok, {outcome['failed']} failed or diverged{best}{apart}\n"
            f"  summary: {folder / 'summary.html'} ({folder / 'summary.md'}, {folder / 'summary.csv'})")


def _refresh_index(*folders: Path) -> None:
    """After a run or sweep that landed under outputs/, rebuild outputs/index.html (a failure here only warns)."""
    from . import index
    if not any(OUTPUTS.resolve() in Path(f).resolve().parents for f in folders):
        return
    try:
        print(f"  index of every run: {index.write(OUTPUTS)}")
    except OSError as e:
        print(f"labs: warning: could not rebuild {OUTPUTS / 'index.html'} ({e.strerror or e})", file=sys.stderr)


def _index(args) -> int:
    from . import index
    folder = Path(args.folder)
    if not folder.is_dir():
        raise LabsError(f"{folder} is not a folder; give the folder that holds the runs (default: outputs).")
    print(f"wrote {index.write(folder)}")
    return 0


def _colab(args) -> int:
    from . import colab
    if args.repo:
        changed = colab.rewrite(args.repo)
        print(f"{len(changed)} files now point at https://github.com/{args.repo}: "
              + (", ".join(str(p.name) for p in changed) or "nothing to change"))
    url, version = colab.project()
    problems = colab.problems(url, version)
    for line in problems:
        print(f"labs: {line}", file=sys.stderr)
    if not problems:
        print(f"every notebook opens {url} at v{version} on Colab and installs labutils {version} from there")
    return USAGE_ERROR if problems else 0


def _check(args) -> int:
    from labutils.vocab import plural

    from . import check
    outcomes = check.check(args.assignments, args.device)
    bad = [o["assignment"] for o in outcomes if not o["ok"]]
    print(f"{len(outcomes) - len(bad)} of {plural(len(outcomes), 'notebook')} passed"
          + (f"; failed: {', '.join(bad)}" if bad else ""))
    return RUN_FAILED if bad else 0


def _assign(args) -> int:
    from .assign import assign
    from .params import parse_value
    overrides = {name: parse_value(value) for name, value in args.p}
    for path in assign(args.assignments, Path(args.output), args.seeds, overrides):
        print(f"wrote {path}")
    return 0


def _grade(args) -> int:
    from .grade import grade
    output = Path(args.output)
    material = Path(args.grader) if args.grader else output / "grader"
    rows = []
    for assignment_rows in grade_by_assignment(args.submissions, material):
        rows += grade(assignment_rows[1], output, assignment_rows[0], args.workers, args.scheduler,
                      not args.no_sandbox, args.timeout, args.memory)
    print(f"grades: {output / 'grades.csv'} and {output / 'grades.html'}")
    return 0


def grade_by_assignment(submissions: list, material: Path) -> list:
    """[(the grader's material, its submissions)], by each notebook's assignment (its metadata from `labs assign`)."""
    import json

    import nbformat
    groups = {}
    for path in submissions:
        try:
            assignment = nbformat.read(path, as_version=4).metadata.get("labs", {}).get("assignment")
        except Exception:
            assignment = None
        groups.setdefault(assignment, []).append(path)
    known = {json.loads(p.read_text())["assignment"]: p for p in sorted(material.glob("*.json"))}
    if not known:
        raise LabsError(f"{material} holds no grader material; run `labs assign ... --output DIR` first and give "
                        f"--grader DIR/grader (or grade into DIR).")
    default = next(iter(known.values())) if len(known) == 1 else None
    return [(known.get(a) or default, paths) for a, paths in groups.items() if known.get(a) or default]


def _data_download(args) -> int:
    from labutils.data import DATASETS, fetch
    from labutils.vocab import did_you_mean, shown
    for name in args.datasets:   # every name checked before any download
        if name not in DATASETS:
            raise LabsError(f"Unknown dataset {shown(name)}{did_you_mean(name[:100], DATASETS)}; choose one of "
                            f"{', '.join(DATASETS)}.")
    for name in args.datasets or list(DATASETS):
        print(f"{name}: in {fetch(name, args.data_dir)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labs", description="Run the course notebooks with papermill.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="assignments, and each parameter: type, default, help")
    s.add_argument("assignment", nargs="?")
    s.set_defaults(handler=_list)

    s = sub.add_parser("run", help="run one assignment notebook into a run folder")
    s.add_argument("assignment")
    s.add_argument("-f", action="append", default=[], metavar="FILE.yaml",
                   help="parameter file; later files override earlier ones")
    s.add_argument("-p", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"),
                   help="one parameter, overriding the files (VALUE is read as YAML)")
    s.add_argument("--smoke", action="store_true", help="synthetic data, tiny and offline: seconds")
    s.add_argument("--output", metavar="DIR", help="run folder (default outputs/ASSIGNMENT/TIMESTAMP)")
    s.set_defaults(handler=_run)

    s = sub.add_parser("sweep", help="run every run of sweep files, then summarize each sweep")
    s.add_argument("files", nargs="+", metavar="SWEEP.yaml",
                   help="one or more sweep files; with several, each sweep goes to OUTPUT/NAME")
    s.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    s.add_argument("--scheduler", metavar="ADDRESS", help="send the runs to this Dask scheduler instead")
    s.add_argument("--smoke", action="store_true", help="every run on synthetic data, tiny and offline")
    s.add_argument("--force", action="store_true", help="run again the runs that are already done")
    s.add_argument("--max-runs", type=int, default=1000, metavar="N",
                   help="refuse a sweep file that makes more runs than this (default 1000): hours of work")
    s.add_argument("--output", metavar="DIR", help="sweep folder (default outputs/sweeps/NAME)")
    s.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="with --scheduler: how long to wait for a worker to join (default 30)")
    s.set_defaults(handler=_sweep)

    s = sub.add_parser("summary", help="rebuild a sweep's summaries from its runs")
    s.add_argument("sweep_dir", metavar="SWEEP_DIR")
    s.set_defaults(handler=_summary)

    s = sub.add_parser("index", help="FOLDER/index.html: every run and sweep under FOLDER, newest first, linked")
    s.add_argument("folder", nargs="?", default=str(OUTPUTS), metavar="FOLDER", help="default: outputs")
    s.set_defaults(handler=_index)

    s = sub.add_parser("colab", help="check (or, with --repo, rewrite) every notebook's Colab badge and install cell")
    s.add_argument("--repo", metavar="OWNER/NAME", help="move the course to github.com/OWNER/NAME: pyproject's URL, "
                                                         "then every badge and install cell")
    s.set_defaults(handler=_colab)

    s = sub.add_parser("check", help="run every notebook (or the named ones) with nbval on this machine, prepared "
                                     "with its smoke parameters, and say the device and precision each ran on")
    s.add_argument("assignments", nargs="*", metavar="ASSIGNMENT")
    s.add_argument("--device", default="auto", help="auto (a GPU where there is one), cpu, cuda or mps")
    s.set_defaults(handler=_check)

    s = sub.add_parser("assign", help="student versions of the notebooks, with public checks, and the grader's material")
    s.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="default: all four")
    s.add_argument("--output", required=True, metavar="DIR", help="DIR/student and DIR/grader")
    s.add_argument("--seeds", type=int, default=3, help="reference runs at grading size that set the accuracy bands")
    s.add_argument("-p", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"),
                   help="a parameter of the grading size (default: the assignment's smoke parameters)")
    s.set_defaults(handler=_assign)

    s = sub.add_parser("grade", help="grade submitted notebooks in a sandbox: grades.csv, grades.html, a folder each")
    s.add_argument("submissions", nargs="+", metavar="SUBMISSION")
    s.add_argument("--output", required=True, metavar="DIR", help="where grades go (and DIR/grader, by default)")
    s.add_argument("--grader", metavar="DIR", help="the grader's material from `labs assign` (default DIR/grader)")
    s.add_argument("--workers", type=int, default=1, help="submissions graded at once (default 1)")
    s.add_argument("--scheduler", metavar="ADDRESS", help="grade on this Dask scheduler's workers instead")
    s.add_argument("--timeout", type=float, default=600, help="seconds a submission's notebook may run (default 600)")
    s.add_argument("--memory", type=float, default=4, help="GB a submission's process may take (default 4)")
    s.add_argument("--no-sandbox", action="store_true", help="grade without bubblewrap (a warning says so)")
    s.set_defaults(handler=_grade)

    s = sub.add_parser("data", help="datasets")
    data_sub = s.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser("download", help="fetch datasets into the data dir ahead of time")
    d.add_argument("datasets", nargs="*", metavar="DATASET")
    d.add_argument("--data-dir", default="", help="default: $LABS_DATA_DIR, else ~/.cache/labs/data")
    d.set_defaults(handler=_data_download)
    return p


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP (`timeout`, a closed terminal) end `labs` as Ctrl-C does: finished work is kept, locks
    are released, kernels are shut down. Only the first signal interrupts: `timeout` signals labs and then its
    whole process group, and a second interruption would cut the clean-up short (it takes about a second;
    SIGKILL still ends labs at once)."""
    def interrupt(signum, frame):
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise KeyboardInterrupt
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), interrupt)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    stop_on_signals()
    try:
        return args.handler(args)
    except LabsError as e:
        print(f"labs: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:   # the reader went away (`labs list | head`): nothing is wrong with the disk
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:   # writing results, summaries or reports: a full disk, a folder made read-only, ...
        where = f" {e.filename}" if e.filename else ""
        print(f"labs: error: could not write{where}: {e.strerror or e}; free some disk space or check the "
              f"folder's permissions, then run the same command again.", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("labs: interrupted; finished runs are kept, and the same command resumes a sweep", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
