"""
The attackers of benchmarks/abuse.py, in asyncio: hostile SPP peers and HTTP
clients, fake origins and a plain TCP service.

Every attack opens a bounded number of connections from L{ATTACKER}, sets
C{ready} once it is at full strength, keeps going until its task is
cancelled, and closes everything it opened in L{Attack.close}, so that an
interrupted run leaves no socket behind. What it saw is counted in
C{counters}.
"""

import asyncio
import hashlib
import struct
import sys
import time

from common import ROOT

sys.path.insert(0, ROOT)
from p2pd.core.errors import ErrorCode
from p2pd.core.peers import Peer
from p2pd.spp import codec  # noqa: I001 (the checkout's p2pd, put on the path above)

# Every attacker connects from this address, so that a node's limits per
# remote address apply to the attackers and not to the normal client.
ATTACKER = "127.0.0.66"
CONNECT_TIMEOUT = 5.0
CONNECTING_AT_ONCE = 32
AGENT = "abuse-benchmark"
_LENGTH = struct.Struct("!I")
_NODE_ID = bytes(range(16))


def frame(message):
    body = codec.encode(message)
    return _LENGTH.pack(len(body)) + body


def hello(listenPort=0):
    return frame(codec.Hello(codec.VERSION, listenPort, _NODE_ID, AGENT))


async def readFrame(reader):
    """
    The next message, or None at the end of the connection.
    """
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        if not 0 < length <= codec.MAX_FRAME:
            raise codec.DecodeError(f"frame of {length} bytes")
        return codec.decode(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class Attack:
    """
    A set of connections (and servers) opened by one attack.
    """

    def __init__(self):
        self.ready = asyncio.Event()
        self.counters = {}
        self._writers = set()
        self._servers = []
        self._tasks = set()

    def count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    def spawn(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def connect(self, host, port, limit):
        """
        A connection from L{ATTACKER}, or None if the victim refused it.
        """
        async with limit:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, local_addr=(ATTACKER, 0)),
                    CONNECT_TIMEOUT,
                )
            except (OSError, asyncio.TimeoutError):
                self.count("refused")
                return None
        self._writers.add(writer)
        self.count("connected")
        return reader, writer

    async def serve(self, handler, host):
        """
        A listening server on C{host}; its port.
        """

        async def accepted(reader, writer):
            self._writers.add(writer)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(accepted, host, 0)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def drain(self, reader):
        """
        Read and drop what the victim sends until it closes the connection.
        """
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.count("closed by the victim")

    async def close(self):
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for server in self._servers:
            await server.wait_closed()


class Trickler(Attack):
    """
    SPP connections that announce a frame of the largest size and send all
    of it but its last byte, slowly: C{afterHello} after a Hello (a Block
    frame), C{beforeHello} as their Hello.
    """

    CHUNK = 256 * 1024
    INTERVAL = 0.05

    def __init__(self, host, port, afterHello, beforeHello):
        super().__init__()
        self.host, self.port = host, port
        self.afterHello, self.beforeHello = afterHello, beforeHello

    async def one(self, limit, greeted):
        connection = await self.connect(self.host, self.port, limit)
        if connection is None:
            return
        reader, writer = connection
        self.spawn(self.drain(reader))
        kind = codec.Block.TYPE if greeted else codec.Hello.TYPE
        start = codec.MAGIC + (hello() if greeted else b"")
        writer.write(start + _LENGTH.pack(codec.MAX_FRAME) + bytes([kind]))
        # The frame's length counts its type byte, sent: all but one byte.
        left = codec.MAX_FRAME - 2
        chunk = bytes(self.CHUNK)
        try:
            while left and not writer.is_closing():
                writer.write(chunk[:left])
                left -= min(left, self.CHUNK)
                await writer.drain()
                await asyncio.sleep(self.INTERVAL)
        except ConnectionError:
            return
        if not left:
            self.count("partial frames held")

    async def run(self):
        limit = asyncio.Semaphore(CONNECTING_AT_ONCE)
        await asyncio.gather(
            *[self.one(limit, True) for _ in range(self.afterHello)],
            *[self.one(limit, False) for _ in range(self.beforeHello)],
        )
        self.ready.set()
        await asyncio.Event().wait()


class Hoarder(Attack):
    """
    SPP connections that each open one file C{handles} times, ask one block
    of every handle and keep every handle open.
    """

    def __init__(self, host, port, url, connections, handles):
        super().__init__()
        self.host, self.port, self.url = host, port, url
        self.connections, self.handles = connections, handles
        self._answered = 0

    async def one(self, limit):
        connection = await self.connect(self.host, self.port, limit)
        if connection is None:
            self._answered += self.handles
            return
        reader, writer = connection
        opens = [frame(codec.Open(n, self.url, "")) for n in range(1, self.handles + 1)]
        writer.write(codec.MAGIC + hello() + b"".join(opens))
        unanswered = self.handles
        while unanswered:
            message = await readFrame(reader)
            if message is None:
                self.count("closed by the victim")
                break
            if isinstance(message, codec.Opened):
                # A block of every handle, so that the victim reads the file.
                self.count("handles opened")
                handle = message.request
                writer.write(frame(codec.GetBlock(self.handles + handle, handle, 0)))
            elif isinstance(message, codec.Error) and message.request <= self.handles:
                self.count(f"Open refused ({ErrorCode(message.code).name})")
            else:
                continue
            unanswered -= 1
        self._answered += self.handles
        if self._answered == self.connections * self.handles:
            self.ready.set()
        if unanswered == 0:
            await self.drain(reader)

    async def run(self):
        limit = asyncio.Semaphore(CONNECTING_AT_ONCE)
        await asyncio.gather(*[self.one(limit) for _ in range(self.connections)])
        self.ready.set()
        await asyncio.Event().wait()


class FakeFile:
    """
    A file a fake SPP server gives out: its metadata, and its blocks all
    C{fill} bytes (so that a digest is computed once per block length).
    """

    def __init__(self, size, blockSize, digestName="sha256", version="1", fill=0):
        self.size, self.blockSize = size, blockSize
        self.digestName, self.version = digestName, version
        self.blocks = -(-size // blockSize)
        self._fill = fill
        self._digests = {}

    def length(self, index):
        return min(self.blockSize, self.size - index * self.blockSize)

    def data(self, index):
        return bytes([self._fill]) * self.length(index)

    def digest(self, index):
        length = self.length(index)
        if length not in self._digests:
            self._digests[length] = hashlib.new(
                self.digestName, self.data(index)
            ).digest()
        return self._digests[length]


class FakePeer(Attack):
    """
    An SPP server (and, with L{dial}, client) that claims authority over
    every URL in C{files}: answers Open with the authoritative flag, and
    digests and blocks of its own. At most C{blockBudget} blocks and
    C{digestBudget} digest answers per connection, each block C{interval}
    seconds after the last: past the budget, requests go unanswered.
    """

    def __init__(self, files, peers=(), blockBudget=16, digestBudget=16, interval=0.0):
        super().__init__()
        self.files = files
        self.peers = tuple(Peer(host, port) for host, port in peers)
        self.blockBudget, self.digestBudget = blockBudget, digestBudget
        self.interval = interval
        self.port = None

    async def listen(self, host):
        self.port = await self.serve(self.responder, host)
        return self.port

    async def responder(self, reader, writer):
        try:
            magic = await reader.readexactly(len(codec.MAGIC))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if magic != codec.MAGIC:
            return
        writer.write(hello(self.port))
        await self.converse(reader, writer)

    async def dial(self, host, port, requests=()):
        """
        Connect to a node and send it C{requests} behind the Hello; answer
        what it asks on that connection meanwhile.
        """
        connection = await self.connect(host, port, asyncio.Semaphore(1))
        if connection is None:
            return
        reader, writer = connection
        writer.write(codec.MAGIC + hello(self.port) + b"".join(map(frame, requests)))
        self.spawn(self.converse(reader, writer))

    async def converse(self, reader, writer):
        handles = {}
        blocks = digests = 0
        nextBlock = time.monotonic()
        while (message := await readFrame(reader)) is not None:
            answer = None
            if isinstance(message, codec.Open):
                fake = self.files.get(message.url)
                if fake is None:
                    answer = codec.Error(message.request, ErrorCode.NOT_FOUND, "")
                else:
                    handles[message.request] = fake
                    self.count("Opens answered as an authority")
                    answer = codec.Opened(
                        message.request,
                        fake.size,
                        fake.blockSize,
                        True,
                        fake.digestName,
                        fake.version,
                    )
            elif isinstance(message, codec.GetDigests) and message.handle in handles:
                digests += 1
                if digests <= self.digestBudget:
                    fake = handles[message.handle]
                    last = min(message.first + message.count, fake.blocks)
                    self.count("digests given", last - message.first)
                    answer = codec.Digests(
                        message.request,
                        message.first,
                        b"".join(map(fake.digest, range(message.first, last))),
                    )
            elif isinstance(message, codec.GetBlock) and message.handle in handles:
                blocks += 1
                if blocks <= self.blockBudget:
                    nextBlock = max(nextBlock, time.monotonic()) + self.interval
                    self.spawn(
                        self.sendBlock(
                            writer, handles[message.handle], message, nextBlock
                        )
                    )
            elif isinstance(message, codec.GetPeers):
                answer = codec.Peers(message.request, self.peers)
            if answer is not None:
                writer.write(frame(answer))

    async def sendBlock(self, writer, fake, message, at):
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        if not writer.is_closing():
            self.count("blocks given")
            writer.write(
                frame(
                    codec.Block(
                        message.request, message.index, fake.data(message.index)
                    )
                )
            )


class Liar(FakePeer):
    """
    A peer claiming authority over a real origin's file, with forged bytes
    (every byte 0xAA) and their digests.
    """

    async def register(self, host, port, url):
        """
        Open the file at its origin and ask for peers, so that the origin
        introduces this peer to the nodes fetching it; learn its metadata.
        """
        connection = await self.connect(host, port, asyncio.Semaphore(1))
        if connection is None:
            raise RuntimeError(f"liar: origin {host}:{port} refused")
        reader, writer = connection
        writer.write(
            codec.MAGIC
            + hello(self.port)
            + frame(codec.Open(1, url, ""))
            + frame(codec.GetPeers(2, 1))
        )
        while (message := await readFrame(reader)) is not None:
            if isinstance(message, codec.Opened):
                self.files[url] = FakeFile(
                    message.size,
                    message.blockSize,
                    message.digestName,
                    message.version,
                    fill=0xAA,
                )
                self.spawn(self.converse(reader, writer))
                return self.files[url]
        raise RuntimeError("liar: the origin did not open the file")


class PlainService(Attack):
    """
    A TCP service that is not SPP (it greets like an SSH server): counts
    the connections it is offered.
    """

    BANNER = b"SSH-2.0-OpenSSH_9.2p1\r\n"

    async def listen(self, host):
        async def greet(reader, writer):
            self.count("connections received")
            writer.write(self.BANNER)
            await self.drain(reader)

        return await self.serve(greet, host)


class Slowloris(Attack):
    """
    HTTP connections that send a request's headers one line every
    C{interval} seconds, never ending them.
    """

    def __init__(self, host, port, connections, interval):
        super().__init__()
        self.host, self.port = host, port
        self.connections, self.interval = connections, interval

    async def one(self, limit, started):
        connection = await self.connect(self.host, self.port, limit)
        if connection is None:
            return
        reader, writer = connection
        closed = self.spawn(self.drain(reader))
        writer.write(f"GET /.status HTTP/1.1\r\nHost: {self.host}\r\n".encode())
        line = 0
        while not closed.done():
            await asyncio.sleep(self.interval)
            line += 1
            try:
                writer.write(f"X-Line-{line}: {line}\r\n".encode())
            except ConnectionError:
                break
        self.counters.setdefault("seconds before the victim closed", []).append(
            round(time.monotonic() - started, 1)
        )

    async def run(self):
        limit = asyncio.Semaphore(CONNECTING_AT_ONCE)
        started = time.monotonic()
        ones = [self.spawn(self.one(limit, started)) for _ in range(self.connections)]
        while self.counters.get("connected", 0) + self.counters.get(
            "refused", 0
        ) < self.connections and not all(t.done() for t in ones):
            await asyncio.sleep(0.1)
        self.ready.set()
        await asyncio.gather(*ones)
        await asyncio.Event().wait()


class BigPost(Attack):
    """
    C{count} POST requests announcing C{size} bytes of body each, sent at
    full speed until the victim answers or closes.
    """

    CHUNK = 1024 * 1024

    def __init__(self, host, port, count, size):
        super().__init__()
        self.host, self.port = host, port
        self.number, self.size = count, size

    async def one(self, limit):
        connection = await self.connect(self.host, self.port, limit)
        if connection is None:
            return
        reader, writer = connection
        answer = self.spawn(reader.readline())
        writer.write(
            f"POST / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/octet-stream\r\n"
            f"Content-Length: {self.size}\r\n\r\n".encode()
        )
        chunk = bytes(self.CHUNK)
        sent = 0
        try:
            while sent < self.size and not answer.done():
                n = min(self.CHUNK, self.size - sent)
                writer.write(chunk[:n])
                await writer.drain()
                sent += n
        except ConnectionError:
            pass
        self.count("body bytes sent", sent)
        try:
            status = await asyncio.wait_for(answer, CONNECT_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            status = b""
        words = status.split()
        self.count(f"answered {words[1].decode() if len(words) > 1 else 'nothing'}")

    async def run(self):
        limit = asyncio.Semaphore(CONNECTING_AT_ONCE)
        await asyncio.gather(*[self.one(limit) for _ in range(self.number)])
        self.ready.set()
        await asyncio.Event().wait()
