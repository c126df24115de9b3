"""riskml.models."""
