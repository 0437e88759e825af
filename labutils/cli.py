"""The `labs` command (also `python -m labutils`): a thin layer over params, runner and data."""

import argparse
import sys
import time
from pathlib import Path

from . import LabsError

USAGE_ERROR, RUN_FAILED = 2, 1


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
    from .params import parse_value, resolve
    from .runner import describe_outcome, new_folder, run
    overrides = {name: parse_value(value) for name, value in args.p}
    params = resolve(args.assignment, args.f, overrides, smoke=args.smoke)
    if args.output:
        folder = Path(args.output)
    else:
        name = "-".join([time.strftime("%Y%m%d-%H%M%S")] + [Path(f).stem for f in args.f]
                        + (["smoke"] if args.smoke else []))
        folder = new_folder(Path("outputs") / args.assignment, name)
    print(f"Running {args.assignment} into {folder}", flush=True)
    results = run(args.assignment, params, folder)
    print(describe_outcome(results, folder))
    return 0 if results["status"] == "ok" else RUN_FAILED


def _data_download(args) -> int:
    from .data import DATASETS, fetch
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

    s = sub.add_parser("data", help="datasets")
    data_sub = s.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser("download", help="fetch datasets into the data dir ahead of time")
    d.add_argument("datasets", nargs="*", metavar="DATASET")
    d.add_argument("--data-dir", default="", help="default: $LABS_DATA_DIR, else ~/.cache/labs/data")
    d.set_defaults(handler=_data_download)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except LabsError as e:
        print(f"labs: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("labs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
