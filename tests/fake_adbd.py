"""A device end of the adb protocol that never gets past the handshake, so that the real ``adb`` binary
shows a device as ``offline`` (it says nothing) or ``unauthorized`` (it asks for a key signature that it
never accepts), as a phone does before its user taps "Allow USB debugging". Only the message framing
of adb's protocol (24-byte header: command, arg0, arg1, length, checksum, magic) is spoken."""

from __future__ import annotations

import os
import socket
import struct
import threading

A_AUTH = 0x48545541  # "AUTH"
AUTH_TOKEN = 1


def message(command: int, arg0: int, arg1: int, payload: bytes) -> bytes:
    return struct.pack("<6I", command, arg0, arg1, len(payload), sum(payload) & 0xFFFFFFFF,
                       command ^ 0xFFFFFFFF) + payload


class FakeDevice:
    """Listens on 127.0.0.1:``port``; ``mode`` is "silent" (offline) or "auth" (unauthorized)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self.closed:
                    header = conn.recv(24, socket.MSG_WAITALL)
                    if len(header) < 24:
                        return
                    length = struct.unpack("<6I", header)[3]
                    if length:
                        conn.recv(length, socket.MSG_WAITALL)
                    if self.mode == "auth":  # every answer is a new challenge: never authorized
                        conn.sendall(message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
            except OSError:
                return

    def close(self) -> None:
        self.closed = True
        self.server.close()
