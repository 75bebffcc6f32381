"""Issue 21, finding 8: io_uring does file operations without the syscalls the probes trace.
Opening and patching an image binary through io_uring raised no file event and did not
count as a write, and the patched binary ran un-prevented. Now io_uring set-up is an event
(`io_uring`, with io_uring.entries and io_uring.flags) and a default rule; and in an
enforced container that has set one up, a copied-up image file that user space has not
verified is drift (its writes may not have been seen)."""
from __future__ import annotations


import pytest

from testbed.image import build_image_with_programs

KILLED = 137
URING = "io_uring set up in a container"
MODIFIED = "Drift - modified image program run"
PROBE = "/usr/local/bin/probe"

# uring-patch PATH OFFSET: with the raw io_uring interface (no liburing), IORING_OP_OPENAT
# PATH for writing, then IORING_OP_WRITE one byte "U" at OFFSET: no open(2), no write(2).
# uring-patch PATH read: IORING_OP_OPENAT PATH for reading, and exit.
URING_PATCH = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int ring, *head_c, *tail_s, *mask_s, *array, *head_cq, *tail_cq, *mask_cq;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;

static int run(struct io_uring_sqe *want) {
    unsigned t = *tail_s, i = t & *mask_s;
    sqes[i] = *want;
    array[i] = i;
    __atomic_store_n(tail_s, t + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        return -1000;
    unsigned h = __atomic_load_n(head_cq, __ATOMIC_ACQUIRE);
    int res = cqes[h & *mask_cq].res;
    __atomic_store_n(head_cq, h + 1, __ATOMIC_RELEASE);
    return res;
}

int main(int argc, char **argv) {
    if (argc != 3) return 64;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    ring = syscall(__NR_io_uring_setup, 4, &p);
    if (ring < 0) return 65;
    size_t sl = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cl = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(0, sl > cl ? sl : cl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    ring, IORING_OFF_SQ_RING);
    char *cq = (p.features & IORING_FEAT_SINGLE_MMAP) ? sq :
        mmap(0, cl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
    sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) return 66;
    tail_s = (int *)(sq + p.sq_off.tail); mask_s = (int *)(sq + p.sq_off.ring_mask);
    array = (int *)(sq + p.sq_off.array); head_c = (int *)(sq + p.sq_off.head);
    head_cq = (int *)(cq + p.cq_off.head); tail_cq = (int *)(cq + p.cq_off.tail);
    mask_cq = (int *)(cq + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    struct io_uring_sqe op;
    memset(&op, 0, sizeof op);
    op.opcode = IORING_OP_OPENAT;
    op.fd = AT_FDCWD;
    op.addr = (unsigned long)argv[1];
    int reading = !strcmp(argv[2], "read");           /* uring-patch PATH read: only open */
    op.open_flags = reading ? O_RDONLY : O_WRONLY;
    int fd = run(&op);
    if (fd < 0) return 67;
    if (reading) return 0;
    memset(&op, 0, sizeof op);
    op.opcode = IORING_OP_WRITE;
    op.fd = fd;
    op.addr = (unsigned long)"U";
    op.len = 1;
    op.off = atol(argv[2]);
    return run(&op) == 1 ? 0 : 68;
}
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The test image, with the io_uring patcher in it (a program of the image)."""
    return build_image_with_programs(str(tmp_path_factory.mktemp("uringimage")),
                                     {"/usr/local/bin/uring-patch": URING_PATCH})


def _exists(c, path):
    return c.sh(f"test -e {path}", check=False).returncode == 0


def test_an_image_binary_patched_through_io_uring_never_runs(agent_factory, containers):
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    image_bytes = c.exec("cat", PROBE).stdout
    at = image_bytes.find(b"usage: probe")
    m = agent.mark()
    r = c.exec("/usr/local/bin/uring-patch", PROBE, str(at), check=False)
    assert r.returncode == 0, r
    assert c.exec("cat", PROBE).stdout[at:at + 12] == b"Usage: probe"
    u = agent.wait_for(URING, c.id, since=m)
    f = u["fields"]
    assert (f["event.kind"], f["event.syscall"], f["io_uring.entries"], f["proc.exe"]) == (
        "io_uring", "io_uring_setup", 4, "/usr/local/bin/uring-patch")
    assert f["io_uring.flags"] == [] and f["event.result"] >= 3      # the ring's fd
    # the io_uring open is an open event, resolved from its descriptor, and a write
    w = agent.wait_for("Write below a binary directory", c.id, since=m)
    f = w["fields"]
    assert (f["event.syscall"], f["file.path"], f["file.resolved"], f["file.flags"]) == (
        "io_uring_openat", PROBE, True, ["O_WRONLY", "O_LARGEFILE"])  # io_uring adds it
    r = c.exec(PROBE, "touch", "/tmp/ran", check=False)
    assert r.returncode == KILLED, r                   # before: it ran
    assert not _exists(c, "/tmp/ran")
    d = agent.wait_for(MODIFIED, c.id, since=m)
    assert (d["fields"]["proc.exe"], d["fields"]["drift.prevented"]) == (PROBE, True)


def test_a_file_read_through_io_uring_raises_the_file_rules(agent_factory, containers):
    """IORING_OP_OPENAT of the shadow file, spelled //etc/./shadow: no open(2) at all, and
    still the shadow rule, with the path the kernel opened."""
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    r = c.exec("/usr/local/bin/uring-patch", "//etc/./shadow", "read", check=False)
    assert r.returncode == 0, r
    a = agent.wait_for("Shadow file read in a container", c.id, since=m)
    f = a["fields"]
    assert (f["event.syscall"], f["file.path"], f["file.resolved"], f["file.fd"]) == (
        "io_uring_openat", "/etc/shadow", True, -100)
    assert (f["file.requested_path"], f["event.result"] >= 0) == ("", True)


def test_without_io_uring_a_chmod_copy_up_still_runs(agent_factory, containers):
    """The fail-closed rule is for containers that set up io_uring, not for every one."""
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    m = agent.mark()
    c.sh(f"chmod 755 {PROBE}")
    r = c.exec(PROBE, "touch", "/tmp/ran", check=False)
    assert r.returncode == 0 and _exists(c, "/tmp/ran"), r
    agent.assert_none(URING, c.id, since=m, wait=0.5)
