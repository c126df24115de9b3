"""riskml.training."""
