"""Issue 21, finding 6: drift prevention trusted a copied-up image file it had once found
unchanged. Opened for writing, left alone until the agent hashed the unchanged copy, then
patched in place with the same size and its old mtime restored, the patched binary ran:
the hash cache's key (dev, ino, size, mtime) is the writer's to keep. Now a copy is
re-verified whenever it may have changed — its ctime is in the cache key and in what the
kernel checks at exec, and its writes are counted — never trusted from a key the writer
controls. Both ways of patching are tried: through a second open, and through the very
descriptor that was open while the agent compared."""
from __future__ import annotations

import time

import pytest

from testbed.image import build_image_with_programs

KILLED = 137
MODIFIED = "Drift - modified image program run"
PROBE = "/usr/local/bin/probe"

# patcher reopen|samefd PATH OFFSET: open PATH for writing (a copy-up the agent verifies),
# wait for the agent, then write one byte at OFFSET — through a new open or through that
# same descriptor — and put the old atime and mtime back.
PATCHER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 5) return 64;
    int fd = open(argv[2], O_RDWR);
    if (fd < 0) return 65;
    struct stat st;
    if (fstat(fd, &st)) return 66;
    struct timespec keep[2] = {st.st_atim, st.st_mtim};
    struct timespec wait = {atoi(argv[4]) / 1000, (atoi(argv[4]) % 1000) * 1000000L};
    nanosleep(&wait, 0);                               /* the agent compares the copy now */
    int w = fd;
    if (!strcmp(argv[1], "reopen")) {
        close(fd);
        w = open(argv[2], O_WRONLY);
        if (w < 0) return 67;
    }
    if (pwrite(w, "U", 1, atol(argv[3])) != 1) return 68;
    if (futimens(w, keep)) return 69;
    return close(w) ? 70 : 0;
}
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The test image, with the patcher in it (a program of the image: it may run)."""
    return build_image_with_programs(str(tmp_path_factory.mktemp("patchimage")),
                                     {"/usr/local/bin/patcher": PATCHER})


def _exists(c, path):
    return c.sh(f"test -e {path}", check=False).returncode == 0


@pytest.mark.parametrize("how", ["reopen", "samefd"])
def test_a_copy_patched_after_it_was_verified_is_killed(how, agent_factory, containers):
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    image_bytes = c.exec("cat", PROBE).stdout
    at = image_bytes.find(b"usage: probe")
    before = c.sh(f"stat -c '%s %Y' {PROBE}").stdout
    m = agent.mark()
    r = c.exec("/usr/local/bin/patcher", how, PROBE, str(at), "2500", check=False)
    assert r.returncode == 0, r
    assert c.exec("cat", PROBE).stdout == image_bytes[:at] + b"U" + image_bytes[at + 1:]
    assert c.sh(f"stat -c '%s %Y' {PROBE}").stdout == before      # same size, same mtime
    r = c.exec(PROBE, "touch", "/tmp/ran", check=False)
    assert r.returncode == KILLED, r                               # before: it ran
    assert not _exists(c, "/tmp/ran")
    a = agent.wait_for(MODIFIED, c.id, since=m)
    f = a["fields"]
    assert (f["proc.exe"], f["drift.kind"], f["drift.prevented"]) == (PROBE, "modified", True)


def test_a_copy_opened_for_writing_and_left_unchanged_still_runs(agent_factory, containers):
    """The other side: the same open, no write — verified, and it runs."""
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    m = agent.mark()
    c.sh(f"exec 3<>{PROBE}; sleep 1.5; exec 3>&-")                 # opened, not written
    time.sleep(1)
    r = c.exec(PROBE, "touch", "/tmp/ran", check=False)
    assert r.returncode == 0 and _exists(c, "/tmp/ran"), r
    agent.assert_none(MODIFIED, c.id, since=m, wait=0.5)
