"""Prod images pinned by digest: `riskml k8s pin-digests` writes the digests skaffold pushed (and
the third-party ones verified) into the overlay's `images:`, kustomize renders every reference as
image:tag@sha256:..., and `riskml k8s validate --release` fails naming each image until then."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from riskml.cli import app
from riskml.k8s import manifests
from riskml.k8s.digests import parse_pinned_reference, pin_image_digests, read_skaffold_builds
from riskml.k8s.manifests import iter_containers, iter_pod_templates, render_overlay
from riskml.k8s.policy import check_image_digests, run_policies

from .helpers import Doc

pytestmark = pytest.mark.k8s

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGESTS = {
    "riskml": "sha256:" + "1a" * 32,
    "riskml-gpu": "sha256:" + "2b" * 32,
    "nats": "sha256:" + "3c" * 32,
}
TAG = "0.1.0-ray2.60.0-abc1234"  # skaffold's tag template: <version>-ray<Ray>-<commit>
PINNED = {
    "riskml": f"{REGISTRY}/riskml:{TAG}@{DIGESTS['riskml']}",
    "riskml-gpu": f"{REGISTRY}/riskml-gpu:{TAG}@{DIGESTS['riskml-gpu']}",
    "nats": f"nats:2.10.29-alpine@{DIGESTS['nats']}",
}


def _images(docs: list[Doc]) -> set[str]:
    return {
        str(container["image"])
        for obj in docs
        for template in iter_pod_templates(obj)
        for _, container in iter_containers(template.spec)
    }


@pytest.fixture
def k8s_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of k8s/ that the CLI works on (the checkout's overlays stay as they are)."""
    copy = tmp_path / "k8s"
    shutil.copytree(manifests.K8S_DIR, copy)
    monkeypatch.setattr(manifests, "K8S_DIR", copy)
    return copy


@pytest.fixture
def build_json(tmp_path: Path) -> Path:
    """What `skaffold build --file-output` writes after pushing both artifacts."""
    path = tmp_path / "build.json"
    builds = [{"imageName": n, "tag": PINNED[n]} for n in ("riskml", "riskml-gpu")]
    path.write_text(json.dumps({"builds": builds}))
    return path


def test_the_release_check_names_every_unpinned_prod_image(rendered: dict[str, list[Doc]]) -> None:
    problems = check_image_digests(rendered["prod"])
    assert len(problems) == 3, problems
    for image in ("'riskml:0.1.0-ray2.60.0'", "'riskml-gpu:0.1.0-ray2.60.0'", "'nats:2."):
        assert any(p.startswith(image) and "not pinned by digest" in p for p in problems), image
    # the scoring RayService, the training RayJob, the MLflow server and the monitor all run
    # the CPU image
    (cpu,) = [p for p in problems if p.startswith("'riskml:")]
    assert "and 8 more" in cpu


def test_pin_digests_renders_every_prod_image_by_digest(
    k8s_copy: Path, build_json: Path, rendered: dict[str, list[Doc]], ray_version: str
) -> None:
    kustomization = k8s_copy / "overlays" / "prod" / "kustomization.yaml"
    before = kustomization.read_text()
    args = ["k8s", "pin-digests", "--build-artifacts", str(build_json)]
    result = CliRunner().invoke(app, [*args, "--image", f"nats={PINNED['nats']}"])
    assert result.exit_code == 0, result.output
    after = kustomization.read_text()
    # only the `images:` entries changed: every other line (comments included) is kept
    assert set(before.splitlines()) - set(after.splitlines()) == {"    newTag: 0.1.0-ray2.60.0"}
    assert f"    digest: {DIGESTS['nats']}" in after
    assert f"    newName: {REGISTRY}/riskml" in after

    docs = render_overlay(k8s_copy / "overlays" / "prod")
    assert _images(docs) == set(PINNED.values())
    assert check_image_digests(docs) == []
    # still tagged with the Ray version, so every other policy holds as before
    assert all(v == [] for v in run_policies(docs, ray_version).values())
    assert len(docs) == len(rendered["prod"])

    # the step is idempotent, and --check reports nothing left to change
    result = CliRunner().invoke(app, [*args, "--image", f"nats={PINNED['nats']}", "--check"])
    assert result.exit_code == 0, result.output
    assert kustomization.read_text() == after
    # the checkout's overlay is untouched
    assert (
        "digest:" not in (manifests.REPO_ROOT / "k8s/overlays/prod/kustomization.yaml").read_text()
    )


def test_validate_release_fails_until_every_prod_image_is_pinned(
    k8s_copy: Path, build_json: Path, crd_dir: Path, schema_dir: Path, tmp_path: Path
) -> None:
    validate = ["k8s", "validate", "--overlay", "prod", "--release"]
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, [*validate, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert len(json.loads(out.read_text())["prod"]["unpinned_images"]) == 3
    for image in ("riskml:0.1.0-ray2.60.0", "riskml-gpu:0.1.0-ray2.60.0", "nats:2.10.29"):
        assert image in result.output

    # skaffold's two images pinned, NATS not yet: the release check names what is left
    pin = CliRunner().invoke(app, ["k8s", "pin-digests", "-a", str(build_json)])
    assert pin.exit_code == 0, pin.output
    result = CliRunner().invoke(app, [*validate, "--out", str(out)])
    assert result.exit_code == 1, result.output
    (left,) = json.loads(out.read_text())["prod"]["unpinned_images"]
    assert left.startswith("'nats:2.10.29-alpine' is not pinned by digest")

    pin = CliRunner().invoke(app, ["k8s", "pin-digests", "-i", f"nats={PINNED['nats']}"])
    assert pin.exit_code == 0, pin.output
    result = CliRunner().invoke(app, [*validate, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["prod"]["unpinned_images"] == [] and report["prod"]["schema"] == []


def test_validate_release_needs_a_release_overlay(crd_dir: Path) -> None:
    result = CliRunner().invoke(app, ["k8s", "validate", "--overlay", "staging", "--release"])
    assert result.exit_code != 0
    assert "--release checks prod" in result.output


def test_pin_digests_refuses_what_is_not_a_digest_pin(k8s_copy: Path, tmp_path: Path) -> None:
    kustomization = k8s_copy / "overlays" / "prod" / "kustomization.yaml"
    before = kustomization.read_text()
    bad = {
        "nats=nats:2.10.29-alpine": "is not pinned by digest",
        "nats=nats@sha256:abc": "is not pinned by digest",  # not 64 hex digits
        f"redis=redis:7@{DIGESTS['nats']}": "no `images:` entry named redis",
        "nats": "expected NAME=REF",
    }
    for item, message in bad.items():
        result = CliRunner().invoke(app, ["k8s", "pin-digests", "--image", item])
        assert result.exit_code != 0, item
        assert message in " ".join(result.output.split()), (item, result.output)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"artifacts": []}')
    result = CliRunner().invoke(app, ["k8s", "pin-digests", "-a", str(garbage)])
    assert result.exit_code != 0 and "skaffold build --file-output" in result.output
    assert kustomization.read_text() == before


def test_pin_image_digests_on_a_minimal_kustomization(kubectl: str, tmp_path: Path) -> None:
    """Column-0 list items, an image without a tag (digest only), a comment inside the block and
    an entry left alone."""
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
        "    - {name: a, image: app}\n    - {name: b, image: side:1.0}\n"
    )
    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text(
        "resources: [pod.yaml]\nimages:\n# the app\n- name: app\n  newTag: '1.0'\n"
        "- name: side  # left alone\n  newTag: '1.1'\nlabels: []\n"
    )
    digest = DIGESTS["riskml"]
    changed = pin_image_digests(kustomization, {"app": f"reg.example/app@{digest}"})
    assert changed == {"app": f"reg.example/app@{digest}"}
    text = kustomization.read_text()
    assert "# the app\n- name: app\n  newName: reg.example/app\n" in text
    assert "- name: side  # left alone\n  newTag: '1.1'\nlabels: []\n" in text
    assert "newTag: '1.0'" not in text  # a digest-only reference drops the old tag
    docs = render_overlay(tmp_path)
    assert _images(docs) == {f"reg.example/app@{digest}", "side:1.1"}
    assert check_image_digests(docs) == [
        "'side:1.1' is not pinned by digest (Pod/p: spec.containers[1].image)"
    ]
    assert pin_image_digests(kustomization, {"app": f"reg.example/app@{digest}"}) == {}


def test_skaffold_build_output_and_references() -> None:
    pin = parse_pinned_reference(PINNED["riskml"])
    assert (pin.repository, pin.tag, pin.digest) == (f"{REGISTRY}/riskml", TAG, DIGESTS["riskml"])
    assert pin.reference == PINNED["riskml"]
    port = parse_pinned_reference(f"localhost:5000/riskml@{DIGESTS['riskml']}")
    assert (port.repository, port.tag) == ("localhost:5000/riskml", None)
    with pytest.raises(ValueError, match="not pinned by digest"):
        parse_pinned_reference("localhost:5000/riskml:1.0")
    with pytest.raises(ValueError, match="skaffold build --file-output"):
        read_skaffold_builds(Path("/nonexistent/build.json"))
