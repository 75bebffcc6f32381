"""The gRPC alert stream, over real connections (the unix socket, the default; TCP with
TLS): filters, replay and live with no gap and no duplicate, reconnect and restart, a
stalled subscriber, TLS and mTLS, listeners that are refused."""
import datetime
import os
import stat
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agent.alerts.alert import Alert
from agent.alerts.hub import AlertHub
from agent.alerts.journal import Journal
from agent.api.gen.mamori.v1 import alerts_pb2 as pb
from agent.api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from agent.api.server import ApiServer


def rec(i, severity="high", tactic="TA0006", technique="T1003.008", rule="R", ns="shop",
        pod="web-1", node="n1"):
    return Alert.from_dict({"rule": rule, "severity": severity, "node": node, "output": f"alert {i}",
            "tactic": {"id": tactic, "name": "x"}, "technique": {"id": technique, "name": "y"},
            "fields": {"k8s.ns": ns, "k8s.pod": pod, "proc.pid": i, "proc.exe": "/bin/cat",
                       "proc.args": ["cat", "/etc/shadow"], "container.id": "c1",
                       "event.kind": "open", "file.path": "/etc/shadow",
                       "proc.ancestors": [{"pid": 1, "exe": "/sbin/init"}]}})


class Env:
    """A hub and its API on a unix socket (the default listener), or on loopback TCP when
    TLS options are given."""

    def __init__(self, tmp_path, queue=10000, release_fn=None, queue_bytes=16 << 20,
                 rules_fn=lambda: (None, None), **opts):
        self.dir = str(tmp_path / "journal")
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.dir).open()
        self.hub = AlertHub(self.journal, queue, queue_bytes)
        tcp = "tls_cert" in opts
        self.target = f"unix://{tmp_path}/api/mamori.sock"
        self.server = ApiServer(self.hub, rules_fn,
                                lambda: {"node": "n1", "rules_loaded": 3},
                                listen=["127.0.0.1:0"] if tcp else [self.target],
                                release_fn=release_fn, **opts)
        self.server.start()
        self.port = self.server.ports[0]
        if tcp:
            self.target = f"127.0.0.1:{self.port}"

    def stub(self, ch=None):
        return pb_grpc.AlertsStub(ch or grpc.insecure_channel(self.target))

    def close(self):
        self.server.stop(0)
        self.journal.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def collect(stream, n, timeout=10.0):
    out, done = [], threading.Event()

    def run():
        try:
            for a in stream:
                out.append(a)
                if len(out) >= n:
                    break
        except grpc.RpcError:
            pass
        done.set()
    threading.Thread(target=run, daemon=True).start()
    done.wait(timeout)
    return out


def test_alert_fields_are_nested_messages(env):
    env.hub.publish(rec(1))
    [a] = collect(env.stub().Subscribe(pb.SubscribeRequest(since_sequence=0)), 1)
    assert (a.sequence, a.rule, a.severity, a.node) == (1, "R", pb.SEVERITY_HIGH, "n1")
    assert (a.tactic.id, a.technique.id) == ("TA0006", "T1003.008")
    assert (a.process.pid, a.process.exe, list(a.process.args)) == (1, "/bin/cat",
                                                                   ["cat", "/etc/shadow"])
    assert [(x.pid, x.exe) for x in a.process.ancestors] == [(1, "/sbin/init")]
    assert (a.container.id, a.pod.namespace, a.pod.name) == ("c1", "shop", "web-1")
    assert (a.event.kind, a.event.WhichOneof("details"), a.event.file.path) == (
        "open", "file", "/etc/shadow")


@pytest.mark.parametrize("allow,deny,expected", [
    ({"min_severity": pb.SEVERITY_HIGH}, {}, [1, 3, 4, 5, 6, 7]),
    ({}, {"min_severity": pb.SEVERITY_HIGH}, [2]),
    ({"tactics": ["TA0002"]}, {}, [3]),
    ({}, {"tactics": ["TA0002"]}, [1, 2, 4, 5, 6, 7]),
    ({"techniques": ["T1059"]}, {}, [3]),                      # a parent technique matches
    ({"rules": ["Other"]}, {}, [4]),
    ({}, {"rules": ["Other"]}, [1, 2, 3, 5, 6, 7]),
    ({"namespaces": ["prod"]}, {}, [5]),
    ({}, {"namespaces": ["prod"]}, [1, 2, 3, 4, 6, 7]),
    ({"pod_regex": "^api-"}, {}, [6]),
    ({}, {"pod_regex": "^api-"}, [1, 2, 3, 4, 5, 7]),
    ({"nodes": ["n2"]}, {}, [7]),
    ({}, {"nodes": ["n2"]}, [1, 2, 3, 4, 5, 6]),
])
def test_filters_allow_and_deny(env, allow, deny, expected):
    env.hub.publish(rec(1))
    env.hub.publish(rec(2, severity="low"))
    env.hub.publish(rec(3, tactic="TA0002", technique="T1059.004"))
    env.hub.publish(rec(4, rule="Other"))
    env.hub.publish(rec(5, ns="prod"))
    env.hub.publish(rec(6, pod="api-7"))
    env.hub.publish(rec(7, node="n2"))
    req = pb.SubscribeRequest(allow=pb.Matcher(**allow), deny=pb.Matcher(**deny),
                              since_sequence=0)
    got = collect(env.stub().Subscribe(req, timeout=1), len(expected) + 1, timeout=1.5)
    assert [a.sequence for a in got] == expected


def test_replay_then_live_has_no_gap_and_no_duplicate(tmp_path):
    env = Env(tmp_path, queue=100000)     # large enough that this subscriber never overflows
    try:
        _seam(env)
    finally:
        env.close()


def _seam(env):
    n, stop = 20000, threading.Event()

    def produce():
        for i in range(n):
            env.hub.publish(rec(i))
        stop.set()
    t = threading.Thread(target=produce)
    t.start()
    while env.journal.last_seq < 3000:
        time.sleep(0.001)
    since = env.journal.last_seq - 1000            # mid-production: replay, then live
    got = collect(env.stub().Subscribe(pb.SubscribeRequest(since_sequence=since)),
                  n - since, timeout=60)
    t.join()
    seqs = [a.sequence for a in got]
    assert seqs == list(range(since + 1, n + 1))


def test_subscriber_killed_mid_stream_resumes_with_everything(env):
    for i in range(100):
        env.hub.publish(rec(i))
    first = collect(env.stub().Subscribe(pb.SubscribeRequest(since_sequence=0)), 40)
    last = first[-1].sequence                      # the client goes away here
    for i in range(100, 150):
        env.hub.publish(rec(i))
    rest = collect(env.stub().Subscribe(pb.SubscribeRequest(since_sequence=last)), 150 - last)
    assert [a.sequence for a in first + rest] == list(range(1, 151))


def test_agent_restart_in_between(tmp_path):
    e = Env(tmp_path)
    for i in range(10):
        e.hub.publish(rec(i))
    e.close()
    e2 = Env(tmp_path)                              # same journal directory
    try:
        for i in range(10, 15):
            e2.hub.publish(rec(i))
        got = collect(e2.stub().Subscribe(pb.SubscribeRequest(since_sequence=7)), 8)
        assert [a.sequence for a in got] == list(range(8, 16))
    finally:
        e2.close()


def test_since_older_than_the_journal_is_said_first(tmp_path):
    e = Env(tmp_path)
    e.journal.segment_bytes, e.journal.max_bytes = 2048, 4096
    try:
        for i in range(300):
            e.hub.publish(rec(i))
        first = e.journal.first_seq()
        assert first > 1
        got = collect(e.stub().Subscribe(pb.SubscribeRequest(since_sequence=0)), 2)
        assert got[0].HasField("notice") and got[0].sequence == 0
        assert got[0].notice.journal_starts_at == first
        assert got[1].sequence == first
    finally:
        e.close()


def test_stalled_subscriber_does_not_slow_others_and_is_told(tmp_path):
    # the fast one may take them all; the stalled one is not ended for stalling (that is
    # tests/alerts/test_stream_limits.py) but told what it missed when it reads again
    e = Env(tmp_path, queue=200000, queue_bytes=1 << 30, stall_timeout_s=3600)
    try:
        stalled_stream = e.stub().Subscribe(pb.SubscribeRequest(queue_size=1000))  # never read
        stalled_first = []

        def first():
            try:
                stalled_first.append(next(stalled_stream))
            except grpc.RpcError:
                pass                           # the server stopped before: nothing to keep
        threading.Thread(target=first, daemon=True).start()
        fast = []
        fast_stream = e.stub().Subscribe(pb.SubscribeRequest())
        def read_fast():
            try:
                for a, _ in zip(fast_stream, range(100000)):
                    fast.append(a.sequence)
            except grpc.RpcError:
                pass
        reader = threading.Thread(target=read_fast)
        reader.start()
        while len(e.hub.subscribers) < 2:
            time.sleep(0.01)
        time.sleep(0.2)
        for i in range(100000):
            e.hub.publish(rec(i))
        reader.join(timeout=120)
        assert fast == list(range(1, 100001))
        stalled = [s for s in e.hub.subscribers if s.maxsize == 1000]
        assert stalled and stalled[0].dropped > 0
        # once it reads again: what was in flight and queued, in order, then the notice
        got = [a.sequence for a in stalled_first]
        for a in stalled_stream:
            if a.HasField("notice"):
                notice = a.notice
                break
            got.append(a.sequence)
        resume = notice.resume_from_sequence
        assert got == list(range(1, resume))              # nothing lost before the gap
        assert 0 < notice.missed <= stalled[0].dropped    # more may be reported later
        assert f"since_sequence={resume - 1}" in notice.message
        replay = collect(e.stub().Subscribe(pb.SubscribeRequest(since_sequence=resume - 1)),
                         100000 - resume + 1, timeout=120)
        assert [a.sequence for a in replay] == list(range(resume, 100001))
    finally:
        e.close()


def test_status_rules_health_and_reflection(env):
    env.hub.publish(rec(1))
    ch = grpc.insecure_channel(env.target)
    st = pb_grpc.AlertsStub(ch).GetStatus(pb.GetStatusRequest())
    assert (st.node, st.rules_loaded, st.last_sequence, dict(st.alerts_by_severity)) == (
        "n1", 3, 1, {"high": 1})
    h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
    assert h.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")])))
    names = sorted(s.name for s in resp.list_services_response.service)
    assert names == ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                     "mamori.v1.Alerts"]


def test_list_rules_says_each_rules_attack_tags_and_where_it_is_defined(tmp_path):
    from agent.rules.engine import RuleEngine
    f = tmp_path / "team.yaml"
    f.write_text("- rule: Shadow read\n  desc: reads shadow\n  events: [open]\n"
                 "  condition: file.path = /etc/shadow\n  output: '%proc.exe'\n"
                 "  severity: critical\n  tactic: TA0006\n  technique: T1003.008\n"
                 "  action: terminate\n  tags: [team]\n")
    eng = RuleEngine([str(f)])
    eng.load()
    e = Env(tmp_path / "e", rules_fn=lambda: (eng.ruleset, eng.catalog))
    try:
        [r] = e.stub().ListRules(pb.ListRulesRequest(), timeout=5).rules
        assert (r.name, r.desc, list(r.events), r.severity, r.tactic.id, r.technique.id,
                r.action, r.enabled, list(r.tags), r.defined_at) == (
            "Shadow read", "reads shadow", ["open"], pb.SEVERITY_CRITICAL, "TA0006",
            "T1003.008", "terminate", True, ["team"], f"{f}:1")
        assert r.tactic.name == "Credential Access"
    finally:
        e.close()


# -- TLS ------------------------------------------------------------------------------------

def _certs(tmp_path):
    """A CA, a server certificate for localhost, a client certificate, and a client
    certificate from another CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def cert(name, k, issuer_name, issuer_key, ca=False, san=None):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]),
                                critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(name, obj):
        p = tmp_path / name
        if hasattr(obj, "private_bytes"):
            p.write_bytes(obj.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        else:
            p.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        return str(p)

    ca_k, other_k = key(), key()
    ca = cert("mamori-test-ca", ca_k, "mamori-test-ca", ca_k, ca=True)
    other = cert("other-ca", other_k, "other-ca", other_k, ca=True)
    srv_k, cli_k, bad_k, adm_k = key(), key(), key(), key()
    return {
        "admin": write("admin.pem", cert("mamori-admin", adm_k, "mamori-test-ca", ca_k)),
        "admin_key": write("admin.key", adm_k),
        "ca": write("ca.pem", ca),
        "server": write("server.pem", cert("localhost", srv_k, "mamori-test-ca", ca_k,
                                           san="localhost")),
        "server_key": write("server.key", srv_k),
        "client": write("client.pem", cert("client", cli_k, "mamori-test-ca", ca_k)),
        "client_key": write("client.key", cli_k),
        "bad": write("bad.pem", cert("intruder", bad_k, "other-ca", other_k)),
        "bad_key": write("bad.key", bad_k),
        "other_ca": write("other.pem", other),
    }


def _secure(port, ca, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read() if key else None,
        certificate_chain=open(cert, "rb").read() if cert else None)
    return grpc.secure_channel(f"localhost:{port}", creds)


def test_tls_and_mutual_tls(tmp_path):
    c = _certs(tmp_path)
    # TLS without client certificates is refused on TCP, but on loopback with the escape
    tls = Env(tmp_path / "a", tls_cert=c["server"], tls_key=c["server_key"],
              allow_insecure_tcp=True)
    mtls = Env(tmp_path / "b", tls_cert=c["server"], tls_key=c["server_key"],
               tls_client_ca=c["ca"])
    try:
        for e in (tls, mtls):
            e.hub.publish(rec(1))
        ok = pb_grpc.AlertsStub(_secure(tls.port, c["ca"])).GetStatus(pb.GetStatusRequest(),
                                                                     timeout=5)
        assert ok.last_sequence == 1
        with pytest.raises(grpc.RpcError) as e:                   # plaintext to TLS: refused
            tls.stub().GetStatus(pb.GetStatusRequest(), timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        good = _secure(mtls.port, c["ca"], c["client"], c["client_key"])
        assert pb_grpc.AlertsStub(good).GetStatus(pb.GetStatusRequest(),
                                                  timeout=5).last_sequence == 1
        for cert, key in ((None, None), (c["bad"], c["bad_key"])):  # none, or another CA's
            ch = _secure(mtls.port, c["ca"], cert, key)
            with pytest.raises(grpc.RpcError) as e:
                pb_grpc.AlertsStub(ch).GetStatus(pb.GetStatusRequest(), timeout=3)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        tls.close()
        mtls.close()


# -- filters that cannot stall anything (issue 20, finding 7) ---------------------------

POD40 = "web-" + "a" * 36                                   # 40 characters


def test_pod_regex_is_re2_linear_and_checked(env):
    redos = env.stub().Subscribe(pb.SubscribeRequest(allow=pb.Matcher(pod_regex="^(.|.)*!$")))
    plain = env.stub().Subscribe(pb.SubscribeRequest())
    got_redos = collect(redos, 1, timeout=0.01)
    while len(env.hub.subscribers) < 2:
        time.sleep(0.01)
    t0 = time.monotonic()
    env.hub.publish(rec(1, pod=POD40))
    assert time.monotonic() - t0 < 0.05                       # publish only enqueues
    [a] = collect(plain, 1, timeout=5)
    assert (a.sequence, a.pod.name) == (1, POD40)
    t0 = time.monotonic()
    env.hub.publish(rec(2, pod=POD40 + "!"))                  # the pattern does match this
    assert time.monotonic() - t0 < 0.05
    time.sleep(0.5)
    assert [x.sequence for x in got_redos] == [2]
    for pattern, why in (("a" * 257, "pod_regex is 257 characters long; at most 256 are "
                                     "allowed"),
                         (r"(a)\1", "pod_regex is not a valid RE2 pattern: invalid escape "
                                    "sequence: \\1"),
                         ("(?=web)", "pod_regex is not a valid RE2 pattern: invalid perl "
                                     "operator: (?=")):
        with pytest.raises(grpc.RpcError) as e:
            list(env.stub().Subscribe(pb.SubscribeRequest(deny=pb.Matcher(pod_regex=pattern)),
                                      timeout=5))
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, why)


def test_a_slow_filter_runs_on_its_subscriber_not_in_publish(tmp_path):
    from agent.alerts.hub import Filter
    j = Journal(str(tmp_path / "j")).open()
    hub = AlertHub(j)

    class Slow(Filter):
        def __call__(self, r):
            time.sleep(0.2)
            return True
    slow = hub.subscribe(Slow())
    t0 = time.monotonic()
    for i in range(10):
        hub.publish(rec(i))
    assert time.monotonic() - t0 < 0.1                        # not 10 x 0.2 s
    got = [slow.take(1)[1].seq for _ in range(10)]
    assert got == list(range(1, 11))
    j.close()


# -- who may connect, and who may Release (finding 10) ----------------------------------

class Releases:
    """The agent's release(): records who asked; only web-1 was isolated by this node."""

    def __init__(self):
        self.calls = []

    def __call__(self, ns, pod, by):
        self.calls.append((ns, pod, by))
        if (ns, pod) != ("shop", "web-1"):
            return "not-isolated", f"{ns}/{pod} was not isolated by the agent on node n1"
        return "done", "network restored"


def _release(stub, ns="shop", pod="web-1"):
    try:
        r = stub.Release(pb.ReleaseRequest(namespace=ns, pod=pod), timeout=5)
        return ("OK", f"{r.status}: {r.detail}")
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def test_release_on_the_root_only_socket_and_only_what_this_node_isolated(tmp_path):
    rel = Releases()
    e = Env(tmp_path, release_fn=rel)
    try:
        assert _release(e.stub()) == ("OK", "done: network restored")
        assert _release(e.stub(), pod="web-2") == (
            "NOT_FOUND", "shop/web-2 was not isolated by the agent on node n1")
        assert _release(e.stub(), pod="web-1\x1b[2J") == (
            "INVALID_ARGUMENT", "not a Kubernetes namespace and pod name: shop/web-1\\x1b[2J")
        assert rel.calls == [("shop", "web-1", "root (root-only unix socket)"),
                             ("shop", "web-2", "root (root-only unix socket)")]
    finally:
        e.close()


def test_a_socket_open_to_a_group_cannot_release_the_admin_socket_can(tmp_path):
    import grp
    rel = Releases()
    admin = f"unix://{tmp_path}/api/admin.sock"
    e = Env(tmp_path, release_fn=rel, socket_group="nogroup", admin_socket=admin)
    try:
        gid = grp.getgrnam("nogroup").gr_gid
        sock, d = e.target[len("unix://"):], os.path.dirname(e.target[len("unix://"):])
        assert (_mode(sock), os.stat(sock).st_gid, _mode(d), os.stat(d).st_gid) == (
            0o660, gid, 0o750, gid)
        assert (_mode(admin[len("unix://"):]), os.stat(admin[len("unix://"):]).st_gid) == (
            0o600, 0)
        assert e.stub().GetStatus(pb.GetStatusRequest(), timeout=5).node == "n1"
        assert _release(e.stub()) == (
            "PERMISSION_DENIED",
            "Release needs an admin identity (root on a root-only unix socket, or a client "
            "certificate named in api.admin_identities): the unix socket is open to group "
            f"nogroup: Release needs the root-only socket {admin}")
        admin_stub = pb_grpc.AlertsStub(grpc.insecure_channel(admin))
        assert _release(admin_stub) == ("OK", "done: network restored")
        assert rel.calls == [("shop", "web-1", "root (root-only unix socket)")]
    finally:
        e.close()


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_unix_socket_is_0600_in_a_0700_directory_and_never_more_open(tmp_path):
    e = Env(tmp_path)
    try:
        sock = e.target[len("unix://"):]
        assert (_mode(sock), _mode(os.path.dirname(sock))) == (0o600, 0o700)
    finally:
        e.close()
    assert not os.path.exists(sock)                          # removed at stop
    # a stale socket is replaced; a directory with other files in it is left as it is
    os.makedirs(tmp_path / "shared", mode=0o750)
    (tmp_path / "shared" / "notes.txt").write_text("x")
    from agent.api.server import ApiError
    for i in range(2):
        srv = ApiServer(e.hub, lambda: (None, None), lambda: {},
                        listen=[f"unix://{tmp_path}/shared/m.sock"])
        srv.start()
        assert _mode(tmp_path / "shared" / "m.sock") == 0o600
        assert _mode(tmp_path / "shared") == 0o750
        if i == 0:
            srv.stop(0, remove_sockets=False)               # leaves the socket behind
        else:
            srv.stop(0)
    os.chmod(tmp_path / "shared", 0o777)
    with pytest.raises(ApiError, match="writable by others"):
        ApiServer(e.hub, lambda: (None, None), lambda: {},
                  listen=[f"unix://{tmp_path}/shared/m.sock"])
    os.chmod(tmp_path / "shared", 0o755)
    os.chown(tmp_path / "shared", 65534, -1)
    with pytest.raises(ApiError, match="belongs to uid 65534, not to this agent"):
        ApiServer(e.hub, lambda: (None, None), lambda: {},
                  listen=[f"unix://{tmp_path}/shared/m.sock"])


@pytest.mark.parametrize("opts,why", [
    ({"listen": ["127.0.0.1:0"]}, "a TCP listener needs mutual TLS"),
    ({"listen": ["0.0.0.0:0"], "allow_insecure_tcp": True},
     "api.allow_insecure_tcp applies to loopback addresses only"),
    ({"listen": ["unix://relative.sock"]}, "a unix socket needs an absolute path"),
])
def test_listeners_without_protection_are_refused(tmp_path, opts, why):
    from agent.api.server import ApiError
    j = Journal(str(tmp_path / "j")).open()
    with pytest.raises(ApiError, match=why):
        ApiServer(AlertHub(j), lambda: (None, None), lambda: {}, **opts)
    j.close()


def test_mutual_tls_subscribe_for_any_client_release_for_admins_only(tmp_path):
    c = _certs(tmp_path)
    rel = Releases()
    e = Env(tmp_path / "s", release_fn=rel, tls_cert=c["server"], tls_key=c["server_key"],
            tls_client_ca=c["ca"], admin_identities=["mamori-admin"])
    try:
        e.hub.publish(rec(1))
        user = pb_grpc.AlertsStub(_secure(e.port, c["ca"], c["client"], c["client_key"]))
        [a] = collect(user.Subscribe(pb.SubscribeRequest(since_sequence=0)), 1)
        assert a.sequence == 1
        code, detail = _release(user)
        assert code == "PERMISSION_DENIED"
        assert detail.endswith("client certificate 'client' is not in api.admin_identities")
        admin = pb_grpc.AlertsStub(_secure(e.port, c["ca"], c["admin"], c["admin_key"]))
        assert _release(admin) == ("OK", "done: network restored")
        assert _release(admin, pod="web-9") == (
            "NOT_FOUND", "shop/web-9 was not isolated by the agent on node n1")
        assert rel.calls == [("shop", "web-1", "certificate 'mamori-admin'"),
                             ("shop", "web-9", "certificate 'mamori-admin'")]
    finally:
        e.close()
