"""Monitoring on the cluster, as rendered: the monitor's Deployment (restricted, one replica,
reading the offline log and the registry), its network paths, the PrometheusRule (valid against
the vendored prometheus-operator CRD, every alert complete, every expression naming only metrics
the monitor or the decision service exports) and the Grafana dashboard ConfigMap."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskml.k8s.policy import address, check_pod_security, network_allows, pod
from riskml.monitoring import metric_names as mn
from riskml.settings import REPO_ROOT

from .helpers import Doc, find, of_kind

pytestmark = pytest.mark.k8s

PLATFORM = "riskml-platform"
TRACKING_URI = "http://riskml-mlflow.riskml-platform.svc.cluster.local:5000"
MONITOR_LABELS = {
    "app.kubernetes.io/name": "riskml-monitor",
    "app.kubernetes.io/component": "monitor",
}
DASHBOARD_FILE = REPO_ROOT / "k8s" / "base" / "monitoring" / "dashboards" / "riskml-monitoring.json"
SEVERITIES = {"critical", "warning", "info"}
_DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")

MONITOR = pod(PLATFORM, MONITOR_LABELS)
PROMETHEUS = pod("monitoring", {"app": "prometheus"})
MLFLOW = pod(
    PLATFORM, {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/component": "tracking"}
)
NATS = pod(
    PLATFORM, {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "event-stream"}
)
SCORING_WORKER = pod(
    "riskml-serving", {"app.kubernetes.io/component": "scoring", "riskml.io/ray-node": "worker"}
)
PLATFORM_STRANGER = pod(PLATFORM, {"app": "debug"})
OBJECT_STORAGE = address("52.95.150.10")
METADATA = address("169.254.169.254")
POSTGRES = address("10.40.33.20")


# --- PromQL, offline: the metric names an expression reads -----------------------------------

#: Words of PromQL that look like identifiers but are not metrics.
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev", "stdvar",
    "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(\s*\()?")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER_KEY = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function calls, keywords, label matchers,
    ranges, grouping labels and Grafana's ``$variables`` left out)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {
        m.group(1)
        for m in _IDENT.finditer(text)
        if not m.group(2) and m.group(1) not in _PROMQL_WORDS
    }


def promql_matcher_keys(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, label) for every label matcher written on a metric name."""
    text = _STRING.sub('""', expr)
    for m in _SELECTOR.finditer(text):
        for key in _MATCHER_KEY.findall(m.group(2)):
            yield m.group(1), key


def _series_index() -> dict[str, mn.Metric]:
    index = {name: metric for metric in mn.MONITOR_METRICS for name in mn.series_names(metric)}
    for metric in mn.SERVING_METRICS:
        for name in mn.series_names(metric, mn.RAY_PREFIX):
            index[name] = metric
    return index


def expr_problems(expr: str) -> list[str]:
    """What is wrong with an expression offline: unknown metrics, labels a metric lacks,
    unbalanced brackets, no metric at all."""
    index = _series_index()
    problems: list[str] = []
    names = promql_metrics(expr)
    if not names:
        problems.append("names no metric")
    problems += [f"unknown metric {name}" for name in sorted(names - set(index))]
    for name, key in promql_matcher_keys(expr):
        metric = index.get(name)
        extra = ("le",) if name.endswith("_bucket") else ()
        if metric is not None and key not in (*metric.labels, *extra):
            problems.append(f"{name} has no label {key}")
    text = _STRING.sub('""', expr)
    for open_, close in ("()", "[]", "{}"):
        if text.count(open_) != text.count(close):
            problems.append(f"unbalanced {open_}{close}")
    return problems


# --- helpers ------------------------------------------------------------------------------------


def _monitor(docs: list[Doc]) -> Doc:
    return find(docs, "Deployment", "riskml-monitor", PLATFORM)


def _container(docs: list[Doc]) -> Doc:
    (container,) = _monitor(docs)["spec"]["template"]["spec"]["containers"]
    return container


def _rule(docs: list[Doc]) -> Doc:
    return find(docs, "PrometheusRule", "riskml-monitoring", PLATFORM)


def _alerts(docs: list[Doc]) -> list[Doc]:
    return [rule for group in _rule(docs)["spec"]["groups"] for rule in group["rules"]]


def _alert(docs: list[Doc], name: str) -> Doc:
    (rule,) = [r for r in _alerts(docs) if r.get("alert") == name]
    return rule


def _dashboard_map(docs: list[Doc]) -> Doc:
    return find(docs, "ConfigMap", "riskml-monitoring-dashboard", PLATFORM)


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows carry their panels


def _threshold(expr: str) -> float:
    """The number an alert compares with last (``... > 50``)."""
    match = re.search(r"[<>]=?\s*([0-9.]+)\s*$", expr.strip())
    assert match, expr
    return float(match.group(1))


# --- what runs --------------------------------------------------------------------------------


def test_both_overlays_deploy_the_monitor_its_rules_and_dashboard(
    rendered: dict[str, list[Doc]],
) -> None:
    for overlay, docs in rendered.items():
        monitor = _monitor(docs)
        spec = monitor["spec"]
        assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", overlay
        assert spec["selector"]["matchLabels"] == MONITOR_LABELS
        template = spec["template"]
        assert MONITOR_LABELS.items() <= template["metadata"]["labels"].items()
        container = _container(docs)
        assert container["command"] == ["riskml"]
        args = container["args"]
        assert args[:3] == ["monitor", "run", "--follow"]
        assert args[args.index("--metrics-port") + 1] == str(mn.MONITOR_METRICS_PORT)
        env = {e["name"]: e for e in container["env"]}
        assert env["RISKML_MLFLOW_TRACKING_URI"]["value"] == TRACKING_URI
        # every $(VAR) of the arguments is defined, so the kubelet expands it
        for var in re.findall(r"\$\((\w+)\)", " ".join(args)):
            assert var in env, var
        # the same offline log the consumer writes: the same ConfigMap (hashed name) and key
        writer = find(docs, "Deployment", "riskml-offline-log", PLATFORM)
        (writer_container,) = writer["spec"]["template"]["spec"]["containers"]
        writer_env = {e["name"]: e for e in writer_container["env"]}
        assert env["OFFLINE_LOG_URI"]["valueFrom"] == writer_env["OFFLINE_LOG_URI"]["valueFrom"]
        ref = env["OFFLINE_LOG_URI"]["valueFrom"]["configMapKeyRef"]
        log_map = find(docs, "ConfigMap", ref["name"], PLATFORM)
        assert log_map["data"][ref["key"]] == f"s3://riskml-events-{overlay}/offline-log"
        # no Secret: object storage through workload identity, MLflow through its Service
        assert "secretKeyRef" not in json.dumps(monitor)

        service = find(docs, "Service", "riskml-monitor-metrics", PLATFORM)
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        (port,) = service["spec"]["ports"]
        assert port["port"] == mn.MONITOR_METRICS_PORT and port["targetPort"] == "metrics"

        assert _rule(docs)["apiVersion"] == "monitoring.coreos.com/v1"
        dashboard = _dashboard_map(docs)
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert dashboard["data"]["riskml-monitoring.json"] == DASHBOARD_FILE.read_text()


def test_monitor_pod_is_restricted_with_probes_on_the_metrics_port(
    rendered: dict[str, list[Doc]],
) -> None:
    for docs in rendered.values():
        deployment = _monitor(docs)
        spec = deployment["spec"]["template"]["spec"]
        assert check_pod_security([deployment]) == []
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = _container(docs)
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]} == {"/tmp": "tmp"}
        assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}["tmp"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RISKML_HOME"].startswith("/tmp/")
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"metrics": mn.MONITOR_METRICS_PORT}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
        account = find(docs, "ServiceAccount", spec["serviceAccountName"], PLATFORM)
        assert account["automountServiceAccountToken"] is False


def _paths() -> Iterator[tuple[str, Any, Any, int, bool]]:
    yield "prometheus -> monitor metrics", PROMETHEUS, MONITOR, 9103, True
    yield "monitor -> MLflow (champion bundle)", MONITOR, MLFLOW, 5000, True
    yield "monitor -> object storage (offline log)", MONITOR, OBJECT_STORAGE, 443, True
    # and nothing more
    yield "prometheus -> monitor on another port", PROMETHEUS, MONITOR, 9102, False
    yield "unlabelled platform pod -> monitor metrics", PLATFORM_STRANGER, MONITOR, 9103, False
    yield "scoring -> monitor metrics", SCORING_WORKER, MONITOR, 9103, False
    yield "prometheus -> MLflow", PROMETHEUS, MLFLOW, 5000, False
    yield "unlabelled platform pod -> MLflow", PLATFORM_STRANGER, MLFLOW, 5000, False
    yield "monitor -> MLflow on another port", MONITOR, MLFLOW, 5001, False
    yield "monitor -> cloud metadata", MONITOR, METADATA, 443, False
    yield "monitor -> object storage over HTTP", MONITOR, OBJECT_STORAGE, 80, False
    yield "monitor -> NATS", MONITOR, NATS, 4222, False
    yield "monitor -> PostgreSQL", MONITOR, POSTGRES, 5432, False
    yield "monitor -> online store", MONITOR, POSTGRES, 6379, False
    yield "monitor -> scoring", MONITOR, SCORING_WORKER, 8000, False


@pytest.mark.parametrize("overlay", ["staging", "prod"])
def test_monitor_network_paths_and_no_others(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    wrong = [
        f"{what}: {'denied' if allowed else 'allowed'}"
        for what, source, destination, port, allowed in _paths()
        if network_allows(docs, source, destination, port) is not allowed
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("policy", "source", "destination", "port"),
    [
        ("monitor-metrics", PROMETHEUS, MONITOR, 9103),  # Prometheus in on 9103
        ("monitor-egress", MONITOR, MLFLOW, 5000),  # the client side
        ("mlflow-monitor-clients", MONITOR, MLFLOW, 5000),  # the server side
        ("monitor-egress", MONITOR, OBJECT_STORAGE, 443),
    ],
)
def test_each_monitor_policy_is_needed(
    mutable: Callable[[str], list[Doc]], policy: str, source: Any, destination: Any, port: int
) -> None:
    docs = mutable("prod")
    assert network_allows(docs, source, destination, port)
    docs.remove(find(docs, "NetworkPolicy", policy, PLATFORM))
    assert not network_allows(docs, source, destination, port)


# --- the PrometheusRule -------------------------------------------------------------------------


def test_prometheus_rule_is_validated_against_the_vendored_crd(
    rendered: dict[str, list[Doc]], crd_schemas: dict[Any, Any], crd_dir: Path
) -> None:
    from riskml.k8s.validate import load_crd_schemas, validate_custom_resource, validate_manifests

    gvk = ("monitoring.coreos.com", "v1", "PrometheusRule")
    assert gvk in crd_schemas  # from k8s/crds, next to RISKML_CRD_DIR's
    assert gvk not in load_crd_schemas(crd_dir, vendored=False)
    for docs in rendered.values():
        assert validate_manifests([_rule(docs)], crd_schemas) == []
    broken = json.loads(json.dumps(_rule(rendered["prod"])))
    broken["spec"]["groups"][0]["rules"][0]["fro"] = "5m"  # a misspelt `for`
    with pytest.raises(
        ValueError, match=r"PrometheusRule/riskml-platform/riskml-monitoring: .*fro"
    ):
        validate_custom_resource(broken, crd_schemas)
    broken = json.loads(json.dumps(_rule(rendered["prod"])))
    broken["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(ValueError, match=r"groups\[0\]\.rules\[0\]\.for"):
        validate_custom_resource(broken, crd_schemas)


def test_every_alert_is_complete(rendered: dict[str, list[Doc]]) -> None:
    for overlay, docs in rendered.items():
        groups = _rule(docs)["spec"]["groups"]
        assert len({g["name"] for g in groups}) == len(groups)
        names = [r["alert"] for r in _alerts(docs)]
        assert len(names) == len(set(names)), overlay
        for rule in _alerts(docs):
            where = f"{overlay}: {rule.get('alert')}"
            assert "record" not in rule and rule["alert"].startswith("Riskml"), where
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), where
            assert _DURATION.match(rule["for"]), where
            assert rule["labels"]["severity"] in SEVERITIES, where
            for key in ("summary", "description", "runbook"):
                assert len(rule["annotations"][key].split()) >= 5, f"{where}: {key}"


def test_alert_expressions_name_only_exported_metrics(rendered: dict[str, list[Doc]]) -> None:
    for overlay, docs in rendered.items():
        problems = {
            rule["alert"]: expr_problems(rule["expr"])
            for rule in _alerts(docs)
            if expr_problems(rule["expr"])
        }
        assert problems == {}, overlay


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("riskml_monitor_pis > 0.2", "unknown metric riskml_monitor_pis"),
        ("sum(rate(ray_riskml_fallbacks[5m]))", "unknown metric ray_riskml_fallbacks"),
        ("riskml_stage_latency_ms_bucket", "unknown metric riskml_stage_latency_ms_bucket"),
        ('riskml_monitor_psi{decision="decline"} > 0', "riskml_monitor_psi has no label decision"),
        ("time() > 0", "names no metric"),
        ("max(riskml_monitor_fallback_share > 0.1", "unbalanced ()"),
    ],
)
def test_the_expression_check_catches_mistakes(expr: str, problem: str) -> None:
    assert problem in expr_problems(expr)


def test_the_expression_check_reads_real_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le) ("
        'rate(ray_riskml_stage_latency_ms_bucket{stage="total"}[5m]))) > 50'
        " and on() riskml_monitor_window_decisions offset 1h > 0 unless "
        'absent(riskml_monitor_psi{feature=~"$feature"}) or time() - '
        "riskml_monitor_window_end_timestamp_seconds > 3600"
    )
    assert promql_metrics(expr) == {
        "ray_riskml_stage_latency_ms_bucket",
        "riskml_monitor_window_decisions",
        "riskml_monitor_psi",
        "riskml_monitor_window_end_timestamp_seconds",
    }
    assert expr_problems(expr) == []


def test_alert_thresholds_agree_with_the_serve_config_and_the_environment(
    rendered: dict[str, list[Doc]],
) -> None:
    serve = yaml.safe_load((REPO_ROOT / "serving" / "serve_config.yaml").read_text())
    (ingress,) = [d for d in serve["applications"][0]["deployments"] if d["name"] == "Ingress"]
    user_config = ingress["user_config"]
    for docs in rendered.values():
        latency = _alert(docs, "RiskmlServingP99OverDeadline")
        assert 'stage="total"' in latency["expr"] and "histogram_quantile(0.99" in latency["expr"]
        assert _threshold(latency["expr"]) == user_config["deadline_ms"]
        assert latency["labels"]["severity"] == "critical"
        # estimated precision at decline is a mean of calibrated scores above the threshold:
        # a floor at or under the threshold could never fire
        floor = _alert(docs, "RiskmlEstimatedPrecisionAtDeclineLow")
        assert _threshold(floor["expr"]) > user_config["decider"]["thresholds"]["decline"]
        drift = _alert(docs, "RiskmlFeatureDrift")
        assert _threshold(drift["expr"]) >= 2  # one window alone is the false-alarm budget
    stale = {o: _threshold(_alert(d, "RiskmlMonitorStale")["expr"]) for o, d in rendered.items()}
    assert stale == {"prod": 36 * 3600, "staging": 4 * 86400}  # windows are a day long


# --- the dashboard ------------------------------------------------------------------------------


def test_dashboard_parses_and_every_query_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] == "riskml-monitoring"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    queries: dict[str, str] = {}
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queries[f"{panel['title']}/{target['refId']}"] = target["expr"]
    label_values = re.compile(r"label_values\((.*),\s*\w+\)$")
    for name, variable in variables.items():
        if variable["type"] == "query":
            match = label_values.match(variable["definition"])
            assert match, name
            queries[f"${name}"] = match.group(1)
    problems = {where: expr_problems(expr) for where, expr in queries.items()}
    assert {where: p for where, p in problems.items() if p} == {}
    # what the dashboard is for: drift, decisions, performance, data health and serving
    used = set().union(*(promql_metrics(e) for e in queries.values()))
    for metric in (
        "riskml_monitor_psi",
        "riskml_monitor_psi_threshold",
        "riskml_monitor_decision_share",
        "riskml_monitor_expected_decision_share",
        "riskml_monitor_estimated_ap",
        "riskml_monitor_realised_ap",
        "riskml_monitor_estimated_precision",
        "riskml_monitor_estimated_recall",
        "riskml_monitor_label_maturity",
        "riskml_monitor_null_rate",
        "riskml_monitor_fallback_share",
        "riskml_monitor_unknown_customer_share",
        "ray_riskml_stage_latency_ms_bucket",
        "ray_riskml_fallbacks_total",
        "ray_riskml_decisions_total",
    ):
        assert metric in used, metric
    assert any('feature="score"' in e and "riskml_monitor_psi" in e for e in queries.values())


# --- the metric-name list -----------------------------------------------------------------------


def test_metric_names_cover_the_monitor_contract() -> None:
    expected = {
        "riskml_monitor_psi": ("feature",),
        "riskml_monitor_psi_threshold": ("feature",),
        "riskml_monitor_js_distance": ("feature",),
        "riskml_monitor_drift_alarm": ("feature",),
        "riskml_monitor_drift_alarm_windows": ("feature",),
        "riskml_monitor_null_rate": ("feature",),
        "riskml_monitor_default_rate": ("feature",),
        "riskml_monitor_unknown_customer_share": (),
        "riskml_monitor_fallback_share": (),
        "riskml_monitor_late_events": (),
        "riskml_monitor_rejected_events": (),
        "riskml_monitor_window_decisions": (),
        "riskml_monitor_window_end_timestamp_seconds": (),
        "riskml_monitor_decision_share": ("decision",),
        "riskml_monitor_expected_decision_share": ("decision",),
        "riskml_monitor_estimated_precision": ("threshold",),
        "riskml_monitor_estimated_recall": ("threshold",),
        "riskml_monitor_estimated_ap": (),
        "riskml_monitor_realised_ap": (),
        "riskml_monitor_label_maturity": (),
        "riskml_monitor_retrain_triggers_total": ("reason",),
    }
    assert {m.name: m.labels for m in mn.MONITOR_METRICS} == expected
    assert len(mn.MONITOR_METRIC_NAMES) == len(set(mn.MONITOR_METRIC_NAMES)) == len(expected)
    kinds = {m.name: m.kind for m in mn.MONITOR_METRICS}
    assert kinds.pop("riskml_monitor_retrain_triggers_total") == "counter"
    assert set(kinds.values()) == {"gauge"}
    assert mn.THRESHOLDS == ("review", "decline") and mn.DECISIONS[-1] == "decline"
    assert mn.series_names(mn.SERVING_METRICS[0], mn.RAY_PREFIX) == (
        "ray_riskml_stage_latency_ms_bucket",
        "ray_riskml_stage_latency_ms_sum",
        "ray_riskml_stage_latency_ms_count",
    )
    assert "riskml_monitor_retrain_triggers_total" in mn.known_series()
    assert "ray_riskml_fallbacks_total" in mn.known_series()


def test_serving_metric_names_match_serving_metrics_py() -> None:
    """The names, kinds and tags serving/metrics.py registers (read as text: no Ray import)."""
    text = (REPO_ROOT / "serving" / "metrics.py").read_text()
    registered: dict[str, tuple[str, tuple[str, ...]]] = {}
    # every constructor call, to the line that closes it (in a method or a module function)
    for call in re.finditer(r'\b(Counter|Gauge|Histogram)\(\s*"(\w+)"(.*?)\n\s*\)', text, re.S):
        assert call.group(2) not in registered, f"{call.group(2)} registered twice"
        tags = re.search(r"tag_keys=\(([^)]*)\)", call.group(3))
        labels = tuple(re.findall(r'"(\w+)"', tags.group(1))) if tags else ()
        registered[call.group(2)] = (call.group(1).lower(), labels)
    assert len(registered) >= 10
    assert {m.name: (m.kind, m.labels) for m in mn.SERVING_METRICS} == registered


def test_docs_explain_monitoring_and_every_alert(rendered: dict[str, list[Doc]]) -> None:
    text = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    section = text[text.index("## Monitoring") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    for alert in {r["alert"] for d in rendered.values() for r in _alerts(d)}:
        assert f"`{alert}`" in section, alert
    for word in ("riskml-monitor", "9103", "port-forward", "grafana_dashboard"):
        assert word in section, word
    assert of_kind(rendered["prod"], "PrometheusRule")
