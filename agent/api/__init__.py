"""The gRPC API (server.py), its client (`mamori alerts`, client.py), and the rule for
which listeners are allowed — shared with the configuration check, so it stays light (no
grpc import here)."""
from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class ApiError(ValueError):
    """The API cannot be served as configured."""


def tcp_host(address: str) -> str:
    """'127.0.0.1:50051' -> '127.0.0.1'; '[::1]:50051' -> '::1'; ':50051' -> ''."""
    host = address.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listener_problem(address: str, mutual_tls: bool, allow_insecure_tcp: bool) -> str | None:
    """Why this listener must not be opened, or None. Unix sockets are fine (their file
    permissions decide who connects); TCP needs mutual TLS, except on a loopback address
    with the explicit development escape hatch."""
    if address.startswith("unix://"):
        path = address[len("unix://"):]
        if not path.startswith("/"):
            return f"{address}: a unix socket needs an absolute path (unix:///run/mamori/x.sock)"
        return None
    if ":" not in address:
        return f"{address}: expected unix:///path or host:port"
    if mutual_tls:
        return None
    host = tcp_host(address)
    if allow_insecure_tcp:
        if is_loopback(host):
            return None
        return (f"{address}: api.allow_insecure_tcp applies to loopback addresses only "
                f"(127.0.0.1, ::1, localhost), not {host or 'every address'}; use mutual TLS")
    return (f"{address}: a TCP listener needs mutual TLS (api.tls_cert, api.tls_key and "
            f"api.tls_client_ca): without it anyone who reaches the port reads every alert; "
            f"for development on loopback only, set api.allow_insecure_tcp: true")
