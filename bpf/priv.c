/* Privilege and escape family: ptrace, mount/umount, unshare, setns, the setuid and setgid
 * families, memfd_create, init_module/finit_module, io_uring_setup, kill/tkill/tgkill. Sent
 * at sys_exit with the result. */
#include "common.h"

/* stash slots: a0..a3 = the syscall's arguments in order; string arguments are kept as
 * pointers and read at exit; a4 = the caller's effective uid at entry. */
#define PRIV_ENTER(kind, sys, a0, a1, a2, a3) \
    do { if (is_watched()) stash(kind, sys, (u64)(a0), (u64)(a1), (u64)(a2), (u64)(a3), \
                                 caller_euid()); } \
    while (0)

static __always_inline u64 caller_euid(void)
{
    void *task = (void *)bpf_get_current_task();
    return READ_U32(READ_PTR(task, TASK_CRED), CRED_EUID);
}

static __always_inline int priv_exit(long ret)
{
    u32 tid = 0;
    struct inflight *in = inflight_at_exit(&tid);
    if (!in)
        return 0;
    u32 kind = in->kind;
    if ((kind < EV_PTRACE || kind > EV_IO_URING) && kind != EV_KILL)   /* not this family's */
        goto out;
    if (kind == EV_IO_URING && ret >= 0)
        uring_mark();                       /* before the event: it must not be lost */
    struct priv_event *e = events.ringbuf_reserve(sizeof(struct priv_event));
    if (!e) {
        count_drop(kind);
        goto out;
    }
    fill_hdr(&e->hdr, kind);
    e->ret = ret;
    e->sys = in->sys;
    e->caller_euid = (u32)in->a[4];
    e->arg0 = in->a[0];
    e->arg1 = in->a[1];
    e->arg2 = in->a[2];
    e->arg3 = in->a[3];
    e->str1[0] = 0;
    e->str2[0] = 0;
    e->str3[0] = 0;
    u32 sys = in->sys;
    if (sys == SYS_MOUNT) {
        /* a0 = source, a1 = target, a2 = fstype, a3 = flags */
        if (bpf_probe_read_user_str(e->str1, PATH_LEN, (void *)in->a[1]) == PATH_LEN)
            e->hdr.flags |= F_TRUNC_PATH;
        if (bpf_probe_read_user_str(e->str2, PATH_LEN, (void *)in->a[0]) == PATH_LEN)
            e->hdr.flags |= F_TRUNC_PATH2;
        bpf_probe_read_user_str(e->str3, SHORT_STR, (void *)in->a[2]);
    } else if (sys == SYS_UMOUNT2) {
        if (bpf_probe_read_user_str(e->str1, PATH_LEN, (void *)in->a[0]) == PATH_LEN)
            e->hdr.flags |= F_TRUNC_PATH;
    } else if (sys == SYS_MEMFD_CREATE) {
        bpf_probe_read_user_str(e->str1, PATH_LEN, (void *)in->a[0]);
    } else if (sys == SYS_INIT_MODULE) {
        bpf_probe_read_user_str(e->str1, PATH_LEN, (void *)in->a[2]);
    } else if (sys == SYS_FINIT_MODULE) {
        bpf_probe_read_user_str(e->str1, PATH_LEN, (void *)in->a[1]);
    } else if (sys == SYS_IO_URING_SETUP) {
        /* a1 = struct io_uring_params *: its flags (u32 at offset 8), as the kernel saw them */
        u32 flags = 0;
        bpf_probe_read_user(&flags, sizeof(flags), (void *)(in->a[1] + 8));
        e->arg1 = flags;
    }
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
out:
    inflight.delete(&tid);
    return 0;
}

/* As in bpf/file.c: every sys_exit_* of the family tail-calls the one program below, so that
 * priv_exit is compiled and verified once, not once per syscall (the agent fills
 * priv_exit_prog at start, agent/sensor/probes.py). The exit tracepoints share one layout. */
struct priv_syscall_exit {
    u64 common;
    long syscall_nr;
    long ret;
};
BPF_PROG_ARRAY(priv_exit_prog, 1);

int priv_exit_tail(struct priv_syscall_exit *args)
{
    return priv_exit(args->ret);
}

static __always_inline int priv_exit_call(void *args)
{
    if (!is_watched())             /* the rest of the host: no tail call either */
        return 0;
    priv_exit_prog.call(args, 0);
    return 0;                      /* not reached unless the array is empty */
}

#define PRIV_EXIT(name) \
    TRACEPOINT_PROBE(syscalls, sys_exit_##name) { return priv_exit_call(args); }

TRACEPOINT_PROBE(syscalls, sys_enter_ptrace)
{
    PRIV_ENTER(EV_PTRACE, SYS_PTRACE, args->request, args->pid, args->addr, args->data);
    return 0;
}
PRIV_EXIT(ptrace)

TRACEPOINT_PROBE(syscalls, sys_enter_mount)
{
    PRIV_ENTER(EV_MOUNT, SYS_MOUNT, args->dev_name, args->dir_name, args->type, args->flags);
    return 0;
}
PRIV_EXIT(mount)

TRACEPOINT_PROBE(syscalls, sys_enter_umount)
{
    PRIV_ENTER(EV_UMOUNT, SYS_UMOUNT2, args->name, args->flags, 0, 0);
    return 0;
}
PRIV_EXIT(umount)

TRACEPOINT_PROBE(syscalls, sys_enter_unshare)
{
    PRIV_ENTER(EV_UNSHARE, SYS_UNSHARE, args->unshare_flags, 0, 0, 0);
    return 0;
}
PRIV_EXIT(unshare)

TRACEPOINT_PROBE(syscalls, sys_enter_setns)
{
    PRIV_ENTER(EV_SETNS, SYS_SETNS, args->fd, args->flags, 0, 0);
    return 0;
}
PRIV_EXIT(setns)

/* slots: ruid, euid, suid, fsuid; an id the call does not set is -1. setuid(u) always sets
 * the effective id (and, for root, the real and saved ones too): reported as euid. */
TRACEPOINT_PROBE(syscalls, sys_enter_setuid)
{
    PRIV_ENTER(EV_SETUID, SYS_SETUID, (u32)-1, (u32)args->uid, (u32)-1, 0);
    return 0;
}
PRIV_EXIT(setuid)
TRACEPOINT_PROBE(syscalls, sys_enter_setreuid)
{
    PRIV_ENTER(EV_SETUID, SYS_SETREUID, (u32)args->ruid, (u32)args->euid, (u32)-1, 0);
    return 0;
}
PRIV_EXIT(setreuid)
TRACEPOINT_PROBE(syscalls, sys_enter_setresuid)
{
    PRIV_ENTER(EV_SETUID, SYS_SETRESUID, (u32)args->ruid, (u32)args->euid, (u32)args->suid, 0);
    return 0;
}
PRIV_EXIT(setresuid)
TRACEPOINT_PROBE(syscalls, sys_enter_setfsuid)
{
    PRIV_ENTER(EV_SETUID, SYS_SETFSUID, (u32)-1, (u32)-1, (u32)-1, (u32)args->uid);
    return 0;
}
PRIV_EXIT(setfsuid)

TRACEPOINT_PROBE(syscalls, sys_enter_setgid)
{
    PRIV_ENTER(EV_SETGID, SYS_SETGID, (u32)-1, (u32)args->gid, (u32)-1, 0);
    return 0;
}
PRIV_EXIT(setgid)
TRACEPOINT_PROBE(syscalls, sys_enter_setregid)
{
    PRIV_ENTER(EV_SETGID, SYS_SETREGID, (u32)args->rgid, (u32)args->egid, (u32)-1, 0);
    return 0;
}
PRIV_EXIT(setregid)
TRACEPOINT_PROBE(syscalls, sys_enter_setresgid)
{
    PRIV_ENTER(EV_SETGID, SYS_SETRESGID, (u32)args->rgid, (u32)args->egid, (u32)args->sgid, 0);
    return 0;
}
PRIV_EXIT(setresgid)
TRACEPOINT_PROBE(syscalls, sys_enter_setfsgid)
{
    PRIV_ENTER(EV_SETGID, SYS_SETFSGID, (u32)-1, (u32)-1, (u32)-1, (u32)args->gid);
    return 0;
}
PRIV_EXIT(setfsgid)

TRACEPOINT_PROBE(syscalls, sys_enter_memfd_create)
{
    PRIV_ENTER(EV_MEMFD, SYS_MEMFD_CREATE, args->uname, args->flags, 0, 0);
    return 0;
}
PRIV_EXIT(memfd_create)

#ifdef HAVE_sys_enter_init_module
TRACEPOINT_PROBE(syscalls, sys_enter_init_module)
{
    PRIV_ENTER(EV_MODULE, SYS_INIT_MODULE, args->umod, args->len, args->uargs, 0);
    return 0;
}
PRIV_EXIT(init_module)
#endif

#ifdef HAVE_sys_enter_finit_module
TRACEPOINT_PROBE(syscalls, sys_enter_finit_module)
{
    PRIV_ENTER(EV_MODULE, SYS_FINIT_MODULE, args->fd, args->uargs, args->flags, 0);
    return 0;
}
PRIV_EXIT(finit_module)
#endif

/* io_uring does file operations the syscall probes do not see: its set-up is an event, and
 * it marks the container (bpf/common.h, uring_mark) so that drift prevention there no
 * longer trusts a copied-up image file it has not verified. */
#ifdef HAVE_sys_enter_io_uring_setup
TRACEPOINT_PROBE(syscalls, sys_enter_io_uring_setup)
{
    PRIV_ENTER(EV_IO_URING, SYS_IO_URING_SETUP, args->entries, args->params, 0, 0);
    return 0;
}
PRIV_EXIT(io_uring_setup)
#endif

/* kill slots: a0 = the target as passed (kill: pid, -1 every process, 0 own group, -pgid a
 * group; tkill: the thread; tgkill: the thread group), a1 = the signal, a2 = the thread
 * (tkill, tgkill). Not kept, not sent: signal 0, which only asks whether the target exists
 * (scripts do it constantly), and SIGURG (23), which Go's runtime sends its own threads to
 * preempt goroutines — hundreds a second from any Go program (runc, containerd, most
 * cloud-native workloads). */
#define SIGURG_ 23
#define KILL_ENTER(sys, target, sig, thread) \
    do { int sig_ = (int)(sig); \
         if (sig_ != 0 && sig_ != SIGURG_) \
             PRIV_ENTER(EV_KILL, sys, (s64)(int)(target), sig_, (s64)(int)(thread), 0); \
    } while (0)

TRACEPOINT_PROBE(syscalls, sys_enter_kill)
{
    KILL_ENTER(SYS_KILL, args->pid, args->sig, 0);
    return 0;
}
PRIV_EXIT(kill)

TRACEPOINT_PROBE(syscalls, sys_enter_tkill)
{
    KILL_ENTER(SYS_TKILL, args->pid, args->sig, args->pid);
    return 0;
}
PRIV_EXIT(tkill)

TRACEPOINT_PROBE(syscalls, sys_enter_tgkill)
{
    KILL_ENTER(SYS_TGKILL, args->tgid, args->sig, args->pid);
    return 0;
}
PRIV_EXIT(tgkill)
