# -*- test-case-name: tests.unit.test_cachecommand -*-
"""
C{p2pd cache}: what a node's cache holds, checked and emptied, whether a
node runs on it or not.

    p2pd cache [-c DIR] [--json] ls | du | verify | rm URL | purge

C{ls} and C{du} read the cache as it is, without its lock
(L{p2pd.store.cacheview}); C{rm}, C{purge} and the drops of C{verify} are
made under the lock, or by the node that holds it
(L{p2pd.cachechanges}).

Exit codes: 0 done; 1 bad usage (an unknown command, a URL that is not
an C{spp://} one); 2 DIR is not a p2pd cache, or cannot be read (nothing
is touched); 3 the URL is not in the cache; 4 C{verify} found bad blocks
(and dropped them); 5 the cache cannot be changed now (its lock is held
by a process that takes no commands, or the node cannot be reached).
"""

import getopt
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from p2pd.cachechanges import CannotChange, Changes, changes
from p2pd.cacheoutput import humanSize, humanTime, table
from p2pd.core.url import BadURL, parse
from p2pd.store.cacheview import Damaged, Version, badBlocks, versions

EXIT_OK, EXIT_USAGE, EXIT_NOT_CACHE, EXIT_NOT_CACHED, EXIT_BAD, EXIT_BUSY = range(6)

SYNOPSIS = "usage: p2pd cache [-c DIR] [--json] ls|du|verify|rm URL|purge\n"
USAGE = (
    SYNOPSIS
    + """
What a p2pd node's cache holds, checked and emptied; safe while a node
runs on it (rm, purge and verify's drops are then made by the node).

commands:
  ls       the cached files: version, size, bytes and blocks held, last use
  du       the totals: files, versions, bytes held and on disk
  verify   check every held block against its digest; drop the bad ones
  rm URL   remove a file (every version of it), by its spp:// URL
  purge    remove everything

options:
  -c, --cache-dir DIR  the cache directory (default: ~/.p2pd_cache)
  --json               JSON for scripts instead of tables
  -h, --help           this help

exit codes: 0 done, 1 bad usage, 2 not a p2pd cache, 3 the URL is not
cached, 4 verify found bad blocks (dropped), 5 the cache cannot be
changed now
"""
)


class Failed(Exception):
    """
    The command cannot be done: C{message}, and the exit C{code}.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclass
class CacheOptions:
    """
    The command line of C{p2pd cache}.
    """

    directory: str
    command: str
    url: str = ""
    json: bool = False
    help: bool = False


def parseArguments(argv: list[str]) -> CacheOptions:
    """
    The options and command in C{argv} (what follows C{p2pd cache});
    options may come before or after the command.

    @raise Failed: with L{EXIT_USAGE}.
    """
    try:
        opts, args = getopt.gnu_getopt(argv, "c:h", ["cache-dir=", "json", "help"])
    except getopt.GetoptError as e:
        raise Failed(EXIT_USAGE, str(e)) from None
    options = CacheOptions(os.path.expanduser("~/.p2pd_cache"), "")
    for option, value in opts:
        if option in ("-c", "--cache-dir"):
            options.directory = value
        elif option == "--json":
            options.json = True
        else:
            options.help = True
    options.directory = os.path.abspath(os.path.expanduser(options.directory))
    if options.help:
        return options
    if not args:
        raise Failed(EXIT_USAGE, "give a command")
    options.command, *rest = args
    if options.command not in COMMANDS:
        raise Failed(EXIT_USAGE, f"unknown command {options.command!r}")
    wanted = 1 if options.command == "rm" else 0
    if len(rest) != wanted:
        raise Failed(EXIT_USAGE, f"{options.command} takes {wanted or 'no'} URL")
    if rest:
        try:
            options.url = str(parse(rest[0]))
        except BadURL as e:
            raise Failed(EXIT_USAGE, f"{e}; give the URL as ls shows it") from None
    return options


def main(argv: list[str], out: TextIO, err: TextIO) -> int:
    """
    Run C{p2pd cache ARGV}; returns the exit code.
    """
    try:
        options = parseArguments(argv)
    except Failed as e:
        err.write(f"p2pd cache: {e.message}\n{SYNOPSIS}")
        return e.code
    if options.help:
        out.write(USAGE)
        return EXIT_OK
    try:
        return COMMANDS[options.command](options, out, err)
    except Failed as e:
        err.write(f"p2pd cache: {e.message}\n")
        return e.code
    except CannotChange as e:
        err.write(f"p2pd cache: {e}\n")
        return EXIT_BUSY


def _blocks(directory: str) -> str:
    """
    The block directory of the cache at C{directory}.

    @raise Failed: C{directory} is not a p2pd cache.
    """
    if not os.path.isdir(directory):
        why = "does not exist" if not os.path.exists(directory) else "is no directory"
        raise Failed(EXIT_NOT_CACHE, f"{directory} {why}")
    root = os.path.join(directory, "blocks")
    if not os.path.isdir(root):
        raise Failed(
            EXIT_NOT_CACHE,
            f"{directory} is not a p2pd cache (it has no blocks directory)",
        )
    return root


def _read(directory: str) -> tuple[list[Version], list[Damaged]]:
    """
    The versions in the cache at C{directory}, by URL and last use, and
    whatever there is not one.

    @raise Failed: C{directory} is not a p2pd cache, or cannot be read.
    """
    root = _blocks(directory)
    try:
        found = list(versions(root))
    except OSError as e:
        raise Failed(EXIT_NOT_CACHE, f"cannot read {root}: {e.strerror or e}") from None
    cached = [v for v in found if isinstance(v, Version)]
    cached.sort(key=lambda v: (v.meta.url, -v.lastUsed))
    return cached, [d for d in found if isinstance(d, Damaged)]


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def _versionJSON(version: Version) -> dict[str, object]:
    meta = version.meta
    return {
        "url": meta.url,
        "version": meta.version,
        "size": meta.size,
        "blockSize": meta.blockSize,
        "blocks": meta.blocks,
        "heldBlocks": version.heldBlocks,
        "heldBytes": version.heldBytes,
        "diskBytes": version.diskBytes,
        "lastUsed": version.lastUsed,
    }


def _damagedJSON(damaged: list[Damaged]) -> list[dict[str, str]]:
    return [{"path": d.path, "reason": d.reason} for d in damaged]


def _writeJSON(out: TextIO, value: object) -> None:
    json.dump(value, out, indent=2, sort_keys=True)
    out.write("\n")


def _warnDamaged(damaged: list[Damaged], err: TextIO) -> None:
    for item in damaged:
        err.write(f"p2pd cache: not a cached file: {item.path}: {item.reason}\n")


def _ls(options: CacheOptions, out: TextIO, err: TextIO) -> int:
    cached, damaged = _read(options.directory)
    if options.json:
        _writeJSON(
            out,
            {
                "versions": [_versionJSON(v) for v in cached],
                "damaged": _damagedJSON(damaged),
            },
        )
        return EXIT_OK
    if cached:
        rows = [
            [
                v.meta.url,
                v.meta.version,
                humanSize(v.meta.size),
                humanSize(v.heldBytes),
                f"{v.heldBlocks}/{v.meta.blocks}",
                humanTime(v.lastUsed),
            ]
            for v in cached
        ]
        header = ["URL", "VERSION", "SIZE", "HELD", "BLOCKS", "LAST USED"]
        out.write(table(header, rows, right={2, 3, 4}))
    else:
        out.write("no cached files\n")
    _warnDamaged(damaged, err)
    return EXIT_OK


def _du(options: CacheOptions, out: TextIO, err: TextIO) -> int:
    cached, damaged = _read(options.directory)
    totals = {
        "files": len({v.meta.url for v in cached}),
        "versions": len(cached),
        "heldBlocks": sum(v.heldBlocks for v in cached),
        "heldBytes": sum(v.heldBytes for v in cached),
        "diskBytes": sum(v.diskBytes for v in cached),
        "damaged": len(damaged),
    }
    if options.json:
        _writeJSON(out, totals)
        return EXIT_OK
    heldLine = f"{humanSize(totals['heldBytes'])} in {totals['heldBlocks']} blocks"
    out.write(
        f"files     {totals['files']}\n"
        f"versions  {totals['versions']}\n"
        f"held      {heldLine}\n"
        f"on disk   {humanSize(totals['diskBytes'])}\n"
    )
    _warnDamaged(damaged, err)
    return EXIT_OK


def _verify(options: CacheOptions, out: TextIO, err: TextIO) -> int:
    bad: list[dict[str, object]] = []
    checked = 0
    _blocks(options.directory)  # nothing is locked in what is not a cache
    with changes(options.directory) as changer:
        cached, damaged = _read(options.directory)
        total = sum(v.heldBytes for v in cached)
        with _progress(total, err, quiet=options.json) as progress:
            for version in cached:
                try:
                    suspects = dict(badBlocks(version, progress))
                except OSError as e:
                    why = f"cannot be read: {e.strerror or e}"
                    damaged.append(Damaged(version.directory, why))
                    continue
                checked += version.heldBlocks
                if suspects:
                    bad += _recheck(changer, version, suspects)
    if options.json:
        _writeJSON(
            out,
            {
                "versions": len(cached),
                "checkedBlocks": checked,
                "dropped": bad,
                "damaged": _damagedJSON(damaged),
            },
        )
    else:
        for item in bad:
            out.write(
                f"{item['url']} (version {item['version']}): block "
                f"{item['block']} dropped: {item['why']}\n"
            )
        verdict = f"{len(bad)} bad, dropped" if bad else "all good"
        checkedText = f"{_count(checked, 'block')} of {_count(len(cached), 'version')}"
        out.write(f"checked {checkedText}: {verdict}\n")
        _warnDamaged(damaged, err)
    return EXIT_BAD if bad else EXIT_OK


@contextmanager
def _progress(
    total: int, err: TextIO, quiet: bool
) -> Iterator[Callable[[int], object]]:
    """
    A progress bar of C{total} bytes on C{err} while the block runs, when
    C{err} is a terminal (and not C{quiet}): what to call with bytes done.
    """
    if quiet or not err.isatty():
        yield lambda done: None
        return
    from tqdm import tqdm

    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=err,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        yield bar.update


def _recheck(
    changer: Changes, version: Version, suspects: dict[int, str]
) -> list[dict[str, object]]:
    """
    Have the blocks of C{version} found bad checked again and dropped; the
    dropped ones, with why.
    """
    meta = version.meta
    dropped = changer.recheck(meta.url, meta.version, sorted(suspects))
    return [
        {"url": meta.url, "version": meta.version, "block": i, "why": suspects[i]}
        for i in dropped
    ]


def _rm(options: CacheOptions, out: TextIO, err: TextIO) -> int:
    _blocks(options.directory)
    with changes(options.directory) as changer:
        cached, _ = _read(options.directory)
        size = sum(v.heldBytes for v in cached if v.meta.url == options.url)
        if not changer.remove(options.url):
            raise Failed(
                EXIT_NOT_CACHED,
                f"{options.url} is not in the cache (p2pd cache ls lists it)",
            )
    if options.json:
        _writeJSON(out, {"removed": options.url, "heldBytes": size})
    else:
        out.write(f"removed {options.url} ({humanSize(size)})\n")
    return EXIT_OK


def _purge(options: CacheOptions, out: TextIO, err: TextIO) -> int:
    _blocks(options.directory)
    with changes(options.directory) as changer:
        cached, _ = _read(options.directory)
        changer.purge()
    files = len({v.meta.url for v in cached})
    size = sum(v.heldBytes for v in cached)
    if options.json:
        _writeJSON(out, {"removedFiles": files, "heldBytes": size})
    else:
        out.write(f"removed {_count(files, 'file')} ({humanSize(size)})\n")
    return EXIT_OK


COMMANDS: dict[str, Callable[[CacheOptions, TextIO, TextIO], int]] = {
    "ls": _ls,
    "du": _du,
    "verify": _verify,
    "rm": _rm,
    "purge": _purge,
}
