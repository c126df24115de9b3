"""riskml.evaluation.credit: PD validation reports (and the offer line's off-policy estimates)."""
