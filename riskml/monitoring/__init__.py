"""Model monitoring: reference profiles written at training, drift with sample-size-aware
alarms, data health and label-free performance estimates over the decision log, and the
trigger that launches retraining (never on the decision path)."""
