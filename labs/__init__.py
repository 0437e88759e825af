"""`labs`, the tool beside the notebook library: run notebooks with papermill into run folders, sweeps on local
workers or a Dask cluster, their summaries, the index of runs, Colab badges, and `labs check` (nbval on this
machine). It reads notebooks and results.json files; the library (labutils) never imports it."""

import sys

# papermill and nbconvert import nbformat, nbformat imports jsonschema, and jsonschema imports rfc3987-syntax where
# it is installed (JupyterLab brings it), which builds a parser as it is imported: 2-3 s of every `labs` command on
# a laptop CPU, for the "iri" format that no notebook schema uses (python-jsonschema/jsonschema#1392). Without it,
# jsonschema skips that one format.
sys.modules.setdefault("rfc3987_syntax", None)
