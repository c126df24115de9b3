"""Bundle integrity at its targets: a one-byte change anywhere is refused, a pickle placed where a
model is expected is refused and never runs, and the bundle digest covers every path the
manifest names.

The attacker of the re-signed cases can rewrite the manifest too (recomputing every file digest
and ``content_sha256``) but not the digest the registry pinned (:func:`bundle_digest`, which
serving passes to :func:`load_bundle`). Without a pinned digest only the manifest's file list is
certified; a re-signed bundle is then still refused when its model bytes are not UBJSON /
safetensors, and nothing in it is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from riskml.models.bundle import (
    MANIFEST,
    REQUIRED_FILES,
    BundleIntegrityError,
    ModelArtifacts,
    bundle_digest,
    load_bundle,
    save_bundle,
    score,
    sha256_file,
    verify_bundle,
)

# -- a live pickle gadget, and a record of every unpickling ------------------------------------


class _Touch:
    """Unpickling this creates ``marker`` (no shell needed): the side effect we watch for."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _gadget(marker: Path) -> bytes:
    return pickle.dumps(_Touch(marker), protocol=pickle.HIGHEST_PROTOCOL)


#: ``pickle.find_class`` audit events (module, name) while a test records them, else None.
_FIND_CLASS: list[tuple[str, str]] | None = None
_HOOKED = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class" and _FIND_CLASS is not None:
        _FIND_CLASS.append((str(args[0]), str(args[1])))


@pytest.fixture
def unpickled() -> Iterator[list[tuple[str, str]]]:
    """Every global any unpickler (C or Python, any caller) resolves during the test. Audit
    hooks cannot be removed: one is added once and records only inside this fixture."""
    global _FIND_CLASS, _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    _FIND_CLASS = []
    try:
        yield _FIND_CLASS
    finally:
        _FIND_CLASS = None


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """pickle.load(s), torch.load and numpy.load raise if anything calls them."""
    import numpy
    import torch

    calls: list[str] = []

    def trap(name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} called while loading a bundle")

        return refuse

    for module, attr in (
        (pickle, "load"),
        (pickle, "loads"),
        (torch, "load"),
        (torch.serialization, "load"),
        (numpy, "load"),
    ):
        monkeypatch.setattr(module, attr, trap(f"{module.__name__}.{attr}"))
    return calls


# -- bundles -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(artifacts: ModelArtifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(artifacts, tmp_path_factory.mktemp("pristine"), name="fraud")


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "models" / "fraud" / pristine.name
    shutil.copytree(pristine, copy)
    return copy


def _walk(bundle: Path) -> list[str]:
    """Every file under the bundle directory (the manifest included), relative, sorted."""
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())


def _manifest(bundle: Path) -> dict[str, Any]:
    return dict(json.loads((bundle / MANIFEST).read_text()))


def _resign(bundle: Path, manifest: dict[str, Any] | None = None) -> None:
    """What an attacker who can rewrite the manifest does: list every file with its digest."""
    m = manifest if manifest is not None else _manifest(bundle)
    files = {rel: sha256_file(bundle / rel) for rel in _walk(bundle) if rel != MANIFEST}
    m["files"] = files
    m["content_sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    (bundle / MANIFEST).write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def _named_paths(manifest: dict[str, Any]) -> set[str]:
    """Every file path the manifest names: its file list and its model entries."""
    models = {v for e in manifest["models"].values() for k, v in e.items() if k != "kind"}
    return set(manifest["files"]) | models


# -- one byte, every file ----------------------------------------------------------------------

MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "flip first byte": lambda b: bytes([b[0] ^ 0x01]) + b[1:],
    "flip middle byte": lambda b: (
        b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0x01]) + b[len(b) // 2 + 1 :]
    ),
    "flip last byte": lambda b: b[:-1] + bytes([b[-1] ^ 0x01]),
    "truncate one byte": lambda b: b[:-1],
    "append one byte": lambda b: b + b"\x00",
}


def test_the_walk_covers_the_manifest(pristine: Path) -> None:
    manifest = _manifest(pristine)
    assert _walk(pristine) == sorted([*manifest["files"], MANIFEST])
    assert len(manifest["files"]) == 8
    # the model entries name only files the manifest verifies
    assert _named_paths(manifest) == set(manifest["files"])


def test_one_byte_changed_anywhere_is_refused(bundle: Path) -> None:
    pinned = bundle_digest(bundle)
    verify_bundle(bundle, digest=pinned)
    for rel in _walk(bundle):
        path = bundle / rel
        original = path.read_bytes()
        assert original, rel
        for mutate in MUTATIONS.values():
            path.write_bytes(mutate(original))
            if rel == MANIFEST:
                # the registry's pin covers every byte of the manifest
                with pytest.raises(BundleIntegrityError, match="manifest digest"):
                    verify_bundle(bundle, digest=pinned)
                with pytest.raises(BundleIntegrityError, match="manifest digest"):
                    load_bundle(bundle, digest=pinned)
            else:
                name = rf"sha256 mismatch for {re.escape(rel)} "
                for digest in (None, pinned):
                    with pytest.raises(BundleIntegrityError, match=name):
                        verify_bundle(bundle, digest=digest)
                    with pytest.raises(BundleIntegrityError, match=name):
                        load_bundle(bundle, digest=digest)
            path.write_bytes(original)
        verify_bundle(bundle, digest=pinned)


def test_renamed_missing_extra_and_symlinked_files_are_refused(bundle: Path) -> None:
    pinned = bundle_digest(bundle)
    for rel in sorted(_manifest(bundle)["files"]):
        path = bundle / rel
        esc = re.escape(rel)
        moved = path.with_name(path.name + ".renamed")
        path.rename(moved)
        with pytest.raises(BundleIntegrityError, match=rf"missing from bundle: \['{esc}'\]"):
            load_bundle(bundle)
        path.unlink(missing_ok=True)
        with pytest.raises(BundleIntegrityError, match=rf"missing from bundle: \['{esc}'\]"):
            load_bundle(bundle, digest=pinned)
        moved.rename(path)
        # the same bytes under a second name
        extra = path.with_name("copy-of-" + path.name)
        shutil.copyfile(path, extra)
        with pytest.raises(BundleIntegrityError, match=r"not in the manifest.*copy-of-"):
            load_bundle(bundle, digest=pinned)
        extra.unlink()
        # a symlink to identical bytes outside the bundle
        outside = bundle.parent / ("outside-" + path.name)
        shutil.copyfile(path, outside)
        path.unlink()
        path.symlink_to(outside)
        with pytest.raises(BundleIntegrityError, match=rf"{esc} is a symlink"):
            load_bundle(bundle)
        path.unlink()
        shutil.copyfile(outside, path)
        verify_bundle(bundle, digest=pinned)
    for extra in ("notes.txt", "models/extra.ubj", "new/dir/file.json"):
        (bundle / extra).parent.mkdir(parents=True, exist_ok=True)
        (bundle / extra).write_text("{}")
        with pytest.raises(
            BundleIntegrityError, match=rf"not in the manifest: \['{re.escape(extra)}'\]"
        ):
            load_bundle(bundle)
        (bundle / extra).unlink()


def test_edited_file_list_is_refused(bundle: Path) -> None:
    pinned = bundle_digest(bundle)
    original = _manifest(bundle)
    files = sorted(original["files"])
    for rel in files:
        # a path renamed in the manifest only
        m = json.loads(json.dumps(original))
        m["files"][rel + ".x"] = m["files"].pop(rel)
        (bundle / MANIFEST).write_text(json.dumps(m))
        with pytest.raises(BundleIntegrityError, match="missing from bundle"):
            load_bundle(bundle)
        # a path dropped from the list, content digest recomputed: the file is then extra
        m = json.loads(json.dumps(original))
        del m["files"][rel]
        m["content_sha256"] = hashlib.sha256(
            json.dumps(m["files"], sort_keys=True).encode()
        ).hexdigest()
        (bundle / MANIFEST).write_text(json.dumps(m))
        with pytest.raises(
            BundleIntegrityError, match=rf"not in the manifest: \['{re.escape(rel)}'\]"
        ):
            load_bundle(bundle)
    for a, b in zip(files, files[1:] + files[:1], strict=True):
        # another file's digest swapped in, with and without a recomputed content digest
        m = json.loads(json.dumps(original))
        m["files"][a], m["files"][b] = m["files"][b], m["files"][a]
        for resigned in (False, True):
            if resigned:
                m["content_sha256"] = hashlib.sha256(
                    json.dumps(m["files"], sort_keys=True).encode()
                ).hexdigest()
            (bundle / MANIFEST).write_text(json.dumps(m))
            with pytest.raises(BundleIntegrityError, match="sha256 mismatch for"):
                load_bundle(bundle)
            with pytest.raises(BundleIntegrityError, match="manifest digest"):
                load_bundle(bundle, digest=pinned)
    _resign(bundle, original)
    assert bundle_digest(bundle) == pinned  # the helper reproduces save_bundle's manifest
    load_bundle(bundle, digest=pinned)


def _swap_contents(bundle: Path, a: str, b: str) -> None:
    pa, pb = bundle / a, bundle / b
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)


def test_the_bundle_digest_covers_every_path_the_manifest_names(
    bundle: Path, tmp_path: Path
) -> None:
    """Moving any named file to another path (manifest re-signed, model entries following)
    yields a bundle whose own checks pass but whose digest is not the pinned one; so does
    swapping two files' contents and names."""
    pinned = bundle_digest(bundle)
    original = _manifest(bundle)
    seen = {pinned}
    for rel in sorted(_named_paths(original)):
        work = tmp_path / "variants" / rel.replace("/", "_") / bundle.name
        shutil.copytree(bundle, work)
        new = rel.replace(".", ".moved.", 1)
        (work / rel).rename(work / new)
        m = json.loads(json.dumps(original))
        for entry in m["models"].values():
            for key, value in entry.items():
                if value == rel:
                    entry[key] = new
        _resign(work, m)
        if rel in REQUIRED_FILES:
            with pytest.raises(
                BundleIntegrityError, match=rf"does not list \['{re.escape(rel)}'\]"
            ):
                verify_bundle(work)
        else:
            verify_bundle(work)  # consistent in itself: only the pin tells
        digest = bundle_digest(work)
        assert digest not in seen, rel
        seen.add(digest)
        with pytest.raises(BundleIntegrityError, match="manifest digest"):
            load_bundle(work, digest=pinned)
    # two files exchanged, names and all: every file digest still matches its path
    _swap_contents(bundle, "metrics.json", "training_config.json")
    _resign(bundle)
    verify_bundle(bundle)
    assert bundle_digest(bundle) != pinned
    with pytest.raises(BundleIntegrityError, match="manifest digest"):
        load_bundle(bundle, digest=pinned)


def test_a_model_entry_outside_the_verified_files_is_refused(bundle: Path) -> None:
    """A re-signed manifest pointing the XGBoost entry at a file outside the bundle (valid
    UBJSON, never verified) was loaded as the model; now refused."""
    outside = bundle.parent / "elsewhere.ubj"
    shutil.copyfile(bundle / "models" / "xgb.ubj", outside)
    for target in ("../elsewhere.ubj", str(outside), "models/not-listed.ubj"):
        m = _manifest(bundle)
        m["models"]["xgb"]["file"] = target
        _resign(bundle, m)
        with pytest.raises(BundleIntegrityError, match="models name files it does not verify"):
            load_bundle(bundle)
    m = _manifest(bundle)
    m["models"] = ["xgb"]
    _resign(bundle, m)
    with pytest.raises(BundleIntegrityError, match="'models' is not a mapping"):
        load_bundle(bundle)


# -- pickle where a model is expected --------------------------------------------------------


def test_the_gadget_is_live(tmp_path: Path, unpickled: list[tuple[str, str]]) -> None:
    """Control: the payload the next tests plant does create its marker when unpickled, and the
    audit hook sees it."""
    marker = tmp_path / "control"
    pickle.loads(_gadget(marker))
    assert marker.exists()
    assert ("pathlib", "Path.touch") in unpickled


def _plant_replace(bundle: Path, payload: bytes, rel: str) -> None:
    (bundle / rel).write_bytes(payload)


PLANTS: dict[str, tuple[Callable[[Path, bytes], None], bool, str]] = {
    # name: (plant, re-signed manifest, what refuses it without a pinned digest)
    "xgb.ubj replaced": (
        lambda b, p: _plant_replace(b, p, "models/xgb.ubj"),
        False,
        r"sha256 mismatch for models/xgb\.ubj",
    ),
    "sequence.safetensors replaced": (
        lambda b, p: _plant_replace(b, p, "models/sequence.safetensors"),
        False,
        r"sha256 mismatch for models/sequence\.safetensors",
    ),
    "model.pkl added": (
        lambda b, p: _plant_replace(b, p, "models/model.pkl"),
        False,
        r"not in the manifest: \['models/model\.pkl'\]",
    ),
    "xgb.ubj replaced, re-signed": (
        lambda b, p: _plant_replace(b, p, "models/xgb.ubj"),
        True,
        "the XGBoost model does not load",
    ),
    "sequence.safetensors replaced, re-signed": (
        lambda b, p: _plant_replace(b, p, "models/sequence.safetensors"),
        True,
        "the sequence model does not load",
    ),
    "calibration.json replaced, re-signed": (
        lambda b, p: _plant_replace(b, p, "calibration.json"),
        True,
        "malformed bundle content",
    ),
}


def _plant_pkl_entry(bundle: Path, payload: bytes) -> None:
    (bundle / "models" / "model.pkl").write_bytes(payload)
    m = _manifest(bundle)
    m["models"]["xgb"]["file"] = "models/model.pkl"
    _resign(bundle, m)


PLANTS["model.pkl added as the xgb entry, re-signed"] = (
    _plant_pkl_entry,
    True,
    "the XGBoost model does not load",
)


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_pickle_where_a_model_is_expected_is_refused_and_never_runs(
    bundle: Path,
    tmp_path: Path,
    plant: str,
    unpickled: list[tuple[str, str]],
    no_unpickling: list[str],
) -> None:
    pinned = bundle_digest(bundle)
    marker = tmp_path / "pwned"
    put, resigned, refusal = PLANTS[plant]
    put(bundle, _gadget(marker))
    if resigned:
        _resign(bundle)
        verify_bundle(bundle)  # the file list is consistent: only the pin or the parser refuse
    with pytest.raises(BundleIntegrityError, match="manifest digest" if resigned else refusal):
        load_bundle(bundle, digest=pinned)
    with pytest.raises(BundleIntegrityError, match=refusal):
        load_bundle(bundle)
    assert not marker.exists()
    assert unpickled == [] and no_unpickling == []


def test_loading_a_bundle_never_unpickles(
    bundle: Path,
    later_frame: Any,
    unpickled: list[tuple[str, str]],
    no_unpickling: list[str],
) -> None:
    loaded = load_bundle(bundle, digest=bundle_digest(bundle))
    assert loaded.booster is not None and loaded.seq_model is not None
    scores = score(loaded, later_frame.head(50))
    assert scores.shape == (50,)
    assert unpickled == [] and no_unpickling == []


def test_a_line_bundle_is_verified_like_a_fraud_bundle_and_refused_by_the_fraud_loader(
    tmp_path: Path,
) -> None:
    from riskml.models.bundle import load_bundle, save_line_bundle, verify_line_bundle

    path = save_line_bundle(
        tmp_path, "credit-pd", line="credit", version="v1",
        files={"models/pd.ubj": b"\x00\x01", "pd.json": {"grades": ["A", "B"]}},
        models={"pd": {"kind": "xgboost", "file": "models/pd.ubj"}},
        required=["pd.json"],
    )  # fmt: skip
    manifest = verify_line_bundle(path, "credit")
    assert manifest["line"] == "credit" and manifest["required"] == ["pd.json"]
    assert set(manifest["files"]) == {"models/pd.ubj", "pd.json"}
    with pytest.raises(BundleIntegrityError, match="a credit bundle, not a fraud bundle"):
        load_bundle(path)
    (path / "pd.json").unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        verify_line_bundle(path, "credit")
    with pytest.raises(ValueError, match="required files not given"):
        save_line_bundle(tmp_path, "credit-pd", line="credit", files={}, required=["pd.json"])
    with pytest.raises(ValueError, match="save_bundle"):
        save_line_bundle(tmp_path, "x", line="fraud", files={})
