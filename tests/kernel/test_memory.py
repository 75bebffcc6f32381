"""After the probes are compiled, the agent gives the compiler's memory back: its code is
paged out and the heap trimmed; compiling again still works (the pages come back).

The kernel pages out only what no other process maps. In a pod the agent is the only user
of its image's compiler libraries; here the test process has them mapped too (the kernel
tests load the probes in it), so the agent under test runs in its own mount namespace
with private copies of them bound over the originals — as in its own image."""
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json
from bcc import BPF
from agent.memory import release_compiler_memory
from agent.sensor.probes import Sensor

def compiler_rss_kib():
    total, name = 0, ""
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5:
            name = head[5] if len(head) >= 6 else ""
        elif head[0] == "Rss:" and ("libLLVM" in name or "libclang" in name):
            total += int(head[1])
    return total

s = Sensor()
s.start()
before = compiler_rss_kib()
rss = release_compiler_memory()
after = compiler_rss_kib()
b = BPF(text=b"int noop(void *ctx) { return 0; }")
fn = b.load_func(b"noop", BPF.SOCKET_FILTER)
print(json.dumps({"before": before, "after": after, "rss": rss, "recompiled": fn.fd > 0}))
s.close()
"""


def compiler_libraries() -> list[str]:
    r = subprocess.run(["/usr/bin/python3", "-c", "import bcc; print('\\n'.join(sorted({"
                        "l.split()[-1] for l in open('/proc/self/maps') "
                        "if 'libLLVM' in l or 'libclang' in l})))"],
                       capture_output=True, text=True, check=True)
    return [os.path.realpath(p) for p in r.stdout.split()]


def test_compiler_pages_are_released_and_compiling_still_works(tmp_path):
    binds = []
    for i, lib in enumerate(compiler_libraries()):
        copy = tmp_path / f"lib{i}.so"
        shutil.copy2(lib, copy)
        binds.append(f"mount --bind {copy} {lib}")
    assert len(binds) == 2                       # libLLVM and libclang-cpp
    shell = " && ".join(binds + ['exec "$0" -c "$1"'])
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell,
                        sys.executable, SCRIPT], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["before"] > 20 * 1024                # the compiler was resident: > 20 MiB
    assert out["after"] < out["before"] / 4         # and most of it went
    rss_before, rss_after = out["rss"]
    assert rss_before - rss_after > 20 * 1024
    assert out["recompiled"] is True
