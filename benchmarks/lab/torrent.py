"""
libtorrent streaming the way TorrServer and peerflix do, tuned to stream its
best: the lab's third contestant.

One session per viewer, in the viewer's namespace, running before its
viewer asks, connected to the seeder (in the origin's namespace) and to the
viewers that arrived before it; TCP only; sequential download; piece
priorities only over the next L{WINDOW_SECONDS} of playback (every other
piece is priority 0): the highest, with C{set_piece_deadline}, over the
next L{DEADLINE_SECONDS}, the lowest over the rest. libtorrent 2.1 fetches
deadline pieces in random order, so deadlines over the whole window start
slowly, and wanting every piece at once crowds the origin; with one
priority over the whole window it picks those in random order too. The
player model (L{player.Playback}) reads the pieces as they become
contiguous from its position, no further than its read-ahead. Every
setting is given to the session's constructor (L{settings}).

    python3 -m benchmarks.lab.torrent seed TORRENT DIR ADDRESS
    python3 -m benchmarks.lab.torrent view TORRENT DIR ADDRESS --peers A,B,...
        --bitrate BYTES_PER_S --segments OFFSET:SECONDS,... --timeout S
        --json FILE [--linger] [--start-at MONOTONIC]
"""

import argparse
import os
import signal
import sys
import time

from benchmarks.lab.player import (
    READ_AHEAD_SECONDS,
    Playback,
    Recorder,
    parseSegments,
    writeResult,
)

PORT = 6881
WINDOW_SECONDS = READ_AHEAD_SECONDS
DEADLINE_SECONDS = 2.0
URGENT_PRIORITY = 7
# How often the viewer looks at its pieces and moves its window.
TICK = 0.05


def settings(lt, address):
    """
    The settings of every session of the lab, seeder and viewers: TCP on
    the node's lab address only, no DHT, local discovery, UPnP or NAT-PMP
    (nothing beyond the lab), unchoke slots for every viewer of the largest
    scenario, and the alerts the viewer reads.
    """
    category = lt.alert.category_t
    return {
        "listen_interfaces": f"{address}:{PORT}",
        "outgoing_interfaces": address,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_bootstrap_nodes": "",
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "unchoke_slots_limit": 64,
        # A viewer holding every piece of its window is "finished" for
        # libtorrent, which would then drop its connections to seeds and
        # not dial them again for a minute.
        "close_redundant_connections": False,
        "tick_interval": 100,
        "alert_mask": category.status_notification
        | category.piece_progress_notification
        | category.error_notification,
    }


def makeTorrent(lt, path, output):
    """
    A v1 torrent of the file at C{path}, written to C{output}.
    """
    files = lt.file_storage()
    files.add_file(os.path.basename(path), os.path.getsize(path))
    creator = lt.create_torrent(files, 0, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(creator, os.path.dirname(path))
    with open(output, "wb") as f:
        f.write(lt.bencode(creator.generate()))


def addTorrent(lt, session, torrent, directory):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = directory
    return session.add_torrent(params)


def waitForSignal():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def seed(lt, torrent, directory, address):
    session = lt.session(settings(lt, address))
    handle = addTorrent(lt, session, torrent, directory)
    while handle.status().state != lt.torrent_status.seeding:
        time.sleep(0.05)
    print("seeding", flush=True)
    waitForSignal()


class Window:
    """
    Which pieces a viewer wants: those under its next L{WINDOW_SECONDS},
    with deadlines on those under its next L{DEADLINE_SECONDS}.
    """

    def __init__(self, handle, info, bitrate):
        self.handle = handle
        self.pieceLength = info.piece_length()
        self.pieces = info.num_pieces()
        self.size = info.total_size()
        self.bitrate = bitrate
        self.current = None
        self.deadlines = set()

    def piecesUnder(self, start, end):
        first = start // self.pieceLength
        last = min(self.pieces - 1, max(start, end - 1) // self.pieceLength)
        return range(first, last + 1)

    def move(self, offset, position, played):
        """
        Playback is at C{position} seconds into a segment from C{offset}.
        """
        start = offset + int(position * self.bitrate)
        window = self.piecesUnder(
            start, min(self.size, start + int(WINDOW_SECONDS * self.bitrate))
        )
        urgent = self.piecesUnder(
            start, min(self.size, start + int(DEADLINE_SECONDS * self.bitrate))
        )
        if window != self.current:
            # With one priority over the window, libtorrent 2.1 picks its
            # pieces in random order, not sequentially: the urgent ones
            # first (7), the rest of the window after them, in order (1).
            priorities = [0] * self.pieces
            for piece in window:
                priorities[piece] = URGENT_PRIORITY if piece in urgent else 1
            self.handle.prioritize_pieces(priorities)
            self.current = window
        for piece in urgent:
            if piece not in self.deadlines and not self.handle.have_piece(piece):
                ahead = (piece * self.pieceLength - start) / self.bitrate
                self.handle.set_piece_deadline(piece, max(0, int(ahead * 1000)))
                self.deadlines.add(piece)

    def contiguous(self, offset):
        """
        Bytes held from C{offset} on, without a gap.
        """
        piece = offset // self.pieceLength
        while piece < self.pieces and self.handle.have_piece(piece):
            piece += 1
        return max(0, min(self.size, piece * self.pieceLength) - offset)


def view(lt, args):
    session = lt.session(settings(lt, args.address))
    info = lt.torrent_info(args.torrent)
    # The viewer asks at its arrival; the session runs already.
    time.sleep(max(0.0, args.start_at - time.monotonic()))
    handle = addTorrent(lt, session, args.torrent, args.directory)
    handle.set_flags(lt.torrent_flags.sequential_download)
    window = Window(handle, info, args.bitrate)
    window.move(0, 0.0, 0.0)
    for peer in filter(None, args.peers.split(",")):
        handle.connect_peer((peer, PORT))
    bySource = {}
    deadline = time.monotonic() + args.timeout
    segments = []
    for offset, seconds in parseSegments(args.segments):
        requested = time.monotonic()
        recorder = Recorder(requested, seconds)
        playback = Playback(requested, args.bitrate, seconds)
        handle.clear_piece_deadlines()
        window.deadlines.clear()
        received = 0
        while not playback.finished and time.monotonic() < deadline:
            session.wait_for_alert(int(TICK * 1000))
            session.pop_alerts()
            now = time.monotonic()
            window.move(offset, playback.positionAt(now), seconds)
            got = min(window.contiguous(offset), playback.wanted(now))
            if got > received:
                received = got
                playback.arrive(now, received)
                recorder.record(now, received)
            for peer in handle.get_peer_info():
                source = peer.ip[0]
                bySource[source] = max(bySource.get(source, 0), peer.total_download)
        recorder.record(time.monotonic(), received, force=True)
        recorder.segment["ended"] = time.monotonic()
        recorder.segment["offset"] = offset
        segments.append(recorder.segment)
    writeResult(args.json, {"segments": segments, "bytesBySource": bySource})
    if args.linger:
        # Play on as a peer for the others until the lab stops it.
        handle.prioritize_pieces([0] * window.pieces)
        waitForSignal()


def main(argv=None):
    import libtorrent as lt

    parser = argparse.ArgumentParser(description="libtorrent in the lab.")
    parser.add_argument("role", choices=["seed", "view"])
    parser.add_argument("torrent")
    parser.add_argument("directory")
    parser.add_argument("address")
    parser.add_argument("--peers", default="")
    parser.add_argument("--bitrate", type=float)
    parser.add_argument("--segments")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--json")
    parser.add_argument("--linger", action="store_true")
    parser.add_argument(
        "--start-at", type=float, default=0.0, help="when to ask (monotonic clock)"
    )
    args = parser.parse_args(argv)
    if args.role == "seed":
        seed(lt, args.torrent, args.directory, args.address)
    else:
        view(lt, args)


if __name__ == "__main__":
    main()
