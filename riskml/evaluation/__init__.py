"""riskml.evaluation."""
