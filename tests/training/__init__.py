"""Tests of riskml.models, riskml.training and riskml.evaluation."""
