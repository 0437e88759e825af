"""A manual check, not a test: a student working the notebooks in a real JupyterLab driven in Chromium (Debian's
/usr/bin/chromium, pip install playwright): parameters edited after the start (lab 01), a crash in training (lab
02), a stop in the data cell, a mistake in a network. Screenshots and their text land in /tmp/shots."""
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
WORK, SHOTS = Path("/tmp/jl"), Path("/tmp/shots")
shutil.rmtree(WORK, ignore_errors=True)
shutil.rmtree(SHOTS, ignore_errors=True)
WORK.mkdir()
SHOTS.mkdir()


def prepared(stem, name, params, edits=()):
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if "parameters" in cell["metadata"].get("tags", []):
            lines = [l for l in src.splitlines() if l.split(":", 1)[0] not in params]
            src = "\n".join(lines + [f"{k} = {v}" for k, v in params.items()])
        for old, new in edits:
            src = src.replace(old, new)
        cell["source"] = src
    (WORK / f"{name}.ipynb").write_text(json.dumps(nb))
    return nb


def index_of(nb, needle):
    return next(i for i, c in enumerate(nb["cells"]) if needle in "".join(c["source"]))


shutil.rmtree(Path.home() / ".jupyter" / "lab" / "workspaces", ignore_errors=True)
server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                           "--port=8899", "--ServerApp.token=tok", f"--ServerApp.root_dir={WORK}"],
                          stdout=open("/tmp/jl-server.log", "w"), stderr=subprocess.STDOUT)
time.sleep(8)


def open_nb(page, name):
    page.goto(f"http://127.0.0.1:8899/lab/tree/{name}.ipynb?token=tok")
    page.wait_for_selector(".jp-NotebookPanel:visible .jp-Cell", timeout=60000)
    time.sleep(10)   # the kernel starts


def menu(page, top, item):
    page.click(f"li.lm-MenuBar-item:has-text('{top}')")
    page.click(f".lm-Menu-item:has-text('{item}') >> nth=0")


def wait_idle(page, timeout=300):
    """Until no cell of the notebook shown is running or waiting to run ([*])."""
    time.sleep(3)
    deadline = time.time() + timeout
    while time.time() < deadline:
        prompts = page.locator(".jp-NotebookPanel:visible .jp-InputPrompt").all_inner_texts()
        if prompts and not any("*" in t for t in prompts):
            break
        time.sleep(1)
    time.sleep(1)


def cell(page, i):
    c = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(i)
    c.scroll_into_view_if_needed()
    return c


def shot(page, i, name):
    c = cell(page, i)
    c.screenshot(path=str(SHOTS / f"{name}.png"))
    text = c.locator(".jp-Cell-outputWrapper").inner_text()
    (SHOTS / f"{name}.txt").write_text(text)
    print(f"--- {name}: {len(text.splitlines())} lines\n{text}\n")


try:
  with sync_playwright() as p:
      browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
          "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--no-first-run"])
      page = browser.new_page(viewport={"width": 1300, "height": 1000})

      # case 1: lab 01, Run All, then lr and epochs edited and the cells from the recipe on run again
      nb = prepared("01_mnist_mlp", "case1", {"synthetic": "True", "n_train": "300", "n_test": "100", "epochs": "2",
                                              "hidden": "[64, 64, 64]", "output_dir": '"run01"'})
      open_nb(page, "case1")
      menu(page, "Run", "Run All Cells")
      time.sleep(5)
      page.screenshot(path=str(SHOTS / "debug1.png"))
      wait_idle(page)
      params = index_of(nb, "seed: int =")
      editor = cell(page, params).locator(".cm-content")
      editor.click()
      page.keyboard.press("Control+End")
      page.keyboard.insert_text("\nlr = 0.01\nepochs = 3")
      page.keyboard.press("Control+Enter")
      wait_idle(page)
      cell(page, index_of(nb, "recipe = train.Recipe(")).click(position={"x": 5, "y": 5})
      menu(page, "Run", "Run Selected Cell and All Below")
      wait_idle(page)
      shot(page, index_of(nb, "analysis.write(run"), "case1-analysis")
      shot(page, index_of(nb, "results = run.finish()"), "case1-finish")
      record = json.loads((WORK / "run01" / "results.json").read_text())
      print("case1 results.json:", record["status"], record["params"]["lr"], record["params"]["epochs"])

      # case 2: lab 02, LeNet-5's last layer edited to 5 outputs, Run All; then the last cell
      nb = prepared("02_fashion_fcn_vs_lenet", "case2",
                    {"synthetic": "True", "n_train": "300", "n_test": "100", "epochs": "1",
                     "models": '["fcn", "lenet5"]', "output_dir": '"run02"'},
                    [("nn.Linear(84, n_classes))", "nn.Linear(84, 5))")])
      open_nb(page, "case2")
      menu(page, "Run", "Run All Cells")
      wait_idle(page)
      shot(page, index_of(nb, "for name in models:\n    train.seed_everything"), "case2-training")
      last = index_of(nb, "results = run.finish()")
      cell(page, last).click(position={"x": 5, "y": 5})
      page.keyboard.press("Control+Enter")
      wait_idle(page)
      shot(page, last, "case2-finish")
      print("case2 results.json:", json.loads((WORK / "run02" / "results.json").read_text())["status"])

      # case 5: Linear(120, 84) edited to Linear(100, 84), Run All
      nb = prepared("02_fashion_fcn_vs_lenet", "case5",
                    {"synthetic": "True", "n_train": "300", "n_test": "100", "epochs": "1", "models": '["lenet5"]'},
                    [("nn.Linear(120, 84)", "nn.Linear(100, 84)")])
      open_nb(page, "case5")
      menu(page, "Run", "Run All Cells")
      wait_idle(page)
      shot(page, index_of(nb, "builders = {"), "case5-describe")

      # case 4: the stop button while the data cell runs
      nb = prepared("02_fashion_fcn_vs_lenet", "case4",
                    {"synthetic": "True", "n_train": "60000", "n_test": "10000", "epochs": "1", "models": '["fcn"]',
                     "data_dir": '"/tmp/jl-data"'})
      shutil.rmtree("/tmp/jl-data", ignore_errors=True)
      open_nb(page, "case4")
      menu(page, "Run", "Run All Cells")
      start = cell(page, index_of(nb, "run = report.start("))
      while "*" in start.locator(".jp-InputPrompt").inner_text() or not start.locator(".jp-InputPrompt").inner_text().strip("[]: "):
          time.sleep(0.2)
      time.sleep(1.5)   # into the data cell
      menu(page, "Kernel", "Interrupt Kernel")
      wait_idle(page)
      shot(page, index_of(nb, "fashion = data.load("), "case4-data")
      browser.close()
finally:
    server.terminate()
