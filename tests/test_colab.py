"""What Colab and JupyterLab do, end to end: labutils pip-installed (not editable) from a git URL into a separate
environment, by the notebook's own install requirement; each notebook copied outside the repository and run top
to bottom with nbclient (not papermill), its smoke settings edited into its parameters cell.

The environment reuses the torch (and the rest) already installed, through a .pth file, so it costs seconds;
labutils itself comes only from the git install.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, raw_values, smoke_params
from labs import colab

# Lab 01: every lab runs top to bottom in its own smoke test, which also looks for raw values and the GPU line
LABS = [ROOT / "notebooks" / "01_mnist_mlp.ipynb"]


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory):
    """(python of the new environment, its site-packages): labutils installed there from a git clone of this
    working tree at the tag v<version>, as the install cell asks."""
    tmp = tmp_path_factory.mktemp("colab")
    clone = tmp / "clone"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    url, version = colab.project()
    git("init", "-q", cwd=clone)
    git("add", "-A", cwd=clone)
    git("commit", "-q", "-m", "the course", cwd=clone)
    git("tag", f"v{version}", cwd=clone)

    env = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "installed-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")   # torch & co
    [cell] = [c for c in nbformat.read(LABS[0], as_version=4).cells if colab.INSTALL_TAG in c.metadata.get("tags", [])]
    requirement = re.search(r'%pip install -q "([^"]+)"', cell.source).group(1)
    assert requirement == f"labutils @ git+{url}@v{version}"
    local = requirement.replace(f"git+{url}", f"git+file://localhost{clone}")   # pip 23 wants a host
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", local],
                             capture_output=True, text=True, cwd=tmp, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return python, site


RUN = """
import json, sys
import nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("import labutils, sys\\nprint(labutils.__file__, labutils.__version__, sys.executable)"))
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                        resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[3])
"""


def with_smoke_parameters(source: str, smoke: dict) -> str:
    """The parameters cell with each of smoke.yaml's values written over its default, as a user edits it."""
    lines = []
    for line in source.splitlines():
        name = line.split(":", 1)[0]
        if name in smoke:
            kind, comment = line.split(":", 1)[1].split("=", 1)[0].strip(), line.split("#", 1)[1]
            line = f"{name}: {kind} = {json.dumps(smoke[name]) if kind in ('list', 'dict') else repr(smoke[name])}  #{comment}"
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_the_notebook_runs_top_to_bottom_outside_the_repository_on_the_installed_package(path, colab_env, tmp_path):
    python, site = colab_env
    nb = nbformat.read(path, as_version=4)
    [cell] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = with_smoke_parameters(cell.source, smoke_params(path.stem.split("_", 1)[1]))
    folder = tmp_path / "Colab Notebooks"
    folder.mkdir()
    (folder / path.name).write_text(nbformat.writes(nb))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LABS_BATCH")}
    env.update(JUPYTER_PATH=str(tmp_path / "jupyter"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))
    proc = subprocess.run([str(python), "-c", RUN, str(folder / path.name), str(folder), str(tmp_path / "done.ipynb")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = nbformat.read(tmp_path / "done.ipynb", as_version=4)
    text = [("".join(o.get("text", "")) + o.get("data", {}).get("text/plain", "")) for c in done.cells
            if c.cell_type == "code" for o in c.outputs]
    where, version, executable = text[-1].split()
    assert where.startswith(str(site)) and executable == str(python)    # the installed copy, on that Python
    assert version == colab.project()[1]
    joined = "\n".join(text)
    assert "Error" not in joined and "Traceback" not in joined
    assert re.search(r"epoch 1/\d+  train |iteration [\d,]+/[\d,]+  train ", joined)   # one line per epoch
    assert not re.search(r"[█·]{3}|img/s[),]", joined)                  # the live bars left nothing behind
    assert "test accuracy" in joined
    assert "meant for a GPU" not in joined                               # a smoke run is short, wherever it runs
    assert raw_values(done) == []
