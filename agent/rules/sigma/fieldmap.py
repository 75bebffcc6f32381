"""Which Sigma log sources Mamori can watch, and what each Sigma field is in Mamori's
vocabulary (docs/fields.md).

A log source gives one or more *variants*: an event kind, the Mamori field for each Sigma
field on it, and a test every event of the variant must pass (a Sigma file_event is a file
created or overwritten: an open with O_CREAT or O_TRUNC, or a rename onto the path). A
Sigma field may be a constant in a variant: `Initiated` is true on connect and false on
accept, so `Initiated: 'true'` keeps the connect variant and drops the accept one.

Sysmon for Linux (whose field names SigmaHQ's Linux rules use) reports an inbound
connection with Source = the remote peer and Destination = the local socket; Mamori's
accept has net.daddr = the peer, net.saddr = the local address, hence the swap.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Const:
    """A Sigma field whose value is fixed in a variant (`Initiated` on connect)."""
    value: str


@dataclass(frozen=True)
class Target:
    """A Mamori field; `values` converts Sigma values for it (or raises Untranslatable)."""
    name: str
    values: object = None          # (sigma_field, op, values) -> (op, values), or None
    note: str = ""                 # said in the report when the rule uses the field


@dataclass(frozen=True)
class Variant:
    kind: str                      # the Mamori event kind
    fields: dict                   # Sigma field -> Target | Const
    test: str = ""                 # a Mamori condition every event of the variant passes


@dataclass(frozen=True)
class Logsource:
    variants: tuple[Variant, ...]
    output: str                    # the alert text after the rule's title


def _user(sigma_field, op, values):
    """Mamori knows uids, not user names: only root (uid 0) is known for every system."""
    from .expr import Untranslatable
    if op == "=" and all(str(v).lower() == "root" for v in values):
        return "=", (0,)
    raise Untranslatable("unmapped field",
                         f"{sigma_field} {op} {', '.join(map(str, values))}: Mamori has the "
                         "uid (proc.uid), not the user name; only root (uid 0) is known")


_CWD_NOTE = ("CurrentDirectory is proc.cwd, the directory as the host sees it (in a "
             "container, below the container's root on the host)")

# the process every event is about
PROCESS = {
    "Image": Target("proc.exe"),
    "CommandLine": Target("proc.cmdline"),
    "ParentImage": Target("proc.pexe"),
    "ProcessId": Target("proc.pid"),
    "ParentProcessId": Target("proc.ppid"),
    "CurrentDirectory": Target("proc.cwd", note=_CWD_NOTE),
    "User": Target("proc.uid", values=_user),
}

_EXEC_OUT = "%proc.exe (%proc.cmdline), parent %proc.pexe, in %k8s.ns/%k8s.pod (%container.image)"
_FILE_OUT = ("%event.kind %file.path by %proc.exe (%proc.cmdline) in %k8s.ns/%k8s.pod "
             "(%container.image)")
_CREATE_OUT = ("%event.kind %file.path (rename to %file.new_path) by %proc.exe (%proc.cmdline) "
               "in %k8s.ns/%k8s.pod (%container.image)")
_RENAME_OUT = ("%file.path renamed to %file.new_path by %proc.exe (%proc.cmdline) in "
               "%k8s.ns/%k8s.pod (%container.image)")
_NET_OUT = ("%proc.exe, %net.saddr:%net.sport to %net.daddr:%net.dport (%net.protocol) in "
            "%k8s.ns/%k8s.pod (%container.image)")

_CREATED = 'file.flags in ("O_CREAT", "O_TRUNC") and not event.failed'

LOGSOURCES: dict[str, Logsource] = {
    "process_creation": Logsource((
        Variant("exec", PROCESS),
    ), _EXEC_OUT),
    "file_event": Logsource((   # Sysmon FileCreate: a file created or overwritten
        Variant("open", {**PROCESS, "TargetFilename": Target("file.path")}, _CREATED),
        Variant("rename", {**PROCESS, "TargetFilename": Target("file.new_path")},
                "not event.failed"),
    ), _CREATE_OUT),
    "file_delete": Logsource((
        Variant("unlink", {**PROCESS, "TargetFilename": Target("file.path")},
                "not event.failed"),
    ), _FILE_OUT),
    "file_rename": Logsource((
        Variant("rename", {**PROCESS, "SourceFilename": Target("file.path"),
                           "TargetFilename": Target("file.new_path")}, "not event.failed"),
    ), _RENAME_OUT),
    "network_connection": Logsource((
        Variant("connect", {**PROCESS, "Initiated": Const("true"),
                            "DestinationIp": Target("net.daddr"),
                            "DestinationPort": Target("net.dport"),
                            "SourceIp": Target("net.saddr"),
                            "SourcePort": Target("net.sport"),
                            "Protocol": Target("net.protocol")}),
        Variant("accept", {**PROCESS, "Initiated": Const("false"),
                           "DestinationIp": Target("net.saddr"),
                           "DestinationPort": Target("net.sport"),
                           "SourceIp": Target("net.daddr"),
                           "SourcePort": Target("net.dport"),
                           "Protocol": Target("net.protocol")}),
    ), _NET_OUT),
}

# why a Sigma field is not mapped, where there is more to say than "not in the vocabulary"
UNMAPPED_WHY = {
    "ParentCommandLine": "Mamori events carry the parent's program (proc.pexe), not its "
                         "command line",
    "DestinationHostname": "network events carry addresses, not the host name looked up",
    "SourceHostname": "network events carry addresses, not host names",
    "LogonId": "Linux has no logon sessions in Mamori's events",
    "LogonGuid": "Linux has no logon sessions in Mamori's events",
    "OriginalFileName": "PE metadata (Windows)",
    "Hashes": "exec events carry no hash of the program (drift.sha256 only for drift)",
    "ParentUser": "Mamori events carry no parent user",
    "IntegrityLevel": "a Windows notion",
}


def logsource_of(logsource) -> tuple[Logsource | None, str]:
    """(its Logsource, "") for a Linux log source Mamori watches, else (None, why not)."""
    product, category, service = logsource.product, logsource.category, logsource.service
    where = ", ".join(f"{k} {v}" for k, v in (("product", product), ("category", category),
                                               ("service", service)) if v)
    if product != "linux":
        return None, f"not a Linux rule ({where or 'no logsource'})"
    if service:
        return None, (f"{where}: Mamori reads kernel events, not the {service} log")
    if category not in LOGSOURCES:
        if not category:
            return None, f"{where}: no category (a log file's lines, not kernel events)"
        return None, f"{where}: Mamori has no event for it (known: {', '.join(LOGSOURCES)})"
    return LOGSOURCES[category], ""
