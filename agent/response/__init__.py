"""Response: policy and guard rails (policy.py), on the node (local.py: kill with the
process identity checked; isolation.py: cgroup BPF), through the Kubernetes API
(kube_actions.py), the stage that runs them (responder.py). docs/response.md."""
