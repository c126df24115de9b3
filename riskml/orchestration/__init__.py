"""Where Ray-backed work runs: in-process on a local Ray, through the Ray Jobs API, or as a KubeRay
RayJob — one call, :func:`riskml.orchestration.ray_task.run_ray_task`, three modes.

Modules (all import-light; Ray and the kubernetes client are imported inside functions):

``protocol``  the entrypoint contract: ``run(spec: dict) -> dict`` and the result line
              ``RISKML_RESULT {json}`` a job prints last
``launch``    ``python -m riskml.orchestration.launch MODULE[:FUNC] --spec JSON`` — the command
              a Ray job / RayJob runs
``ray_task``  :func:`run_ray_task` and the ``local`` / ``jobs`` modes
``rayjob``    the ``rayjob`` mode: build a RayJob from the k8s template, create, poll, collect
``head``      start/stop a private local Ray head (``ray start --head``) by process group
``probe``     a tiny built-in entrypoint that checks a Ray cluster end to end
``images``    the pinned runtime image (``riskml:<version>-ray<ray>``)
``steps``     the pipeline steps (files in, files + dict out) the kfp components wrap
``entrypoints`` ``run(spec)`` wrappers of the Ray-heavy steps for :func:`run_ray_task`
"""
