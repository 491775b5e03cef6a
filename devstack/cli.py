"""``todo-agent stack up|down|status`` (also ``python -m devstack ...``)."""

from __future__ import annotations

import argparse
import json
import sys

from devstack.component import ComponentStatus
from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.lease import SessionLease
from devstack.stack import Stack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="todo-agent stack",
        description="Real PostgreSQL, Kafka (KRaft) and Dapr scheduler on this machine. "
        "State and logs live in $TODO_STACK_DIR (default .devstack/ in the repo).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start what is not running (safe to repeat)")
    sub.add_parser("prepare", help="build/resolve the Dapr binaries and Kafka jars once, start nothing")
    down = sub.add_parser("down", help="stop everything the stack started")
    down.add_argument("--purge", action="store_true", help="also delete data and logs")
    down.add_argument("--force", action="store_true", help="stop even while test sessions are using it")
    st = sub.add_parser("status", help="pids, ports, versions and health")
    st.add_argument("--json", action="store_true", help="machine-readable output")
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


def main(argv: list[str] | None = None) -> int:
    """Run a stack subcommand; returns the process exit code (0 ok, 1 on a stack error)."""
    args = _parser().parse_args(argv)
    try:
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
        print(f"todo-agent stack: error: {exc}", file=sys.stderr)
        return 1
    return 0
