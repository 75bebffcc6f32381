"""Who did it: the process tree, the container behind a cgroup, the pod behind a container."""
