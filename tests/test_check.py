"""`labs check`: nbval over every notebook, prepared with its smoke parameters, on the machine at hand; here the CPU
(its GPU half runs where a GPU is: `labs check` there picks it, and says so)."""
import torch

from conftest import labs, one_line


def test_labs_check_runs_the_notebooks_with_nbval_and_says_where_each_ran(tmp_path):
    proc = labs("check", "mnist_mlp", cwd=tmp_path, timeout=600)   # all four: minutes
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [line.strip() for line in proc.stdout.splitlines() if " cells passed nbval on " in line]
    assert [line.split(":")[0] for line in lines] == ["mnist_mlp"]
    for line in lines:
        passed = int(line.split("ok, ")[1].split(" cells")[0])
        assert passed >= 10 and f"nbval on {device}" in line and "forward passes in " in line, line
    assert "1 of 1 notebook passed" in proc.stdout
    assert list(tmp_path.iterdir()) == []                                    # it leaves nothing behind


def test_labs_check_refuses_an_unknown_notebook_or_device_in_one_line(tmp_path):
    for args, message in ((["check", "mnist_mpl"], "did you mean 'mnist_mlp'"),
                          (["check", "--device", "tpu"], "device must be auto, cpu, cuda (or cuda:N) or mps")):
        proc = labs(*args, cwd=tmp_path)
        assert proc.returncode == 2 and one_line(proc) and message in proc.stderr, proc.stderr
