"""`mamori alerts`: a gRPC client that shows alerts as a readable, coloured table (or JSON
lines), follows the stream, and resumes where it left off. Every value in an alert may come
from a container (argv, paths, pod names): the table shows each one through printable(),
so that no escape sequence or bidi control reaches the terminal (agent/text.py)."""
from __future__ import annotations

import json
import os
import sys

import grpc
from google.protobuf.json_format import MessageToDict

from ..text import json_safe, printable
from .gen.mamori.v1 import alerts_pb2 as pb
from .gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from .server import SEVERITY_NAME, SEVERITY_PB

COLOURS = {"critical": "\033[1;41;97m", "high": "\033[1;31m", "medium": "\033[33m",
           "low": "\033[36m", "info": "\033[37m"}
RESET = "\033[0m"
STATE = os.path.expanduser("~/.cache/mamori/alerts.last")


def channel(target: str, ca: str = "", cert: str = "", key: str = "",
            server_name: str = "") -> grpc.Channel:
    if target.startswith("unix://") or not ca:
        return grpc.insecure_channel(target)
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read() if key else None,
        certificate_chain=open(cert, "rb").read() if cert else None)
    opts = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, creds, options=opts)


def row(a: pb.Alert, colour: bool) -> str:
    sev = SEVERITY_NAME.get(a.severity, "?")
    p = printable
    where = f"{a.pod.namespace}/{a.pod.name}" if a.pod.name else (
        a.container.id[:12] if a.container.id else a.node)
    s = (f"{a.sequence:>7}  {p(a.time[11:23]):<12}  {sev:<8}  {p(a.tactic.id or '-'):<6}  "
         f"{p(a.technique.id or '-'):<9}  {p(where):<28}  {p(a.rule)}: {p(a.output)}")
    if a.response.action:
        s += f"  [{p(a.response.action)}: {p(a.response.status)}]"
    return f"{COLOURS.get(sev, '')}{s}{RESET}" if colour else s


def run(args) -> int:
    allow = pb.Matcher()
    if args.severity:
        allow.min_severity = SEVERITY_PB[args.severity]
    if args.namespace:
        allow.namespaces.extend(args.namespace)
    if args.rule:
        allow.rules.extend(args.rule)
    # everything the journal keeps, unless told where to start
    since = args.since or 0
    if args.resume and args.since is None and os.path.exists(STATE):
        since = int(open(STATE).read().strip() or 0)
    req = pb.SubscribeRequest(allow=allow, since_sequence=since)
    ch = channel(args.server, args.ca, args.cert, args.key, args.server_name)
    stub = pb_grpc.AlertsStub(ch)
    colour = sys.stdout.isatty() and not args.json
    if not args.json:
        print(f"{'SEQ':>7}  {'TIME':<12}  {'SEVERITY':<8}  {'TACTIC':<6}  {'TECHNIQUE':<9}  "
              f"{'WHERE':<28}  RULE: OUTPUT")
    last = since
    timeout = None if args.follow else args.wait
    call = stub.Subscribe(req, timeout=timeout)
    try:
        for a in call:
            if a.HasField("notice"):
                print(f"-- {printable(a.notice.message)}", file=sys.stderr)
                continue
            last = a.sequence
            if args.json:
                print(json_safe(json.dumps(MessageToDict(a, preserving_proto_field_name=True))),
                      flush=True)
            else:
                print(row(a, colour), flush=True)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            print(f"mamori: {e.code().name}: {printable(e.details())}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        # Ctrl-C (or the end): cancel the stream and close the channel now, so that no
        # grpc thread holds the process at exit
        call.cancel()
        ch.close()
        if args.resume:
            _save_state(last)
    return 0


def _save_state(last: int) -> None:
    """The resume point: 0600 in a 0700 directory (it says what a user has looked at)."""
    d = os.path.dirname(STATE)
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    tmp = f"{STATE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(last))
    os.chmod(tmp, 0o600)
    os.replace(tmp, STATE)
