"""`mamori alerts` against a real gRPC server: table, JSON, filters, resume."""
import json
import os
import subprocess
import sys

from test_stream import Env, rec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(target, *args, home):
    r = subprocess.run([sys.executable, "-m", "agent.cli", "alerts", "--server",
                        target, "--wait", "1", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "HOME": str(home)})
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_table_json_filters_and_resume(tmp_path):
    e = Env(tmp_path / "srv")
    try:
        e.hub.publish(rec(1))
        e.hub.publish(rec(2, severity="low", ns="dev"))
        table = _run(e.target, home=tmp_path)
        assert table[0].split()[:6] == ["SEQ", "TIME", "SEVERITY", "TACTIC", "TECHNIQUE",
                                        "WHERE"]
        assert [l.split()[0] for l in table[1:]] == ["1", "2"]
        assert "high" in table[1] and "shop/web-1" in table[1] and "R: alert 1" in table[1]
        lines = [json.loads(l) for l in _run(e.target, "--json", "--severity", "high",
                                             home=tmp_path)]
        assert [(a["sequence"], a["rule"], a["pod"]["namespace"]) for a in lines] == [
            ("1", "R", "shop")]
        ns = [json.loads(l)["sequence"] for l in _run(e.target, "--json", "--namespace", "dev",
                                                      home=tmp_path)]
        assert ns == ["2"]
        first = [json.loads(l)["sequence"] for l in _run(e.target, "--json", "--resume",
                                                         home=tmp_path)]
        e.hub.publish(rec(3))
        then = [json.loads(l)["sequence"] for l in _run(e.target, "--json", "--resume",
                                                        home=tmp_path)]
        assert (first, then) == (["1", "2"], ["3"])
    finally:
        e.close()


def test_status_command(tmp_path):
    e = Env(tmp_path / "srv")
    try:
        e.hub.publish(rec(1))
        r = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--server",
                            e.target], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "node            n1"
        assert "rules loaded    3" in lines and "last alert      #1" in lines
        assert "alerts          high 1" in lines
    finally:
        e.close()
