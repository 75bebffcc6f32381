"""Every command the README and docs/ show a user works, on this machine, from this tree
(issue 24). The commands are read from the Markdown when the tests are collected
(doc_commands.py: shell code blocks, and inline `make ...` / `mamori ...` invocations), so a
command added, changed or renamed there is tested without anyone remembering to; each is
run the way that fits it, chosen by its first words (RUNNERS):

  make bench           `make bench SMOKE=1`: every section at a size that only proves it
                       runs, built from nothing, reported into a temp file (docs/ untouched)
  make demo            to its end (it asks nothing), every attack step's alert checked
  make run             the agent, with a configuration of the test's own (`CONFIG=`): the
                       agent every `mamori alerts` / `status` / `release` line talks to
  make gen, make proto in a scratch copy of the tree: what they write equals what is committed
  mamori run ...       the same agent as `make run`, or one of its own for other flags
  mamori trace ...     events the test makes, seen (and those it must not show, not), Ctrl-C
  mamori rules check   its exact summary line for those files
  mamori rules import-sigma  the tests' Sigma corpus: all translated, loadable beside rules/
  mamori vulndb ...    a database of the test's own from real advisories' records (update
                       from a local HTTP server): the exact record counts
  mamori inventory     against the agent: the table's header, every row well formed
  mamori alerts ...    against the agent: exactly the alerts it printed, filtered as asked;
                       the TLS line over TCP with mutual TLS
  mamori status        node, rules loaded, last alert, alerts per severity
  mamori release       a pod the agent isolated: its network is back
  helm install/template  `helm template` with the same flags (no cluster here): every
                       object strictly valid, what the flags set lands, the namespace exists
  kubectl apply -f     offline: every object strictly valid (kubernetes-validate), and each
                       namespaced object's namespace exists when kubectl reaches it

A command with no runner fails (add one), and so does one that cannot run here unless it
is in CANNOT_RUN with the reason (checked as far as it can be: the target exists, the flags
parse). Example values the docs use (`my-rules.yaml`, `/my/cgroup`, `10.0.0.5:50051`…)
and placeholders (`<digest>`, `NAMESPACE/POD`) are filled from EXAMPLES and PLACEHOLDERS
(doc_commands.py); an unknown placeholder fails and names itself. The runners live in
offline_runners.py, live_runners.py and agent_runners.py; the bed they share in
readme_bed.py and command_bed.py.

Run alone: `.venv/bin/python -m pytest -q tests/commands`; `python tests/commands/
doc_commands.py` lists what would be run. About two minutes, most of it `make bench` and
`make demo`.
"""
from __future__ import annotations

import pytest

from agent_runners import (run_alerts, run_make_run, run_mamori_run, run_release,
                           run_status)
from doc_commands import DocCommand, doc_commands, has_operator
from live_runners import (run_bench, run_demo, run_profile_eval, run_rules_over_time,
                          run_trace)
from offline_runners import (check_what_cannot_run, run_generator, run_helm,
                             run_kubectl_apply, run_rules_check)
from readme_bed import Bed
from scanning_runners import run_import_sigma, run_inventory, run_vulndb

# Commands the docs show that this test does not run in full, and why. Keep it short: each
# is still checked as far as it goes (check_what_cannot_run: a make target exists with its
# recipe, a script runs and has the options shown).
CANNOT_RUN = {
    ("make", "test"): "it is the suite this test runs in (make test -> pytest -> this "
                      "test): running it here would recurse; `make -n test` is checked",
    (".venv/bin/python", "bench/rules_eval.py"):
        "a per-issue benchmark with a fixed ~30 s cost (two probe compiles and a recorded "
        "container workload), over the CI budget of this test; what it measures runs in "
        "`make bench` (smoke) here; its flags are checked",
    (".venv/bin/python", "bench/response_latency.py"):
        "a per-issue benchmark with a fixed ~25 s cost even at --runs 1 (two agents, a "
        "5 s container per isolation run); `make bench` (smoke) runs its terminate "
        "measurement here; its flags are checked",
}


def no_runner(cmd: DocCommand, bed: Bed) -> None:
    raise AssertionError(f"{', '.join(cmd.where)}: `{cmd.text}` has no runner in this test: "
                         "add one to RUNNERS (or list it in CANNOT_RUN with the reason)")


# (first words, order, runner): the cheap ones first, then those that need the agent, and
# `make run` -- which stops it -- last.
RUNNERS = [
    (("mamori", "rules", "check"), 1, run_rules_check),
    (("helm", "install"), 1, run_helm),
    (("helm", "template"), 1, run_helm),
    (("kubectl", "apply"), 1, run_kubectl_apply),
    (("make", "gen"), 1, run_generator),
    (("make", "proto"), 1, run_generator),
    ((".venv/bin/python", "scripts/coverage_matrix.py"), 1, run_generator),
    (("mamori", "rules", "import-sigma"), 1, run_import_sigma),
    (("mamori", "vulndb"), 1, run_vulndb),
    (("mamori", "inventory"), 5, run_inventory),
    ((".venv/bin/python", "bench/profile_eval.py"), 3, run_profile_eval),
    ((".venv/bin/python", "bench/rules_over_time.py"), 3, run_rules_over_time),
    (("mamori", "trace"), 2, run_trace),
    (("make", "bench"), 3, run_bench),
    (("make", "demo"), 4, run_demo),
    (("mamori", "alerts"), 5, run_alerts),
    (("mamori", "status"), 5, run_status),
    (("mamori", "release"), 6, run_release),
    (("mamori", "run"), 7, run_mamori_run),
    (("make", "run"), 8, run_make_run),
]


def runner_for(cmd: DocCommand):
    if has_operator(cmd.argv):
        return 0, no_runner
    if any(cmd.words[:len(k)] == k for k in CANNOT_RUN):
        return 0, check_what_cannot_run
    best = max((r for r in RUNNERS if cmd.words[:len(r[0])] == r[0]),
               key=lambda r: len(r[0]), default=None)
    return (best[1], best[2]) if best else (0, no_runner)


COMMANDS = sorted(doc_commands(), key=lambda c: runner_for(c)[0])


@pytest.fixture(scope="module")
def bed():
    b = Bed(COMMANDS)
    yield b
    b.close()


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_documented_command(cmd, bed):
    runner_for(cmd)[1](cmd, bed)


def test_the_docs_show_commands():
    """The extraction found the README's commands (a broken parser must not pass as docs
    without commands)."""
    readme = [c for c in COMMANDS if any(w.startswith("README.md:") for w in c.where)]
    assert len(readme) >= 5, [c.text for c in readme]
    assert any(not c.inline for c in readme)


def test_what_cannot_run_here_is_short_and_still_in_the_docs():
    assert len(CANNOT_RUN) <= 3
    for key, why in CANNOT_RUN.items():
        assert why
        assert any(c.words[:len(key)] == key for c in COMMANDS), (
            f"{' '.join(key)} is no longer in the docs: take it out of CANNOT_RUN")
