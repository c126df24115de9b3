"""Test scaffolding shared by the test packages and the benchmarks: stand-in feature sources
and models, synthetic worlds. Never imported by the shipped packages."""
