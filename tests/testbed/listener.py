"""A TCP listener on the host's side of a container's network, and whether the container
can reach it: what isolation cuts."""
from __future__ import annotations

import socket
import threading

PORT = 8099


def host_listener(ip: str, port: int = PORT) -> socket.socket:
    """Listening on ip:port, accepting and closing every connection until closed."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(64)

    def serve():
        while True:
            try:
                s.accept()[0].close()
            except OSError:
                return
    threading.Thread(target=serve, daemon=True).start()
    return s


def connects(c, port: int = PORT) -> bool:
    """Does a TCP connect from inside container c to its host address succeed?"""
    r = c.sh(f"nc -w 1 {c.host_ip} {port} </dev/null && echo OK", check=False)
    return r.stdout == b"OK\n"
