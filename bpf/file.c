/* File family: open/openat/openat2/creat, unlink/unlinkat, rename/renameat/renameat2,
 * chmod/fchmod/fchmodat(2), mkdir/mkdirat, utimensat/utimes/futimesat/utime. Arguments are
 * kept at sys_enter, the event is sent at sys_exit with the result, so a failed call is
 * reported as failed. The requested paths are read at exit from the caller's memory (as
 * strace and opensnoop do) and kept as they were passed; what rules match is what the kernel
 * resolved, walked at exit: for a successful open (and fchmod, futimens) the file behind the
 * new descriptor, whatever spelling, padding, symlink or race led there; otherwise the
 * directory the requested path starts from (root, working directory or dirfd), which user
 * space joins it to. */
#include "common.h"

/* stash slots: a0 = path, a1 = flags, a2 = mode, a3 = dirfd or fd, a4 = second path */

#define FILE_ENTER(kind, sys, path, flags, mode, fd, path2) \
    do { if (is_watched()) stash(kind, sys, (u64)(path), (u64)(flags), (u64)(mode), \
                                 (u64)(s64)(fd), (u64)(path2)); } while (0)

#define O_ACCMODE_ 03
#define O_CREAT_ 0100
#define O_TRUNC_ 01000

/* An overlay file opened for writing: count it, so that a copy-up user space verified as
 * unchanged stops being trusted once it may have been written. */
static __always_inline void count_write(void *task, s64 fd)
{
    void *file = file_of_fd(task, fd);
    if (!file)
        return;
    void *inode = READ_PTR(file, FILE_INODE);
    void *sb = READ_PTR(inode, INODE_SB);
    if ((u32)READ_U64(sb, SB_MAGIC) != OVERLAYFS_MAGIC_)
        return;
    struct inode_key k = {.ino = READ_U64(inode, INODE_INO), .dev = READ_U32(sb, SB_DEV)};
    u64 one = 1;
    u64 *n = inode_writes.lookup(&k);
    if (n) {
        __sync_fetch_and_add(n, 1);
        return;
    }
    if (inode_writes.update(&k, &one) == 0)
        return;
    /* full: this write is not counted; fail closed for the device (see common.h) */
    struct uncounted *u = writes_uncounted.lookup(&k.dev);
    if (u) {
        __sync_fetch_and_add(&u->writes, 1);
        u->cgroup_id = bpf_get_current_cgroup_id();
        return;
    }
    struct uncounted nu = {.writes = 1, .cgroup_id = bpf_get_current_cgroup_id()};
    if (writes_uncounted.update(&k.dev, &nu) != 0) {
        int zero = 0;
        u64 *any = writes_uncounted_any.lookup(&zero);
        if (any)
            __sync_fetch_and_add(any, 1);
    }
}

/* open, unlink, chmod, mkdir and utime events are built here and sent up to their resolved
 * path's NUL (most of the 512 bytes are empty): opens are the bulk of the ring. */
BPF_PERCPU_ARRAY(file_scratch, struct file_event, 1);

static __always_inline void send_file_event(struct file_event *e, u32 rlen)
{
    if (rlen < 1 || rlen > RPATH_LEN)
        rlen = 1;
    if (events.ringbuf_output(e, __builtin_offsetof(struct file_event, rpath) + rlen,
                             BPF_RB_NO_WAKEUP))
        count_drop(e->hdr.kind);
}

static __always_inline int file_exit(long ret)
{
    u32 tid = 0;
    struct inflight *in = inflight_at_exit(&tid);
    if (!in)
        return 0;
    u32 kind = in->kind;
    if (kind == EV_RENAME) {
        struct rename_event *r = events.ringbuf_reserve(sizeof(struct rename_event));
        if (!r) {
            count_drop(kind);
            goto out;
        }
        fill_hdr(&r->hdr, kind);
        r->ret = ret;
        r->sys = in->sys;
        r->flags = in->a[1];
        r->olddirfd = (s32)in->a[3];
        r->newdirfd = (s32)in->a[2];
        if (bpf_probe_read_user_str(r->path, PATH_LEN, (void *)in->a[0]) == PATH_LEN)
            r->hdr.flags |= F_TRUNC_PATH;
        if (bpf_probe_read_user_str(r->new_path, PATH_LEN, (void *)in->a[4]) == PATH_LEN)
            r->hdr.flags |= F_TRUNC_PATH2;
        void *task = (void *)bpf_get_current_task(), *d = 0, *m = 0;
        r->rbase[0] = 0;
        r->rbase2[0] = 0;
        u32 len;
        if (base_path(task, r->path, (s32)in->a[3], &d, &m) &&
            (path_str(d, m, r->rbase, &len) & PS_TRUNC))
            r->hdr.flags |= F_TRUNC_RPATH;
        d = m = 0;
        if (base_path(task, r->new_path, (s32)in->a[2], &d, &m) &&
            (path_str(d, m, r->rbase2, &len) & PS_TRUNC))
            r->hdr.flags |= F_TRUNC_RPATH;
        events.ringbuf_submit(r, BPF_RB_NO_WAKEUP);
    } else if (kind == EV_OPEN || kind == EV_UNLINK || kind == EV_CHMOD || kind == EV_MKDIR ||
               kind == EV_UTIME) {
        /* a read-only open is bulk (see shed() in common.h); writes, creates never are */
        if (kind == EV_OPEN && !(in->a[1] & (O_ACCMODE_ | O_CREAT_ | O_TRUNC_)) && shed(kind))
            goto out;
        int zero = 0;
        struct file_event *e = file_scratch.lookup(&zero);
        if (!e)
            goto out;
        fill_hdr(&e->hdr, kind);
        e->ret = ret;
        e->sys = in->sys;
        e->flags = in->a[1];
        if (kind == EV_OPEN && ret >= 0 && (in->a[1] & (O_ACCMODE_ | O_TRUNC_ | O_CREAT_)))
            count_write((void *)bpf_get_current_task(), ret);
        e->mode = in->a[2];
        e->fd = (s32)in->a[3];
        e->path[0] = 0;
        if (in->a[0] &&
            bpf_probe_read_user_str(e->path, PATH_LEN, (void *)in->a[0]) == PATH_LEN)
            e->hdr.flags |= F_TRUNC_PATH;
        void *task = (void *)bpf_get_current_task(), *d = 0, *m = 0;
        /* the object itself: a new descriptor's file, or the fd of a call without a path
         * (fchmod; utimensat/futimesat with a NULL path, i.e. futimens) */
        int object = ret >= 0 && (kind == EV_OPEN || !in->a[0]), have;
        e->rpath[0] = 0;
        if (object)
            have = fd_path(task, kind == EV_OPEN ? ret : (s32)in->a[3], &d, &m);
        else
            have = base_path(task, e->path, (s32)in->a[3], &d, &m);
        u32 rlen = 1;
        u32 got = have ? path_str(d, m, e->rpath, &rlen) : 0;
        if (got && object)
            e->hdr.flags |= F_RESOLVED;
        if (got & PS_TRUNC)
            e->hdr.flags |= F_TRUNC_RPATH;
        send_file_event(e, rlen);
    }
out:
    inflight.delete(&tid);
    return 0;
}

/* Every sys_exit_* of the family runs the one program below through a tail call, so that the
 * verifier checks file_exit (and its path walks) once, not once per syscall: the probes
 * load in half the time. The agent fills file_exit_prog at start (agent/sensor/probes.py);
 * the exit tracepoints share one layout (struct syscall_exit). */
struct syscall_exit {
    u64 common;
    long syscall_nr;
    long ret;
};
BPF_PROG_ARRAY(file_exit_prog, 1);

int file_exit_tail(struct syscall_exit *args)
{
    return file_exit(args->ret);
}

static __always_inline int file_exit_call(void *args)
{
    if (!is_watched())             /* the rest of the host: no tail call either */
        return 0;
    file_exit_prog.call(args, 0);
    return 0;                      /* not reached unless the array is empty */
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    FILE_ENTER(EV_OPEN, SYS_OPEN, args->filename, args->flags, args->mode, AT_FDCWD_, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    FILE_ENTER(EV_OPEN, SYS_OPENAT, args->filename, args->flags, args->mode, args->dfd, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return file_exit_call(args); }

#ifdef HAVE_sys_enter_openat2
TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    if (!is_watched())
        return 0;
    u64 how[2] = {};  /* struct open_how: u64 flags, u64 mode, u64 resolve */
    bpf_probe_read_user(how, sizeof(how), args->how);
    stash(EV_OPEN, SYS_OPENAT2, (u64)args->filename, how[0], how[1], (s64)args->dfd, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return file_exit_call(args); }
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
    /* creat(p, m) is open(p, O_CREAT|O_WRONLY|O_TRUNC, m) */
    FILE_ENTER(EV_OPEN, SYS_CREAT, args->pathname, 01101, args->mode, AT_FDCWD_, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_creat) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_unlink)
{
    FILE_ENTER(EV_UNLINK, SYS_UNLINK, args->pathname, 0, 0, AT_FDCWD_, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_unlink) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_unlinkat)
{
    FILE_ENTER(EV_UNLINK, SYS_UNLINKAT, args->pathname, args->flag, 0, args->dfd, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_unlinkat) { return file_exit_call(args); }

/* rename slots: a0 = old path, a1 = flags, a2 = new dirfd, a3 = old dirfd, a4 = new path */
TRACEPOINT_PROBE(syscalls, sys_enter_rename)
{
    FILE_ENTER(EV_RENAME, SYS_RENAME, args->oldname, 0, AT_FDCWD_, AT_FDCWD_, args->newname);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_rename) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_renameat)
{
    FILE_ENTER(EV_RENAME, SYS_RENAMEAT, args->oldname, 0, (s64)args->newdfd, args->olddfd,
               args->newname);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_renameat2)
{
    FILE_ENTER(EV_RENAME, SYS_RENAMEAT2, args->oldname, args->flags, (s64)args->newdfd,
               args->olddfd, args->newname);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat2) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_chmod)
{
    FILE_ENTER(EV_CHMOD, SYS_CHMOD, args->filename, 0, args->mode, AT_FDCWD_, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_chmod) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_fchmod)
{
    FILE_ENTER(EV_CHMOD, SYS_FCHMOD, 0, 0, args->mode, (s32)args->fd, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmod) { return file_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat)
{
    FILE_ENTER(EV_CHMOD, SYS_FCHMODAT, args->filename, 0, args->mode, args->dfd, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat) { return file_exit_call(args); }

#ifdef HAVE_sys_enter_fchmodat2
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat2)
{
    FILE_ENTER(EV_CHMOD, SYS_FCHMODAT2, args->filename, args->flags, args->mode, args->dfd, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat2) { return file_exit_call(args); }
#endif

#ifdef HAVE_sys_enter_mkdir
TRACEPOINT_PROBE(syscalls, sys_enter_mkdir)
{
    FILE_ENTER(EV_MKDIR, SYS_MKDIR, args->pathname, 0, args->mode, AT_FDCWD_, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_mkdir) { return file_exit_call(args); }
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_mkdirat)
{
    FILE_ENTER(EV_MKDIR, SYS_MKDIRAT, args->pathname, 0, args->mode, args->dfd, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_mkdirat) { return file_exit_call(args); }

/* utime slots: a0 = path (NULL: the file behind a3), a1 = AT_* flags | UTIME_FLAGS,
 * a2 = the mtime set (when UTIME_MTIME_GIVEN), a3 = dirfd or fd. The times are read here,
 * at entry, from the caller's memory: what the kernel copies next (a thread of the caller
 * rewriting them in between is not seen). Times that cannot be read (a page not resident)
 * count as given, mtime unknown: an evasion fails towards the report. */
#define UTIME_NOW_ ((1LL << 30) - 1)
#define UTIME_OMIT_ ((1LL << 30) - 2)
#define TIMES_TIMESPEC 0     /* utimensat: struct __kernel_timespec[2] {sec, nsec} */
#define TIMES_TIMEVAL 1      /* utimes, futimesat: struct __kernel_old_timeval[2] {sec, usec} */
#define TIMES_UTIMBUF 2      /* utime: struct utimbuf {actime, modtime} */

static __always_inline void utime_enter(u32 sys, const char *path, s32 dfd, const void *times,
                                        u32 flags, int layout)
{
    if (!is_watched())
        return;
    flags &= ~(u32)(UTIME_TIMES_GIVEN | UTIME_MTIME_GIVEN);   /* only the probe sets them */
    s64 t[4] = {};       /* atime, then mtime: {sec, nsec/usec} each, or {actime, modtime} */
    u64 mtime = 0;
    if (times) {
        int size = layout == TIMES_UTIMBUF ? 16 : 32;
        if (bpf_probe_read_user(t, size, times) != 0) {
            flags |= UTIME_TIMES_GIVEN;
        } else {
            int explicit_m = 1;
            s64 sec = layout == TIMES_UTIMBUF ? t[1] : t[2];
            if (layout == TIMES_TIMESPEC) {
                int explicit_a = t[1] != UTIME_NOW_ && t[1] != UTIME_OMIT_;
                explicit_m = t[3] != UTIME_NOW_ && t[3] != UTIME_OMIT_;
                if (explicit_a || explicit_m)
                    flags |= UTIME_TIMES_GIVEN;
            } else {
                flags |= UTIME_TIMES_GIVEN;
            }
            if (explicit_m) {
                flags |= UTIME_MTIME_GIVEN;
                mtime = sec < 0 ? 0 : sec > 0xffffffffLL ? 0xffffffffULL : (u64)sec;
            }
        }
    }
    stash(EV_UTIME, sys, (u64)path, flags, mtime, (u64)(s64)dfd, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_utimensat)
{
    utime_enter(SYS_UTIMENSAT, args->filename, (s32)args->dfd, args->utimes, (u32)args->flags,
                TIMES_TIMESPEC);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_utimensat) { return file_exit_call(args); }

#ifdef HAVE_sys_enter_futimesat
TRACEPOINT_PROBE(syscalls, sys_enter_futimesat)
{
    utime_enter(SYS_FUTIMESAT, args->filename, (s32)args->dfd, args->utimes, 0, TIMES_TIMEVAL);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_futimesat) { return file_exit_call(args); }
#endif

#ifdef HAVE_sys_enter_utimes
TRACEPOINT_PROBE(syscalls, sys_enter_utimes)
{
    utime_enter(SYS_UTIMES, args->filename, AT_FDCWD_, args->utimes, 0, TIMES_TIMEVAL);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_utimes) { return file_exit_call(args); }
#endif

#ifdef HAVE_sys_enter_utime
TRACEPOINT_PROBE(syscalls, sys_enter_utime)
{
    utime_enter(SYS_UTIME, args->filename, AT_FDCWD_, args->times, 0, TIMES_UTIMBUF);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_utime) { return file_exit_call(args); }
#endif

#ifdef HAVE_URING_OPEN
/* An open done through io_uring (IORING_OP_OPENAT, IORING_OP_OPENAT2) is an open event like
 * any other: reported when the request completes, in the process (or its io_uring worker
 * thread, same files and cgroup), with the flags and mode of its struct io_open and the path
 * walked from the new descriptor; opened for writing, it is counted as a write. What it
 * cannot give: the requested text (freed by then), and a path for an open into the ring's
 * fixed-file table (no descriptor: reported, not resolved). */
#define IORING_OP_OPENAT_ 18
#define IORING_OP_OPENAT2_ 28
TRACEPOINT_PROBE(io_uring, io_uring_complete)
{
    if (!is_watched())
        return 0;
    void *req = args->req;
    u8 op = 0;
    bpf_probe_read_kernel(&op, 1, req + IO_KIOCB_OPCODE);
    if (op != IORING_OP_OPENAT_ && op != IORING_OP_OPENAT2_)
        return 0;
    u32 oflags = (u32)READ_U64(req, IO_OPEN_HOW_FLAGS);
    s64 ret = args->res;
    if (!(oflags & (O_ACCMODE_ | O_CREAT_ | O_TRUNC_)) && shed(EV_OPEN))
        return 0;
    int zero = 0;
    struct file_event *e = file_scratch.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->hdr, EV_OPEN);
    e->ret = ret;
    e->sys = op == IORING_OP_OPENAT_ ? SYS_IO_URING_OPENAT : SYS_IO_URING_OPENAT2;
    e->flags = oflags;
    e->mode = (u32)READ_U64(req, IO_OPEN_HOW_MODE);
    e->fd = (s32)READ_U32(req, IO_OPEN_DFD);
    e->path[0] = 0;
    e->rpath[0] = 0;
    void *task = (void *)bpf_get_current_task(), *d = 0, *m = 0;
    u32 rlen = 1;
    if (ret >= 0 && READ_U32(req, IO_OPEN_FILE_SLOT) == 0) {
        if (oflags & (O_ACCMODE_ | O_TRUNC_ | O_CREAT_))
            count_write(task, ret);
        u32 got = fd_path(task, ret, &d, &m) ? path_str(d, m, e->rpath, &rlen) : 0;
        if (got)
            e->hdr.flags |= F_RESOLVED;
        if (got & PS_TRUNC)
            e->hdr.flags |= F_TRUNC_RPATH;
    }
    send_file_event(e, rlen);
    return 0;
}
#endif
