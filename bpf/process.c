/* Process family: exec (the real binary from bprm->file), fork, exit. */
#include "common.h"

/* The kind of file behind one of the new program's fds 0..2 (mode and rdev; 0 if closed). */
static __always_inline void fd_identity(void *task, int fd, u32 *mode, u32 *rdev)
{
    void *file = file_of_fd(task, fd);
    if (!file) {
        *mode = 0;
        *rdev = 0;
        return;
    }
    void *inode = READ_PTR(file, FILE_INODE);
    *mode = READ_U16(inode, INODE_MODE);
    *rdev = READ_U32(inode, INODE_RDEV);
}

/* Walk the executable's dentries up to the root of its mount namespace, crossing mounts,
 * and store the names leaf first. The path is the one the process's own namespace sees:
 * for a container, the path inside the container. Slot i is written in iteration i (a
 * mount crossing leaves its slot empty): indexing by the loop counter keeps the verifier's
 * work linear in PATH_DEPTH. */
static __always_inline void exe_path(struct exec_event *e, void *file)
{
    void *dentry = READ_PTR(file, FILE_PATH_DENTRY);
    void *vfsmnt = READ_PTR(file, FILE_PATH_MNT);
    void *mnt = vfsmnt - MOUNT_MNT;
    void *mnt_root = READ_PTR(vfsmnt, VFSMOUNT_ROOT);
    int i;

    for (i = 0; i < PATH_DEPTH; i++) {
        if (dentry == mnt_root) {
            void *parent_mnt = READ_PTR(mnt, MOUNT_PARENT);
            if (!parent_mnt || parent_mnt == mnt)
                break;
            dentry = READ_PTR(mnt, MOUNT_MOUNTPOINT);
            mnt = parent_mnt;
            mnt_root = READ_PTR(mnt + MOUNT_MNT, VFSMOUNT_ROOT);
            e->comps[i][0] = 0;
            continue;
        }
        void *name = READ_PTR(dentry, DENTRY_NAME_PTR);
        bpf_probe_read_kernel_str(e->comps[i], NAME_LEN, name);
        void *parent = READ_PTR(dentry, DENTRY_PARENT);
        if (!parent || parent == dentry) {
            /* a pseudo file (memfd, anonymous) or a detached tree: no path to the root */
            e->hdr.flags |= F_EXE_UNREACHABLE;
            i++;
            break;
        }
        dentry = parent;
    }
    if (i == PATH_DEPTH)
        e->hdr.flags |= F_TRUNC_PATH;
    e->depth = i;
}

/* Which overlay layers an inode is in (OVL_UPPER, OVL_LOWER); 0 if not on overlayfs. */
static __always_inline u32 ovl_layers(void *inode, u32 fs_magic)
{
#ifdef HAVE_OVL
    if (fs_magic != OVERLAYFS_MAGIC_)
        return 0;
    void *oi = inode - OVL_INODE_VFS;
    void *upper = READ_PTR(oi, OVL_INODE_UPPER);
    void *oe = READ_PTR(oi, OVL_INODE_OE);
    u32 numlower = oe ? READ_U32(oe, OVL_ENTRY_NUMLOWER) : 0;
    return (upper ? OVL_UPPER : 0) | (numlower ? OVL_LOWER : 0);
#else
    return 0;
#endif
}

/* Is this program drift that the kernel can decide on alone? Not in the image's layers
 * (upper only), possibly modified (an upper copy opened for writing since it was copied up
 * and not found unchanged by user space since), on tmpfs, or deleted. A memfd lives on
 * tmpfs (or hugetlbfs) and has no links: it is caught by both. */
static __always_inline int is_drift(void *inode, void *file, u64 ino, u32 dev, u32 fs_magic,
                                    u32 nlink, u32 ovl)
{
    if (nlink == 0)
        return 1;
    if (fs_magic == TMPFS_MAGIC_ || fs_magic == RAMFS_MAGIC_ || fs_magic == HUGETLBFS_MAGIC_)
        return 1;
    if (fs_magic != OVERLAYFS_MAGIC_ || !(ovl & OVL_UPPER))
        return 0;
    if (!(ovl & OVL_LOWER))
        return 1;
    /* in the image and copied up: unchanged unless opened for writing since the copy-up
     * (or since user space last found it unchanged) */
    struct inode_key k = {.ino = ino, .dev = dev};
    u64 *verified = copyup_verified.lookup(&k);
    u64 *writes = inode_writes.lookup(&k);
    return (verified ? *verified : 0) != (writes ? *writes : 0);
}

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    void *bprm = (void *)ctx->args[2];
    void *file = READ_PTR(bprm, BPRM_FILE);
    void *inode = READ_PTR(file, FILE_INODE);
    u64 cg = bpf_get_current_cgroup_id();
    u32 prevented = 0;
    if (drift_enforced.lookup(&cg)) {
        void *sb0 = READ_PTR(inode, INODE_SB);
        u32 magic = (u32)READ_U64(sb0, SB_MAGIC);
        u64 ino0 = READ_U64(inode, INODE_INO);
        u32 dev0 = READ_U32(sb0, SB_DEV);
        u32 nlink0 = READ_U32(inode, INODE_NLINK);
        if (is_drift(inode, file, ino0, dev0, magic, nlink0, ovl_layers(inode, magic))) {
            /* before the new program's first instruction: it never runs */
            bpf_send_signal(9);
            prevented = F_PREVENTED;
        }
    }
    if (!is_watched())
        return 0;
    struct exec_event *e = events.ringbuf_reserve(sizeof(struct exec_event));
    if (!e) {
        count_drop(EV_EXEC);
        return 0;
    }
    fill_hdr(&e->hdr, EV_EXEC);
    e->hdr.flags |= prevented;
    void *task = (void *)bpf_get_current_task();

    e->ino = READ_U64(inode, INODE_INO);
    e->mode = READ_U16(inode, INODE_MODE);
    e->nlink = READ_U32(inode, INODE_NLINK);
    void *sb = READ_PTR(inode, INODE_SB);
    e->dev = READ_U32(sb, SB_DEV);
    e->fs_magic = (u32)READ_U64(sb, SB_MAGIC);
    e->ovl = ovl_layers(inode, e->fs_magic);
    e->pad = 0;

    void *filename = READ_PTR(bprm, BPRM_FILENAME);
    if (bpf_probe_read_kernel_str(e->filename, PATH_LEN, filename) < 0)
        e->filename[0] = 0;

    exe_path(e, file);

    fd_identity(task, 0, &e->fd_mode[0], &e->fd_rdev[0]);
    fd_identity(task, 1, &e->fd_mode[1], &e->fd_rdev[1]);
    fd_identity(task, 2, &e->fd_mode[2], &e->fd_rdev[2]);

    /* argv as the new program sees it: NUL-separated on its stack, arg_start..arg_end. */
    void *mm = READ_PTR(task, TASK_MM);
    u64 start = READ_U64(mm, MM_ARG_START);
    u64 end = READ_U64(mm, MM_ARG_END);
    u64 len = end > start ? end - start : 0;
    if (len > ARGS_LEN) {
        len = ARGS_LEN;
        e->hdr.flags |= F_TRUNC_ARGS;
    }
    if (len > 0 && bpf_probe_read_user(e->args, len & (2 * ARGS_LEN - 1), (void *)start) < 0)
        len = 0;
    e->args_len = len;

    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    /* args: parent task, child task. Threads (CLONE_THREAD) are not new processes. */
    if (!is_watched())
        return 0;
    void *child = (void *)ctx->args[1];
    u32 child_tid = READ_U32(child, TASK_PID);
    u32 child_tgid = READ_U32(child, TASK_TGID);
    if (child_tid != child_tgid)
        return 0;
    struct fork_event *e = events.ringbuf_reserve(sizeof(struct fork_event));
    if (!e) {
        count_drop(EV_FORK);
        return 0;
    }
    fill_hdr(&e->hdr, EV_FORK);
    e->child_pid = child_tgid;
    e->child_tid = child_tid;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    /* Report the process, not each thread: only when its last thread exits. */
    if (!is_watched())
        return 0;
    void *task = (void *)bpf_get_current_task();
    void *signal = READ_PTR(task, TASK_SIGNAL);
    int live = 0;
    bpf_probe_read_kernel(&live, sizeof(live), signal + SIGNAL_LIVE);
    if (live != 0)
        return 0;
    struct exit_event *e = events.ringbuf_reserve(sizeof(struct exit_event));
    if (!e) {
        count_drop(EV_EXIT);
        return 0;
    }
    fill_hdr(&e->hdr, EV_EXIT);
    u32 code = READ_U32(task, TASK_EXIT_CODE);
    u32 sflags = READ_U32(signal, SIGNAL_FLAGS);
    if (sflags & SIGNAL_GROUP_EXIT_)
        code = READ_U32(signal, SIGNAL_GROUP_EXIT_CODE);
    e->code = code;
    e->threads = READ_U32(signal, SIGNAL_NR_THREADS);
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}
