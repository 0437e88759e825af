"""`labs grade`: submitted notebooks graded in a sandbox, locally (--workers) or on Dask (--scheduler).

Each submission is graded twice over, each time in a bubblewrap sandbox of its own (no network, a filesystem that holds
only the Python that runs it and the submission's own folder, writable; a private /tmp; a wall-time, a memory and a
process limit, as a user of its own; everything it started ended with it):
1. its notebook runs at grading size (the assignment's smoke parameters) through papermill: report, results.json;
2. the grader's own code runs the checks against what the submission's exercise cells define (their definitions
   alone: no check cell and no other statement of the submission runs there), with the reference's code: the
   public checks, then the hidden ones (the network's outputs and gradients with the reference's weights loaded
   where the shapes match; a function's value on other seeded inputs).
Then the notebook's record: each model's test accuracy against the reference's band, and results.json as the
package writes it. One point a check; warnings and stderr cost nothing. grades.csv and grades.html list them all.
"""

import ast
import csv
import functools
import html
import io
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

import nbformat

from labutils import LabsError, results as results_file

SANDBOX_FIX = "install bubblewrap (Debian and Ubuntu: apt-get install bubblewrap), or give --no-sandbox to grade unsandboxed"
UIDS = 62000   # a submission graded in slot k runs as user UIDS + k, so one's process limit never starves another's


# --- the sandbox ------------------------------------------------------------------------------------

def sandbox_ready() -> None:
    """Refuse in one line where bubblewrap cannot start a sandbox."""
    try:
        subprocess.run(["bwrap", "--unshare-net", "--ro-bind", "/", "/", "true"], check=True, capture_output=True,
                       timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise LabsError(f"The grading sandbox cannot start ({getattr(e, 'stderr', b'').decode().strip() or e}); "
                        f"{SANDBOX_FIX}.") from None


def sandboxed(command: list, folder: Path, uid: int, memory_gb: float, read_only=()) -> list:
    """`command` inside a sandbox where only `folder` is writable and only the Python that runs labs is readable
    (with `read_only`), with no network, as user `uid` (when labs runs as root) with limits on memory and processes."""
    import labs
    import labutils
    paths = {sys.prefix, sys.base_prefix, *(p for p in sys.path if p and Path(p).exists()),
             str(Path(labs.__file__).parent), str(Path(labutils.__file__).parent), *map(str, read_only)}
    paths = sorted({p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths)})
    argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--die-with-parent",
            "--new-session", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/tmp"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if Path(f"/{link}").is_symlink():
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif Path(f"/{link}").is_dir():
            argv += ["--ro-bind", f"/{link}", f"/{link}"]
    made = set()
    for path in [*paths, str(folder)]:
        for parent in list(Path(path).parents)[::-1][1:]:
            if str(parent) not in made and str(parent) != "/tmp" and not str(parent).startswith(("/usr/", "/etc/")):
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        argv += ["--bind" if path == str(folder) else "--ro-bind", path, path]
    argv += ["--chdir", str(folder), "--setenv", "HOME", str(folder), "--setenv", "MPLCONFIGDIR", "/tmp",
             "--setenv", "IPYTHONDIR", "/tmp/ipython", "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp/jupyter",
             "--setenv", "LABS_DATA_DIR", str(folder / "data"), "--setenv", "OMP_NUM_THREADS", "1", "--"]
    if os.geteuid() == 0:
        argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return argv + ["prlimit", "--nproc=256", f"--data={int(memory_gb * 2 ** 30)}", "--"] + command


def contained(command: list, folder: Path, uid: int, sandbox: bool, timeout: float, memory_gb: float,
              read_only=()) -> tuple:
    """Run `command` (sandboxed unless told not to), its whole process group ended at the end: (exit status or
    None when it timed out, stdout)."""
    argv = sandboxed(command, folder, uid, memory_gb, read_only) if sandbox else command
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True, cwd=folder)
    try:
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out
    except subprocess.TimeoutExpired:
        return None, ""
    finally:
        try:
            os.killpg(process.pid, 9)
        except OSError:
            pass
        process.wait()


# --- inside the sandbox ----------------------------------------------------------------------------------

def run_notebook(folder: Path, assignment: str, params: dict) -> None:
    """The submission's notebook at grading size into `folder` (report.ipynb and .html, results.json)."""
    from .runner import _final, execute
    error = execute(folder / "submission.ipynb", folder / "report.ipynb", {**params, "output_dir": str(folder)})
    _final(assignment, params, folder, error, 0.0, None)


def definitions(source: str, names) -> str:
    """Of the submission's code cells, its imports, functions, classes and the tables the exercises name, alone: no
    other statement runs (a check cell, or a line that replaces a check, is left out)."""
    kept = []
    for cell in source.split("\n# --- cell\n"):
        try:
            tree = ast.parse(cell)
        except SyntaxError:   # a cell with IPython's own syntax (%pip): no exercise
            continue
        kept += [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef,
                                                                      ast.ClassDef)) or
                 isinstance(n, ast.Assign) and any(getattr(t, "id", None) in names for t in n.targets)]
    return "\n\n".join(kept)


def run_checks(exercises: Path, material: dict) -> dict:
    """Every check of every exercise, in the grader's own code against the submission's definitions: name -> passed."""
    from labutils import checks
    from .assign import reference
    shape, found = tuple(material["shape"]), {}
    reference_defs = reference(material["reference"])
    try:
        student = reference(definitions(exercises.read_text(), material["public"]))
    except Exception:
        student = {}
    for name, expected in material["public"].items():
        obj, ref = student.get(expected["of"]), reference_defs[expected["of"]]
        if expected["kwargs"]:
            obj = obj and functools.partial(obj, **expected["kwargs"])
            ref = functools.partial(ref, **expected["kwargs"])
        with redirect_stdout(io.StringIO()):
            public = checks.run(name, obj, expected) if obj is not None else [("matches the reference", False)]
        found.update({f"{name}: {check}": passed for check, passed in public})
        if "overfit" in expected and len(public) == 1:
            found[f"{name}: overfits 16 images"] = False
        try:
            hidden = hidden_checks(obj, ref, shape)
        except Exception:
            hidden = {k: False for k in (("outputs", "gradients") if "layers" in expected else ("other inputs",))}
        found.update({f"{name}: {check} (hidden)": passed for check, passed in hidden.items()})
    return found


def hidden_checks(obj, ref, shape: tuple) -> dict:
    """A network's outputs and gradients against the reference's with its weights loaded where the shapes match; a
    function's value on other seeded inputs against the reference's."""
    import torch
    from labutils import checks
    net, reference_net = checks.network(obj), checks.network(ref)
    if reference_net is None:   # another seed's inputs
        theirs, found = checks.describe(ref, shape, seed=1), checks.describe(obj, shape, seed=1)
        return {"other inputs": "value" in found and not checks.differences(theirs, found)}
    state, theirs = net.state_dict(), reference_net.state_dict()
    net.load_state_dict({k: theirs[k] if k in theirs and theirs[k].shape == v.shape else v for k, v in state.items()})
    torch.manual_seed(1)
    x = torch.randn(4, *shape)
    outputs = []
    for model in (net, reference_net):
        model.eval()
        out = model(x)
        out.square().sum().backward()
        outputs.append((out.detach(), [p.grad for p in model.parameters()]))
    (a, ga), (b, gb) = outputs
    same = a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    grads = same and len(ga) == len(gb) and all(g.shape == h.shape and torch.allclose(g, h, rtol=1e-3, atol=1e-5)
                                                for g, h in zip(ga, gb))
    return {"outputs": bool(same), "gradients": bool(grads)}


# --- one submission, and all of them ----------------------------------------------------------------------

def exercise_source(nb) -> str:
    return "\n# --- cell\n".join(c.source for c in nb.cells if c.cell_type == "code")


def reason(results: dict | None, status: int | None, timeout: float, memory_gb: float) -> str:
    """Why a submission's notebook did not finish, in one line ('' when it did)."""
    if status is None:
        return f"timed out after {timeout:.0f} s"
    error = (results or {}).get("error") or ""
    if "MemoryError" in error or "can't allocate memory" in error or "not enough memory" in error:
        return f"ran out of memory (the limit is {memory_gb:g} GB)"
    if results is None:
        return "the notebook could not run"
    return "" if results["status"] == "ok" else error.splitlines()[0][:200] if error else results["status"]


def grade_one(submission: str, output: str, material_path: str, slot: int = 0, sandbox: bool = True,
              timeout: float = 600, memory_gb: float = 4) -> dict:
    """Grade one submitted notebook into OUTPUT/graded/<name>/ (resumed when grade.json is there): its row."""
    from .records import read
    submission, material = Path(submission), json.loads(Path(material_path).read_text())
    folder = Path(output) / "graded" / submission.stem
    if (folder / "grade.json").is_file():
        return json.loads((folder / "grade.json").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        nb = nbformat.read(submission, as_version=4)
        exercises = exercise_source(nb)
    except Exception as e:
        nb, exercises = None, ""
        bad = f"not a notebook ({type(e).__name__})"
    shutil.copy(submission, folder / "submission.ipynb")
    (folder / "exercises.py").write_text(exercises)
    params = material["params"]
    if os.geteuid() == 0 and sandbox:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, UIDS + slot, UIDS + slot)
    python = [sys.executable, "-m", "labs.grade"]
    status, _ = contained(python + ["notebook", str(folder), material["assignment"], json.dumps(params)], folder,
                          UIDS + slot, sandbox, timeout, memory_gb) if nb is not None else (1, "")
    results = read(folder, warn=False)
    why = reason(results, status, timeout, memory_gb) if nb is not None else bad
    _, out = contained(python + ["checks", str(folder / "exercises.py"), str(Path(material_path).resolve())],
                       folder, UIDS + slot, sandbox, timeout, memory_gb, read_only=[Path(material_path).resolve()])
    try:
        found = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        found = {}
        why = why or "its checks could not run"
    checks_all = {f"{name}: matches the reference": False for name in material["public"]}
    checks_all.update(found)
    models = (results or {}).get("models") or {}
    for name, (low, high) in material["band"].items():
        accuracy = (models.get(name) or {}).get("test_accuracy")
        checks_all[f"accuracy of {name} at grading size"] = accuracy is not None and low <= accuracy <= high
    checks_all["the run's record"] = bool(results) and results["status"] == "ok" and set(models) == set(material["band"])
    row = {"submission": submission.name, "status": "ok" if not why else "failed", "reason": why,
           "points": sum(checks_all.values()), "max_points": len(checks_all), "checks": checks_all,
           "accuracies": {n: (models.get(n) or {}).get("test_accuracy") for n in material["band"]},
           "bands": material["band"]}
    results_file.write_atomic(folder / "grade.json", json.dumps(row, indent=1) + "\n")
    return row


def grade(submissions: list, output: Path, material: Path, workers: int = 1, scheduler: str | None = None,
          sandbox: bool = True, timeout: float = 600, memory_gb: float = 4) -> list:
    """Grade every submission (each never stops the others), then write grades.csv and grades.html of every
    submission graded into `output` so far."""
    if sandbox:
        sandbox_ready()
    else:
        print("labs: warning: grading without a sandbox: the submissions' code runs as you, with your files and "
              "network.", file=sys.stderr)
    output.mkdir(parents=True, exist_ok=True)
    jobs = [(str(s), str(output), str(material), k % 1000, sandbox, timeout, memory_gb) for k, s in enumerate(submissions)]
    if scheduler:
        from distributed import Client
        with Client(scheduler, timeout="30s") as client:
            rows = client.gather([client.submit(safely, *job, pure=False) for job in jobs])
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            rows = list(pool.map(lambda job: safely(*job), jobs))
    for row in rows:
        print(f"{row['submission']}: {row['points']} of {row['max_points']} points"
              + (f" ({row['status']}: {row['reason']})" if row["reason"] else ""))
    graded = [json.loads(p.read_text()) for p in sorted((output / "graded").glob("*/grade.json"))]
    write_tables(graded + [r for r in rows if r["submission"] not in {g["submission"] for g in graded}], output)
    return rows


def safely(submission: str, *args) -> dict:
    """grade_one, or a row that says why the grader itself could not grade the submission (graded again next time)."""
    try:
        return grade_one(submission, *args)
    except Exception as e:
        return {"submission": Path(submission).name, "status": "failed", "points": 0, "max_points": 0, "checks": {},
                "reason": f"it could not be graded: {type(e).__name__}: {e}"[:200], "accuracies": {}, "bands": {}}


def write_tables(rows: list, output: Path) -> None:
    """grades.csv, one row per submission with each check's points, and grades.html, the same as a table (every
    string shown as text)."""
    checks = list(dict.fromkeys(k for row in rows for k in row["checks"]))
    models = list(dict.fromkeys(m for row in rows for m in row["accuracies"]))
    header = ["submission", "points", "max_points", "status", "reason", *checks,
              *(f"accuracy {m}" for m in models), *(f"band {m}" for m in models)]
    table = [[row["submission"], row["points"], row["max_points"], row["status"], row["reason"],
              *(int(row["checks"].get(c, False)) for c in checks),
              *(row["accuracies"].get(m) for m in models),
              *("{:.4f}-{:.4f}".format(*row["bands"][m]) if m in row["bands"] else "" for m in models)] for row in rows]
    text = io.StringIO()
    csv.writer(text).writerows([header, *table])
    results_file.write_atomic(output / "grades.csv", text.getvalue())
    cell = lambda v: f"<td>{html.escape('' if v is None else str(v))}</td>"   # noqa: E731
    body = "".join("<tr>" + "".join(cell(v) for v in line) + "</tr>\n" for line in table)
    results_file.write_atomic(output / "grades.html", (
        "<!doctype html><meta charset='utf-8'><title>Grades</title><style>td,th{border:1px solid #ccc;padding:2px 6px;"
        "font:13px sans-serif}table{border-collapse:collapse}</style><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>\n" + body + "</table>\n"))


def main(argv: list) -> int:
    """Inside the sandbox: `notebook FOLDER ASSIGNMENT PARAMS` or `checks EXERCISES MATERIAL` (the result the last
    line)."""
    if argv[0] == "notebook":
        run_notebook(Path(argv[1]), argv[2], json.loads(argv[3]))
    else:
        print(json.dumps(run_checks(Path(argv[1]), json.loads(Path(argv[2]).read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
