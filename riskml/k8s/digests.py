"""Pin an overlay's images by digest: the release step before a prod deploy.

The overlays pin image tags; a tag can be moved, a digest cannot. Before a prod release the
``images:`` entries of ``k8s/overlays/prod/kustomization.yaml`` get the digest of what was built
and pushed (``skaffold build --file-output build.json``) and of the third-party images that were
verified (``--image nats=nats:2.10.29-alpine@sha256:...``); kustomize then renders every
reference as ``name:tag@sha256:...``. ``riskml k8s validate --release`` fails, naming each
image, while any container image of a release overlay is not pinned by digest
(:func:`riskml.k8s.policy.check_image_digests`).

Only the ``images:`` block is rewritten; every other line (comments included) stays as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: What a pinned reference ends with.
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOP_KEY = re.compile(r"^images:\s*(#.*)?$")
_ITEM = re.compile(r"^(?P<indent>\s*)-\s")
#: The ``images:`` fields this step writes, in the order kustomize documents them.
_PIN_FIELDS = ("newName", "newTag", "digest")


@dataclass(frozen=True)
class ImagePin:
    """One ``images:`` entry's target: repository (``newName``), tag and digest."""

    repository: str
    tag: str | None
    digest: str

    @property
    def reference(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        return f"{self.repository}{tag}@{self.digest}"


def parse_pinned_reference(reference: str) -> ImagePin:
    """``registry/repo[:tag]@sha256:<64 hex>`` -> :class:`ImagePin`; ValueError without a digest."""
    name, sep, digest = reference.strip().partition("@")
    if not sep or not DIGEST_RE.match(digest):
        raise ValueError(
            f"{reference!r} is not pinned by digest (expected <image>[:<tag>]@sha256:<64 hex>;"
            " skaffold writes digests only for images it pushed)"
        )
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return ImagePin(repository, tag, digest)
    return ImagePin(name, None, digest)


def read_skaffold_builds(path: Path | str) -> dict[str, str]:
    """``{image name: pinned reference}`` from ``skaffold build --file-output`` JSON
    (``{"builds": [{"imageName": ..., "tag": ...}]}``)."""
    try:
        payload = json.loads(Path(path).read_text())
        builds = payload["builds"]
        return {str(b["imageName"]): str(b["tag"]) for b in builds}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a `skaffold build --file-output` file ({error})") from None


def _images_block(lines: list[str], path: Path) -> tuple[int, int]:
    """[start, end) of the ``images:`` value (the lines after the key, trailing blanks excluded)."""
    starts = [i for i, line in enumerate(lines) if _TOP_KEY.match(line.rstrip("\n"))]
    if len(starts) != 1:
        raise ValueError(f"{path}: expected one top-level `images:` list, found {len(starts)}")
    start = starts[0] + 1
    end = start
    while end < len(lines):
        line = lines[end]
        if line.startswith("#"):  # a column-0 comment belongs to the list if the list goes on
            line = next((n for n in lines[end:] if n.strip() and not n.startswith("#")), "")
        if line.strip() and not (line[0] in " \t" or line.startswith("- ")):
            break
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return start, end


def _split_entries(block: list[str]) -> tuple[list[str], list[list[str]]]:
    """Block lines -> (lines before the first item, one chunk per item). Comment lines between
    two items belong to the item after them."""
    head: list[str] = []
    chunks: list[list[str]] = []
    pending: list[str] = []
    for line in block:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            pending.append(line)
        elif _ITEM.match(line):
            chunks.append([*pending, line])
            pending = []
        elif chunks:
            chunks[-1].extend([*pending, line])
            pending = []
        else:
            head.extend([*pending, line])
            pending = []
    if chunks:
        chunks[-1].extend(pending)
    else:
        head.extend(pending)
    return head, chunks


def _render_entry(comments: list[str], indent: str, entry: Mapping[str, Any]) -> list[str]:
    out = list(comments)
    keys = ["name", *[k for k in _PIN_FIELDS if k in entry]]
    keys += [k for k in entry if k not in keys]
    for index, key in enumerate(keys):
        lead = f"{indent}- " if index == 0 else f"{indent}  "
        value = yaml.safe_dump(entry[key], default_flow_style=True, width=1000).strip()
        value = value.removesuffix("\n...").strip()
        out.append(f"{lead}{key}: {value}\n")
    return out


def pin_image_digests(
    kustomization: Path | str, pins: Mapping[str, str], *, check: bool = False
) -> dict[str, str]:
    """Set ``newName``/``newTag``/``digest`` of the named ``images:`` entries from pinned
    references (``{name: "registry/repo:tag@sha256:..."}``).

    Returns ``{name: reference}`` for the entries that changed (or would, with ``check``). Raises
    ValueError for a reference without a digest or a name the ``images:`` list lacks.
    """
    path = Path(kustomization)
    parsed = {name: parse_pinned_reference(ref) for name, ref in pins.items()}
    lines = path.read_text().splitlines(keepends=True)
    start, end = _images_block(lines, path)
    head, chunks = _split_entries(lines[start:end])
    entries: list[dict[str, Any]] = []
    for chunk in chunks:
        loaded = yaml.safe_load("".join(line for line in chunk if line.strip()))
        if not (isinstance(loaded, list) and len(loaded) == 1 and isinstance(loaded[0], dict)):
            raise ValueError(f"{path}: cannot read the `images:` entry {''.join(chunk)!r}")
        entries.append(loaded[0])
    names = [str(entry.get("name")) for entry in entries]
    if unknown := sorted(set(parsed) - set(names)):
        raise ValueError(
            f"{path}: no `images:` entry named {', '.join(unknown)} (known: {', '.join(names)});"
            " add the entry first"
        )
    changed: dict[str, str] = {}
    new_block = list(head)
    for chunk, entry in zip(chunks, entries, strict=True):
        pin = parsed.get(str(entry["name"]))
        if pin is None:
            new_block.extend(chunk)
            continue
        updated = {k: v for k, v in entry.items() if k not in _PIN_FIELDS}
        if pin.repository != entry["name"]:
            updated["newName"] = pin.repository
        if pin.tag:
            updated["newTag"] = pin.tag
        updated["digest"] = pin.digest
        if updated != entry:
            changed[str(entry["name"])] = pin.reference
        first = next(i for i, line in enumerate(chunk) if _ITEM.match(line))
        match = _ITEM.match(chunk[first])
        assert match is not None
        new_block.extend(_render_entry(chunk[:first], match.group("indent"), updated))
        # comments inside or after the entry stay, after it
        new_block.extend(line for line in chunk[first + 1 :] if line.strip().startswith("#"))
    if changed and not check:
        path.write_text("".join(lines[:start] + new_block + lines[end:]))
    return changed
