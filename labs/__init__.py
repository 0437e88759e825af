"""`labs`, the tool beside the notebook library: run notebooks with papermill into run folders, sweeps on local
workers or a Dask cluster, their summaries, the index of runs, Colab badges, and `labs check` (nbval on this
machine). It reads notebooks and results.json files; the library (labutils) never imports it."""
