"""riskml.data."""
