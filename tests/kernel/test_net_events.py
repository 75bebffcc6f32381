"""connect, accept, bind and listen on loopback (IPv4, IPv6, unix), field by field."""
import os

import pytest

from conftest import run_python


def _by_kind(collector, child, kinds):
    evs = collector.find(lambda e: e.pid == child.pid and e.kind in kinds, count=len(kinds))
    return {e.kind: e for e in evs}


@pytest.mark.parametrize("family,host,name", [("AF_INET", "127.0.0.1", "inet"),
                                             ("AF_INET6", "::1", "inet6")])
def test_bind_listen_connect_accept(collector, watched_cgroup, family, host, name):
    child = run_python(watched_cgroup, f"""
import socket
srv = socket.socket(socket.{family}, socket.SOCK_STREAM)
srv.bind(({host!r}, 0))
srv.listen(5)
port = srv.getsockname()[1]
cli = socket.socket(socket.{family}, socket.SOCK_STREAM)
cli.connect(({host!r}, port))
conn, peer = srv.accept()
report(port=port, cport=cli.getsockname()[1], srv=srv.fileno(), cli=cli.fileno(),
       conn=conn.fileno())
""")
    o = child.out
    ev = _by_kind(collector, child, {"bind", "listen", "connect", "accept"})
    b, l, c, a = ev["bind"], ev["listen"], ev["connect"], ev["accept"]
    for e in (b, l, c, a):
        assert (e.family, e.protocol, e.sock_type) == (name, "tcp", "stream")
        assert (e.pid, e.ppid, e.error) == (child.pid, os.getpid(), None)
    assert (b.syscall, b.fd, b.result, b.saddr, b.sport, b.daddr, b.dport) == (
        "bind", o["srv"], 0, host, 0, "", 0)
    assert (l.syscall, l.fd, l.result, l.saddr, l.sport, l.backlog) == (
        "listen", o["srv"], 0, host, o["port"], 5)
    assert (c.syscall, c.fd, c.result, c.daddr, c.dport, c.saddr, c.sport) == (
        "connect", o["cli"], 0, host, o["port"], host, o["cport"])
    assert (a.syscall, a.fd, a.result, a.saddr, a.sport, a.daddr, a.dport) == (
        "accept4", o["srv"], o["conn"], host, o["port"], host, o["cport"])
    f = c.fields()
    assert (f["net.daddr"], f["net.dport"], f["net.family"]) == (host, o["port"], name)


def test_refused_connect_is_marked_failed(collector, watched_cgroup):
    child = run_python(watched_cgroup, """
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
c = socket.socket()
report(port=port, err=c.connect_ex(("127.0.0.1", port)), fd=c.fileno())
""")
    [c] = collector.find(lambda e: e.pid == child.pid and e.kind == "connect")
    assert (c.result, c.error, c.daddr, c.dport, c.fd) == (
        -111, "ECONNREFUSED", "127.0.0.1", child.out["port"], child.out["fd"])


def test_udp_and_unix_sockets(collector, watched_cgroup, tmp_path):
    path = str(tmp_path / "sock")
    child = run_python(watched_cgroup, f"""
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("127.0.0.1", 9))
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind({path!r}); srv.listen(1)
cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); cli.connect({path!r})
report(udp=u.fileno(), port=u.getsockname()[1])
""")
    evs = collector.find(lambda e: e.pid == child.pid and e.kind in ("connect", "bind"),
                         count=3)
    udp = [e for e in evs if e.kind == "connect" and e.family == "inet"][0]
    assert (udp.protocol, udp.sock_type, udp.daddr, udp.dport, udp.sport, udp.result) == (
        "udp", "dgram", "127.0.0.1", 9, child.out["port"], 0)
    ux = [e for e in evs if e.family == "unix"]
    assert sorted((e.kind, e.unix_path, e.result, e.sock_type) for e in ux) == [
        ("bind", path, 0, "stream"), ("connect", path, 0, "stream")]
    assert ux[0].fields()["net.path"] == path
