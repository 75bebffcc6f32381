"""Issue 21, findings 9 and 10: the gRPC API of a real `mamori run` must not be exhausted by
its clients.

- 9: 16 idle Subscribe streams took every gRPC worker thread: GetStatus and the health check
  timed out and a 17th subscriber hung. Now a stream is a coroutine on the asyncio server;
  20 idle streams leave GetStatus and health answering within a second, a client's 9th
  stream is refused (RESOURCE_EXHAUSTED), the others keep working and a closed one frees its
  slot.
- 10: a client chose its own queue (up to 1,000,000 alerts, over the configured 10,000) and
  one stalled reader grew the agent by 50 MiB per 20,000 alerts. Now it gets the configured
  queue, bounded by bytes too; the agent's memory stays bounded while it does not read; it
  is disconnected once it has not read for api.stall_timeout_s, and resumes from the
  journal with every alert.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.api.gen.mamori.v1 import alerts_pb2 as pb
from agent.api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from testbed.certs import certs, tls_channel
from testbed.image import build_image
from testbed.runc import Container
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHADOW = "Shadow file read in a container"
# shadow reads at a steady pace, with arguments that make each alert about 2.5 KB (the alert
# carries proc.args), as an attacker who wants the agent to hold as much as it can would
PADDING = " ".join(["p" * 100] * 18)


def storm(n: int, rate: int) -> str:
    return f"STORM_RATE={rate} /usr/local/bin/storm open {n} /etc/shadow {PADDING} >/dev/null"


@pytest.fixture(scope="module")
def storm_image(tmp_path_factory):
    d = tmp_path_factory.mktemp("storm")
    binary = str(d / "storm")
    subprocess.run(["gcc", "-static", "-O2", "-o", binary, f"{ROOT}/bench/storm.c"], check=True)
    return build_image(str(d / "image"), helpers={"/usr/local/bin/storm": binary})


@pytest.fixture
def storm_container(storm_image, tmp_path):
    c = Container(storm_image, str(tmp_path / "c")).start()
    yield c
    c.stop()


class Reader:
    def __init__(self, channel, **req):
        self.got: list = []
        self.error = None
        self.call = pb_grpc.AlertsStub(channel).Subscribe(pb.SubscribeRequest(**req))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for a in self.call:
                self.got.append(a)
        except grpc.RpcError as e:
            self.error = e

    def rules(self):
        return [a.rule for a in self.got if not a.HasField("notice")]


def subscribers(agent) -> int:
    """From /metrics: it answers whatever the gRPC server does."""
    m = re.search(r"^mamori_subscribers (\d+)", agent.http("/metrics")[1], re.M)
    return int(m.group(1)) if m else -1


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def test_idle_streams_do_not_take_the_api_and_a_client_gets_at_most_8(agent_factory,
                                                                      containers, tmp_path):
    clients = ("client-0", "client-1", "client-2")
    c = certs(str(tmp_path), clients)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sock = f"{tmp_path}/api/m.sock"
    agent = agent_factory(api={"listen": [f"unix://{sock}", f"127.0.0.1:{port}"],
                               "tls_cert": c["server"], "tls_key": c["server_key"],
                               "tls_client_ca": c["ca"]})            # default limits
    channels = {"unix": grpc.insecure_channel(f"unix://{sock}")}
    channels.update({who: tls_channel(port, c, who) for who in clients})
    streams = {who: [Reader(channels[who]) for _ in range(6)] for who in clients}
    streams["unix"] = [Reader(channels["unix"]) for _ in range(2)]
    assert wait_until(lambda: subscribers(agent) == 20, 15)      # a 17th used to hang
    for ch in channels.values():                                   # 20 idle streams open
        t0 = time.monotonic()
        st = pb_grpc.AlertsStub(ch).GetStatus(pb.GetStatusRequest(), timeout=1)
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                   timeout=1).status == 1   # SERVING
        assert time.monotonic() - t0 < 1
    assert (st.node, len(st.subscribers), st.max_streams, st.max_streams_per_client) == (
        "adversarial-node", 20, 64, 8)
    assert sorted(s.client for s in st.subscribers) == sorted(
        [f"unix:{sock}"] * 2 + [f"certificate CN={w}" for w in clients for _ in range(6)])
    streams["client-0"] += [Reader(channels["client-0"]) for _ in range(2)]
    assert wait_until(lambda: subscribers(agent) == 22, 10)
    with pytest.raises(grpc.RpcError) as e:                        # its 9th: refused
        list(pb_grpc.AlertsStub(channels["client-0"]).Subscribe(pb.SubscribeRequest(),
                                                                timeout=5))
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "client certificate CN=client-0 has 8 Subscribe streams open, the most one client "
        "may have (api.max_streams_per_client: 8); close one first")
    box = containers()                                             # the open ones work
    m = agent.mark()
    box.sh("cat /etc/shadow > /dev/null")
    a = agent.wait_for(SHADOW, box.id, since=m)
    every = [r for rs in streams.values() for r in rs]
    assert wait_until(lambda: all(SHADOW in r.rules() for r in every), 10)
    assert all(r.error is None and [x.sequence for x in r.got if x.rule == SHADOW] ==
               [a["seq"]] for r in every)
    for r in streams["client-0"][:3]:                              # closing frees slots
        r.call.cancel()
    assert wait_until(lambda: subscribers(agent) == 19, 10)
    again = [Reader(channels["client-0"]) for _ in range(3)]
    assert wait_until(lambda: subscribers(agent) == 22, 10)
    m = agent.mark()
    box.sh("cat /etc/shadow > /dev/null")
    a = agent.wait_for(SHADOW, box.id, since=m)
    assert wait_until(lambda: all(r.rules() == [SHADOW] for r in again), 10)
    assert agent.http("/healthz") == (200, "ok\n")


def test_a_client_cannot_choose_its_queue_and_memory_stays_bounded(agent_factory,
                                                                   storm_container):
    """alerts.subscriber_queue: 1000. A subscriber asks for 1,000,000 and never reads while
    30,000 alerts of about 2.5 KB are published (75 MB: held by its queue before, as the
    issue measured); the agent's resident memory grows by less than 24 MiB."""
    agent = agent_factory(alerts={"subscriber_queue": 1000})
    storm_container.sh(storm(3000, 3000), timeout=60)               # warm up: caches, journal
    assert wait_until(lambda: len(agent.matching(SHADOW)) >= 3000, 30)
    ch = grpc.insecure_channel(f"unix://{agent.socket}")
    stalled = pb_grpc.AlertsStub(ch).Subscribe(pb.SubscribeRequest(queue_size=1_000_000))
    assert wait_until(lambda: subscribers(agent) == 1, 10)
    status = pb_grpc.AlertsStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    before = rss_kib(agent.proc.pid)
    m = agent.mark()
    storm_container.sh(storm(30000, 3000), timeout=120)
    assert wait_until(lambda: len(agent.matching(SHADOW, since=m)) >= 30000, 60)
    grown = rss_kib(agent.proc.pid) - before
    assert grown < 24 << 10, f"the agent grew by {grown >> 10} MiB"
    [sub] = status.subscribers                                      # it got the configured
    assert (sub.queue_size, sub.queue_bytes) == (1000, 16 << 20)    # queue, not its own
    first = next(stalled)
    assert (first.sequence, first.notice.queue_size) == (0, 1000)
    assert first.notice.message.startswith("queue_size 1000000 is more than this agent gives "
                                           "a subscriber (alerts.subscriber_queue: 1000)")
    stalled.cancel()


def test_a_stalled_reader_is_disconnected_and_resumes_with_every_alert(agent_factory,
                                                                        storm_container):
    """The default configuration (a stall timeout of 30 s, queues of 10,000 alerts and
    16 MiB). A reader that does not read while alerts keep coming: its queue stays within
    16 MiB, it is disconnected, and, reading at last, it gets what was sent, is told that
    it stalled and from where to resume, and gets every other alert from the journal."""
    agent = agent_factory()
    ch = grpc.insecure_channel(f"unix://{agent.socket}")
    stub = pb_grpc.AlertsStub(ch)
    start = stub.GetStatus(pb.GetStatusRequest(), timeout=5).last_sequence
    stalled = stub.Subscribe(pb.SubscribeRequest(since_sequence=start))   # never read
    assert wait_until(lambda: subscribers(agent) == 1, 10)
    flood = storm_container.popen("/bin/sh", "-c", storm(1_000_000, 500))
    samples = []                                          # its queue, meanwhile
    try:
        def ended():
            samples.extend(stub.GetStatus(pb.GetStatusRequest(), timeout=5).subscribers)
            return subscribers(agent) == 0
        assert wait_until(ended, 120, 0.5)                    # it was disconnected
    finally:
        flood.kill()
        flood.wait()
        storm_container.sh("kill -9 $(pidof storm) 2>/dev/null; true")
    assert 0 < max(s.queued_bytes for s in samples) <= 16 << 20
    assert max(s.queued for s in samples) <= 10000
    assert wait_until(lambda: stub.GetStatus(pb.GetStatusRequest(),
                                             timeout=5).last_sequence == agent.alerts()[-1][
        "seq"], 30)
    time.sleep(1)                                             # the last alerts are in
    last = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert last.streams_stalled == 1
    alerts, missed = [], []
    with pytest.raises(grpc.RpcError) as e:
        for a in stalled:
            if not a.HasField("notice"):
                alerts.append(a.sequence)
            elif a.notice.missed:
                missed.append(a.notice.resume_from_sequence)
    meta = dict(e.value.trailing_metadata())
    notice = pb.StreamNotice.FromString(meta["mamori-notice-bin"])
    resume = notice.resume_from_sequence
    assert (e.value.code(), e.value.details(), notice.stalled) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, notice.message, True)
    assert f"subscribe again with since_sequence={resume - 1} to get the rest" in \
        notice.message
    assert alerts and alerts == sorted(set(alerts)) and alerts[-1] in (resume - 1, resume)
    assert "ended: not read for 30 s; it resumes from sequence" in agent.log()
    since = min(missed + [resume]) - 1                         # it resumes from there
    rest = Reader(ch, since_sequence=since)
    assert wait_until(lambda: len(rest.got) >= last.last_sequence - since, 60)
    got = [a.sequence for a in rest.got if not a.HasField("notice")]
    end = got[-1]                                        # (the agent may still raise some)
    assert end >= last.last_sequence and got == list(range(since + 1, end + 1))
    assert sorted(set(alerts) | set(got)) == list(range(start + 1, end + 1))
    assert [a["seq"] for a in agent.alerts() if start < a["seq"] <= end] == list(
        range(start + 1, end + 1))                       # every alert the agent raised


def test_the_limits_are_the_configuration(agent_factory, storm_container):
    """api.max_streams, max_streams_per_client, stall_timeout_s and
    alerts.subscriber_queue_bytes reach the agent from its configuration file."""
    agent = agent_factory(api={"max_streams": 5, "max_streams_per_client": 3,
                               "stall_timeout_s": 2, "keepalive_time_s": 5,
                               "keepalive_timeout_s": 2},
                          alerts={"subscriber_queue_bytes": "1Mi"})
    ch = grpc.insecure_channel(f"unix://{agent.socket}")
    stalled = pb_grpc.AlertsStub(ch).Subscribe(pb.SubscribeRequest())     # never read
    streams = [Reader(ch) for _ in range(2)]
    assert wait_until(lambda: subscribers(agent) == 3, 10)
    with pytest.raises(grpc.RpcError) as e:
        list(pb_grpc.AlertsStub(ch).Subscribe(pb.SubscribeRequest(), timeout=5))
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"client unix:{agent.socket} has 3 Subscribe streams open, the most one client may "
        f"have (api.max_streams_per_client: 3); close one first")
    st = pb_grpc.AlertsStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    assert (st.max_streams, st.max_streams_per_client, st.streams_open) == (5, 3, 3)
    assert [(s.queue_size, s.queue_bytes) for s in st.subscribers] == [(10000, 1 << 20)] * 3
    storm_container.sh(storm(20000, 4000), timeout=60)     # the readers read, it does not
    assert wait_until(lambda: subscribers(agent) == 2, 30)
    assert "ended: not read for 2 s; it resumes from sequence" in agent.log()
    assert all(r.error is None and SHADOW in r.rules() for r in streams)   # still served
    with pytest.raises(grpc.RpcError) as e:
        for _ in stalled:
            pass
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.details().startswith("this stream is ended: its client has not read for "
                                        "2 s (api.stall_timeout_s; ")
