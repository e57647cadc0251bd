"""`storlab serve`: the web service (labs on demand), and its tokens and links from the command line.

    storlab serve [--listen ADDR] [--port N] [--tls-cert F --tls-key F | --self-signed] [--public-url URL]
                  [--class NAME --topology gluster-3 --warm N --seats N --lease 2h --provider P --trusted-students]
    storlab serve admin-token       a new admin token (the old one stops working)
    storlab serve links CLASS       a new instructor link and join link for CLASS (the old ones stop working)
    storlab serve end CLASS         every lab of CLASS removed, its links revoked
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from harness import paths
from harness.errors import HarnessError
from harness.lab import lease
from harness.training import jump
from harness.web.app import create_app
from harness.web.pool import Pools
from harness.web.security import loopback, self_signed
from harness.web.store import Store


def _base(args: argparse.Namespace, tls: bool) -> str:
    if args.public_url:
        return str(args.public_url).rstrip("/")
    host = args.listen if ":" not in args.listen else f"[{args.listen}]"
    return f"{'https' if tls else 'http'}://{host}:{args.port}"


def _print_links(base: str, tokens: dict[str, str]) -> None:
    print(f"  instructor: {base}/i/{tokens['instructor']}")
    print(f"  join:       {base}/j/{tokens['join']}   (students open it and name themselves)")


def _links(store: Store, klass: str, base: str) -> None:
    store.revoke(scope="instructor", klass=klass)
    store.revoke(scope="join", klass=klass)
    _print_links(base, {scope: store.mint(scope, klass=klass) for scope in ("instructor", "join")})


def _store(args: argparse.Namespace) -> Store:
    return Store(paths.private_dir(Path(args.state))) if args.state else Store()


def cmd_serve(args: argparse.Namespace) -> int:
    store = _store(args)
    tls = bool(args.tls_cert or args.self_signed)
    if not tls and not loopback(args.listen):
        raise HarnessError(f"--listen {args.listen}: a service on a network people share speaks TLS: give "
                           "--tls-cert/--tls-key or --self-signed (or listen on 127.0.0.1)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise HarnessError("--tls-cert and --tls-key go together")
    cert, key = args.tls_cert, args.tls_key
    if args.self_signed:
        c, k, fp = self_signed(store.root / "tls", args.listen if args.listen not in ("0.0.0.0", "::") else "localhost")
        cert, key = str(c), str(k)
        print(f"TLS: self-signed certificate {c}\n  SHA-256 fingerprint {fp}")
    base = _base(args, tls)
    if not store.check_any("admin"):
        print(f"admin token (shown once; `storlab serve admin-token` makes a new one): {store.mint('admin')}")
    if args.klass:
        _ensure_class(store, args, base)
    if jump.sshd_pid() is None:
        print("note: the jump sshd is not running (`bash ci/setup-host.sh --class`): seats will not come up")
    print(f"storlab serve: {base}  (API reference: {base}/docs; state: {store.root})")
    app = create_app(store, paths.project_root() / "topologies", secure=tls)
    uvicorn.run(app, host=args.listen, port=args.port, ssl_certfile=cert, ssl_keyfile=key, log_level="warning",
                ws_max_size=64 * 1024, timeout_graceful_shutdown=5)
    return 0


def _ensure_class(store: Store, args: argparse.Namespace, base: str) -> None:
    if args.klass in store.pools():
        with store.editing(args.klass) as pool:  # warm and seats may change between starts
            pool.warm, pool.max_seats = args.warm, max(args.seats, len(pool.seats))
        print(f"class {args.klass}: served (warm {args.warm}, seats {args.seats}); its links: "
              f"`storlab serve links {args.klass}`")
        return
    if not args.topology:
        raise HarnessError(f"--class {args.klass} is new: give --topology NAME (a file of topologies/)")
    seconds = lease.parse_duration(args.lease) if args.lease else None
    tokens = Pools(store, paths.project_root() / "topologies").create(
        args.klass, args.topology, args.warm, args.seats, seconds, args.provider, args.trusted_students)
    print(f"class {args.klass}: {args.topology}, {args.warm} labs kept ready, {args.seats} seats at most")
    _print_links(base, tokens)


def cmd_admin_token(args: argparse.Namespace) -> int:
    store = _store(args)
    store.revoke(scope="admin")
    print(store.mint("admin"))
    return 0


def cmd_links(args: argparse.Namespace) -> int:
    store = _store(args)
    store.pool(args.klass)  # refuses a class that is not served
    _links(store, args.klass, str(args.public_url or f"http://127.0.0.1:{args.port}").rstrip("/"))
    return 0


def cmd_end(args: argparse.Namespace) -> int:
    store = _store(args)
    store.pool(args.klass)  # refuses a class that is not served
    problems = Pools(store, paths.project_root() / "topologies").end(args.klass)
    for p in problems:
        print(f"  {p}")
    print(f"class {args.klass}: " + ("ended: every lab removed, every link revoked" if not problems else
                                     "NOT ended: see above (run it again)"))
    return 0 if not problems else 1


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="the web service: warm pools of labs, student pages with terminals, "
                                     "a live instructor page (README: Serving a class from the web)")
    p.add_argument("--state", help="the service's records (default STORLAB_HOME/serve)")
    p.add_argument("--listen", default="127.0.0.1", help="address to listen on (not loopback: TLS needed)")
    p.add_argument("--port", type=int, default=int(os.environ.get("STORLAB_SERVE_PORT", "8080")))
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--self-signed", action="store_true", help="TLS with a certificate made once (fingerprint printed)")
    p.add_argument("--public-url", help="the URL students reach the service at (for the links printed)")
    p.add_argument("--class", dest="klass", help="serve this class (made if new)")
    p.add_argument("--topology", help="the class's topology: a file of topologies/, without .yaml")
    p.add_argument("--warm", type=int, default=1, help="labs kept up and unclaimed (default 1)")
    p.add_argument("--seats", type=int, default=10, help="seats at most (default 10)")
    p.add_argument("--lease", help="how long a student keeps a seat (e.g. 2h)")
    p.add_argument("--provider", help="the provider of the labs (default: the topology's)")
    p.add_argument("--trusted-students", action="store_true",
                   help="students may be root on this host (LXC); else an isolating provider is needed")
    p.set_defaults(fn=cmd_serve)
    ssub = p.add_subparsers(dest="serve_cmd")
    t = ssub.add_parser("admin-token", help="a new admin token; the old one stops working")
    t.add_argument("--state")
    t.set_defaults(fn=cmd_admin_token)
    ln = ssub.add_parser("links", help="a new instructor link and join link for a served class")
    ln.add_argument("klass", metavar="CLASS")
    ln.add_argument("--public-url")
    ln.add_argument("--state")
    ln.add_argument("--port", type=int, default=8080)
    ln.set_defaults(fn=cmd_links)
    e = ssub.add_parser("end", help="end a served class: every lab removed, every link revoked")
    e.add_argument("klass", metavar="CLASS")
    e.add_argument("--state")
    e.set_defaults(fn=cmd_end)
