/* Cgroup family: every cgroup made or removed (id, level, path), the moment the runtime
 * does it, so that container discovery needs no polling. Not filtered: the runtime that
 * makes a container's cgroup is itself outside it. Only the cgroup2 hierarchy is reported
 * (hierarchy id 0); v1 hierarchies in hybrid mode repeat the same paths. */
#include "common.h"

static __always_inline int cgroup_event(u32 kind, int root, int level, u64 id,
                                        u32 data_loc, void *args)
{
    if (root != 0)
        return 0;
    struct cgroup_event *e = events.ringbuf_reserve(sizeof(struct cgroup_event));
    if (!e) {
        count_drop(kind);
        return 0;
    }
    fill_hdr(&e->hdr, kind);
    e->id = id;
    e->root = root;
    e->level = level;
    if (bpf_probe_read_kernel_str(e->path, CGROUP_PATH_LEN, args + (data_loc & 0xFFFF)) ==
        CGROUP_PATH_LEN)
        e->hdr.flags |= F_TRUNC_PATH;
    events.ringbuf_submit(e, 0);   /* rare: wake the consumer at once */
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    return cgroup_event(EV_CGROUP_MKDIR, args->root, args->level, args->id,
                        args->data_loc_path, args);
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    return cgroup_event(EV_CGROUP_RMDIR, args->root, args->level, args->id,
                        args->data_loc_path, args);
}
