"""The eBPF sensor: probes in bpf/*.c, loaded, polled and decoded into typed events."""
