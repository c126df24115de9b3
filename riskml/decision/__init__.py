"""Real-time decision logic, independent of Ray Serve.

Everything a fraud decision needs besides the models themselves: configuration (thresholds, blend
weights, deadline and stage timeouts, rules, shadow and experiment flags), the rules rung, the
calibrated blend and threshold policy with reason codes, the deterministic hash-based traffic
split, and the fallback ladder that orchestrates the stages under a per-request deadline.

Serving (``serving/``) only wires these to Ray Serve deployments; the benchmark and the in-process
scoring path call the very same code. Import-light: numpy at most, no Ray, no model libraries.
"""
