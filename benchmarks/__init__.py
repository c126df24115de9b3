"""Reproducible benchmarks: each writes JSON and prints a short table."""
