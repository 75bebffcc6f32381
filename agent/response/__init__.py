"""Response: policy and guard rails (policy.py), on the node (local.py), through the
Kubernetes API (kube_actions.py). Not wired into `mamori run` yet (issue #7 continues)."""
