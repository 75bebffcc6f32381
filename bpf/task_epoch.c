/* The filter cache's epoch (common.h, is_watched): bumped whenever a task is created — its
 * task_struct may reuse a freed one's address — or a task moves to another cgroup, so that
 * no per-CPU cache entry keyed by a task pointer outlives what it was computed for. Always
 * loaded, whatever the probe families. Not filtered: these events concern every task.
 *
 * And who moved which task into which cgroup2 cgroup: a container runtime puts its init
 * into the container's cgroup from outside (runc create, runc exec), a workload's processes
 * are forked inside. User space asks this map once per process it first sees in a
 * container to tell the runtime's setup from the workload (agent/context/process_tree.py):
 * facts from the kernel, not names the container could write. */
#include "common.h"

struct attach {
    u64 dst_cgroup;     /* the cgroup2 cgroup the task was moved into */
    u64 mover_cgroup;   /* the cgroup2 cgroup of the task that moved it */
};
BPF_TABLE("lru_hash", u32, struct attach, attaches, 16384);

static __always_inline int bump_epoch(void)
{
    int zero = 0;
    u64 *ep = task_epoch.lookup(&zero);
    if (ep)
        __sync_fetch_and_add(ep, 1);
    return 0;
}

/* Before the child can run: wake_up_new_task comes after this tracepoint. */
TRACEPOINT_PROBE(sched, sched_process_fork) { return bump_epoch(); }

/* cgroup.procs / cgroup.threads writes (runtimes placing a container's init), v1 attach. */
TRACEPOINT_PROBE(cgroup, cgroup_attach_task)
{
    bump_epoch();
    if (args->dst_root != 0)       /* cgroup2 only: v1 hierarchies repeat the same moves */
        return 0;
    u32 pid = args->pid;
    struct attach a = {.dst_cgroup = args->dst_id,
                       .mover_cgroup = bpf_get_current_cgroup_id()};
    attaches.update(&pid, &a);
    return 0;
}

/* cgroup v1's cgroup_transfer_tasks (cpuset hotplug) moves tasks without attach_task. */
TRACEPOINT_PROBE(cgroup, cgroup_transfer_tasks) { return bump_epoch(); }
