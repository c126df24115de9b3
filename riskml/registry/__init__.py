"""The model registry (MLflow's Model Registry) and the gate that decides whether a challenger
replaces the champion.

``store``: register a bundle as a model version (digest-tagged), the ``champion``/``challenger``
aliases, verified downloads into the model cache, and the compare-and-set promotion deploy uses;
``gate``: challenger vs champion on the same window.
"""
