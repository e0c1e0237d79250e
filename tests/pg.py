"""A real PostgreSQL server for the tests (Debian's package), started on loopback in a folder of the test's own, as
the ``postgres`` user when the tests run as root (``initdb`` refuses root), and stopped after."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        import tempfile

        self.bin = binaries()
        if self.bin is None:
            raise FileNotFoundError("no PostgreSQL here (Debian's package postgresql; .ci/run installs it)")
        # Its own folder under /tmp: the postgres user cannot enter pytest's (mode 0700, root's).
        self.folder, self.port = Path(tempfile.mkdtemp(prefix="resnet-edge-pg-", dir="/tmp")), _free_port()
        self.as_user = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv, timeout=120):
        return subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=timeout, check=True)

    def start(self) -> str:
        data = self.folder / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.folder / "log"), "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        return self.database("search", tries=50)

    def database(self, name: str, tries: int = 1) -> str:
        """A new, empty database ``name``; its URL."""
        for _ in range(tries):
            r = subprocess.run([*self.as_user, str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", "postgres", name], capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"createdb {name}: {r.stderr.strip()}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
