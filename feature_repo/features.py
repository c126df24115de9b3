"""Feast definitions of riskml: entities, views, on-demand views, FeatureServices.

Everything is defined once in :mod:`riskml.features.repo`; this module exposes the objects at
module level (as ``feast apply`` expects) for sources under ``<RISKML_HOME>/features``.
"""

from riskml.features.repo import feature_objects
from riskml.settings import get_settings

_OBJECTS = feature_objects(get_settings().home / "features")
globals().update({obj.name: obj for obj in _OBJECTS})
