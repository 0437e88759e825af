"""An assignment for a course: `labs assign` makes the student version and the grader's material from lab 02's
notebook as it is; the student version runs with one line per cell that needs an exercise; `labs grade` grades real
notebooks in a bubblewrap sandbox: the reference gets full marks, the untouched student version none, wrong ones
the points their mistakes deserve, and hostile ones are contained (files outside their folder neither read nor
written, a listener on 127.0.0.1 never reached, every limit holding, each grade saying why)."""
import csv
import hashlib
import json
import re
import socket
import threading

import nbclient
import nbformat
import psutil
import pytest

from conftest import ROOT, labs

GRADING = ["-p", "n_train", "200", "-p", "n_test", "100", "-p", "epochs", "1", "-p", "models", "[fcn, lenet5]"]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    proc = labs("assign", "fashion_fcn_vs_lenet", "--output", out, "--seeds", "1", *GRADING)
    assert proc.returncode == 0, proc.stderr
    return out


def student(course) -> nbformat.NotebookNode:
    return nbformat.read(course / "student" / "02_fashion_fcn_vs_lenet.ipynb", as_version=4)


def reference_cell() -> str:
    nb = nbformat.read(ROOT / "notebooks" / "02_fashion_fcn_vs_lenet.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.source.startswith("#@save")).split("\n", 1)[1]


def test_the_student_version_keeps_signatures_and_docstrings_and_nothing_else_of_the_reference(course):
    text = (course / "student" / "02_fashion_fcn_vs_lenet.ipynb").read_text()
    body = [line.strip() for line in reference_cell().splitlines() if line.strip() and not line.strip().startswith(
        ("def ", '"""', "#")) and '"""' not in line and not re.match(r"^[A-Z][a-z].*[.:]$", line.strip())]
    leaked = [line for line in body if line in text and not line.startswith(("Classic:", "Modified", "dropout:"))]
    assert leaked == []
    nb = student(course)
    [exercise] = [i for i, c in enumerate(nb.cells) if "exercise" in c.metadata.get("tags", [])]
    source = nb.cells[exercise].source
    assert "def lenet5(in_channels=1, padding=2, n_classes=10, modified=False, dropout=0.0) -> nn.Sequential:" in source
    assert "raise NotWritten(\"lenet5 is not written yet: the cell under 'The three models'.\")" in source
    assert [line.split(",")[0] for line in nb.cells[exercise + 1].source.splitlines()[1:]] == [
        "check('fcn'", "check('lenet5'", "check('lenet5(modified=True)'", "check('lenet5(dropout=0.5)'"]
    assert any("colab-install" in c.metadata.get("tags", []) for c in nb.cells)
    assert nb.metadata.kernelspec.name == "python3" and nb.metadata.labs == {"assignment": "fashion_fcn_vs_lenet"}
    assert "band" not in text and "reference" not in json.dumps(nb.metadata)   # the grader's material stays its own


def test_the_student_version_runs_with_one_line_for_each_cell_that_needs_an_exercise(course, tmp_path):
    nb = student(course)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += "\nsynthetic = True\nn_train = 200\nn_test = 100\nepochs = 1"
    nbclient.NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o.traceback for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors and all(tb == ["fcn is not written yet: the cell under 'The three models'."] for tb in errors)
    check = next(c for c in nb.cells if "check" in c.metadata.get("tags", []))
    assert "".join(o.get("text", str(o)) for o in check.outputs) == (
        "fcn is not written yet: the cell under 'The three models'.\n"
        "lenet5 is not written yet: the cell under 'The three models'.\n"
        "lenet5(modified=True): lenet5 is not written yet: the cell under 'The three models'.\n"
        "lenet5(dropout=0.5): lenet5 is not written yet: the cell under 'The three models'.\n")


def submission(course, folder, name: str, exercise: str | None = None, extra: str = "", check: str = "") -> None:
    """The student version with its exercise cell written (None: left as it is), a cell added after the
    parameters, and the check cell replaced."""
    nb = student(course)
    cells = nb.cells
    if exercise is not None:
        next(c for c in cells if "exercise" in c.metadata.get("tags", [])).source = exercise
    if check:
        next(c for c in cells if "check" in c.metadata.get("tags", [])).source = check
    if extra:
        at = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        cells.insert(at + 2, nbformat.v4.new_code_cell(extra))
    nbformat.write(nb, folder / f"{name}.ipynb")


def digest(*folders) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


def test_grading_gives_the_reference_full_marks_mistakes_their_points_and_contains_hostile_notebooks(course, tmp_path):
    subs, outside = tmp_path / "submissions", tmp_path / "outside"
    subs.mkdir()
    outside.mkdir()
    (outside / "secret.key").write_text("the-secret-key-1234")
    material = course / "grader" / "fashion_fcn_vs_lenet.json"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port, reached = listener.getsockname()[1], []

    def listen():
        while not done.is_set():
            try:
                reached.append(listener.accept())
            except OSError:
                pass
    done = threading.Event()
    thread = threading.Thread(target=listen)
    thread.start()
    reference = reference_cell()
    submission(course, subs, "reference", "from labutils.checks import NotWritten\n" + reference)
    submission(course, subs, "untouched")
    submission(course, subs, "wrong-layer-size", reference.replace("nn.Linear(120, 84)", "nn.Linear(100, 84)"))
    submission(course, subs, "crash-in-training", reference.replace("nn.Linear(84, n_classes))", "nn.Linear(84, 5))"))
    tamper = "check = lambda *args: print('matches the reference')\nimport labutils.checks\nlabutils.checks.check = check"
    submission(course, subs, "reads-outside", extra=f"print(open({str(outside / 'secret.key')!r}).read())\n"
                                                     f"print(open({str(material)!r}).read())")
    submission(course, subs, "writes-outside", extra=f"open({str(outside / 'pwned')!r}, 'w').write('x')")
    submission(course, subs, "connects", extra=f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 3)"
                                               f".sendall(b'leak')")
    submission(course, subs, "forks", extra="import os\nwhile True:\n    try:\n        os.fork()\n"
                                            "    except OSError:\n        pass")
    submission(course, subs, "loops", extra="while True:\n    pass")
    submission(course, subs, "allocates", extra="hog = bytearray(8 * 2 ** 30)")
    submission(course, subs, "redefines-checks", extra=tamper, check=tamper + "\ncheck('lenet5', lenet5, {})")
    before = digest(course / "grader", outside, course / "student")
    hostile = [subs / f"{name}.ipynb" for name in ("reads-outside", "writes-outside", "connects", "forks", "loops",
                                                     "allocates", "redefines-checks")]
    try:
        proc = labs("grade", *sorted(set(subs.glob("*.ipynb")) - set(hostile)), "--output", course, "--workers", "2",
                    timeout=600)
        assert proc.returncode == 0, proc.stderr
        proc = labs("grade", *hostile, "--output", course, "--workers", "2", "--timeout", "15", "--memory", "3",
                    timeout=600)
    finally:
        done.set()
        thread.join()
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert digest(course / "grader", outside, course / "student") == before and not (outside / "pwned").exists()
    assert reached == []
    assert not [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real >= 62000]
    rows = {r["submission"]: r for r in csv.DictReader((course / "grades.csv").open())}
    points = {name.removesuffix(".ipynb"): int(r["points"]) for name, r in rows.items()}
    full = int(rows["reference.ipynb"]["max_points"])
    assert points["reference"] == full and rows["reference.ipynb"]["status"] == "ok"
    assert points["untouched"] == 0 and points["redefines-checks"] == 0     # checks replaced: nothing gained
    assert 0 < points["wrong-layer-size"] < full
    assert 0 < points["crash-in-training"] < full
    assert "lenet5 gives 5 outputs per image" in rows["crash-in-training.ipynb"]["reason"]
    assert rows["loops.ipynb"]["reason"] == "timed out after 15 s" == rows["forks.ipynb"]["reason"]
    assert rows["allocates.ipynb"]["reason"] == "ran out of memory (the limit is 3 GB)"
    for hostile in ("reads-outside", "writes-outside", "connects"):
        assert rows[f"{hostile}.ipynb"]["status"] == "failed" and points[hostile] == 0
    assert "No such file or directory" in rows["reads-outside.ipynb"]["reason"]
    everything = "".join(p.read_text(errors="replace") for p in course.rglob("*") if p.is_file())
    assert "the-secret-key-1234" not in everything
    assert (course / "grades.html").read_text().count("<tr>") == len(rows) + 1
    # run again: what was graded is skipped
    stamps = {p: p.stat().st_mtime_ns for p in (course / "graded").glob("*/grade.json")}
    again = labs("grade", *sorted(subs.glob("*.ipynb")), "--output", course, "--timeout", "15", timeout=120)
    assert again.returncode == 0 and {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_the_hidden_checks_of_a_function_use_other_inputs_and_tell_a_wrong_one():
    from labs.grade import hidden_checks
    from labutils import checks, lessons

    def counts_biases(model):
        return sum(p.pow(2).mean() for p in model.parameters())
    for reference in (lessons.l2_penalty, lessons.init_weights, lessons.MixedPool2d):
        assert hidden_checks(reference, reference, (1, 28, 28)) == {"other inputs": True}
    assert hidden_checks(counts_biases, lessons.l2_penalty, (1, 28, 28)) == {"other inputs": False}
    assert checks.describe(lessons.l2_penalty, (1, 28, 28), seed=1) != checks.describe(lessons.l2_penalty, (1, 28, 28))
    assert hidden_checks(lessons.lenet5, lessons.lenet5, (1, 28, 28)) == {"outputs": True, "gradients": True}


def test_a_submission_the_grader_itself_cannot_grade_is_a_row_with_its_reason_and_stops_nothing(tmp_path):
    from labs.grade import safely
    row = safely(str(tmp_path / "s.ipynb"), str(tmp_path), str(tmp_path / "no-material.json"), 0, False, 10, 1)
    assert row["status"] == "failed" and row["points"] == 0
    assert row["reason"].startswith("it could not be graded: FileNotFoundError: ")
