"""Release a registered model version: make it the champion, and on a cluster roll the serving
app to it.

1. **Verify** the version as stored in the registry (download + digest): a tampered artifact is
   never promoted.
2. **Promote** it (:func:`riskml.registry.store.promote`): the ``champion`` alias moves only if it
   still points at the version the gate compared against, so of two concurrent runs exactly one
   wins; the other gets an error that says to rerun the gate.
3. ``cluster``: **roll** the RayService's Serve app to the pinned version and digest
   (:func:`riskml.orchestration.deploy.rollout_rayservice`: resourceVersion-guarded patch, wait
   for health, roll the app back on failure) — and on any failure move the alias back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from riskml.orchestration.deploy import DeployError
from riskml.registry.store import ModelRef

TARGETS = ("local", "cluster", "none")


def release(
    ref: ModelRef | Mapping[str, Any],
    *,
    expected: str | None,
    target: str = "local",
    rayservice: str = "riskml-scoring",
    namespace: str = "riskml-serving",
    app: str = "riskml",
    uri_arg: str = "model_uri",
    timeout_s: float = 600.0,
    poll_s: float = 5.0,
    api_client: Any = None,
) -> dict[str, Any]:
    """Release ``ref`` (a :class:`ModelRef` or its record) if the champion is still
    ``expected`` (the gate's ``champion_version``; None: there was none). ``target``: ``local``
    (the alias only: local serving loads ``models:/<name>@champion``), ``cluster`` (also the
    RayService's Serve app ``app``: its ``uri_arg`` to the pinned version and
    ``<uri_arg minus _uri>_digest`` to its digest; other lines' apps name their own args),
    ``none`` (verify and promote, touch no service)."""
    from riskml.registry.store import fetch, promote, restore

    if target not in TARGETS:
        raise DeployError(f"unknown deploy target {target!r}; choose from {', '.join(TARGETS)}")
    if not isinstance(ref, ModelRef):
        ref = ModelRef.from_record(ref)
    fetch(ref)
    previous = promote(ref, expected=expected)
    out: dict[str, Any] = {
        **ref.record(),
        "previous_champion": previous.version if previous else None,
        "target": target,
        "deployed_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if target == "cluster":
        from riskml.orchestration.deploy import rollout_rayservice

        try:
            out["rayservice"] = rollout_rayservice(
                {uri_arg: ref.model_uri, f"{uri_arg.removesuffix('_uri')}_digest": ref.digest},
                name=rayservice,
                namespace=namespace,
                app=app,
                timeout_s=timeout_s,
                poll_s=poll_s,
                api_client=api_client,
            )
        except BaseException:
            restore(ref, previous)
            raise
    return out
