"""Strings that a user or a file controls reach report.html, summary.html, summary.md and index.html as text, never
as HTML or Markdown: opening a shared report runs no script and loads nothing its author did not put there."""
from html.parser import HTMLParser

import pytest
import yaml

from conftest import labs
from labutils.vocab import md

SCRIPT = "<script>alert('x')</script>"
IMAGE = "<img src=x onerror=alert(document.domain)>"
LINK = "[click](javascript:alert(1))"
EMPHASIS = "*x* and __y__"
HOSTILE = f"{IMAGE}{SCRIPT} {LINK} {EMPHASIS}"


class Page(HTMLParser):
    """What a browser would build of a page: its elements' attributes, its scripts' code, its visible text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.attributes, self.scripts, self.text, self.tags, self._in_script = [], [], [], [], False
        self.marked, self._open = [], None   # (tag, the text right inside it)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._open = tag
        self.attributes += [(tag, k, v or "") for k, v in attrs]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script, self._open = False, None

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)
        if self._open:
            self.marked.append((self._open, data.strip()))
            self._open = None


def assert_inert(path):
    page = Page(path.read_text())
    assert not [a for a in page.attributes if a[1].startswith("on")], "an event handler attribute"
    assert not [a for a in page.attributes if "javascript:" in a[2].lower()], "a javascript: link"
    assert not [a for a in page.attributes if a[0] == "img" and a[1] == "src" and a[2] == "x"], "the user's <img>"
    assert not [s for s in page.scripts if "alert(" in s], "the user's script"
    shown = " ".join(page.text)
    assert not [tag for tag, text in page.marked if tag in ("em", "strong") and text in ("x", "y")], "emphasis"
    return shown


@pytest.mark.parametrize("value, shown", [
    ("*x*", "\\*x\\*"), ("a|b", "a\\|b"), ("<b>", "&lt;b&gt;"), ("[a](javascript:x)", "\\[a\\](javascript:x)"),
    ("__y__", "\\_\\_y\\_\\_"), ("lenet5_modified", "lenet5_modified"), ("lr-0.01", "lr-0.01"),
    ("\"q\" & 's'", "&quot;q&quot; &amp; &#x27;s&#x27;")])
def test_md_escapes_markup_and_markdown(value, shown):
    assert md(value) == shown


def test_reports_summaries_and_the_index_show_user_strings_as_text(tmp_path):
    outputs = tmp_path / "outputs"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({
        "assignment": "mnist_mlp", "params": {"hidden": [256, 256, 256], "data_dir": HOSTILE},
        "runs": [{"name": "a"}], "reference": {"a": 12.5}, "notes": {"a": HOSTILE}}))
    proc = labs("sweep", sweep, "--smoke", "--output", outputs / "sweeps" / "hostile")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = outputs / "sweeps" / "hostile"
    report = assert_inert(folder / "a" / "report.html")
    assert IMAGE + SCRIPT in report and LINK in report and EMPHASIS in report     # the value shown as given

    spec = yaml.safe_load((folder / "sweep.yaml").read_text())
    (folder / "sweep.yaml").write_text(yaml.safe_dump({**spec, "name": f"lab{SCRIPT}"}))   # edited by hand since
    assert labs("summary", folder).returncode == 0
    summary = assert_inert(folder / "summary.html")
    assert f"Sweep lab{SCRIPT}" in summary and HOSTILE in summary                 # the name, the note
    markdown = (folder / "summary.md").read_text()
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown

    assert labs("index", outputs).returncode == 0
    index = assert_inert(outputs / "index.html")
    assert "hostile" in index
