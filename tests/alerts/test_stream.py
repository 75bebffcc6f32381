"""The gRPC alert stream, over real loopback connections: filters, replay and live with no
gap and no duplicate, reconnect and restart, a stalled subscriber, TLS and mTLS."""
import datetime
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agent.alerts.hub import AlertHub
from agent.alerts.journal import Journal
from agent.api.gen.mamori.v1 import alerts_pb2 as pb
from agent.api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from agent.api.server import ApiServer


def rec(i, severity="high", tactic="TA0006", technique="T1003.008", rule="R", ns="shop",
        pod="web-1", node="n1"):
    return {"rule": rule, "severity": severity, "node": node, "output": f"alert {i}",
            "tactic": {"id": tactic, "name": "x"}, "technique": {"id": technique, "name": "y"},
            "fields": {"k8s.ns": ns, "k8s.pod": pod, "proc.pid": i, "proc.exe": "/bin/cat",
                       "proc.args": ["cat", "/etc/shadow"], "container.id": "c1",
                       "event.kind": "open", "file.path": "/etc/shadow",
                       "proc.ancestors": [{"pid": 1, "exe": "/sbin/init"}]}}


class Env:
    def __init__(self, tmp_path, queue=10000, **tls):
        self.dir = str(tmp_path / "journal")
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.dir).open()
        self.hub = AlertHub(self.journal, queue)
        self.server = ApiServer(self.hub, lambda: (None, None),
                                lambda: {"node": "n1", "rules_loaded": 3},
                                listen=["127.0.0.1:0"], **tls)
        self.server.start()
        self.port = self.server.ports[0]

    def stub(self, ch=None):
        return pb_grpc.AlertsStub(ch or grpc.insecure_channel(f"127.0.0.1:{self.port}"))

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
    e = Env(tmp_path, queue=1000)
    try:
        stalled_stream = e.stub().Subscribe(pb.SubscribeRequest())     # live; never read
        stalled_first = []

        def first():
            try:
                stalled_first.append(next(stalled_stream))
            except grpc.RpcError:
                pass                           # the server stopped before: nothing to keep
        threading.Thread(target=first, daemon=True).start()
        fast = []
        fast_stream = e.stub().Subscribe(pb.SubscribeRequest(queue_size=200000))
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
    ch = grpc.insecure_channel(f"127.0.0.1:{env.port}")
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
    srv_k, cli_k, bad_k = key(), key(), key()
    return {
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
    tls = Env(tmp_path / "a", tls_cert=c["server"], tls_key=c["server_key"])
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
