# -*- test-case-name: tests.unit.test_cachecommand,tests.integration.test_fetch -*-
"""
The C{p2pd} command: C{p2pd fetch} and C{p2pd cache}. The node itself runs
under twistd (C{twistd p2pd}).
"""

import sys

from p2pd import __version__

USAGE = """\
usage: p2pd fetch [options] spp://HOST[:PORT]/PATH
       p2pd cache [-c DIR] [--json] ls|du|verify|rm URL|purge

commands:
  fetch   download one file over SPP, verified (p2pd fetch --help)
  cache   list, check and empty a node's cache (p2pd cache --help)

The node itself runs under twistd: twistd p2pd --help
"""


def main(argv: list[str] | None = None) -> None:
    """
    The C{p2pd} console command: dispatches to its subcommands.
    """
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else ""
    if command in ("--version", "-V"):
        print(f"p2pd {__version__}")
    elif command in ("--help", "-h"):
        sys.stdout.write(USAGE)
    elif command == "fetch":
        from p2pd import fetch

        fetch.main(argv[1:])
    elif command == "cache":
        from p2pd import cachecommand

        sys.exit(cachecommand.main(argv[1:], sys.stdout, sys.stderr))
    else:
        sys.stderr.write(USAGE)
        sys.exit(1)
