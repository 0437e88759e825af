"""Parameter and sweep files may come from anyone: huge, hostile or broken ones are refused in one line, fast and in
bounded memory, and no name in them can make `labs` write outside the output folder."""
import resource
import subprocess
import sys
import time

import pytest

from conftest import ROOT, one_line

MEMORY = 1 << 30   # 1 GiB of address space: enough for labs to read and check, far too little for an alias bomb


def limited_labs(*args, cwd) -> tuple:
    """`labs ARGS` under a memory limit: (the process, its seconds)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "labs", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=60, preexec_fn=limit)
    return proc, time.perf_counter() - start


def bomb(levels: int) -> str:
    """The billion laughs in YAML, under one parameter: each level a list of nine aliases of the one before."""
    items = ['&l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    items += [f"&l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, levels)]
    return f"lr: [{', '.join(items)}]\n"


SWEEP = "assignment: mnist_mlp\n"


@pytest.mark.parametrize("name, text, message", [
    ("bomb.yaml", bomb(9), "is refused: it expands to more than 100,000 values"),
    ("deep.yaml", "lr: " + "[" * 5000 + "]" * 5000 + "\n", "is refused: it is nested deeper than 30 levels"),
    ("huge.yaml", "# padding\n" * 200_000 + "lr: 0.1\n", "more than a parameter file can (1,000,000)"),
    ("small-bomb.yaml", bomb(4), "lr must be a float like 0.001 (learning rate), not [["),
    ("binary.yaml", "\udcff", "cannot be read"),
])
def test_a_hostile_parameter_file_is_one_line_at_once(name, text, message, tmp_path):
    (tmp_path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    proc, seconds = limited_labs("run", "mnist_mlp", "-f", tmp_path / name, cwd=tmp_path)
    assert proc.returncode == 2 and one_line(proc) and message in proc.stderr, proc.stderr[-500:]
    assert len(proc.stderr) < 400 and seconds < 20                            # no echo of the expanded value
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]                 # nothing written


def test_a_value_nested_too_deep_on_the_command_line_and_in_a_sweep_file_is_one_line(tmp_path):
    proc, _ = limited_labs("run", "mnist_mlp", "-p", "hidden", "[" * 5000 + "]" * 5000, cwd=tmp_path)
    assert proc.returncode == 2 and one_line(proc) and "nested deeper than 30 levels" in proc.stderr
    (tmp_path / "s.yaml").write_text(SWEEP + "grid: {lr: " + "[" * 3000 + "]" * 3000 + "}\n")
    proc, _ = limited_labs("sweep", tmp_path / "s.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and one_line(proc) and "nested deeper than 30 levels" in proc.stderr


@pytest.mark.parametrize("entry, message", [
    ('runs: [{name: "..", lr: 0.01}]', "the run name '..' may hold only"),
    ('runs: [{name: ".", lr: 0.01}]', "the run name '.' may hold only"),
    ('runs: [{name: "../../etc", lr: 0.01}]', "the run name '../../etc' may hold only"),
    ('runs: [{name: "a\\tb", lr: 0.01}]', "the run name 'a\\tb' may hold only"),
    ('runs: [{name: summary.md, lr: 0.01}]', "the run name 'summary.md' is one of the sweep folder's own files"),
    (f'runs: [{{name: {"x" * 300}, lr: 0.01}}]', "is longer than 100 characters"),
    ("name: /some/other/folder\ngrid: {lr: [0.1]}", "the sweep name '/some/other/folder' may hold only"),
    ("name: ..\ngrid: {lr: [0.1]}", "the sweep name '..' may hold only"),
])
def test_no_name_in_a_sweep_file_leaves_the_output_folder(entry, message, tmp_path):
    (tmp_path / "s.yaml").write_text(SWEEP + entry + "\n")
    (tmp_path / "out").mkdir()
    proc, _ = limited_labs("sweep", tmp_path / "s.yaml", "--smoke", "--output", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2 and one_line(proc) and message in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "s.yaml"]     # nothing written anywhere


def test_a_very_large_sweep_needs_to_be_asked_for(tmp_path):
    grid = "grid: {lr: [" + ", ".join(f"0.{k + 1:03d}" for k in range(100)) + "], seed: [" + \
        ", ".join(map(str, range(100))) + "]}\n"
    (tmp_path / "s.yaml").write_text(SWEEP + grid)
    proc, seconds = limited_labs("sweep", tmp_path / "s.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and one_line(proc) and seconds < 20
    assert "it makes 10,000 runs, more than --max-runs 1,000" in proc.stderr and "--max-runs 10000" in proc.stderr
    assert not (tmp_path / "outputs").exists()
