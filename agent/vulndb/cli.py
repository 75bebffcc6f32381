"""`mamori vulndb update|import|status`: the vulnerability database from the command line.

    vulndb update [--source URL]... [--ecosystem NAME]...   download (osv.dev by default)
    vulndb import FILE.zip|DIR...                             air-gapped: exports brought in
    vulndb status [--json]                                    age, counts, sources
Each takes --config (the agent's file: vulndb.path, vulndb.max_age_hours, ...) and --db.
Exit status: 0 done, 1 failed (the previous database kept), 2 bad arguments/configuration.
"""
from __future__ import annotations

import json
import sys

from ..text import printable

SHOWN_PROBLEMS = 20


def register(subparsers) -> None:
    """Add the `vulndb` command to `mamori`'s subparsers."""
    from .. import config as configmod
    p = subparsers.add_parser("vulndb", help="the vulnerability database: update, import, "
                              "status")
    sub = p.add_subparsers(dest="vulndb_command", required=True)

    def common(sp):
        sp.add_argument("--config", "-c", help="YAML configuration file "
                        f"(default: {configmod.DEFAULT_PATH} if it exists)")
        sp.add_argument("--db", metavar="PATH", help="the database file (replaces "
                        "vulndb.path)")

    up = sub.add_parser("update", help="download OSV exports and replace the database")
    common(up)
    up.add_argument("--source", action="append", metavar="URL",
                    help="an OSV zip to download (repeatable; replaces vulndb.sources and "
                    "the ecosystems' osv.dev URLs)")
    up.add_argument("--ecosystem", action="append", metavar="NAME",
                    help="download osv.dev's export of this ecosystem (repeatable; "
                    "replaces vulndb.ecosystems), e.g. Debian, Alpine, PyPI")
    up.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    up.add_argument("--server", default="", help="the agent asked which ecosystems its "
                    "images need, when no --source, --ecosystem or vulndb.sources is given "
                    "(default: the first api.listen)")
    up.set_defaults(func=cmd_update)

    im = sub.add_parser("import", help="replace the database with OSV exports on disk "
                        "(zips or directories of .json records)")
    common(im)
    im.add_argument("paths", nargs="+", metavar="FILE.zip|DIR")
    im.set_defaults(func=cmd_import)

    st = sub.add_parser("status", help="the database's age, records per ecosystem, sources")
    common(st)
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(func=cmd_status)


def _cfg(args):
    from .. import config as configmod
    cfg = configmod.load(args.config).vulndb
    return cfg, (args.db or cfg.path)


def _err(msg: str) -> None:
    print(printable(f"mamori: {msg}"), file=sys.stderr)


def _report(db: str, res) -> None:
    for p in res.problems[:SHOWN_PROBLEMS]:
        print(printable(p), file=sys.stderr)
    more = len(res.problems) - SHOWN_PROBLEMS + res.more_problems
    if more > 0:
        print(f"... and {more} more problem(s)", file=sys.stderr)
    print(printable(f"{db}: {res.records} records from {len(res.sources)} source(s); "
                    f"{res.withdrawn} withdrawn left out, {res.skipped} bad skipped"))


def cmd_update(args) -> int:
    from .update import UpdateFailed, source_url, update
    from .importer import ImportFailed
    cfg, db = _cfg(args)
    if args.source:
        urls = list(args.source)
    elif args.ecosystem:
        urls = [source_url(e) for e in args.ecosystem]
    elif cfg.sources:
        urls = list(cfg.sources)
    else:
        found, why = _node_ecosystems(args)
        if found:
            print(printable(f"the images on this node need: {', '.join(found)}"),
                  file=sys.stderr)
        else:
            print(printable(f"{why}: the ecosystems of vulndb.ecosystems are downloaded"),
                  file=sys.stderr)
        urls = [source_url(e) for e in (found or cfg.ecosystems)]
    progress = None if args.quiet else (lambda m: print(printable(m), file=sys.stderr))
    try:
        res = update(db, urls, progress, cfg.download_timeout_s)
    except (UpdateFailed, ImportFailed) as e:
        _err(f"update failed, the previous database is kept: {e}")
        return 1
    except OSError as e:
        _err(f"update failed, the previous database is kept: {e}")
        return 1
    _report(db, res)
    return 0


def _node_ecosystems(args) -> tuple[list[str], str]:
    """The ecosystems the running agent's inventoried images are matched in (ListInventories),
    or ([], why not)."""
    import grpc
    from .. import config as configmod
    from ..api.client import channel
    from ..api.gen.mamori.v1 import alerts_pb2 as pb
    from ..api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
    server = args.server
    if not server:
        listen = configmod.load(args.config).api.listen
        server = listen[0] if listen else ""
    if not server:
        return [], "no agent to ask (api.listen is empty)"
    try:
        r = pb_grpc.AlertsStub(channel(server)).ListInventories(pb.ListInventoriesRequest(),
                                                                timeout=5)
    except grpc.RpcError as e:
        return [], f"the agent at {server} did not answer ({e.code().name})"
    found = sorted({e for i in r.images for e in i.ecosystems})
    return found, "" if found else f"the agent at {server} has no inventoried image yet"


def cmd_import(args) -> int:
    from .importer import ImportFailed, install
    cfg, db = _cfg(args)
    try:
        res = install(db, [(p, p) for p in args.paths])
    except (ImportFailed, OSError) as e:
        _err(f"import failed, the previous database is kept: {e}")
        return 1
    _report(db, res)
    return 0


def cmd_status(args) -> int:
    from .status import read_status, warn_if_stale
    cfg, db = _cfg(args)
    st = read_status(db, cfg.max_age_hours * 3600)
    if args.json:
        print(json.dumps({"path": st.path, "present": st.present, "error": st.error,
                          "built_at": st.built_at, "age_seconds": st.age_s,
                          "stale": st.stale, "max_age_seconds": st.max_age_s,
                          "records": st.records, "withdrawn": st.withdrawn,
                          "per_ecosystem": st.per_ecosystem, "sources": st.sources}))
        return 0 if not st.error else 1
    if st.error:
        _err(st.error)
        return 1
    out = lambda s: print(printable(s))       # noqa: E731 -- every value may come from a file
    out(f"database        {st.path}")
    out(f"built           {st.built_at} ({st.age_s / 3600:.1f} h ago"
        + (", STALE: older than vulndb.max_age_hours" if st.stale else "") + ")")
    out(f"records         {st.records} ({st.withdrawn} withdrawn left out)")
    out("per ecosystem")
    for eco, n in st.per_ecosystem.items():
        out(f"  {eco:<40} {n}")
    out("sources")
    for s in st.sources:
        out(f"  {s['source']}  ({s['records']} records, {s['skipped']} bad, "
            f"{s['withdrawn']} withdrawn; {s['fetched_at']})")
    msg = warn_if_stale(st)
    if msg:
        print(printable(f"mamori: warning: {msg}"), file=sys.stderr)
    return 0
