"""Issue 21, findings 9 and 10, on the in-process API over real sockets (the unix socket and
loopback TCP with mutual TLS): idle streams do not take the capacity GetStatus and the
health check answer with; streams are capped per client and in all; a client cannot choose
a queue larger than the configuration; queues are bounded by bytes; a stalled reader is
disconnected and resumes from the journal; a peer that vanished is found by keepalive."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.alerts.alert import Alert
from agent.alerts.hub import AlertHub, Filter
from agent.alerts.journal import Journal
from agent.api.gen.mamori.v1 import alerts_pb2 as pb
from agent.api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from agent.api.server import ApiServer, to_proto
from testbed.certs import certs, tls_channel
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rec(i, args=("cat", "/etc/shadow")):
    return Alert.from_dict({"rule": "R", "severity": "high", "node": "n1", "output": f"alert {i}",
            "tactic": {"id": "TA0006", "name": "Credential Access"},
            "technique": {"id": "T1003.008", "name": "x"},
            "fields": {"k8s.ns": "shop", "k8s.pod": "web-1", "proc.pid": i,
                       "proc.exe": "/bin/cat", "proc.args": list(args),
                       "container.id": "c1", "event.kind": "open",
                       "file.path": "/etc/shadow"}})


class Api:
    """A hub and its API on a unix socket and, with `clients`, on loopback TCP with mutual
    TLS (one certificate per client name). Limits are the defaults unless given."""

    def __init__(self, tmp_path, clients=(), queue=10000, queue_bytes=None, **opts):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(str(tmp_path / "journal")).open()
        self.hub = AlertHub(self.journal, queue, *([queue_bytes] if queue_bytes else []))
        self.unix = f"unix://{tmp_path}/api/mamori.sock"
        listen = [self.unix]
        if clients:
            self.certs = certs(str(tmp_path), clients)
            listen.append("127.0.0.1:0")
            opts.update(tls_cert=self.certs["server"], tls_key=self.certs["server_key"],
                        tls_client_ca=self.certs["ca"])
        self.server = ApiServer(self.hub, lambda: (None, None), lambda: {"node": "n1"},
                                listen=listen, **opts)
        self.server.start()
        self.channels = {"unix": grpc.insecure_channel(self.unix)}
        for who in clients:
            self.channels[who] = tls_channel(self.server.ports[1], self.certs, who)

    def stub(self, who="unix"):
        return pb_grpc.AlertsStub(self.channels[who])

    def status(self, who="unix"):
        return self.stub(who).GetStatus(pb.GetStatusRequest(), timeout=1)

    def healthy(self, who="unix"):
        return health_pb2_grpc.HealthStub(self.channels[who]).Check(
            health_pb2.HealthCheckRequest(service="mamori.v1.Alerts"), timeout=1).status

    def close(self):
        for ch in self.channels.values():
            ch.close()
        self.server.stop(0)
        self.journal.close()


class Reader:
    """One Subscribe stream read on a thread of its own: what it got, and how it ended."""

    def __init__(self, stub, **req):
        self.got: list = []
        self.error = None
        self.done = threading.Event()
        self.call = stub.Subscribe(pb.SubscribeRequest(**req))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for a in self.call:
                self.got.append(a)
        except grpc.RpcError as e:
            self.error = e
        self.done.set()

    def seqs(self):
        return [a.sequence for a in self.got if not a.HasField("notice")]


def refused(stub, **req):
    """The status a Subscribe stream ends with right away."""
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Subscribe(pb.SubscribeRequest(**req), timeout=5))
    return e.value.code(), e.value.details()


# -- finding 9: streams do not take the API ---------------------------------------------

def test_idle_streams_leave_status_and_health_answering_and_are_capped_per_client(tmp_path):
    """Defaults: 64 streams in all, 8 per client. Three certificates with 8 idle streams
    each (24: more than the 16 worker threads that used to serve every RPC)."""
    clients = ("client-0", "client-1", "client-2")
    api = Api(tmp_path, clients)
    try:
        streams = {who: [Reader(api.stub(who)) for _ in range(8)] for who in clients}
        assert wait_until(lambda: len(api.hub.subscribers) == 24, 10)
        for who in ("unix", *clients):                # every RPC answers, within 1 s
            t0 = time.monotonic()
            assert api.status(who).node == "n1"
            assert api.healthy(who) == health_pb2.HealthCheckResponse.SERVING
            assert time.monotonic() - t0 < 1
        for who in clients:                           # a 9th stream of one client: refused
            assert refused(api.stub(who)) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"client certificate CN={who} has 8 Subscribe streams open, the most one "
                f"client may have (api.max_streams_per_client: 8); close one first")
        st = api.status()
        assert sorted(s.client for s in st.subscribers) == sorted(
            f"certificate CN={who}" for who in clients for _ in range(8))
        assert (st.max_streams, st.max_streams_per_client) == (64, 8)
        api.hub.publish(rec(1))                        # the open ones all still work
        every = [r for rs in streams.values() for r in rs]
        assert wait_until(lambda: all(r.seqs() == [1] for r in every), 10)
        for r in streams["client-0"][:3]:              # closing frees the client's capacity
            r.call.cancel()
        assert wait_until(lambda: len(api.hub.subscribers) == 21, 10)
        again = [Reader(api.stub("client-0")) for _ in range(3)]
        assert wait_until(lambda: len(api.hub.subscribers) == 24, 10)
        assert refused(api.stub("client-0"))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        api.hub.publish(rec(2))
        assert wait_until(lambda: all(r.seqs() == [2] for r in again), 10)
        assert all(r.error is None for r in every[3:] + again)
    finally:
        api.close()


def test_streams_are_capped_in_all_and_a_unix_socket_is_one_client(tmp_path):
    api = Api(tmp_path, ("client-a",), max_streams=10, max_streams_per_client=6)
    sock = api.unix[len("unix://"):]
    try:
        local = [Reader(api.stub()) for _ in range(6)]
        assert wait_until(lambda: len(api.hub.subscribers) == 6, 10)
        assert refused(api.stub()) == (     # every connection to the socket: one client
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"client unix:{sock} has 6 Subscribe streams open, the most one client may "
            f"have (api.max_streams_per_client: 6); close one first")
        remote = [Reader(api.stub("client-a")) for _ in range(4)]
        assert wait_until(lambda: len(api.hub.subscribers) == 10, 10)
        assert refused(api.stub("client-a")) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "the agent has 10 Subscribe streams open, the most it serves (api.max_streams: "
            "10); try again later")
        t0 = time.monotonic()
        assert api.status().max_streams == 10 and api.healthy() == 1
        assert time.monotonic() - t0 < 1
        local[0].call.cancel()
        assert wait_until(lambda: len(api.hub.subscribers) == 9, 10)
        extra = Reader(api.stub("client-a"))           # the freed slot, for anyone
        assert wait_until(lambda: len(api.hub.subscribers) == 10, 10)
        assert sorted(s.client for s in api.status().subscribers) == sorted(
            [f"unix:{sock}"] * 5 + ["certificate CN=client-a"] * 5)
        api.hub.publish(rec(1))
        assert wait_until(lambda: all(r.seqs() == [1] for r in local[1:] + remote + [extra]),
                          10)
    finally:
        api.close()


KEEPALIVE_CLIENT = r"""
import sys, grpc
from agent.api.gen.mamori.v1 import alerts_pb2 as pb, alerts_pb2_grpc as pb_grpc
call = pb_grpc.AlertsStub(grpc.insecure_channel(sys.argv[1])).Subscribe(
    pb.SubscribeRequest(since_sequence=0))
print(next(call).sequence, flush=True)
sys.stdin.read()
"""


def test_a_peer_that_stops_answering_is_found_by_keepalive(tmp_path):
    """A client that is frozen (SIGSTOP: its connection stays open, nothing answers) holds
    a stream; keepalive pings end it and give its capacity back."""
    api = Api(tmp_path, max_streams_per_client=1, keepalive_time_s=1, keepalive_timeout_s=1)
    api.hub.publish(rec(1))
    p = subprocess.Popen([sys.executable, "-c", KEEPALIVE_CLIENT, api.unix], cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert p.stdout.readline().strip() == "1"
        assert refused(api.stub())[0] == grpc.StatusCode.RESOURCE_EXHAUSTED   # it has it
        os.kill(p.pid, signal.SIGSTOP)
        assert wait_until(lambda: not api.hub.subscribers, 30)
        r = Reader(api.stub(), since_sequence=0)
        assert wait_until(lambda: r.seqs() == [1], 10)
    finally:
        p.kill()
        p.wait()
        api.close()


# -- finding 10: queues a client cannot grow ---------------------------------------------

def test_a_client_gets_at_most_the_configured_queue_and_is_told(tmp_path):
    api = Api(tmp_path, queue=100)
    try:
        big = Reader(api.stub(), queue_size=1_000_000, since_sequence=0)
        small = Reader(api.stub(), queue_size=50, since_sequence=0)
        assert wait_until(lambda: len(api.hub.subscribers) == 2, 10)
        st = {s.queue_size: s for s in api.status().subscribers}
        assert sorted(st) == [50, 100]
        assert st[100].queue_bytes == st[50].queue_bytes == 16 << 20
        api.hub.publish(rec(1))
        assert wait_until(lambda: len(big.got) == 2 and len(small.got) == 1, 10)
        n = big.got[0].notice
        assert (big.got[0].sequence, n.queue_size, n.queue_bytes, n.message) == (
            0, 100, 16 << 20,
            f"queue_size 1000000 is more than this agent gives a subscriber "
            f"(alerts.subscriber_queue: 100): this stream's queue holds at most 100 alerts "
            f"and {16 << 20} bytes of them (alerts.subscriber_queue_bytes)")
        assert big.seqs() == small.seqs() == [1]        # no notice for a smaller queue
    finally:
        api.close()


def test_a_queue_is_bounded_by_the_bytes_of_its_alerts(tmp_path):
    from agent.alerts.hub import record_size
    j = Journal(str(tmp_path / "j")).open()
    hub = AlertHub(j, 100_000, 64 << 10)
    r = rec(0, args=("tar", "cf", "/tmp/o.tar") + ("x" * 100,) * 20)
    size = record_size(r.to_dict())
    assert size >= to_proto(replace(r, seq=1)).ByteSize() * 0.8  # about what a stream sends
    sub = hub.subscribe(Filter())                          # never taken from
    for i in range(5000):
        hub.publish(rec(i, args=r.fields["proc.args"]))
        assert sub.bytes <= 64 << 10
    n = len(sub.queue)                                     # as many as fit, no more
    assert (64 << 10) - 2 * size < sub.bytes <= 64 << 10 and n < 5000
    assert (sub.dropped, sub.first_missed) == (5000 - n, n + 1)
    got = [sub.take(0) for _ in range(n + 1)]
    assert [g[1].seq for g in got[:-1]] == list(range(1, n + 1))
    assert got[-1] == ("missed", (5000 - n, n + 1))        # how many, and from where
    assert sub.missed_upto == 5000                         # and that it covers the rest
    assert sub.bytes == 0
    big = hub.subscribe(Filter())            # one alert larger than the whole budget
    hub.publish(rec(9, args=("x" * (128 << 10),)))
    assert len(big.queue) == 1 and big.dropped == 0
    j.close()


def read_until_the_end(call):
    """(alerts, missed notices, stall notice, the error) of a stream read to its end."""
    alerts, missed = [], []
    with pytest.raises(grpc.RpcError) as e:
        for a in call:
            if not a.HasField("notice"):
                alerts.append(a.sequence)
            elif a.notice.missed:
                missed.append(a.notice)
    meta = dict(e.value.trailing_metadata() or ())
    stall = pb.StreamNotice.FromString(meta["mamori-notice-bin"]) \
        if "mamori-notice-bin" in meta else None
    return alerts, missed, stall, e.value


BIG_ARGS = ("tar", "cf", "/tmp/o.tar") + ("y" * 200,) * 10       # about 2.3 KB an alert


def test_a_stalled_reader_is_disconnected_and_resumes_with_every_alert(tmp_path):
    """It asks for a queue of 1,000,000 (it gets 1000) and never reads while alerts are
    published. What the transport buffers it gets later; meanwhile its queue stays within
    its bounds (1000 alerts, 256 KiB), the stream is ended once its client has not read for
    the stall timeout (1 s) and its client, reading at last, is told so and from where; it
    resumes from there and has every alert."""
    api = Api(tmp_path, queue=1000, queue_bytes=256 << 10, stall_timeout_s=1)
    try:
        call = api.stub().Subscribe(pb.SubscribeRequest(queue_size=1_000_000))  # not read
        assert wait_until(lambda: len(api.hub.subscribers) == 1, 10)
        sub = api.hub.subscribers[0]
        peak, n = (0, 0), 0
        while api.hub.subscribers and n < 200_000:
            n += 1
            api.hub.publish(rec(n, BIG_ARGS))
            if n % 20 == 0:
                peak = (max(peak[0], len(sub.queue)), max(peak[1], sub.bytes))
                time.sleep(0.001)
        assert not api.hub.subscribers                       # it was disconnected
        assert peak[0] <= 1000 and 0 < peak[1] <= 256 << 10 and sub.dropped > 0
        st = api.status()                # ended, its queue gone; its slot, until it reads
        assert (st.streams_stalled, st.streams_open, len(st.subscribers)) == (1, 1, 0)
        alerts, missed, stall, err = read_until_the_end(call)
        assert wait_until(lambda: api.status().streams_open == 0, 10)
        assert 0 < len(alerts) < n and alerts == sorted(set(alerts))
        assert (err.code(), err.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                               stall.message)
        resume = stall.resume_from_sequence
        # the resume point is at or before the first alert the client may not have: never
        # after (that would lose alerts); before only repeats some, which the client tells
        # by sequence (the write in flight, or ones that were on their way when it stalled)
        assert stall.stalled and 0 < resume <= alerts[-1] + 1
        assert re.fullmatch(
            r"this stream is ended: its client has not read for 1 s \(api\.stall_timeout_s; "
            r"\d+ alerts, \d+ bytes were waiting in its queue of 1000 alerts and 262144 "
            r"bytes\); subscribe again with since_sequence=" + str(resume - 1) +
            r" to get the rest from the journal", stall.message), stall.message
        # what it was told it missed, and what came after the stall, from the journal
        since = min([m.resume_from_sequence for m in missed] + [resume]) - 1
        rest = Reader(api.stub(), since_sequence=since)
        assert wait_until(lambda: len(rest.got) >= n - since, 60)
        assert rest.seqs() == list(range(since + 1, n + 1))
        assert sorted(set(alerts) | set(rest.seqs())) == list(range(1, n + 1))
        assert set(alerts) >= set(range(1, since + 1))    # nothing lost before that point
    finally:
        api.close()


def test_the_limits_are_configuration_keys_with_defaults_and_checks(tmp_path):
    import yaml
    from agent import config
    d = config.load(None)
    assert (d.api.max_streams, d.api.max_streams_per_client, d.api.stall_timeout_s,
            d.api.keepalive_time_s, d.api.keepalive_timeout_s, d.alerts.subscriber_queue,
            d.alerts.subscriber_queue_bytes) == (64, 8, 30.0, 60.0, 20.0, 10000, 16 << 20)
    shipped = config.load(f"{ROOT}/config/mamori.yaml")          # documented there, alike
    assert (shipped.api, shipped.alerts.subscriber_queue_bytes) == (
        d.api, d.alerts.subscriber_queue_bytes)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({
        "kubernetes": {"mode": "off"}, "alerts": {"subscriber_queue_bytes": "1Mi"},
        "api": {"max_streams": 5, "max_streams_per_client": 2, "stall_timeout_s": 2.5,
                "keepalive_time_s": 10, "keepalive_timeout_s": 3}}))
    c = config.load(str(good))
    assert (c.api.max_streams, c.api.max_streams_per_client, c.api.stall_timeout_s,
            c.api.keepalive_time_s, c.api.keepalive_timeout_s,
            c.alerts.subscriber_queue_bytes) == (5, 2, 2.5, 10.0, 3.0, 1 << 20)
    bad = tmp_path / "bad.yaml"
    bad.write_text('kubernetes:\n  mode: "off"\napi:\n  max_streams: 0\n'
                   '  max_streams_per_client: "8"\n  stall_timeout_s: 0\n'
                   '  keepalive_time_s: true\n  keepalive_timeout_s: 5000\n'
                   'alerts:\n  subscriber_queue_bytes: 2Gi\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(str(bad))
    assert sorted(e.value.problems) == sorted([
        f"{bad}:4: api.max_streams: must be an integer from 1 to 100000",
        f"{bad}:5: api.max_streams_per_client: must be an integer from 1 to 100000",
        f"{bad}:6: api.stall_timeout_s: must be a number of seconds from 1 to 3600",
        f"{bad}:7: api.keepalive_time_s: must be a number of seconds from 1 to 86400",
        f"{bad}:8: api.keepalive_timeout_s: must be a number of seconds from 1 to 3600",
        f"{bad}:10: alerts.subscriber_queue_bytes: expected a size from 1Ki to 1Gi, such as "
        f"16Mi"])
