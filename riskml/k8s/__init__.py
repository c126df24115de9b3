"""Kubernetes delivery helpers: load and render the kustomize manifests under ``k8s/`` and
validate them offline (no API server): core kinds with kubernetes-validate, custom resources
(KubeRay, Karpenter) against their CRDs' openAPIV3Schema, plus pod-security, RBAC and
NetworkPolicy checks that also reach pod templates nested inside RayService/RayCluster/RayJob.

Modules: :mod:`riskml.k8s.manifests` (loading, rendering, walking pod templates, the serve
config sync), :mod:`riskml.k8s.validate` (schemas), :mod:`riskml.k8s.policy` (policies).
"""
