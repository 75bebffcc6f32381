/* Process family: exec (the real binary from bprm->file), fork, exit, and mmap_exec: code
 * mapped executable from a file that is drift (mmap, mprotect, pkey_mprotect, shmat). */
#include "common.h"

/* Drift prevention beyond the root overlay (execs and executable mappings from volumes).
 * For each enforced container whose mounts user space has read (agent/drift/prevention.py):
 * the device of its root overlay, and the mounts (by mount id, as /proc/PID/mountinfo numbers
 * them) that drift.allow_exec_from allows. A container that is not in exec_roots — its
 * mounts not read yet, or its root not an overlay — is judged on its root overlay alone. */
BPF_HASH(exec_roots, u64, u32, 8192);
struct mount_key {
    u64 cgroup_id;
    u32 mnt_id;
    u32 pad;
};
BPF_HASH(exec_allow, struct mount_key, u8, 65536);

#define PROT_READ_ 0x1
#define PROT_EXEC_ 0x4
#define MAP_SHARED_ 0x1
#define MAP_PRIVATE_ 0x2
#define MAP_ANONYMOUS_ 0x20
#define READ_IMPLIES_EXEC_ 0x0400000
#define MNT_NOEXEC_ 0x4
#define VM_EXEC_ 0x4
#define VM_SHARED_ 0x8
#define VM_MAYEXEC_ 0x40
#define SHM_EXEC_ 0100000

/* Members that lie close together in a kernel struct are read with one probe read of their
 * span (MIN2_, MAX2_, AT_ in common.h). */

/* file: f_inode, f_path.mnt, f_path.dentry */
#define FILE_LO_ MIN2_(FILE_INODE, MIN2_(FILE_PATH_MNT, FILE_PATH_DENTRY))
#define FILE_HI_ MAX2_(FILE_INODE, MAX2_(FILE_PATH_MNT, FILE_PATH_DENTRY))
static __always_inline void file_facts(void *file, void **inode, void **mnt, void **dentry)
{
#if FILE_HI_ - FILE_LO_ <= 64
    u64 b[(FILE_HI_ - FILE_LO_) / 8 + 1] = {};
    bpf_probe_read_kernel(b, FILE_HI_ - FILE_LO_ + 8, file + FILE_LO_);
    *inode = AT_(b, FILE_LO_, FILE_INODE, void *);
    *mnt = AT_(b, FILE_LO_, FILE_PATH_MNT, void *);
    *dentry = AT_(b, FILE_LO_, FILE_PATH_DENTRY, void *);
#else
    *inode = READ_PTR(file, FILE_INODE);
    *mnt = READ_PTR(file, FILE_PATH_MNT);
    *dentry = READ_PTR(file, FILE_PATH_DENTRY);
#endif
}

/* inode: i_sb and the link count */
#define INODE_LO_ MIN2_(INODE_SB, INODE_NLINK)
#define INODE_HI_ MAX2_(INODE_SB, INODE_NLINK)
static __always_inline void inode_facts(void *inode, void **sb, u32 *nlink)
{
#if INODE_HI_ - INODE_LO_ <= 64
    u64 b[(INODE_HI_ - INODE_LO_) / 8 + 1] = {};
    bpf_probe_read_kernel(b, INODE_HI_ - INODE_LO_ + 8, inode + INODE_LO_);
    *sb = AT_(b, INODE_LO_, INODE_SB, void *);
    *nlink = AT_(b, INODE_LO_, INODE_NLINK, u32);
#else
    *sb = READ_PTR(inode, INODE_SB);
    *nlink = READ_U32(inode, INODE_NLINK);
#endif
}

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

/* Walk a file's dentries up to the root of its mount namespace, crossing mounts, and store
 * the names leaf first; returns how many slots were used. The path is the one the process's
 * own namespace sees: for a container, the path inside the container. Slot i is written in
 * iteration i (a mount crossing leaves its slot empty): indexing by the loop counter keeps
 * the verifier's work linear in PATH_DEPTH. */
static __always_inline u32 path_of(void *dentry, void *vfsmnt, char (*comps)[NAME_LEN],
                                   u32 *flags)
{
    void *mnt = vfsmnt - MOUNT_MNT;
    void *mnt_root = READ_PTR(vfsmnt, VFSMOUNT_ROOT);
    int i;

    for (i = 0; i < PATH_DEPTH; i++) {
        if (dentry == mnt_root) {
            if (!cross_mount(&dentry, &mnt, &mnt_root))
                break;
            comps[i][0] = 0;
            continue;
        }
        void *name = READ_PTR(dentry, DENTRY_NAME_PTR);
        bpf_probe_read_kernel_str(comps[i], NAME_LEN, name);
        void *parent = READ_PTR(dentry, DENTRY_PARENT);
        if (!parent || parent == dentry) {
            /* a pseudo file (memfd, anonymous) or a detached tree: no path to the root */
            *flags |= F_EXE_UNREACHABLE;
            i++;
            break;
        }
        dentry = parent;
    }
    if (i == PATH_DEPTH)
        *flags |= F_TRUNC_PATH;
    return i;
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

#define S_IFREG_ 0100000
/* fd 0 of the new program when it is a regular file (`sh < script`): its inode, layers and
 * resolved path, so that user space can judge the script without looking at /proc/PID/fd
 * (gone when a short script has already ended). */
static __always_inline void stdin_facts(void *task, struct exec_event *e)
{
    e->stdin_path[0] = 0;
    e->stdin_ino = 0;
    if ((e->fd_mode[0] & S_IFMT_) != S_IFREG_)
        return;
    void *file = file_of_fd(task, 0), *inode, *mnt, *dentry, *sb;
    if (!file)
        return;
    file_facts(file, &inode, &mnt, &dentry);
    inode_facts(inode, &sb, &e->stdin_nlink);
    e->stdin_ino = READ_U64(inode, INODE_INO);
    e->stdin_dev = READ_U32(sb, SB_DEV);
    e->stdin_fs_magic = (u32)READ_U64(sb, SB_MAGIC);
    e->stdin_ovl = ovl_layers(inode, e->stdin_fs_magic);
    u32 len;
    path_str(dentry, mnt, e->stdin_path, &len);
}

/* Is this file drift that the kernel can decide on alone? DRIFT_* bits, 0 if not: not in the
 * image's layers (upper only), possibly modified (an upper copy opened for writing since it
 * was copied up and not found unchanged by user space since), on tmpfs, or deleted. A memfd
 * lives on tmpfs (or hugetlbfs) and has no links: it is caught by both. Reads only what the
 * answer needs: an image file (no upper copy) costs one read and no lookup. */
static __always_inline u32 drift_of(void *inode, void *sb, u32 fs_magic, u32 nlink)
{
    u32 d = 0;
    if (nlink == 0)
        d |= DRIFT_DELETED;
    if (fs_magic == TMPFS_MAGIC_ || fs_magic == RAMFS_MAGIC_ || fs_magic == HUGETLBFS_MAGIC_)
        d |= DRIFT_MEMFS;
#ifdef HAVE_OVL
    if (fs_magic != OVERLAYFS_MAGIC_)
        return d;
    void *oi = inode - OVL_INODE_VFS;
    if (!READ_PTR(oi, OVL_INODE_UPPER))
        return d;                            /* in the image's layers only */
    void *oe = READ_PTR(oi, OVL_INODE_OE);
    if (!oe || !READ_U32(oe, OVL_ENTRY_NUMLOWER))
        return d | DRIFT_UPPER_ONLY;
    /* in the image and copied up: unchanged unless opened for writing since the copy-up
     * (or since user space last found it unchanged) */
    struct inode_key k = {.ino = READ_U64(inode, INODE_INO), .dev = READ_U32(sb, SB_DEV)};
    struct verified *v = copyup_verified.lookup(&k);
    u64 *writes = inode_writes.lookup(&k);
    u64 w = writes ? *writes : 0;
    if (!writes && writes_uncounted_on(k.dev))
        d |= DRIFT_WRITTEN;                 /* its writes may not have been counted */
    else if (v ? (v->writes != w || v->ctime_ns != inode_ctime_ns(inode)) : w != 0)
        d |= DRIFT_WRITTEN;                 /* written since the copy-up or the check */
    else if (!v) {
        u64 cg = bpf_get_current_cgroup_id();
        if (uring_cgroups.lookup(&cg))
            d |= DRIFT_WRITTEN;             /* io_uring may have written it unseen */
    }
#endif
    return d;
}

/* In an enforced container whose mounts user space has read (exec_roots): DRIFT_OTHER_FS for
 * a file that is neither on the container's root overlay (image layers and writable layer
 * alike) nor on a mount the configuration allows. *enforced is set when the container is in
 * exec_roots (so it is enforced), *allowed for a file on an allowed mount. One lookup for a
 * container not in exec_roots and for a file on the root overlay. */
static __always_inline u32 other_fs(u64 cg, void *vfsmnt, void *sb, int *enforced,
                                    int *allowed)
{
    u32 *root = exec_roots.lookup(&cg);
    if (!root)
        return 0;
    *enforced = 1;
    if (READ_U32(sb, SB_DEV) == *root)
        return 0;
    struct mount_key k = {.cgroup_id = cg, .mnt_id = READ_U32(vfsmnt - MOUNT_MNT, MOUNT_ID)};
    if (exec_allow.lookup(&k)) {
        *allowed = 1;
        return 0;
    }
    return DRIFT_OTHER_FS;
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
        int enforced = 1, allowed = 0;
        u32 drift = drift_of(inode, sb0, magic, READ_U32(inode, INODE_NLINK));
        drift |= other_fs(cg, READ_PTR(file, FILE_PATH_MNT), sb0, &enforced, &allowed);
        if (drift && !allowed) {
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

    e->start = READ_U64(task, TASK_START_BOOTTIME);   /* exec keeps the process's start */
    void *cred = READ_PTR(task, TASK_CRED);           /* committed: the new program's */
    e->euid = READ_U32(cred, CRED_EUID);
    e->egid = READ_U32(cred, CRED_EGID);
    e->ino = READ_U64(inode, INODE_INO);
    e->mode = READ_U16(inode, INODE_MODE);
    e->nlink = READ_U32(inode, INODE_NLINK);
    void *sb = READ_PTR(inode, INODE_SB);
    e->dev = READ_U32(sb, SB_DEV);
    e->fs_magic = (u32)READ_U64(sb, SB_MAGIC);
    e->ovl = ovl_layers(inode, e->fs_magic);

    void *filename = READ_PTR(bprm, BPRM_FILENAME);
    if (bpf_probe_read_kernel_str(e->filename, PATH_LEN, filename) < 0)
        e->filename[0] = 0;

    e->depth = path_of(READ_PTR(file, FILE_PATH_DENTRY), READ_PTR(file, FILE_PATH_MNT),
                       e->comps, &e->hdr.flags);

    fd_identity(task, 0, &e->fd_mode[0], &e->fd_rdev[0]);
    stdin_facts(task, e);
    fd_identity(task, 1, &e->fd_mode[1], &e->fd_rdev[1]);
    fd_identity(task, 2, &e->fd_mode[2], &e->fd_rdev[2]);

    /* argv as the new program sees it: NUL-separated on its stack, arg_start..arg_end.
     * Longer than the buffer: its head and its last ARGS_TAIL bytes, so that what comes
     * after padding is seen (args_total says how long it was). */
    void *mm = READ_PTR(task, TASK_MM);
    u64 start = READ_U64(mm, MM_ARG_START);
    u64 end = READ_U64(mm, MM_ARG_END);
    u64 len = end > start ? end - start : 0;
    e->args_total = len > 0xffffffffULL ? 0xffffffffU : (u32)len;
    if (len > ARGS_LEN) {
        e->hdr.flags |= F_TRUNC_ARGS;
        len = ARGS_LEN;
        if (bpf_probe_read_user(e->args, ARGS_LEN - ARGS_TAIL, (void *)start) < 0 ||
            bpf_probe_read_user(e->args + (ARGS_LEN - ARGS_TAIL), ARGS_TAIL,
                                (void *)(end - ARGS_TAIL)) < 0)
            len = 0;
    } else if (len > 0 && bpf_probe_read_user(e->args, len & (2 * ARGS_LEN - 1),
                                              (void *)start) < 0) {
        len = 0;
    }
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
    e->child_start = READ_U64(child, TASK_START_BOOTTIME);
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

/* -- mmap_exec ---------------------------------------------------------------------------
 * Code mapped executable from a file that is drift. The exec probe sees only the program
 * execve ran; the image's own dynamic loader can run a dropped program (ld.so /root/x), load a
 * dropped library (LD_PRELOAD, dlopen, ctypes), and a process can map one itself. Each of those
 * maps the file with PROT_EXEC (or adds PROT_EXEC later with mprotect), so the check is made
 * there, at sys_enter, against the same test the exec probe uses; in an enforced container the
 * process is killed before the syscall returns to user space, so the mapped code never runs.
 * Only drift is reported: the loader mapping the image's libc costs the filter and, on the
 * container's root overlay, one map lookup. */

/* Would a mapping with this prot be executable for the current task? (READ_IMPLIES_EXEC makes
 * PROT_READ executable; a process can set it with personality(2).) */
static __always_inline int exec_prot(void *task, u64 prot)
{
    if (prot & PROT_EXEC_)
        return 1;
    return (prot & PROT_READ_) && (READ_U32(task, TASK_PERSONALITY) & READ_IMPLIES_EXEC_);
}

/* A mapped file as the process sees it: its mount, dentry and inode. internal: a file of a
 * kernel-internal mount that is not known for what it stands for (not judged by mount). */
struct fileref {
    void *mnt;
    void *dentry;
    void *inode;
    u32 internal;
    u32 pad;
};

/* The file a descriptor (vma = 0) or a vma names. Overlayfs puts the real file (a backing
 * file on one of its layers) into the vma it maps; what the process mapped — and what drift
 * is decided on — is the overlay file, kept as the backing file's user path. A backing file
 * lives on a kernel-internal mount (no namespace); its user path is taken only if it checks
 * out: an overlay mount, and a dentry of that overlay. A descriptor never holds one. */
static __always_inline void fileref_of(void *file, int vma, struct fileref *r)
{
    file_facts(file, &r->inode, &r->mnt, &r->dentry);
    r->internal = 0;
    if (!vma)
        return;
    u64 ns = (u64)READ_PTR(r->mnt - MOUNT_MNT, MOUNT_NS);
    if (ns != 0 && ns < (u64)-4095)
        return;                              /* a mount of a namespace: the file itself */
    r->internal = 1;
#ifdef HAVE_BACKING
    void *umnt = READ_PTR(file, BACKING_USER_PATH + PATH_MNT);
    void *udentry = READ_PTR(file, BACKING_USER_PATH + PATH_DENTRY);
    void *usb = READ_PTR(umnt, VFSMOUNT_SB);
    if ((u32)READ_U64(usb, SB_MAGIC) != OVERLAYFS_MAGIC_)
        return;
    void *uinode = READ_PTR(udentry, DENTRY_INODE);
    if (READ_PTR(uinode, INODE_SB) != usb)
        return;
    r->mnt = umnt;
    r->dentry = udentry;
    r->inode = uinode;
    r->internal = 0;
#endif
}

/* The drift verdict for a file about to be mapped executable: DRIFT_* bits (0: not drift, no
 * event), and *kill for an enforced container (unless the file is on an allowed mount). */
static __always_inline u32 mapping_drift(struct fileref *r, u64 cg, int *kill)
{
    void *sb = 0;
    u32 nlink = 0;
    inode_facts(r->inode, &sb, &nlink);
    u32 drift = drift_of(r->inode, sb, (u32)READ_U64(sb, SB_MAGIC), nlink);
    int enforced = 0, allowed = 0;
    if (!r->internal)
        drift |= other_fs(cg, r->mnt, sb, &enforced, &allowed);
    if (drift && !allowed && (enforced || drift_enforced.lookup(&cg)))
        *kill = 1;
    return drift;
}

/* Kill (if kill) and report one drift mapping. r is NULL for a SysV segment. */
static __always_inline void mapping_event(struct fileref *r, u32 drift, int kill, u32 sys,
                                          u32 prot, u32 mflags, s32 fd)
{
    u32 prevented = 0;
    if (kill) {
        /* the signal is delivered before this syscall returns to user space */
        bpf_send_signal(9);
        prevented = F_PREVENTED;
    }
    struct mmap_event *e = events.ringbuf_reserve(sizeof(struct mmap_event));
    if (!e) {
        count_drop(EV_MMAP_EXEC);
        return;
    }
    fill_hdr(&e->hdr, EV_MMAP_EXEC);
    e->hdr.flags |= prevented;
    e->drift = drift;
    e->prot = prot;
    e->mflags = mflags;
    e->sys = sys;
    e->fd = fd;
    if (!r) {
        e->ino = 0;
        e->dev = e->fs_magic = e->nlink = e->ovl = e->depth = 0;
        e->hdr.flags |= F_EXE_UNREACHABLE;
        events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
        return;
    }
    void *sb = READ_PTR(r->inode, INODE_SB);
    e->ino = READ_U64(r->inode, INODE_INO);
    e->dev = READ_U32(sb, SB_DEV);
    e->fs_magic = (u32)READ_U64(sb, SB_MAGIC);
    e->nlink = READ_U32(r->inode, INODE_NLINK);
    e->ovl = ovl_layers(r->inode, e->fs_magic);
    e->depth = path_of(r->dentry, r->mnt, e->comps, &e->hdr.flags);
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

TRACEPOINT_PROBE(syscalls, sys_enter_mmap)
{
    /* the filter, cheapest first: anonymous memory and non-executable prot cost nothing */
    u64 prot = args->prot, flags = args->flags;
    s32 fd = (s32)args->fd;
    if ((flags & MAP_ANONYMOUS_) || fd < 0 || !(prot & (PROT_EXEC_ | PROT_READ_)))
        return 0;
    if (!is_watched())
        return 0;
    void *task = (void *)bpf_get_current_task();
    if (!exec_prot(task, prot))
        return 0;
    void *file = file_of_fd(task, fd);
    if (!file)
        return 0;
    struct fileref r = {};
    fileref_of(file, 0, &r);
    int kill = 0;
    u32 drift = mapping_drift(&r, bpf_get_current_cgroup_id(), &kill);
    if (!drift)
        return 0;
    /* on a noexec mount the kernel refuses an executable mapping itself */
    if (READ_U32(r.mnt, VFSMOUNT_FLAGS) & MNT_NOEXEC_)
        return 0;
    mapping_event(&r, drift, kill, SYS_MMAP, prot, flags, fd);
    return 0;
}

#ifdef HAVE_MAPLE
/* The vma that contains addr, from the mm's maple tree (what vma_lookup() does: at each node,
 * the first slot whose pivot — its last address — is >= addr). Nodes are read under the
 * tracepoint's RCU protection with probe reads; a tree being changed by another thread at
 * that moment can give NULL, never a fault. */
#define MT_DEPTH 8          /* 65530 vmas (vm.max_map_count) fit in 5 levels */
#define MT_PIVOTS 15        /* maple_range_64; maple_arange_64 has 9 */
static __always_inline void *vma_at(void *mm, u64 addr)
{
    /* the root is an encoded node (xa_is_node: low bits 10, above 4096); anything else is
     * an empty tree or a single entry at index 0, never a vma of a running process */
    u64 entry = (u64)READ_PTR(mm, MM_MT_ROOT);
    if ((entry & 3) != 2 || entry <= 4096)
        return 0;
    for (int d = 0; d < MT_DEPTH; d++) {
        /* an encoded node: the node's address | type << 3 | flags in the low byte */
        if (entry <= 4096)
            return 0;
        void *node = (void *)(entry & ~0xffULL);
        u32 type = (entry >> 3) & 0xf;
        u64 piv_off = MR64_PIVOT, slot_off = MR64_SLOT;
        u32 npiv = MT_PIVOTS;
        if (type == 3) {                     /* maple_arange_64 */
            piv_off = MA64_PIVOT;
            slot_off = MA64_SLOT;
            npiv = 9;
        } else if (type != 1 && type != 2) { /* not maple_leaf_64 / maple_range_64 */
            return 0;
        }
        u64 piv[MT_PIVOTS] = {};
        bpf_probe_read_kernel(piv, sizeof(piv), node + piv_off);
        u32 slot = npiv;
        for (int i = 0; i < MT_PIVOTS; i++) {
            if (i >= npiv)
                break;
            if (piv[i] >= addr) {
                slot = i;
                break;
            }
        }
        entry = (u64)READ_PTR(node, slot_off + (slot & 15) * 8);
        if (type == 1)
            return (void *)entry;            /* a leaf: the vma (or NULL: a gap) */
        /* else the slot holds the child node, encoded the same way */
    }
    return 0;
}

/* vm_start, vm_end, vm_flags and vm_file: one read of the span when it is small (it is the
 * first 96 bytes on 6.x), four reads otherwise. */
#define VMA_SPAN (((VMA_FILE > VMA_FLAGS ? VMA_FILE : VMA_FLAGS) > VMA_END ? \
                   (VMA_FILE > VMA_FLAGS ? VMA_FILE : VMA_FLAGS) : VMA_END) + 8)
#if VMA_SPAN <= 192 && VMA_START % 8 == 0 && VMA_END % 8 == 0 && VMA_FLAGS % 8 == 0 && \
    VMA_FILE % 8 == 0
#define VMA_READ(vma, vs, ve, vflags, file) \
    u64 __vb[VMA_SPAN / 8] = {}; \
    bpf_probe_read_kernel(__vb, sizeof(__vb), vma); \
    u64 vs = __vb[VMA_START / 8], ve = __vb[VMA_END / 8], vflags = __vb[VMA_FLAGS / 8]; \
    void *file = (void *)__vb[VMA_FILE / 8]
#else
#define VMA_READ(vma, vs, ve, vflags, file) \
    u64 vs = READ_U64(vma, VMA_START), ve = READ_U64(vma, VMA_END); \
    u64 vflags = READ_U64(vma, VMA_FLAGS); \
    void *file = READ_PTR(vma, VMA_FILE)
#endif

#define MPROTECT_VMAS 8     /* mappings of one mprotect range that are checked */
static __always_inline int mprotect_enter(u32 sys, u64 start, u64 len, u64 prot)
{
    if (!(prot & (PROT_EXEC_ | PROT_READ_)))
        return 0;
    if (!is_watched())
        return 0;
    void *task = (void *)bpf_get_current_task();
    if (!exec_prot(task, prot))
        return 0;
    void *mm = READ_PTR(task, TASK_MM);
    u64 end = start + len, addr = start;
    u64 cg = bpf_get_current_cgroup_id();
    struct fileref r = {};
    int found = 0;
    u32 drift = 0, mflags = 0;
    int kill = 0;
    /* Every file mapping in the range that becomes executable: not executable yet, and
     * allowed to be (VM_MAYEXEC: not from a noexec mount). */
    for (int j = 0; j < MPROTECT_VMAS; j++) {
        void *vma = vma_at(mm, addr);
        if (!vma)
            break;
        VMA_READ(vma, vs, ve, vflags, file);
        if (addr < vs || addr >= ve)
            break;
        if (file && !(vflags & VM_EXEC_) && (vflags & VM_MAYEXEC_)) {
            fileref_of(file, 1, &r);
            drift = mapping_drift(&r, cg, &kill);
            if (drift) {
                found = 1;
                mflags = (vflags & VM_SHARED_) ? MAP_SHARED_ : MAP_PRIVATE_;
                break;
            }
        }
        if (ve >= end)
            break;
        addr = ve;
    }
    if (found)
        mapping_event(&r, drift, kill, sys, prot, mflags, -1);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_mprotect)
{
    return mprotect_enter(SYS_MPROTECT, args->start, args->len, args->prot);
}

TRACEPOINT_PROBE(syscalls, sys_enter_pkey_mprotect)
{
    return mprotect_enter(SYS_PKEY_MPROTECT, args->start, args->len, args->prot);
}
#endif

/* A SysV shared memory segment attached executable: code from memory, never a file. */
TRACEPOINT_PROBE(syscalls, sys_enter_shmat)
{
    if (!(args->shmflg & SHM_EXEC_))
        return 0;
    if (!is_watched())
        return 0;
    u64 cg = bpf_get_current_cgroup_id();
    int kill = drift_enforced.lookup(&cg) != 0;
    mapping_event(0, DRIFT_MEMFS | DRIFT_DELETED, kill, SYS_SHMAT, PROT_READ_ | PROT_EXEC_,
                  MAP_SHARED_, args->shmid);
    return 0;
}
