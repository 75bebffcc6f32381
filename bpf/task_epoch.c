/* The filter cache's epoch (common.h, is_watched): bumped whenever a task is created — its
 * task_struct may reuse a freed one's address — or a task moves to another cgroup, so that
 * no per-CPU cache entry keyed by a task pointer outlives what it was computed for. Always
 * loaded, whatever the probe families. Not filtered: these events concern every task. */
#include "common.h"

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
TRACEPOINT_PROBE(cgroup, cgroup_attach_task) { return bump_epoch(); }

/* cgroup v1's cgroup_transfer_tasks (cpuset hotplug) moves tasks without attach_task. */
TRACEPOINT_PROBE(cgroup, cgroup_transfer_tasks) { return bump_epoch(); }
