"""Colab: every notebook's "Open in Colab" badge and install cell follow pyproject.toml's repository URL and
labutils' version, the one place each is written. `labs colab --repo OWNER/NAME` moves the course to another repository
in one step; `problems()` names each notebook that disagrees (a test runs it)."""

import re

import nbformat

from labutils import LabsError, __version__
from labutils.results import write_atomic

from .params import ROOT, assignments

INSTALL_TAG = "colab-install"    # the tag of each notebook's install cell
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"


def project() -> tuple:
    """(repository URL from pyproject.toml, labutils' version)."""
    url = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if not url:
        raise LabsError(f"{ROOT / 'pyproject.toml'} lacks [project.urls] `Repository`; restore it.")
    return url.group(1), __version__


def badge(url: str, version: str, notebook: str) -> str:
    """The badge that opens `notebook` on Colab, at the tag of its version."""
    slug = url.removeprefix("https://github.com/").removesuffix(".git")
    return f"{BADGE}(https://colab.research.google.com/github/{slug}/blob/v{version}/notebooks/{notebook})"


def requirement(url: str, version: str) -> str:
    """What the install cell asks pip for: this package at the tag of its version."""
    return f"labutils @ git+{url}@v{version}"


def install_cell(url: str, version: str) -> str:
    return (f"# On Colab, and only there: install labutils {version}, the version this notebook belongs to.\n"
            f"# Colab's own torch and torchvision satisfy its requirements and stay as they are.\n"
            f"import sys\n\n"
            f'if "google.colab" in sys.modules:\n'
            f'    %pip install -q "{requirement(url, version)}"')


def notebooks() -> list:
    return list(assignments().values())


def problems(url: str | None = None, version: str | None = None) -> list:
    """One line per notebook whose badge or install cell disagrees with project() (or with url, version)."""
    if url is None or version is None:
        url, version = project()
    found = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        if badge(url, version, path.name) not in nb.cells[0].source:
            found.append(f"{path.name}: its Colab badge does not open {url} at v{version}")
        cells = [c for c in nb.cells if INSTALL_TAG in c.metadata.get("tags", [])]
        if len(cells) != 1 or cells[0].source != install_cell(url, version):
            found.append(f"{path.name}: its install cell (tagged {INSTALL_TAG}) does not install "
                         f"{requirement(url, version)}")
    return found


def rewrite(repo: str) -> list:
    """Move the course to github.com/<repo>: pyproject's URL, then every notebook's badge and install cell.
    Returns the files changed."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        raise LabsError(f"--repo must be OWNER/NAME as on GitHub (e.g. dl-labs/labs), not {repo!r}.")
    url = f"https://github.com/{repo}"
    old, version = project()
    pyproject = ROOT / "pyproject.toml"
    changed = []
    if url != old:
        write_atomic(pyproject, re.sub(r'^Repository = "[^"]+"', f'Repository = "{url}"', pyproject.read_text(),
                                       flags=re.M))
        changed.append(pyproject)
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0].source.split("\n")
        first = [badge(url, version, path.name) if line.startswith(BADGE) else line for line in first]
        if not any(line.startswith(BADGE) for line in first):
            first.insert(0, badge(url, version, path.name) + "\n")
        before = nbformat.writes(nb)
        nb.cells[0].source = "\n".join(first)
        for cell in nb.cells:
            if INSTALL_TAG in cell.metadata.get("tags", []):
                cell.source = install_cell(url, version)
        if nbformat.writes(nb) != before:
            write_atomic(path, nbformat.writes(nb))
            changed.append(path)
    return changed
