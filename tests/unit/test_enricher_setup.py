"""The runtime re-executing itself inside a container's cgroup (runc's cloned binary, after
the move) stays the runtime's setup — decided from the kernel's mount namespace of the exec,
which a container's own processes never have — and every other exec there is the
workload's."""
from agent.context.containers import ContainerInfo, RootFS
from agent.context.enricher import Enricher
from agent.context.process_tree import ProcessTree
from agent.sensor.events import ExecEvent, ForkEvent, PrivEvent

HOST_MNT, CONTAINER_MNT, OTHER_MNT = 4026531841, 4026532500, 4026532999
HOST_CG, CONTAINER_CG = 9, 50
INFO = ContainerInfo("c1", "runc", "/mamori-test/c1",
                     rootfs=RootFS("overlay", ("/l",), "/u"))


class Registry:
    """Cgroup 50 is container c1; the rest is the host."""
    def lookup(self, cgroup_id, pid=None):
        return INFO if cgroup_id == CONTAINER_CG else None

    def refresh_rootfs(self, c, pid):
        return c


def _hdr(kind, pid, ppid, cg, mnt):
    return (kind, 0, pid, pid, ppid, pid, 0, 0, "runc:[1:CHILD]", cg, 7, mnt)


def fork(parent, child, cg, mnt):
    return tuple.__new__(ForkEvent, _hdr("fork", parent, 1, cg, mnt) + (child, 0))


def exec_(pid, ppid, cg, mnt, exe="/", args=("runc", "init")):
    return tuple.__new__(ExecEvent, _hdr("exec", pid, ppid, cg, mnt) + (
        exe, 1, 1, "overlay", 1, False, False, False, True, False, exe, tuple(args), False,
        "pipe", "pipe", "pipe", "", None, 0, 1000, 1000))


def mount(pid, cg, mnt):
    return tuple.__new__(PrivEvent, _hdr("mount", pid, 1, cg, mnt) + ("mount", 0, None, ()))


def _enricher(moved):
    e = Enricher(ProcessTree(), Registry())
    e.host_mntns = HOST_MNT
    e.attached = moved.get
    return e


def test_the_runtime_re_executing_itself_in_the_host_mount_namespace_stays_setup():
    e = _enricher({700: (CONTAINER_CG, HOST_CG)})        # runc on the host moved 700 in
    e.enrich(fork(600, 700, HOST_CG, HOST_MNT))           # runc forks its init on the host
    assert e.enrich(exec_(700, 600, CONTAINER_CG, HOST_MNT)).runtime_setup is True
    assert e.enrich(mount(700, CONTAINER_CG, HOST_MNT)).runtime_setup is True
    # its exec of the container's program, in the container's mount namespace: the workload
    work = e.enrich(exec_(700, 600, CONTAINER_CG, CONTAINER_MNT, "/bin/sh", ("sh",)))
    assert work.runtime_setup is False
    assert e.enrich(mount(700, CONTAINER_CG, CONTAINER_MNT)).runtime_setup is False


def test_an_exec_in_any_other_mount_namespace_is_the_workload():
    e = _enricher({701: (CONTAINER_CG, HOST_CG)})
    e.enrich(fork(600, 701, HOST_CG, HOST_MNT))
    # moved in from outside, but its own (unshared) mount namespace: not the host's
    assert e.enrich(exec_(701, 600, CONTAINER_CG, OTHER_MNT)).runtime_setup is False


def test_a_container_process_in_the_host_mount_namespace_is_not_setup_by_that_alone():
    e = _enricher({702: (CONTAINER_CG, CONTAINER_CG)})    # moved by the container itself
    assert e.enrich(exec_(702, 1, CONTAINER_CG, HOST_MNT)).runtime_setup is False


def test_the_runtime_first_seen_at_its_own_exec_is_setup():
    """runc exec's init whose fork was not seen: the table learns of it from the exec."""
    e = _enricher({703: (CONTAINER_CG, HOST_CG)})
    assert e.enrich(exec_(703, 600, CONTAINER_CG, HOST_MNT, "/usr/sbin/runc")).runtime_setup
    assert e.enrich(mount(703, CONTAINER_CG, HOST_MNT)).runtime_setup is True
