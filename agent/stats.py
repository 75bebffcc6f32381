"""What the agent has counted, as one typed snapshot (Agent.stats()): the metrics endpoint and
GetStatus read this, not the agent's stages. Every mapping is a copy taken at the call, so
a scrape sees one consistent moment and cannot change the agent."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AgentStats:
    events: dict[str, int] = field(default_factory=dict)          # received, per kind
    malformed: dict[str, int] = field(default_factory=dict)       # records, per reason
    lost_kernel: dict[str, int] = field(default_factory=dict)     # ring full, per kind
    lost_shed: dict[str, int] = field(default_factory=dict)       # over budget, per kind
    lost_queue: int = 0                                           # the agent's queue full
    congested: bool = False
    pod_objects_malformed: int = 0
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)   # (rule, severity)
    actions: dict[tuple[str, str], int] = field(default_factory=dict)  # (action, outcome)
    subscribers: int = 0
    rules_loaded: int = 0
    rules_reload_ok: bool = True
    journal_persisting: bool = True
    journal_write_errors: int = 0
    journal_unpersisted: int = 0
    stage_errors: dict[str, int] = field(default_factory=dict)    # poller, evaluator, publish
    output_errors: dict[str, int] = field(default_factory=dict)   # per output
    stage_idle_s: dict[str, float] = field(default_factory=dict)  # since the last progress
    healthy: bool = True
    inventory_finished: dict[str, int] = field(default_factory=dict)  # per state
    inventory_seconds: float = 0.0                                    # reading images
    inventory_dropped: int = 0                                        # queue full
    inventory_images: int = 0                                         # held now
