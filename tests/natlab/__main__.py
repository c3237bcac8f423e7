"""
The NAT lab by hand (as root, from the checkout)::

    python -m tests.natlab up [--timeout 3] [--refresh outbound|both]
                              [--ports preserve|random|fully-random] [--check]
    python -m tests.natlab status [NAME ...]
    python -m tests.natlab check [NAME]
    python -m tests.natlab down [NAME ...] [--all]

C{up} builds a lab and leaves it up, printing its names, addresses and how
to run programs inside it. C{down} with no name removes every lab whose
creating process is gone (all hand-made labs, and leftovers of test runs
that were killed); C{--all} also removes the labs of running tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

from twisted.internet.task import react

from tests.natlab.lab import (
    PORT_MAPPINGS,
    REFRESH_MODES,
    NatCheckFailed,
    NatLab,
    NatLabError,
    listLabs,
    parseLabName,
    removeLab,
    staleLabs,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.natlab",
                                     description="A real Linux NAT in network namespaces (needs root).")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build a lab and leave it up")
    up.add_argument("--timeout", type=int, default=3, help="UDP binding timeout, whole seconds (3)")
    up.add_argument("--refresh", choices=REFRESH_MODES, default="outbound",
                    help="which datagrams keep a binding open (outbound)")
    up.add_argument("--ports", choices=PORT_MAPPINGS, default="preserve",
                    help="masquerade source ports (preserve)")
    up.add_argument("--check", action="store_true", help="run the self-check once up")
    status = commands.add_parser("status", help="show labs")
    status.add_argument("names", nargs="*")
    check = commands.add_parser("check", help="run the self-check on a lab")
    check.add_argument("name", nargs="?")
    down = commands.add_parser("down", help="remove labs")
    down.add_argument("names", nargs="*")
    down.add_argument("--all", action="store_true", help="also the labs of running tests")
    return parser


def _oneLab(name: str | None) -> str:
    labs = listLabs()
    if name is not None:
        return name
    if len(labs) != 1:
        raise NatLabError(f"say which lab ({', '.join(labs) or 'there is none'})")
    return labs[0]


async def _up(reactor: Any, options: argparse.Namespace) -> None:
    lab = NatLab(timeout=options.timeout, refresh=options.refresh, portMapping=options.ports,
                 reactor=reactor, kind="m")
    try:
        await lab.up()
    except Exception:
        await lab.down()
        raise
    finally:
        # Only the ruleset is there; `nft list ruleset` in the router shows it.
        if lab.directory is not None:
            shutil.rmtree(lab.directory, ignore_errors=True)
    print(lab.describe())
    if options.check:
        print((await lab.verifyNat()).format())


async def _status(reactor: Any, names: list[str]) -> None:
    names = names or listLabs()
    if not names:
        print("no NAT labs")
    for name in names:
        lab = await NatLab.attach(name, reactor)
        kind, pid, _ = parseLabName(name)  # type: ignore[misc]
        if kind == "m":
            owner = "made by hand"
        else:
            owner = f"test process {pid}" + ("" if os.path.exists(f"/proc/{pid}") else ", gone")
        print(lab.describe().splitlines()[0] + f" ({owner})")
        print("\n".join(lab.describe().splitlines()[1:4]))
        counters = await lab.counters()
        print(f"  conntrack entries {lab.conntrackCount()}, dropped: "
              + ", ".join(f"{key} {value}" for key, value in counters.items()))
        for namespace in lab.namespaces:
            pids = await lab.pids(namespace)
            print(f"  processes in {namespace}: {' '.join(map(str, pids)) or 'none'}")


async def _check(reactor: Any, name: str | None) -> None:
    lab = await NatLab.attach(_oneLab(name), reactor)
    try:
        report = await lab.verifyNat()
    except NatCheckFailed as e:
        print(e.report.format())
        raise SystemExit(1) from e
    print(report.format())


async def _down(reactor: Any, names: list[str], everything: bool) -> None:
    if not names:
        names = listLabs() if everything else staleLabs(listLabs())
        running = sorted(set(listLabs()) - set(names))
        if running:
            print(f"left up (their test is running; --all removes them): {', '.join(running)}")
    for name in names:
        removed = await removeLab(name, reactor)
        print(f"removed {name}: {', '.join(removed) or 'nothing left'}")


async def main(reactor: Any, *argv: str) -> None:
    options = _parser().parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the NAT lab needs root (network namespaces, nftables)")
    try:
        if options.command == "up":
            await _up(reactor, options)
        elif options.command == "status":
            await _status(reactor, options.names)
        elif options.command == "check":
            await _check(reactor, options.name)
        else:
            await _down(reactor, options.names, options.all)
    except NatLabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from e


if __name__ == "__main__":
    react(main, sys.argv[1:])
