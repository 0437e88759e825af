"""labutils.progress: a live bar where someone watches, plain lines where no one does."""
import pytest

from labutils import progress


def test_a_batch_run_or_a_pipe_gets_plain_lines(monkeypatch):
    monkeypatch.setenv("LABS_BATCH", "1")
    assert progress.mode() == "lines"
    monkeypatch.delenv("LABS_BATCH")
    assert progress.mode() == "lines"          # pytest's stdout is not a terminal


def test_in_lines_mode_only_the_closing_line_is_written(monkeypatch, capsys):
    monkeypatch.setenv("LABS_BATCH", "1")
    bar = progress.Bar(100, "fcn epoch 1/3")
    for _ in range(10):
        bar.update(10)
    bar.write("a line above")
    bar.close("fcn epoch 1/3  train 0.5000 80.00%")
    assert capsys.readouterr().out == "a line above\nfcn epoch 1/3  train 0.5000 80.00%\n"


class Handle:
    """Stands in for IPython's display handle: keeps what was shown."""
    shown = []

    def display(self, bundle, raw=True):
        self.shown.append(bundle["text/plain"])

    def update(self, bundle, raw=True):
        self.shown.append(bundle["text/plain"])


@pytest.fixture
def notebook(monkeypatch):
    import IPython.display
    Handle.shown = []
    monkeypatch.setattr(IPython.display, "DisplayHandle", Handle)
    monkeypatch.setattr(progress, "mode", lambda: "notebook")
    return Handle.shown


def test_in_a_notebook_the_bar_is_replaced_by_its_closing_line(notebook, capsys):
    bar = progress.Bar(540, "fcn epoch 1/1", every=0)
    bar.update(270)
    bar.update(270)
    bar.close("fcn epoch 1/1  train 0.5000 80.00%")
    assert notebook[0].startswith("fcn epoch 1/1 |") and "50%" in notebook[0] and "270/540 img" in notebook[0]
    assert "100%" in notebook[1] and notebook[-1] == "fcn epoch 1/1  train 0.5000 80.00%"   # the one output left
    assert capsys.readouterr().out == ""


def test_in_a_notebook_a_bar_closed_without_a_line_leaves_an_empty_output(notebook):
    bar = progress.Bar(10, "x", every=0)
    bar.update(5)
    bar.close()
    assert notebook[-1] == ""


def test_counts_are_said_with_their_grammar():
    from labutils.vocab import plural
    assert plural(1, "epoch") == "1 epoch" and plural(2, "epoch") == "2 epochs"
    assert plural(1200, "image") == "1,200 images" and plural(0, "run") == "0 runs"
