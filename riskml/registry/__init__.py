"""The model registry, its champion and the gate that decides whether a challenger replaces it.

``local``: registered bundles, ``index.json`` and ``champion.json`` under
``<RISKML_HOME>/models/registry/<name>/``; ``gate``: challenger vs champion on the same window.
"""
