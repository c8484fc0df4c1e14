"""
Tests for C{p2pd cache} (L{p2pd.cachecommand}), its output
(L{p2pd.cacheoutput}), how it changes a cache (L{p2pd.cachechanges}), and
the C{p2pd} command that runs it (L{p2pd.cli}). With a real node running on
the cache: L{tests.integration.test_cachecommand}.
"""

import io
import json
import os
import sys
import time
from collections.abc import Sequence

from twisted.trial.unittest import SynchronousTestCase

from p2pd import cachechanges, cli
from p2pd.cachecommand import (
    EXIT_BAD,
    EXIT_BUSY,
    EXIT_NOT_CACHE,
    EXIT_NOT_CACHED,
    EXIT_OK,
    EXIT_USAGE,
    USAGE,
    main,
)
from p2pd.cacheoutput import humanSize, humanTime, table
from p2pd.core.meta import FileMeta
from p2pd.store.cache import BlockCache
from p2pd.store.cachelayout import directoryName, markUsed
from p2pd.store.cachelock import LOCK_NAME, CacheLock, Holder, holder
from tests.unit.test_cache import BLOCK, META, URL, allDigests, blockData

OTHER = FileMeta(
    "spp://origin.example:1111/a/other.mkv", 3 * BLOCK, BLOCK, "sha256", "v9"
)


class CacheCommandTests(SynchronousTestCase):
    """
    C{p2pd cache} on a cache in a temporary directory, with no node on it.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.root = os.path.join(self.directory, "blocks")
        self.cache = BlockCache(self.root)

    def fill(self, meta: FileMeta, indices: list[int]) -> str:
        """
        Cache blocks C{indices} of C{meta}; its directory.
        """
        cached = self.cache.open(meta)
        cached.setDigests(0, allDigests(meta))
        for index in indices:
            cached.write(index, blockData(meta, index))
        cached.close()
        return os.path.join(
            self.root, directoryName(meta.url), directoryName(meta.version)
        )

    def command(self, *argv: str) -> tuple[int, str, str]:
        """
        C{p2pd cache -c DIRECTORY ARGV}: exit code, output and errors.
        """
        out, err = io.StringIO(), io.StringIO()
        code = main(["-c", self.directory, *argv], out, err)
        return code, out.getvalue(), err.getvalue()

    def runJSON(self, *argv: str) -> object:
        code, out, err = self.command(*argv, "--json")
        self.assertEqual((code, err), (EXIT_OK, ""))
        return json.loads(out)

    def corrupt(self, directory: str, index: int) -> None:
        with open(os.path.join(directory, "data"), "r+b") as f:
            f.seek(index * BLOCK)
            f.write(bytes(b ^ 0xFF for b in blockData(META, index)[:4]))

    def test_ls(self) -> None:
        """
        C{ls} shows a table: one row per version, by URL, with its size,
        bytes and blocks held and last use, the columns aligned.
        """
        used = time.mktime((2026, 12, 5, 7, 52, 0, 0, 0, -1))
        markUsed(self.fill(META, [0, 1, 10]), used)
        markUsed(self.fill(OTHER, [0]), used - 86400)
        code, out, err = self.command("ls")
        self.assertEqual((code, err), (EXIT_OK, ""))
        self.assertEqual(
            out.splitlines(),
            [
                "URL                                        VERSION       SIZE"
                "     HELD  BLOCKS  LAST USED",
                "spp://origin.example:1111/a/other.mkv      v9         3.0 KiB"
                "  1.0 KiB     1/3  2026-12-04 07:52",
                "spp://origin.example:1111/films/movie.mp4  1a-2b-3c  10.5 KiB"
                "  2.5 KiB    3/11  2026-12-05 07:52",
            ],
        )

    def test_lsJSON(self) -> None:
        """
        C{ls --json} gives every field in plain units.
        """
        markUsed(self.fill(META, [0, 10]), 1_700_000_000.0)
        [found] = self.runJSON("ls")["versions"]  # type: ignore[index]
        disk = found.pop("diskBytes")
        self.assertGreaterEqual(disk, BLOCK + 500)
        self.assertEqual(
            found,
            {
                "url": URL,
                "version": META.version,
                "size": META.size,
                "blockSize": BLOCK,
                "blocks": 11,
                "heldBlocks": 2,
                "heldBytes": BLOCK + 500,
                "lastUsed": 1_700_000_000.0,
            },
        )

    def test_empty(self) -> None:
        """
        An empty cache lists nothing, and says so.
        """
        self.assertEqual(self.command("ls"), (EXIT_OK, "no cached files\n", ""))
        self.assertEqual(self.runJSON("ls"), {"versions": [], "damaged": []})

    def test_du(self) -> None:
        """
        C{du} gives the totals.
        """
        self.fill(META, [0, 10])
        self.fill(OTHER, [0, 1, 2])
        code, out, err = self.command("du")
        self.assertEqual((code, err), (EXIT_OK, ""))
        lines = out.splitlines()
        self.assertEqual(
            lines[:3],
            ["files     2", "versions  2", "held      4.5 KiB in 5 blocks"],
        )
        self.assertTrue(lines[3].startswith("on disk   "), lines)
        totals = self.runJSON("du")
        assert isinstance(totals, dict)
        self.assertGreaterEqual(totals.pop("diskBytes"), 4 * BLOCK + 500)
        self.assertEqual(
            totals,
            {
                "files": 2,
                "versions": 2,
                "heldBlocks": 5,
                "heldBytes": 4 * BLOCK + 500,
                "damaged": 0,
            },
        )

    def test_damaged(self) -> None:
        """
        A damaged entry is reported, on standard error or in the JSON, and
        the rest is listed: never a traceback.
        """
        directory = self.fill(META, [0])
        with open(os.path.join(directory, "meta.json"), "w") as f:
            f.write("{")
        self.fill(OTHER, [0])
        code, out, err = self.command("ls")
        self.assertEqual(code, EXIT_OK)
        self.assertIn(OTHER.url, out)
        self.assertEqual(
            err,
            f"p2pd cache: not a cached file: {directory}: "
            "no valid meta.json (debris of a crash?)\n",
        )
        found = self.runJSON("ls")
        self.assertEqual(
            found["damaged"],  # type: ignore[index]
            [{"path": directory, "reason": "no valid meta.json (debris of a crash?)"}],
        )
        self.assertEqual(self.runJSON("du")["damaged"], 1)  # type: ignore[index]

    def test_verify(self) -> None:
        """
        C{verify} checks every held block, reports the bad ones, drops
        them, and exits 4; run again, it finds all good.
        """
        directory = self.fill(META, [0, 1, 2, 3])
        self.fill(OTHER, [0, 1])
        self.corrupt(directory, 2)
        code, out, err = self.command("verify")
        self.assertEqual((code, err), (EXIT_BAD, ""))
        self.assertEqual(
            out,
            f"{URL} (version {META.version}): block 2 dropped: it does not "
            "match its digest\nchecked 6 blocks of 2 versions: 1 bad, dropped\n",
        )
        self.assertEqual(
            self.command("verify"),
            (EXIT_OK, "checked 5 blocks of 2 versions: all good\n", ""),
        )
        self.assertIsNone(holder(self.directory))

    def test_verifyProgress(self) -> None:
        """
        On a terminal, C{verify} shows its progress on standard error; not
        with C{--json}, nor when standard error is not a terminal.
        """

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        self.fill(META, [0, 1, 2])
        for json_, shown in [(False, True), (True, False)]:
            out, err = io.StringIO(), Terminal()
            argv = ["-c", self.directory, "verify"] + (["--json"] if json_ else [])
            self.assertEqual(main(argv, out, err), EXIT_OK)
            self.assertEqual("B/s" in err.getvalue(), shown, err.getvalue())
        self.assertEqual(self.command("verify")[2], "")

    def test_verifyJSON(self) -> None:
        """
        C{verify --json} names each dropped block.
        """
        directory = self.fill(META, [0, 1])
        self.corrupt(directory, 1)
        code, out, err = self.command("verify", "--json")
        self.assertEqual(code, EXIT_BAD)
        self.assertEqual(
            json.loads(out),
            {
                "versions": 1,
                "checkedBlocks": 2,
                "dropped": [
                    {
                        "url": URL,
                        "version": META.version,
                        "block": 1,
                        "why": "it does not match its digest",
                    }
                ],
                "damaged": [],
            },
        )

    def test_rm(self) -> None:
        """
        C{rm URL} removes every version of the file, whatever way the URL
        is written; other files stay.
        """
        self.fill(META, [0, 1])
        self.fill(OTHER, [0])
        code, out, err = self.command("rm", "spp://ORIGIN.example:1111/films/movie.mp4")
        self.assertEqual((code, out, err), (EXIT_OK, f"removed {URL} (2.0 KiB)\n", ""))
        self.assertEqual(
            [v["url"] for v in self.runJSON("ls")["versions"]],  # type: ignore[index]
            [OTHER.url],
        )
        self.assertEqual(
            self.runJSON("rm", OTHER.url), {"removed": OTHER.url, "heldBytes": BLOCK}
        )

    def test_rmNotCached(self) -> None:
        """
        C{rm} of a URL not in the cache exits 3 and says so.
        """
        self.fill(META, [0])
        code, out, err = self.command("rm", OTHER.url)
        self.assertEqual((code, out), (EXIT_NOT_CACHED, ""))
        self.assertEqual(
            err,
            f"p2pd cache: {OTHER.url} is not in the cache (p2pd cache ls lists it)\n",
        )

    def test_purge(self) -> None:
        """
        C{purge} removes everything and says how much.
        """
        self.fill(META, [0, 1])
        self.fill(OTHER, [0])
        self.assertEqual(
            self.command("purge"), (EXIT_OK, "removed 2 files (3.0 KiB)\n", "")
        )
        self.assertEqual(os.listdir(self.root), [])
        self.assertEqual(self.runJSON("purge"), {"removedFiles": 0, "heldBytes": 0})

    def test_notACache(self) -> None:
        """
        A directory without a cache's block directory, a missing one and a
        file are no cache: every command exits 2 with one line, and nothing
        is made there (not even a lock file).
        """
        plain = os.path.abspath(self.mktemp())
        os.mkdir(plain)
        file = os.path.join(plain, "file")
        with open(file, "w"):
            pass
        for directory, why in [
            (plain, "is not a p2pd cache (it has no blocks directory)"),
            (os.path.join(plain, "missing"), "does not exist"),
            (file, "is no directory"),
        ]:
            for argv in [["ls"], ["du"], ["verify"], ["rm", URL], ["purge"]]:
                out, err = io.StringIO(), io.StringIO()
                code = main(["-c", directory, *argv], out, err)
                self.assertEqual(
                    (code, out.getvalue(), err.getvalue()),
                    (EXIT_NOT_CACHE, "", f"p2pd cache: {directory} {why}\n"),
                )
        self.assertEqual(os.listdir(plain), ["file"])

    def test_badUsage(self) -> None:
        """
        An unknown command, a missing or extra argument, a URL that is not
        an spp:// one, or an unknown option exit 1 with the synopsis.
        """
        for argv, message in [
            (["format"], "unknown command 'format'"),
            ([], "give a command"),
            (["rm"], "rm takes 1 URL"),
            (["ls", URL], "ls takes no URL"),
            (["rm", "http://example.com/x"], "is not an spp:// or spps:// URL"),
            (["ls", "--color"], "option --color not recognized"),
        ]:
            code, out, err = self.command(*argv)
            self.assertEqual((code, out), (EXIT_USAGE, ""), argv)
            self.assertIn(message, err.splitlines()[0])
            self.assertTrue(err.startswith("p2pd cache: "), err)
            self.assertTrue(err.endswith("|purge\n"), err)

    def test_help(self) -> None:
        """
        C{--help} prints the usage, commands and exit codes.
        """
        self.assertEqual(self.command("--help"), (EXIT_OK, USAGE, ""))
        for word in ["ls", "du", "verify", "rm URL", "purge", "--json", "exit codes"]:
            self.assertIn(word, USAGE)

    def test_optionsAnywhere(self) -> None:
        """
        Options may follow the command.
        """
        self.fill(META, [0])
        out, err = io.StringIO(), io.StringIO()
        code = main(["ls", "--json", "--cache-dir", self.directory], out, err)
        self.assertEqual(code, EXIT_OK)
        self.assertEqual(len(json.loads(out.getvalue())["versions"]), 1)

    def test_lockedByAnother(self) -> None:
        """
        A changing command meets the lock held by a process that takes no
        commands (a p2pd fetch, another p2pd cache): it exits 5 saying so,
        and changes nothing; reading commands still work.
        """
        self.fill(META, [0])
        lock = CacheLock.take(self.directory)
        self.addCleanup(lock.release)
        for argv in [["rm", URL], ["purge"], ["verify"]]:
            code, out, err = self.command(*argv)
            self.assertEqual((code, out), (EXIT_BUSY, ""))
            self.assertIn(f"is in use by pid {os.getpid()}, which takes no", err)
        self.assertEqual(self.command("ls")[0], EXIT_OK)
        self.assertEqual(self.runJSON("du")["heldBlocks"], 1)  # type: ignore[index]

    def test_throughNode(self) -> None:
        """
        With a node holding the lock and naming its control address, the
        changes are asked of the node, which makes them: the command does
        not touch the cache itself.
        """
        directory = self.fill(META, [0, 1, 2])
        self.fill(OTHER, [0])
        self.corrupt(directory, 1)
        lock = CacheLock.take(self.directory)
        self.addCleanup(lock.release)
        lock.say("127.0.0.1:4242", "token")
        asked: list[tuple[object, ...]] = []

        class Node:
            def __init__(self, found: Holder) -> None:
                asked.append(("node", found))

            def remove(self, url: str) -> bool:
                asked.append(("remove", url))
                return True

            def purge(self) -> int:
                asked.append(("purge",))
                return 2

            def recheck(
                self, url: str, version: str, blocks: Sequence[int]
            ) -> list[int]:
                asked.append(("recheck", url, version, list(blocks)))
                return list(blocks)

        self.patch(cachechanges, "NodeChanges", Node)
        before = sorted(os.listdir(self.root))
        self.assertEqual(self.command("rm", URL)[0], EXIT_OK)
        self.assertEqual(self.command("purge")[0], EXIT_OK)
        self.assertEqual(self.command("verify")[0], EXIT_BAD)
        self.assertEqual(sorted(os.listdir(self.root)), before)
        found = Holder(os.getpid(), "127.0.0.1:4242", "token")
        self.assertEqual(
            asked,
            [
                ("node", found),
                ("remove", URL),
                ("node", found),
                ("purge",),
                ("node", found),
                ("recheck", URL, META.version, [1]),
            ],
        )

    def test_controlNotLoopback(self) -> None:
        """
        A lock that names a control address off this host, or none that
        reads, is not used: the token is never sent elsewhere, and the
        command exits 5.
        """
        self.fill(META, [0])
        lock = CacheLock.take(self.directory)
        self.addCleanup(lock.release)
        for control in ["10.0.0.1:4242", "nonsense", "127.0.0.1:99999"]:
            lock.say(control, "token")
            code, out, err = self.command("purge")
            self.assertEqual((code, out), (EXIT_BUSY, ""), control)
            self.assertIn("names no loopback control address", err)
        self.assertEqual(self.runJSON("du")["heldBlocks"], 1)  # type: ignore[index]

    def test_lockReleased(self) -> None:
        """
        A changing command takes the lock while it works and lets it go,
        so a node may start on the cache afterwards.
        """
        self.fill(META, [0])
        self.command("rm", URL)
        self.assertTrue(os.path.exists(os.path.join(self.directory, LOCK_NAME)))
        self.assertIsNone(holder(self.directory))


class OutputTests(SynchronousTestCase):
    """
    L{p2pd.cacheoutput}: what a person reads.
    """

    def test_humanSize(self) -> None:
        """
        Sizes in binary units with one decimal, bytes as they are.
        """
        for size, text in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (10 * 1024**3, "10.0 GiB"),
            (3 * 1024**6, "3072.0 PiB"),
        ]:
            self.assertEqual(humanSize(size), text)

    def test_humanTime(self) -> None:
        """
        Times in local time to the minute; an unknown one as C{-}.
        """
        self.assertEqual(humanTime(0), "-")
        when = time.mktime((2026, 1, 2, 3, 4, 59, 0, 0, -1))
        self.assertEqual(humanTime(when), "2026-01-02 03:04")

    def test_table(self) -> None:
        """
        Columns as wide as their widest cell, some aligned right, no
        trailing spaces.
        """
        self.assertEqual(
            table(["A", "NUMBER", "Z"], [["long", "1", ""], ["x", "123456", "z"]], {1}),
            "A     NUMBER  Z\nlong       1\nx     123456  z\n",
        )


class CommandLineTests(SynchronousTestCase):
    """
    L{p2pd.cli}: the C{p2pd} command runs its subcommands.
    """

    def command(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        try:
            cli.main(list(argv))
        except SystemExit as e:
            return int(e.code or 0), out.getvalue(), err.getvalue()
        return 0, out.getvalue(), err.getvalue()

    def test_help(self) -> None:
        """
        C{p2pd --help} lists both commands.
        """
        code, out, err = self.command("--help")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("p2pd fetch [options]", out)
        self.assertIn("p2pd cache [-c DIR] [--json] ls|du|verify|rm URL|purge", out)

    def test_unknown(self) -> None:
        """
        No command, or an unknown one, exits 1 with the usage.
        """
        for argv in [[], ["fetc"]]:
            code, out, err = self.command(*argv)
            self.assertEqual((code, out, err), (1, "", cli.USAGE))

    def test_cache(self) -> None:
        """
        C{p2pd cache} runs the cache command, with its exit code.
        """
        missing = os.path.abspath(self.mktemp())
        code, out, err = self.command("cache", "-c", missing, "ls")
        self.assertEqual(
            (code, out, err),
            (EXIT_NOT_CACHE, "", f"p2pd cache: {missing} does not exist\n"),
        )
