"""The inventory reader as its own process: `python -m agent.inventory.child`, one JSON
request on stdin ({"source": {"layers": [...]} or {"pid": N}, "limits": {...},
"memory_limit": bytes}), one JSON line on stdout ({"state": "ok", "result": {...}} or
{"state": "memory"} or {"state": "error", "reason": ...}). It sets RLIMIT_AS on itself
before it reads anything of the image. JSON, not pickle, on the way back: the child reads
what an attacker wrote, so what it returns is data the agent parses, never code it runs."""
from __future__ import annotations

import json
import os
import resource
import sys
from dataclasses import asdict


def _yield_cpu() -> None:
    """Run only when a CPU has nothing else to do (SCHED_IDLE; else the lowest nice): the
    agent's event pipeline is never slowed down by an inventory."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass


def main() -> int:
    _yield_cpu()
    req = json.loads(sys.stdin.buffer.read(1 << 20))
    limit = int(req.get("memory_limit") or 0)
    out = sys.stdout.buffer
    try:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from .extract import extract
        from .rootfs import ImageFS, Limits
        limits = Limits(**req["limits"])
        src = req["source"]
        if src.get("pid"):
            fd = os.open(f"/proc/{int(src['pid'])}/root",
                         os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fs = ImageFS.of_root_fd(fd, limits)
        else:
            fs = ImageFS.of_layers(src["layers"], limits)
        with fs:
            res = extract(fs)
        doc = asdict(res)
        res = None
        data = json.dumps({"state": "ok", "result": doc}).encode()
        doc = None
        out.write(data)
    except MemoryError:
        res = doc = data = None                  # noqa: F841 - free what we can, then say
        out.write(b'{"state": "memory"}')
    except Exception as e:                       # noqa: BLE001 - reported to the agent
        out.write(json.dumps({"state": "error",
                              "reason": f"{type(e).__name__}: {e}"}).encode())
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
