"""An inventory as the API and the CLI show it: a summary row per image, and one image's
whole inventory as JSON (every component with its files) or CycloneDX."""
from __future__ import annotations

from dataclasses import asdict

from .store import Inventory


def os_name(inv: Inventory) -> str:
    return " ".join(x for x in (inv.os.id, inv.os.version_id) if x)


def as_json(inv: Inventory) -> dict:
    return {"key": inv.key, "image": inv.image, "image_id": inv.image_id, "state": inv.state,
            "reason": inv.reason, "os": asdict(inv.os), "layers": list(inv.layers),
            "containers": sorted(inv.containers), "errors": list(inv.errors),
            "memory_limit_bytes": inv.memory_limit, "seconds": inv.seconds,
            "files_seen": inv.files_seen,
            "packages": [{**asdict(p), "files": list(p.files)} for p in inv.packages]}


def document(inv: Inventory, fmt: str) -> str:
    import json
    if fmt == "cyclonedx":
        from .cyclonedx import document as cdx
        return cdx(inv)
    if fmt == "json":
        return json.dumps(as_json(inv), indent=1)
    raise ValueError(f"unknown format {fmt!r} (json, cyclonedx)")
