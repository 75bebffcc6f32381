"""Rule evaluation with the rules over time (issue 18): the default rules' evaluation rate on
one core, on real events recorded from a runc container, against the default rules of a
git revision (the ruleset before the threshold and sequence rules) and the tree's.

    sudo .venv/bin/python bench/rules_over_time.py [--before REV] [--rounds 3]

Both rulesets are evaluated by this tree's engine on the same recording, taking turns, so
the difference is what the new rules (their gates, conditions and window state) cost. The
workload is a service's ordinary work plus what the new rules watch without firing: execs,
file reads and writes, connects to a few ports, renames and deletions.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from agent.config import DEFAULT_RULES  # noqa: E402
from agent.rules.engine import RuleEngine  # noqa: E402
from rules_eval import record_items  # noqa: E402 (the recording rules_eval.py makes)

WORKLOAD = ("i=0; while [ $i -lt 40 ]; do cat /etc/hostname /etc/passwd >/dev/null; "
            "ls /tmp >/dev/null; for p in 8080 8081 5432; do "
            "nc -w 1 127.0.0.1 $p </dev/null 2>/dev/null; done; "
            "echo x > /tmp/f.$i; mv /tmp/f.$i /tmp/g.$i; rm /tmp/g.$i; /bin/id -u >/dev/null; "
            "i=$((i+1)); done")


def rules_at(rev: str, out: str) -> str:
    """The default rules of a git revision, extracted into `out`."""
    os.makedirs(os.path.join(out, "mitre"), exist_ok=True)
    names = subprocess.check_output(["git", "-C", ROOT, "ls-tree", "--name-only", rev,
                                     "rules/"], text=True).split()
    for n in names + ["rules/mitre/attack.yaml"]:
        if n.endswith((".yaml", ".yml")):
            data = subprocess.check_output(["git", "-C", ROOT, "show", f"{rev}:{n}"])
            with open(os.path.join(out, os.path.relpath(n, "rules")), "wb") as f:
                f.write(data)
    return out


def rate(items, ruleset, seconds: float = 2.0) -> tuple[float, int]:
    """Events evaluated per CPU second of this thread (the machine's other load aside)."""
    n = matches = 0
    t0 = time.thread_time()
    while time.thread_time() - t0 < seconds:
        for it in items:
            matches += len(ruleset.evaluate(it))
        n += len(items)
    return n / (time.thread_time() - t0), matches


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="d9c87c9",
                    help="the revision whose default rules are the baseline")
    ap.add_argument("--only-tree", action="store_true",
                    help="only this tree's engine and rules (run it in a clone of another "
                    "revision to compare whole revisions)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (eBPF, containers)")
    new = RuleEngine([DEFAULT_RULES])
    new.load()
    old = None
    if not args.only_tree:
        old = RuleEngine([rules_at(args.before, tempfile.mkdtemp(prefix="mamori-rules-"))])
        old.load()
    items = record_items(WORKLOAD)
    kinds: dict[str, int] = {}
    for i in items:
        kinds[i.kind] = kinds.get(i.kind, 0) + 1
    print(f"recorded {len(items)} container events {dict(sorted(kinds.items()))}")
    best: dict[str, float] = {}
    for r in range(args.rounds):
        for label, eng in ((f"before ({args.before})", old), ("now", new)):
            if eng is None:
                continue
            ev_s, matches = rate(items, eng.ruleset)
            best[label] = max(best.get(label, 0.0), ev_s)
            windowed = sum(1 for x in eng.ruleset.rules
                           if getattr(x, "window", None) is not None)
            print(f"round {r + 1} {label}: {len(eng.ruleset.rules)} rules ({windowed} over "
                  f"time): {ev_s:,.0f} events/s per CPU second, {matches} matches")
    if old is None:
        print(f"best of {args.rounds}: {best['now']:,.0f}/s")
        return 0
    (b, before), (_, now) = best.items()
    print(f"best of {args.rounds}: {b} {before:,.0f}/s, now {now:,.0f}/s "
          f"({(now / before - 1) * 100:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
