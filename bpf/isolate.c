/* Network isolation of a container: cgroup programs attached to the container's cgroup2
 * directory that refuse its connects (IPv4 and IPv6) and drop its packets both ways. They
 * hold within milliseconds and whatever the cluster's network plugin does with
 * NetworkPolicy. Returning 0 from these program types means "deny". */
#include <uapi/linux/bpf.h>

int deny_connect4(struct bpf_sock_addr *ctx)
{
    return 0;
}

int deny_connect6(struct bpf_sock_addr *ctx)
{
    return 0;
}

int drop_egress(struct __sk_buff *skb)
{
    return 0;
}

int drop_ingress(struct __sk_buff *skb)
{
    return 0;
}
