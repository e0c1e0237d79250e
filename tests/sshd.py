"""A real OpenSSH server on 127.0.0.1 for the SSH target's tests (and tools/pi_device.py's keys).

Everything is throwaway and private to one folder: a host key, a user key, an ``authorized_keys``, a
``known_hosts`` holding the host key, and a client config file in ``~/.ssh/config`` form that the tests
pass with ``$RESNET_EDGE_SSH_CONFIG``; the user's own ``~/.ssh`` is never read or written.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SFTP_SERVER = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                                "/usr/libexec/sftp-server") if os.path.exists(p)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "resnet-edge-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def client_config(folder: Path, port: int, identity: Path, known_hosts: Path, name: str = "ssh_config") -> Path:
    """A client config in ``~/.ssh/config`` form for 127.0.0.1:``port`` with this identity and known_hosts."""
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    text = (f"Host edge-test\n  HostName 127.0.0.1\n  Port {port}\n\n"
            f"Host *\n  User {user}\n  IdentityFile {identity}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
            f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n"
            f"  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n")
    path = folder / name
    path.write_text(text)
    return path


class Server:
    """sshd on 127.0.0.1:``port`` with its keys and config under ``folder``. ``config`` is the client config
    that trusts it and logs in with the user key."""

    def __init__(self, folder: Path, extra: tuple[str, ...] = ()):
        if not SSHD:
            raise RuntimeError("sshd is not installed (apt-get install openssh-server)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = keygen(folder / "host_ed25519")
        self.user_key = keygen(folder / "id_ed25519")
        (folder / "authorized_keys").write_text((folder / "id_ed25519.pub").read_text())
        host_pub = (folder / "host_ed25519.pub").read_text().split()
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config = client_config(folder, self.port, self.user_key, self.known_hosts)
        lines = [f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
                 f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
                 "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                 "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "LogLevel VERBOSE",
                 "ClientAliveInterval 5"]
        if SFTP_SERVER:
            lines.append(f"Subsystem sftp {SFTP_SERVER}")
        lines += list(extra)  # e.g. ForceCommand: a device that answers as a test wants
        (folder / "sshd_config").write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # the privilege-separation folder sshd insists on as root
        self.log = open(folder / "sshd.log", "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 15 s")

    @property
    def url(self) -> str:
        return f"ssh://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
