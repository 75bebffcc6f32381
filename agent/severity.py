"""Alert severities, declared once, lowest first. The rank is the position counted from 1
(info 1 … critical 5), the same numbers as mamori.v1.Severity, so a minimum severity
compares the same way in rules, the alert hub's filters, the gRPC API and the CLI."""
from __future__ import annotations

SEVERITIES = ("info", "low", "medium", "high", "critical")
RANK = {s: i + 1 for i, s in enumerate(SEVERITIES)}
