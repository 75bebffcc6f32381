// A test writer for agent/sensor/ring.py: on getppid() by the test's process, put
// records of every length from 1 to 64 bytes in the ring (each byte = its length), and
// discard each one of length 7, so that the reader meets headers, padding, discards and,
// with a one-page ring, the wrap to the start of the data area.
BPF_RINGBUF_OUTPUT(out, 1);
BPF_ARRAY(writer, u32, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    u32 k = 0;
    u32 *tgid = writer.lookup(&k);
    if (!tgid || *tgid != (u32)(bpf_get_current_pid_tgid() >> 32))
        return 0;
#pragma unroll
    for (int len = 1; len <= 64; len++) {
        u8 *r = out.ringbuf_reserve(len);
        if (!r)
            return 0;
        __builtin_memset(r, len, len);
        if (len == 7)
            out.ringbuf_discard(r, 0);
        else
            out.ringbuf_submit(r, 0);
    }
    return 0;
}
