# -*- test-case-name: tests.unit.test_spec -*-
"""
Tests that docs/protocol.md, the SPP specification, says what the code does:
the message table, the error codes, and the limits.
"""

import re
import typing

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode
from p2pd.core.peers import MAX_PEERS
from p2pd.spp import answering, codec, handles, protocol
from tests import CHECKOUT

SPEC = FilePath(CHECKOUT).child("docs").child("protocol.md")


def _section(text: str, title: str) -> str:
    """
    The body of the C{## title} section of the specification.
    """
    match = re.search(
        rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL
    )
    assert match is not None, f"no section {title!r} in the specification"
    return match.group(1)


def _tableRows(section: str) -> list[list[str]]:
    """
    The cells of each body row of the Markdown tables in C{section}.
    """
    rows = []
    for line in section.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|[-| ]+\|", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:] if rows else rows


def _size(text: str) -> int:
    """
    A size as the specification writes it: C{2048 bytes}, C{4 MiB + 64
    bytes}, C{2^22}, C{16 KiB}.
    """
    units = {"KiB": 1024, "MiB": 1024**2, "bytes": 1, "s": 1, "": 1}
    total = 0
    for term in text.split("+"):
        match = re.fullmatch(r"\s*(\d+)(?:\^(\d+))?\s*(KiB|MiB|bytes|s|)\s*", term)
        assert match is not None, f"cannot read the size {text!r}"
        number = int(match.group(1))
        if match.group(2):
            number **= int(match.group(2))
        total += number * units[match.group(3)]
    return total


class SpecTests(SynchronousTestCase):
    """
    docs/protocol.md matches L{p2pd.spp.codec}, L{p2pd.spp.protocol} and
    L{p2pd.spp.answering}.
    """

    def setUp(self) -> None:
        self.text = SPEC.getContent().decode("utf-8")

    def test_helpers(self) -> None:
        """
        The size reader understands the notations the specification uses.
        """
        self.assertEqual(_size("4 MiB + 64 bytes"), 4 * 1024 * 1024 + 64)
        self.assertEqual(_size("2^22"), 2**22)
        self.assertEqual(_size("16 KiB"), 16384)
        self.assertEqual(_size("90 s"), 90)

    def test_messageTable(self) -> None:
        """
        The message table lists exactly the message types of the codec, with
        their type codes and names.
        """
        inSpec = {
            int(row[0], 16): row[1]
            for row in _tableRows(_section(self.text, "Messages"))
            if row[0].startswith("0x")
        }
        inCode = {cls.TYPE: cls.__name__ for cls in typing.get_args(codec.Message)}
        self.assertEqual(inSpec, inCode)

    def test_errorTable(self) -> None:
        """
        The error table lists exactly the L{ErrorCode}s, with their values.
        """
        inSpec = {
            row[1]: int(row[0])
            for row in _tableRows(_section(self.text, "Error codes"))
            if row[0].isdigit()
        }
        self.assertEqual(inSpec, {code.name: code.value for code in ErrorCode})

    def test_closingTable(self) -> None:
        """
        The table of errors that close the connection has one row per
        L{ErrorCode}, in order.
        """
        section = _section(self.text, "Error codes").split("### ")[1]
        self.assertEqual(
            [row[0] for row in _tableRows(section)], [code.name for code in ErrorCode]
        )

    def _limits(self) -> dict[str, str]:
        return {row[0]: row[1] for row in _tableRows(_section(self.text, "Limits"))}

    def test_limitsTable(self) -> None:
        """
        Each row of the limits table gives the number the code enforces.
        """
        limits = self._limits()
        self.assertEqual(_size(limits["frame"]), codec.MAX_FRAME)
        self.assertEqual(_size(limits["URL"]), codec.MAX_URL)
        self.assertEqual(_size(limits["version stamp"]), codec.MAX_VERSION_STAMP)
        self.assertEqual(
            _size(limits["digests per request"]), codec.MAX_DIGESTS_PER_REQUEST
        )
        self.assertEqual(_size(limits["blocks per file"]), codec.MAX_BLOCKS)
        self.assertEqual(_size(limits["Have ranges per frame"]), codec.MAX_HAVE_RANGES)
        self.assertEqual(_size(limits["peers per answer"]), MAX_PEERS)
        self.assertEqual(
            _size(limits["open handles per connection"]), answering.MAX_OPEN_FILES
        )
        self.assertEqual(
            _size(
                limits["outstanding requests a node answers per connection"].split("(")[
                    0
                ]
            ),
            answering.MAX_PENDING_REQUESTS,
        )
        self.assertEqual(
            _size(
                limits["Opens waiting for a handle, per connection (p2pd as opener)"]
                .split("(")[0]
            ),
            handles.MAX_WAITING_OPENS,
        )

    def test_digestLimits(self) -> None:
        """
        The digest name and digest size limits match the codec.
        """
        match = re.fullmatch(
            r"(\d+) bytes; digest size (\d+)-(\d+) bytes", self._limits()["digest name"]
        )
        assert match is not None
        self.assertEqual(int(match.group(1)), codec.MAX_DIGEST_NAME)
        self.assertEqual(int(match.group(2)), codec.MIN_DIGEST_SIZE)
        self.assertEqual(int(match.group(3)), codec.MAX_DIGEST_SIZE)
        self.assertIn(f"{match.group(2)} to {match.group(3)} bytes", self.text)

    def test_timeouts(self) -> None:
        """
        The handshake, idle and keepalive times match the protocol's.
        """
        times = self._limits()["handshake / idle / keepalive"]
        self.assertEqual(
            [_size(t) for t in times.split("/")],
            [
                protocol.HANDSHAKE_TIMEOUT,
                protocol.IDLE_TIMEOUT,
                protocol.KEEPALIVE_INTERVAL,
            ],
        )
        states = _section(self.text, "Connection states")
        self.assertIn(f"within {protocol.HANDSHAKE_TIMEOUT:g} s", states)
        self.assertIn(f"nothing for {protocol.IDLE_TIMEOUT:g} s", states)
        self.assertIn(f"nothing for {protocol.KEEPALIVE_INTERVAL:g} s", states)

    def test_framing(self) -> None:
        """
        The framing section states the same largest frame.
        """
        match = re.search(r"the largest frame is ([^(]+?) \(`MAX_FRAME`\)", self.text)
        assert match is not None
        self.assertEqual(_size(match.group(1)), codec.MAX_FRAME)

    def test_blockSizes(self) -> None:
        """
        The block size range in the specification is the codec's.
        """
        match = re.search(r"a power of two from (\d+ KiB) to (\d+ MiB)", self.text)
        assert match is not None
        self.assertEqual(_size(match.group(1)), codec.MIN_BLOCK_SIZE)
        self.assertEqual(_size(match.group(2)), codec.MAX_BLOCK_SIZE)

    def test_fieldLimits(self) -> None:
        """
        The limits in the message table (agent, error message, URL, version)
        match the codec's.
        """
        rows = {
            row[1]: row[3]
            for row in _tableRows(_section(self.text, "Messages"))
            if row[0].startswith("0x")
        }
        self.assertIn(f"agent ≤ {codec.MAX_AGENT} bytes", rows["Hello"])
        self.assertIn(f"message ≤ {codec.MAX_ERROR_MESSAGE} bytes", rows["Error"])
        self.assertIn(f"url 1-{codec.MAX_URL} bytes", rows["Open"])
        self.assertIn(f"version ≤ {codec.MAX_VERSION_STAMP}", rows["Open"])
        self.assertIn(
            f"1 ≤ count ≤ {codec.MAX_DIGESTS_PER_REQUEST}", rows["GetDigests"]
        )
        self.assertIn(f"n ≤ {codec.MAX_HAVE_RANGES}", rows["Have"])
        self.assertIn(f"≤ {MAX_PEERS} entries", rows["Peers"])

    def test_magicAndVersion(self) -> None:
        """
        The magic bytes and the protocol version are the codec's.
        """
        magic = " ".join(f"{byte:02x}" for byte in codec.MAGIC)
        self.assertIn(f"magic `{magic}`", self.text)
        self.assertIn(f"This is version {codec.VERSION}.", self.text)
