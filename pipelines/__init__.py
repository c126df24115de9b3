"""kfp pipeline definitions: ``training`` (the whole path) and ``retraining`` (new data -> gate
-> deploy if better), each in a ``local`` and a ``cluster`` flavour (GPU settings on the
behavioural-model task via kfp-kubernetes).

``python -m pipelines compile | run-local | submit`` (see :mod:`pipelines.__main__`).
"""
