"""The device end of adb's protocol, for testing the real ``adb`` binary without a phone.

It speaks adb's transport framing (24-byte header: command, arg0, arg1, length, checksum, magic) and
stops where the issue's error paths need it to: ``silent`` says nothing (adb lists the device as
``offline``), ``auth`` answers every message with a new key challenge (``unauthorized``, as a phone
before its user taps "Allow USB debugging"), and ``device`` completes the handshake and serves the two
services ``resnet-edge`` uses: ``shell:`` (legacy, no exit codes, as old devices) and ``sync:`` (what
``adb push`` speaks). Its shell runs nothing: it records each command line it receives, keeps pushed
files in memory, and answers a ``benchmark_model`` command with a given text (real output from a phone)."""

from __future__ import annotations

import os
import shlex
import socket
import struct
import threading

A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (int.from_bytes(c, "little") for c in
                                                   (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE"))
AUTH_TOKEN = 1
VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
BANNER = b"device::ro.product.name=fake;ro.product.model=FakePhone;ro.product.device=fake;features=\0"


def message(command: int, arg0: int, arg1: int, payload: bytes = b"") -> bytes:
    return struct.pack("<6I", command, arg0, arg1, len(payload), sum(payload) & 0xFFFFFFFF,
                       command ^ 0xFFFFFFFF) + payload


class FakeDevice:
    """Listens on 127.0.0.1:``port``; ``mode``: "silent", "auth" or "device"."""

    def __init__(self, mode: str, benchmark_output: str = ""):
        self.mode, self.benchmark_output = mode, benchmark_output
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.closed = False
        self._ids = iter(range(1, 1 << 30))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        streams: dict[int, dict] = {}
        with conn:
            try:
                while not self.closed:
                    header = conn.recv(24, socket.MSG_WAITALL)
                    if len(header) < 24:
                        return
                    command, arg0, arg1, length, _, _ = struct.unpack("<6I", header)
                    payload = conn.recv(length, socket.MSG_WAITALL) if length else b""
                    if self.mode == "silent":
                        continue
                    if self.mode == "auth":
                        conn.sendall(message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
                        continue
                    self._handle(conn, streams, command, arg0, arg1, payload)
            except OSError:
                return

    def _handle(self, conn, streams, command, arg0, arg1, payload) -> None:
        if command == A_CNXN:
            conn.sendall(message(A_CNXN, VERSION, MAX_PAYLOAD, BANNER))
        elif command == A_OPEN:
            host, mine = arg0, next(self._ids)
            service = payload.rstrip(b"\0").decode("utf-8", errors="replace")
            conn.sendall(message(A_OKAY, mine, host))
            if service.startswith("shell:"):
                out = self._shell(service[6:])
                streams[host] = {"mine": mine, "close_after_okay": True}
                conn.sendall(message(A_WRTE, mine, host, out.encode() or b"\n"))
            elif service == "sync:":
                streams[host] = {"mine": mine, "buf": b"", "file": None}
            else:
                conn.sendall(message(A_CLSE, mine, host))
        elif command == A_OKAY:  # the host took our WRTE: a shell's one answer is complete
            stream = streams.get(arg0)
            if stream and stream.pop("close_after_okay", False):
                conn.sendall(message(A_CLSE, stream["mine"], arg0))
        elif command == A_WRTE:
            stream = streams.get(arg0)
            if stream is None:
                return
            conn.sendall(message(A_OKAY, stream["mine"], arg0))
            stream["buf"] += payload
            for reply in self._sync(stream):
                conn.sendall(message(A_WRTE, stream["mine"], arg0, reply))
            if stream.get("quit"):  # adbd ends the sync service on QUIT
                conn.sendall(message(A_CLSE, stream["mine"], arg0))
        elif command == A_CLSE:
            stream = streams.pop(arg0, None)
            if stream:
                conn.sendall(message(A_CLSE, stream["mine"], arg0))

    def _sync(self, stream: dict) -> list[bytes]:
        """Sync requests in the stream so far: STAT (nothing there), SEND/DATA/DONE (a file), QUIT."""
        replies, buf = [], stream["buf"]
        while len(buf) >= 8:
            kind, n = buf[:4], struct.unpack("<I", buf[4:8])[0]
            if kind in (b"DONE", b"QUIT"):
                body, buf = b"", buf[8:]
            elif len(buf) < 8 + n:
                break
            else:
                body, buf = buf[8:8 + n], buf[8 + n:]
            if kind == b"STAT":
                replies.append(b"STAT" + struct.pack("<3I", 0, 0, 0))
            elif kind == b"SEND":
                stream["file"] = [body.decode().rsplit(",", 1)[0], b""]
            elif kind == b"DATA":
                stream["file"][1] += body
            elif kind == b"QUIT":
                stream["quit"] = True
            elif kind == b"DONE":
                path, data = stream["file"]
                self.files[path] = data
                replies.append(b"OKAY" + struct.pack("<I", 0))
        stream["buf"] = buf
        return replies

    def _shell(self, line: str) -> str:
        self.commands.append(line)
        argv = shlex.split(line)
        if argv[:1] == ["getprop"]:
            return {"ro.product.model": "FakePhone", "ro.build.version.release": "14",
                    "ro.product.cpu.abi": "arm64-v8a"}.get(argv[1], "")
        if argv[:2] == ["cat", "/proc/meminfo"]:
            return "MemTotal:        7805952 kB\n"
        if argv[:1] == ["ls"]:
            return " ".join(f"cpu{i}" for i in range(8)) + " cpufreq cpuidle\n"
        if argv[:1] == ["test"]:  # test -x PATH && echo present || echo absent
            return "present\n" if argv[2] in self.files else "absent\n"
        if line.startswith("for z in /sys/class/thermal/thermal_zone*"):  # warmer each time it is read
            self.thermal_reads = getattr(self, "thermal_reads", 0) + 1
            return f"cpu-0-0 {40000 + 2000 * self.thermal_reads}\nbattery 30500\n\nbroken x\n"
        if argv[:2] == ["mkdir", "-p"]:
            return "made\n"
        if argv and argv[0].endswith("benchmark_model"):
            graph = next((a.split("=", 1)[1] for a in argv if a.startswith("--graph=")), "")
            return self.benchmark_output if argv[0] in self.files and graph in self.files else "ERROR: no such file\n"
        return ""

    def close(self) -> None:
        self.closed = True
        self.server.close()
