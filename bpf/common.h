/* Shared by every probe family: maps, the in-kernel cgroup filter, the event header.
 *
 * Kernel structs are never dereferenced through the headers (they may be for another
 * kernel). Every offset (TASK_REAL_PARENT, INODE_INO, ...) is a -D constant computed at
 * start from /sys/kernel/btf/vmlinux by agent/sensor/btf.py, and read with the macros below.
 */
#ifndef MAMORI_COMMON_H
#define MAMORI_COMMON_H

#include <uapi/linux/ptrace.h>
#include "events.h"

#define READ_PTR(base, off) ({ u64 __v = 0; \
    bpf_probe_read_kernel(&__v, sizeof(__v), (void *)(base) + (off)); (void *)__v; })
#define READ_U64(base, off) ({ u64 __v = 0; \
    bpf_probe_read_kernel(&__v, sizeof(__v), (void *)(base) + (off)); __v; })
#define READ_U32(base, off) ({ u32 __v = 0; \
    bpf_probe_read_kernel(&__v, sizeof(__v), (void *)(base) + (off)); __v; })
#define READ_U16(base, off) ({ u16 __v = 0; \
    bpf_probe_read_kernel(&__v, sizeof(__v), (void *)(base) + (off)); __v; })

#define S_IFMT_ 0170000
#define S_IFSOCK_ 0140000
#define SIGNAL_GROUP_EXIT_ 0x4
#define MAX_CGROUP_LEVEL 16

/* One ring buffer for every event, consumed in batches (BPF_RB_NO_WAKEUP). */
BPF_RINGBUF_OUTPUT(events, RING_PAGES);

/* Reserve failures (ring full) and in-flight table overflows, per event kind. */
BPF_PERCPU_ARRAY(drop_counts, u64, EV_MAX);

struct mamori_config {
    u32 all_processes;  /* 1: every process on the host is watched */
    u32 generation;     /* bumped by user space whenever watched_cgroups changes */
    u32 self_tgid;      /* the agent itself: never watched */
    u32 congested;      /* 1: user space is falling behind (set by the agent's poller) */
    u32 budget;         /* while congested: bulk events a container may send per window */
    u32 pad;
};
BPF_ARRAY(config, struct mamori_config, 1);

/* cgroup ids (cgroup2 inode numbers) whose processes, and whose descendants' processes,
 * are watched. Filled by user space. */
BPF_HASH(watched_cgroups, u64, u8, 65536);

/* Per-cgroup verdicts, so that a process outside every watched cgroup costs a lookup,
 * not a walk of its ancestors. An entry is valid while its generation matches. */
struct verdict {
    u64 cgroup_id;
    u32 generation;
    u32 watched;
};
BPF_HASH(verdicts, u64, struct verdict, 16384);
/* The last check on each CPU: syscalls come in runs from one task, so most checks end
 * here. Keyed by the task first — reading the task pointer costs far less than reading
 * its cgroup id (measured: ~25 ns against ~55 ns a program, docs/benchmarks.md) — and by
 * the cgroup second, so that another task of the same cgroup still skips the hash. A
 * task-keyed entry is valid while the task epoch is unchanged: bpf/task_epoch.c bumps it
 * whenever a task is created (a task pointer may be reused) or moves to another cgroup. */
struct last_check {
    u64 task;
    u64 epoch;
    u64 cgroup_id;
    u32 generation;
    u32 watched;
};
BPF_PERCPU_ARRAY(last_verdict, struct last_check, 1);
BPF_ARRAY(task_epoch, u64, 1);

/* Syscall arguments kept from sys_enter to sys_exit, per thread. LRU: an entry whose exit
 * never came (a thread killed mid-call, a cgroup unwatched mid-call) is evicted in time. */
struct inflight {
    u64 a[5];
    u32 sys;
    u32 kind;
};
BPF_TABLE("lru_hash", u32, struct inflight, inflight, 32768);

/* Drift prevention. Containers (cgroup ids) whose policy says "prevent drift": an exec there
 * of a program that is not in the image is killed before its first instruction. */
BPF_HASH(drift_enforced, u64, u8, 8192);

/* Overlay inodes, by device and inode number. */
struct inode_key {
    u64 ino;
    u32 dev;
    u32 pad;
};
#ifndef WRITE_TRACKING_ENTRIES
#define WRITE_TRACKING_ENTRIES 65536      /* drift.write_tracking_entries */
#endif
/* Opens for writing, per overlay inode, in watched containers (counted in the kernel). A
 * plain hash, not an LRU: an evicted count would make a written file look unwritten. */
BPF_HASH(inode_writes, struct inode_key, u64, WRITE_TRACKING_ENTRIES);
/* Copy-ups user space found unchanged from the image: inode -> its inode_writes count and
 * its ctime when user space compared the contents. Valid only while no open for writing
 * came after and the ctime has not moved: a write through a descriptor that was already
 * open, or any change of contents or times, moves it, and the writer cannot set it back. */
struct verified {
    u64 writes;
    u64 ctime_ns;
};
BPF_HASH(copyup_verified, struct inode_key, struct verified, WRITE_TRACKING_ENTRIES);

static __always_inline u64 inode_ctime_ns(void *inode)
{
    return READ_U64(inode, INODE_CTIME_SEC) * 1000000000ULL + READ_U32(inode, INODE_CTIME_NSEC);
}
/* Overlay devices (a container's root) on which a write could not be counted because
 * inode_writes was full: dev -> {writes not counted, cgroup of the last writer}. Every
 * copied-up file there without a count is then taken as written (fail closed), and the
 * agent alerts. Should this map fill too, writes_uncounted_any makes that node-wide. */
struct uncounted {
    u64 writes;
    u64 cgroup_id;
};
BPF_HASH(writes_uncounted, u32, struct uncounted, 4096);
BPF_ARRAY(writes_uncounted_any, u64, 1);

/* Watched cgroups in which a process set up an io_uring (its file operations are not traced
 * one by one): cgroup id -> set-ups. */
BPF_HASH(uring_cgroups, u64, u64, 8192);

static __always_inline void uring_mark(void)
{
    u64 cg = bpf_get_current_cgroup_id(), one = 1;
    u64 *n = uring_cgroups.lookup(&cg);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        uring_cgroups.update(&cg, &one);
}

static __always_inline int writes_uncounted_on(u32 dev)
{
    int zero = 0;
    u64 *any = writes_uncounted_any.lookup(&zero);
    return (any && *any) || writes_uncounted.lookup(&dev) != 0;
}

#define OVERLAYFS_MAGIC_ 0x794c7630
#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6
#define HUGETLBFS_MAGIC_ 0x958458f6

/* The same drops by cgroup, so the agent can say whose events were lost. */
BPF_HASH(drop_cgroups, u64, u64, 4096);

static __always_inline void count_drop(u32 kind)
{
    u64 *n = drop_counts.lookup(&kind);
    if (n)
        *n += 1;
    u64 cg = bpf_get_current_cgroup_id(), one = 1;
    u64 *c = drop_cgroups.lookup(&cg);
    if (c)
        __sync_fetch_and_add(c, 1);
    else
        drop_cgroups.update(&cg, &one);
}

/* Per-container budgets. While user space says it is falling behind (config.congested),
 * each container may send `budget` bulk events (read-only opens, connects, accepts: what a
 * flood is made of) per BUDGET_WINDOW_NS; past that its bulk events are shed, counted per
 * kind and per cgroup, and the agent alerts naming the container. Everything else — exec,
 * fork, exit, privilege calls, signals, writes, unlinks, renames, chmods, mkdirs, time
 * changes — is never shed: that is the ring's reserved share. Not congested, this costs
 * one compare. */
#define BUDGET_WINDOW_NS 100000000ULL
struct budget {
    u64 window;
    u64 count;
};
BPF_TABLE("lru_hash", u64, struct budget, budgets, 16384);
BPF_PERCPU_ARRAY(shed_counts, u64, EV_MAX);
BPF_HASH(shed_cgroups, u64, u64, 4096);

static __always_inline int shed(u32 kind)
{
    int zero = 0;
    struct mamori_config *c = config.lookup(&zero);
    if (!c || !c->congested)
        return 0;
    u64 cg = bpf_get_current_cgroup_id();
    u64 window = bpf_ktime_get_ns() / BUDGET_WINDOW_NS;
    struct budget *b = budgets.lookup(&cg);
    if (!b) {
        struct budget nb = {.window = window, .count = 1};
        budgets.update(&cg, &nb);
        return 0;
    }
    if (b->window != window) {
        b->window = window;
        b->count = 0;
    }
    if (++b->count <= c->budget)
        return 0;
    u64 *n = shed_counts.lookup(&kind);
    if (n)
        *n += 1;
    u64 one = 1;
    u64 *per = shed_cgroups.lookup(&cg);
    if (per)
        __sync_fetch_and_add(per, 1);
    else
        shed_cgroups.update(&cg, &one);
    return 1;
}

static __always_inline u32 verdict_of(u64 cg, u32 generation)
{
    struct verdict *v = verdicts.lookup(&cg);
    if (v && v->generation == generation)
        return v->watched;
    u32 w = 0;
    if (watched_cgroups.lookup(&cg)) {
        w = 1;
    } else {
        for (int lvl = 0; lvl < MAX_CGROUP_LEVEL; lvl++) {
            u64 a = bpf_get_current_ancestor_cgroup_id(lvl);
            if (a == 0 || a == cg)
                break;
            if (watched_cgroups.lookup(&a)) {
                w = 1;
                break;
            }
        }
    }
    struct verdict nv = {.cgroup_id = cg, .generation = generation, .watched = w};
    verdicts.update(&cg, &nv);
    return w;
}

/* Is the current process one the agent watches? The in-kernel filter: called first by
 * every program, so that the rest of the host pays a task-pointer read and a compare. */
static __always_inline int is_watched(void)
{
    int zero = 0;
    struct mamori_config *c = config.lookup(&zero);
    if (!c)
        return 0;
    u32 w;
    if (c->all_processes) {
        w = 1;
    } else {
        u64 task = bpf_get_current_task();
        u64 *ep = task_epoch.lookup(&zero);
        u64 epoch = ep ? *ep : 0;
        struct last_check *last = last_verdict.lookup(&zero);
        if (!last)
            return 0;
        if (last->task == task && last->epoch == epoch && last->generation == c->generation) {
            w = last->watched;
        } else {
            u64 cg = bpf_get_current_cgroup_id();
            if (last->cgroup_id == cg && last->generation == c->generation)
                w = last->watched;
            else
                w = verdict_of(cg, c->generation);
            last->task = task;
            last->epoch = epoch;
            last->cgroup_id = cg;
            last->generation = c->generation;
            last->watched = w;
        }
    }
    if (w && (bpf_get_current_pid_tgid() >> 32) == c->self_tgid)
        return 0;
    return w;
}

static __always_inline void fill_hdr(struct event_hdr *h, u32 kind)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    void *task = (void *)bpf_get_current_task();

    h->ts_ns = bpf_ktime_get_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->kind = kind;
    h->pid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    h->flags = 0;

    void *parent = READ_PTR(task, TASK_REAL_PARENT);
    h->ppid = READ_U32(parent, TASK_TGID);

    void *nsproxy = READ_PTR(task, TASK_NSPROXY);
    void *mntns = READ_PTR(nsproxy, NSPROXY_MNT_NS);
    h->mntns = mntns ? READ_U32(mntns, MNTNS_INUM) : 0;

    /* pid as seen in the process's own pid namespace: the group leader's number at the
     * deepest level of its struct pid. */
    void *leader = READ_PTR(task, TASK_GROUP_LEADER);
    void *pid = READ_PTR(leader, TASK_THREAD_PID);
    u32 level = READ_U32(pid, PID_LEVEL) & 31;
    void *upid = pid + PID_NUMBERS + level * UPID_SIZE;
    h->vpid = READ_U32(upid, UPID_NR);
    void *pidns = READ_PTR(upid, UPID_NS);
    h->pidns = pidns ? READ_U32(pidns, PIDNS_INUM) : 0;

    bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Keep a syscall's arguments until its exit. */
static __always_inline void stash(u32 kind, u32 sys, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct inflight v = {.a = {a0, a1, a2, a3, a4}, .sys = sys, .kind = kind};
    if (inflight.update(&tid, &v) != 0)
        count_drop(kind);
}

/* At a syscall's exit: the arguments kept at its entry, for a watched process, or NULL.
 * The caller deletes the entry with inflight.delete(tid) when done. */
static __always_inline struct inflight *inflight_at_exit(u32 *tid)
{
    if (!is_watched())
        return 0;
    *tid = (u32)bpf_get_current_pid_tgid();
    return inflight.lookup(tid);
}

/* Members that lie close together in a kernel struct (they do on 6.x) are read with one probe
 * read of their span — each read costs ~40 ns on the hot paths — else one by one. All
 * offsets are -D constants, so the choice is made at compile time. */
#define MIN2_(a, b) ((a) < (b) ? (a) : (b))
#define MAX2_(a, b) ((a) > (b) ? (a) : (b))
#define AT_(buf, lo, off, type) (*(type *)((char *)(buf) + ((off) - (lo))))

/* The struct file behind a descriptor of the task, or NULL; the fdtable's size and array are
 * read together. */
#define FDT_LO_ MIN2_(FDT_MAX_FDS, FDT_FD)
#define FDT_HI_ MAX2_(FDT_MAX_FDS, FDT_FD)
static __always_inline void *file_of_fd(void *task, s64 fd)
{
    void *files = READ_PTR(task, TASK_FILES);
    if (!files || fd < 0)
        return 0;
    void *fdt = READ_PTR(files, FILES_FDT);
#if FDT_HI_ - FDT_LO_ <= 16
    u64 b[(FDT_HI_ - FDT_LO_) / 8 + 1] = {};
    bpf_probe_read_kernel(b, FDT_HI_ - FDT_LO_ + 8, fdt + FDT_LO_);
    u32 max = AT_(b, FDT_LO_, FDT_MAX_FDS, u32);
    void *fdarr = AT_(b, FDT_LO_, FDT_FD, void *);
#else
    u32 max = READ_U32(fdt, FDT_MAX_FDS);
    void *fdarr = READ_PTR(fdt, FDT_FD);
#endif
    if (fd >= max)
        return 0;
    return READ_PTR(fdarr, (fd & 0xffffff) * 8);
}


/* Paths the kernel resolved, as text. A dentry walk written leaf first from the end of a
 * per-CPU scratch buffer, so that the finished path lies at its end and a path too long for
 * RPATH_LEN keeps its end (the file itself, not the padding before it). The walk crosses
 * mounts up to the root of the process's mount namespace (a container's path inside the
 * container) and is bounded: RPATH_DEPTH steps, one per dentry or mount crossed. Every
 * offset into the buffer is masked into its half, so the verifier sees each copy in
 * bounds whatever a name's length. */
struct path_scratch {
    char b[RPATH_LEN * 2];
};

/* A dentry walk at the root of its mount: step to the mountpoint in the parent mount.
 * Returns 0 at the root of the mount namespace (nothing above), 1 when it crossed. Shared by
 * path_str and the exec probe's path_of (bpf/process.c). */
static __always_inline int cross_mount(void **dentry, void **mnt, void **mnt_root)
{
    void *parent_mnt = READ_PTR(*mnt, MOUNT_PARENT);
    if (!parent_mnt || parent_mnt == *mnt)
        return 0;
    *dentry = READ_PTR(*mnt, MOUNT_MOUNTPOINT);
    *mnt = parent_mnt;
    *mnt_root = READ_PTR(parent_mnt + MOUNT_MNT, VFSMOUNT_ROOT);
    return 1;
}
BPF_PERCPU_ARRAY(path_scratch, struct path_scratch, 1);

#define PS_OK 1
#define PS_TRUNC 2
#define NAME_MAX_MASK_ 255

/* Write the path of (dentry, vfsmnt) to out (RPATH_LEN bytes, NUL-terminated) and its
 * length with the NUL to *len. Returns 0 (out and *len untouched) when there is no path to
 * a root (a pipe, a socket, an anonymous inode, a detached tree), else PS_OK, with PS_TRUNC
 * when only its end fitted. */
static __always_inline u32 path_str(void *dentry, void *vfsmnt, char *out, u32 *len)
{
    int zero = 0;
    struct path_scratch *sc = path_scratch.lookup(&zero);
    if (!sc || !dentry || !vfsmnt)
        return 0;
    u32 pos = RPATH_LEN - 1, res = PS_OK;
    sc->b[RPATH_LEN - 1] = 0;
    void *mnt = vfsmnt - MOUNT_MNT;
    void *mnt_root = READ_PTR(vfsmnt, VFSMOUNT_ROOT);
    int i;
    for (i = 0; i < RPATH_DEPTH; i++) {
        if (dentry == mnt_root) {
            if (!cross_mount(&dentry, &mnt, &mnt_root))
                break;                          /* the namespace's root */
            continue;
        }
        void *parent = READ_PTR(dentry, DENTRY_PARENT);
        if (!parent || parent == dentry)
            return 0;                           /* no path to a root */
        u32 len = READ_U32(dentry, DENTRY_NAME_LEN);
        if (len + 1 > pos) {
            res |= PS_TRUNC;                    /* this name does not fit: keep what does */
            break;
        }
        pos = (pos - len) & (RPATH_LEN - 1);
        bpf_probe_read_kernel(&sc->b[pos], len & NAME_MAX_MASK_,
                              READ_PTR(dentry, DENTRY_NAME_PTR));
        pos = (pos - 1) & (RPATH_LEN - 1);
        sc->b[pos] = '/';
        dentry = parent;
    }
    if (i == RPATH_DEPTH)
        res |= PS_TRUNC;
    if (pos == RPATH_LEN - 1) {
        pos -= 1;
        sc->b[pos & (RPATH_LEN - 1)] = '/';    /* the root itself */
    }
    bpf_probe_read_kernel(out, RPATH_LEN, &sc->b[pos & (RPATH_LEN - 1)]);
    *len = RPATH_LEN - pos;
    return res;
}

/* The path (dentry and mount) of the file behind fd of the current task, or 0. */
static __always_inline int fd_path(void *task, s64 fd, void **dentry, void **mnt)
{
    void *file = file_of_fd(task, fd);
    if (!file)
        return 0;
    *dentry = READ_PTR(file, FILE_PATH_DENTRY);
    *mnt = READ_PTR(file, FILE_PATH_MNT);
    return 1;
}

#define AT_FDCWD_ -100

/* The directory a path passed to a *at() syscall starts from: the process's root for an
 * absolute path, its working directory for a relative one with AT_FDCWD, else dirfd's
 * directory. User space joins the requested path to it. */
static __always_inline int base_path(void *task, const char *requested, s32 dirfd,
                                     void **dentry, void **mnt)
{
    if (requested[0] != '/' && dirfd != AT_FDCWD_)
        return fd_path(task, dirfd, dentry, mnt);
    void *fs = READ_PTR(task, TASK_FS);
    if (!fs)
        return 0;
    int root = requested[0] == '/';
    *dentry = READ_PTR(fs, root ? FS_ROOT_DENTRY : FS_PWD_DENTRY);
    *mnt = READ_PTR(fs, root ? FS_ROOT_MNT : FS_PWD_MNT);
    return 1;
}

#endif
