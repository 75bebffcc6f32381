"""The loaded ruleset and its reloads: at start (refusing to start on errors), on file
change and on SIGHUP. A reload with errors keeps the previous ruleset running and says why."""
from __future__ import annotations

import logging
import os

from . import attack
from .loader import Problem, rule_files
from .ruleset import RulesError, Ruleset, load

log = logging.getLogger("mamori.rules")


class RuleEngine:
    def __init__(self, paths, catalog: attack.Catalog | None = None):
        self.paths = list(paths)
        self.catalog = catalog or attack.load()
        self.ruleset: Ruleset | None = None
        self.last_error: list[Problem] = []
        self.warnings: list[Problem] = []
        self.loads = 0
        self._stamp = None

    def _current_stamp(self):
        out = []
        for f in rule_files(self.paths):
            try:
                st = os.stat(f)
                out.append((f, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((f, None, None))
        return tuple(out)

    def load(self) -> Ruleset:
        """First load: errors raise RulesError (the agent does not start)."""
        stamp = self._current_stamp()
        rs, problems = load(self.paths, self.catalog)
        self.warnings = [p for p in problems if p.level == "warning"]
        if rs is None:
            self.last_error = [p for p in problems if p.level == "error"]
            raise RulesError(problems)
        self.ruleset, self._stamp, self.loads = rs, stamp, self.loads + 1
        return rs

    def changed(self) -> bool:
        return self._current_stamp() != self._stamp

    def reload(self) -> list[Problem]:
        """Load again. On errors, keep the running ruleset; returns the errors ([] if the
        new ruleset is in place)."""
        stamp = self._current_stamp()
        rs, problems = load(self.paths, self.catalog)
        self._stamp = stamp
        errors = [p for p in problems if p.level == "error"]
        if rs is None:
            self.last_error = errors
            log.error("rules reload failed, keeping the %d rules loaded before:\n%s",
                      len(self.ruleset.rules) if self.ruleset else 0,
                      "\n".join(str(p) for p in errors))
            return errors
        self.ruleset, self.last_error, self.loads = rs, [], self.loads + 1
        self.warnings = [p for p in problems if p.level == "warning"]
        log.info("rules reloaded: %d rules (%d enabled)", len(rs.rules),
                 sum(1 for r in rs.rules if r.enabled))
        return []
