"""The node's image inventories, one per image, kept in memory by the agent.

An image is known by its key: its image id or digest when the runtime's annotations or the
pod status give it ("sha256:…"), else its overlay lower-layer chain ("layers:" + a sha256
of the lowerdir paths, top first) — the same image started twice shares its layers. A
container whose root is not an overlay has only itself ("root:" + container id).

States: pending (queued or being read), done, too_large (the child hit the memory or time
limit: `limit` says which was in force), failed (the child died another way: `reason`).
Inventories no container uses any more are kept (an image often starts again) up to
max_images, the longest unused first out. Thread-safe: the worker writes, the API reads."""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

from .package import OSRelease, Package

PENDING, DONE, TOO_LARGE, FAILED = "pending", "done", "too_large", "failed"


def image_key(image_id: str, lowerdirs, container_id: str) -> str:
    if image_id:
        return image_id
    if lowerdirs:
        return "layers:" + hashlib.sha256("\n".join(lowerdirs).encode()).hexdigest()[:32]
    return "root:" + container_id


@dataclass
class Inventory:
    key: str
    image: str = ""                    # the image's name as the runtime gave it
    image_id: str = ""
    layers: tuple[str, ...] = ()       # lower dirs read (top first), or ("/proc/PID/root",)
    state: str = PENDING
    os: OSRelease = field(default_factory=OSRelease)
    packages: tuple[Package, ...] = ()
    errors: tuple[str, ...] = ()       # per source: "path:line: what"
    reason: str = ""                   # too_large / failed: why
    memory_limit: int = 0              # bytes in force for the last attempt
    time_limit_s: float = 0.0
    files_seen: int = 0
    seconds: float = 0.0               # how long the last attempt took
    attempts: int = 0
    made_at: float = 0.0               # wall clock of the last finished attempt
    containers: set = field(default_factory=set)
    source: dict = field(default_factory=dict, repr=False)   # what the child reads
    last_used: float = field(default_factory=time.monotonic)


class InventoryStore:
    def __init__(self, max_images: int = 512):
        self.max_images = max_images
        self._lock = threading.Lock()
        self._by_key: dict[str, Inventory] = {}
        self._key_of: dict[str, str] = {}        # container id -> image key

    def get(self, key: str) -> Inventory | None:
        with self._lock:
            return self._by_key.get(key)

    def add_container(self, key: str, container_id: str, **describe) -> tuple[Inventory, bool]:
        """The inventory of key with this container added; (inventory, made now)."""
        with self._lock:
            inv = self._by_key.get(key)
            new = inv is None
            if new:
                inv = self._by_key[key] = Inventory(key=key, **describe)
                self._evict()
            else:
                for k, v in describe.items():
                    if v and not getattr(inv, k):
                        setattr(inv, k, v)
            inv.containers.add(container_id)
            inv.last_used = time.monotonic()
            self._key_of[container_id] = key
            return inv, new

    def remove_container(self, container_id: str) -> None:
        with self._lock:
            key = self._key_of.pop(container_id, None)
            inv = self._by_key.get(key) if key else None
            if inv is not None:
                inv.containers.discard(container_id)
                inv.last_used = time.monotonic()

    def update(self, key: str, **values) -> None:
        with self._lock:
            inv = self._by_key.get(key)
            if inv is not None:
                for k, v in values.items():
                    setattr(inv, k, v)

    def all(self) -> list[Inventory]:
        with self._lock:
            return list(self._by_key.values())

    def find(self, what: str) -> Inventory | None:
        """By key, image id, image name, or a unique prefix of the key."""
        with self._lock:
            invs = list(self._by_key.values())
        for inv in invs:
            if what in (inv.key, inv.image_id, inv.image):
                return inv
        hits = [i for i in invs if i.key.startswith(what) or
                i.key.split(":", 1)[-1].startswith(what)]
        return hits[0] if len(hits) == 1 else None

    def _evict(self) -> None:
        while len(self._by_key) > self.max_images:
            idle = [i for i in self._by_key.values() if not i.containers]
            if not idle:
                return
            del self._by_key[min(idle, key=lambda i: i.last_used).key]
