"""``python -m devstack up|down|status|prepare|serve|image`` (``make stack-up``, ``make image``).

The development tooling around the product: the local stack, a role beside its own daprd, and
the container image. The product's ``todo-agent`` command offers none of this, so the image
(which holds no ``devstack``) has no command it cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from devstack.component import ComponentStatus
from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.lease import SessionLease
from devstack.stack import Stack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Development tooling: real PostgreSQL, Kafka (KRaft) and Dapr scheduler on "
        "this machine (state and logs in $TODO_STACK_DIR, default .devstack/ in the repo), a role "
        "beside its own daprd, and the container image.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start what is not running (safe to repeat)")
    sub.add_parser("prepare", help="build/resolve the Dapr binaries and Kafka jars once, start nothing")
    down = sub.add_parser("down", help="stop everything the stack started")
    down.add_argument("--purge", action="store_true", help="also delete data and logs")
    down.add_argument("--force", action="store_true", help="stop even while test sessions are using it")
    st = sub.add_parser("status", help="pids, ports, versions and health")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    serve = sub.add_parser(
        "serve", help="start one role with a daprd beside it, wired to the stack (up first)"
    )
    serve.add_argument("role", choices=("api", "recurrence", "notifications", "audit"))
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    keycloak = sub.add_parser("keycloak", help="the identity provider of the OAuth tests (not in `up`)")
    keycloak.add_argument("action", choices=("up", "down", "status"))
    image = sub.add_parser("image", help="the container image (podman)")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    build = image_sub.add_parser(
        "build", help="build todo-agent:VERSION with podman (bases made and cached as needed)"
    )
    build.add_argument(
        "--base",
        choices=("auto", "official", "debian"),
        default="auto",
        help="official python:3.11 slim from a registry, a base built from Debian's archive, "
        "or auto (official when a registry serves it; the default)",
    )
    build.add_argument(
        "--ca-bundle",
        default=os.environ.get("TODO_BUILD_CA_BUNDLE", "auto"),
        help="PEM CA bundle pip trusts inside the build (TLS-inspecting proxies): a file, `none`, "
        "or `auto`, the host's bundle (default; env TODO_BUILD_CA_BUNDLE)",
    )
    return p


def _table(rows: list[ComponentStatus]) -> str:
    head = ("component", "pid", "port", "version", "health", "detail")
    lines = [head] + [
        (
            r.name,
            str(r.pid or "-"),
            str(r.port or "-"),
            r.version or "-",
            "ok" if r.healthy else "DOWN",
            r.detail,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in lines
    )


def _keycloak(action: str) -> int:
    from devstack.keycloak import Keycloak

    keycloak = Keycloak(StackConfig.from_env())
    if action == "up":
        keycloak.up()
    elif action == "down":
        keycloak.down()
    print(_table([keycloak.status()]))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a stack subcommand; returns the process exit code (0 ok, 1 on a stack error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            from devstack.serve import serve_with_sidecar

            return serve_with_sidecar(args.role, host=args.host, port=args.port)
        if args.command == "image":
            return _image(args)
        if args.command == "keycloak":
            return _keycloak(args.action)
        stack = Stack(StackConfig.from_env())
        if args.command == "up":
            started = stack.up()
            print(_table(stack.status()))
            print(
                f"started: {', '.join(sorted(started)) or 'nothing (already running)'}; "
                f"logs in {stack.cfg.log_dir}"
            )
        elif args.command == "prepare":
            for line in stack.prepare():
                print(line)
        elif args.command == "down":
            holders = SessionLease(stack).holders()
            if holders and not args.force:
                raise StackError(
                    f"test sessions (pids {', '.join(map(str, holders))}) are using the stack; "
                    "it stops when the last one ends. Use `down --force` to stop it anyway"
                )
            if args.purge:
                stack.purge()
            else:
                stack.down()
            print("stack stopped" + (" and purged" if args.purge else ""))
        else:
            rows = stack.status()
            if args.json:
                print(
                    json.dumps(
                        {
                            "components": [
                                {k: r.as_json()[k] for k in ("name", "pid", "port", "version", "healthy")}
                                for r in rows
                            ]
                        },
                        indent=2,
                    )
                )
            else:
                print(_table(rows))
    except StackError as exc:
        print(f"devstack: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _image(args: argparse.Namespace) -> int:
    from devstack import image

    built = image.build(base=args.base, ca=args.ca_bundle)
    print(f"built {', '.join(built.names)} FROM {built.base}")
    print(f"size {built.size_bytes / 1e6:.0f} MB, {built.seconds:.0f} s")
    return 0
