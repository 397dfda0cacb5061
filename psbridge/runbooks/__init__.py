"""The runbooks psbridge ships: one folder each, ``runbook.yaml`` and its step notebooks.

Package data, read through :mod:`psbridge.runbook.registry` (``psbridge runbooks`` lists them).
Each notebook is stored twice, as a pair: the ``.py`` source in jupytext's percent format, which
ruff and mypy check like any module, and the ``.ipynb`` without outputs that papermill runs and
JupyterLab opens. ``psbridge notebooks sync`` writes the second from the first (and the
parameters cells of both from ``runbook.yaml``); a test fails when they disagree.
"""
