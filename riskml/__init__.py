"""riskml — real-time risk ML on Kubeflow, Ray, Feast and Ray Serve.

The package is import-light: nothing here imports kfp, ray, torch or kubernetes, and nothing
does work at import time. Heavy modules are imported inside the functions that need them.
"""

__version__ = "0.1.0"
