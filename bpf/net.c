/* Network family: connect, accept/accept4, bind, listen. The address the caller passed is
 * read from its sockaddr (16 bytes, then 28 for AF_INET6: the verifier rejects a read of
 * variable length); the socket's own view (local address and port, type, protocol) is read
 * at exit through the fd. Ports are in host byte order, addresses as 16 raw bytes. */
#include "common.h"

#define AF_UNIX_ 1
#define AF_INET_ 2
#define AF_INET6_ 10

/* stash slots: a0 = fd, a1 = sockaddr pointer, a2 = backlog */
#define NET_ENTER(kind, sys, fd, addr, backlog) \
    do { if (is_watched()) stash(kind, sys, (u64)(s64)(fd), (u64)(addr), (u64)(backlog), 0, 0); } \
    while (0)

/* Fill family/port/address from a user sockaddr into the remote (connect) or local (bind)
 * side of the event. */
static __always_inline void from_sockaddr(struct net_event *e, void *uaddr, int remote)
{
    u8 buf[28] = {};
    if (!uaddr || bpf_probe_read_user(buf, 16, uaddr) < 0)
        return;
    u16 family = *(u16 *)buf;
    e->family = family;
    u16 port = ((u16)buf[2] << 8) | buf[3];
    if (family == AF_INET_) {
        if (remote) {
            e->dport = port;
            __builtin_memcpy(e->daddr, buf + 4, 4);
        } else {
            e->sport = port;
            __builtin_memcpy(e->saddr, buf + 4, 4);
        }
    } else if (family == AF_INET6_) {
        bpf_probe_read_user(buf, 28, uaddr);
        if (remote) {
            e->dport = port;
            __builtin_memcpy(e->daddr, buf + 8, 16);
        } else {
            e->sport = port;
            __builtin_memcpy(e->saddr, buf + 8, 16);
        }
    } else if (family == AF_UNIX_) {
        bpf_probe_read_user_str(e->unix_path, UNIX_PATH_LEN, uaddr + 2);
    }
}

/* Fill from the kernel socket behind fd: type, protocol, and the sides not yet known. */
static __always_inline void from_socket(struct net_event *e, s64 fd, int want_remote,
                                        int want_local)
{
    void *task = (void *)bpf_get_current_task();
    void *file = file_of_fd(task, fd);
    if (!file)
        return;
    void *inode = READ_PTR(file, FILE_INODE);
    if ((READ_U16(inode, INODE_MODE) & S_IFMT_) != S_IFSOCK_)
        return;
    void *socket = READ_PTR(file, FILE_PRIVATE);
    void *sk = READ_PTR(socket, SOCKET_SK);
    if (!sk)
        return;
    u16 family = READ_U16(sk, SK_FAMILY);
    if (!e->family)
        e->family = family;
    e->type = READ_U16(sk, SK_TYPE);
    if (SK_PROTOCOL_SIZE == 1) {
        u8 p = 0;
        bpf_probe_read_kernel(&p, 1, sk + SK_PROTOCOL);
        e->protocol = p;
    } else {
        e->protocol = READ_U16(sk, SK_PROTOCOL);
    }
    if (family != AF_INET_ && family != AF_INET6_)
        return;
    if (want_local) {
        e->sport = READ_U16(sk, SK_NUM);
        if (family == AF_INET_)
            bpf_probe_read_kernel(e->saddr, 4, sk + SK_RCV_SADDR);
        else
            bpf_probe_read_kernel(e->saddr, 16, sk + SK_V6_RCV_SADDR);
    }
    if (want_remote) {
        u16 dport = READ_U16(sk, SK_DPORT);
        e->dport = (dport >> 8) | (dport << 8);
        if (family == AF_INET_)
            bpf_probe_read_kernel(e->daddr, 4, sk + SK_DADDR);
        else
            bpf_probe_read_kernel(e->daddr, 16, sk + SK_V6_DADDR);
    }
}

static __always_inline int net_exit(long ret)
{
    u32 tid = 0;
    struct inflight *in = inflight_at_exit(&tid);
    if (!in)
        return 0;
    u32 kind = in->kind;
    if (kind != EV_CONNECT && kind != EV_ACCEPT && kind != EV_BIND && kind != EV_LISTEN)
        goto out;
    if ((kind == EV_CONNECT || kind == EV_ACCEPT) && shed(kind))   /* bulk: common.h */
        goto out;
    struct net_event *e = events.ringbuf_reserve(sizeof(struct net_event));
    if (!e) {
        count_drop(kind);
        goto out;
    }
    fill_hdr(&e->hdr, kind);
    e->ret = ret;
    e->fd = (s32)in->a[0];
    e->sys = in->sys;
    e->family = 0;
    e->sport = 0;
    e->dport = 0;
    e->protocol = 0;
    e->type = 0;
    e->backlog = 0;
    __builtin_memset(e->saddr, 0, 16);
    __builtin_memset(e->daddr, 0, 16);
    e->unix_path[0] = 0;

    if (kind == EV_CONNECT) {
        from_sockaddr(e, (void *)in->a[1], 1);
        from_socket(e, in->a[0], 0, 1);
    } else if (kind == EV_BIND) {
        from_sockaddr(e, (void *)in->a[1], 0);
        from_socket(e, in->a[0], 0, 0);
    } else if (kind == EV_LISTEN) {
        e->backlog = in->a[2];
        from_socket(e, in->a[0], 0, 1);
    } else {
        /* accept: the new connection's socket is the returned fd */
        if (ret >= 0)
            from_socket(e, ret, 1, 1);
        else
            from_socket(e, in->a[0], 0, 1);
    }
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
out:
    inflight.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    NET_ENTER(EV_CONNECT, SYS_CONNECT, args->fd, args->uservaddr, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_connect) { return net_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_accept)
{
    NET_ENTER(EV_ACCEPT, SYS_ACCEPT, args->fd, 0, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return net_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_accept4)
{
    NET_ENTER(EV_ACCEPT, SYS_ACCEPT4, args->fd, 0, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return net_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_bind)
{
    NET_ENTER(EV_BIND, SYS_BIND, args->fd, args->umyaddr, 0);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_bind) { return net_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_listen)
{
    NET_ENTER(EV_LISTEN, SYS_LISTEN, args->fd, 0, args->backlog);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_listen) { return net_exit(args->ret); }
