"""Real SSH servers on 127.0.0.1 for the SSH target's tests (and tools/pi_device.py's keys): OpenSSH's sshd (with
or without an SFTP subsystem) and Dropbear (Debian's ``dropbear-bin``) where OpenSSH's ``sftp-server`` is hidden.

Everything is throwaway and private to one folder: a host key, a user key, an ``authorized_keys``, a
``known_hosts`` holding the host key, and a client config file in ``~/.ssh/config`` form that the tests
pass with ``$RESNET_EDGE_SSH_CONFIG``; the user's own ``~/.ssh`` is never read or written.
"""

from __future__ import annotations

import os
import shlex
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

    name = "OpenSSH"

    def __init__(self, folder: Path, extra: tuple[str, ...] = (), *, sftp: bool = True):
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
        if SFTP_SERVER and sftp:  # without: a server with no SFTP subsystem, as some devices have
            lines.append(f"Subsystem sftp {SFTP_SERVER}")
        lines += list(extra)  # e.g. ForceCommand: a device that answers as a test wants
        (folder / "sshd_config").write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # the privilege-separation folder sshd insists on as root
        self._start([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")])

    def _start(self, command: list[str]) -> None:
        self.log = open(self.folder / "sshd.log", "wb")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {(self.folder / 'sshd.log').read_text()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start listening within 15 s")

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


DROPBEAR = shutil.which("dropbear") or ("/usr/sbin/dropbear" if os.path.exists("/usr/sbin/dropbear") else None)


def dropbear_version() -> str | None:
    if not DROPBEAR:
        return None
    out = subprocess.run([DROPBEAR, "-V"], capture_output=True, text=True).stderr.strip().split()
    return out[1] if len(out) > 1 else None


class Dropbear(Server):
    """Dropbear on 127.0.0.1:``port``, as on a board: no SFTP server it can find. Debian's Dropbear borrows OpenSSH's
    ``/usr/lib/sftp-server`` when openssh-sftp-server is installed, so it runs in a private mount namespace
    (``unshare -m``, root only) where OpenSSH's helper folder is an empty tmpfs. Dropbear reads the login's
    ``~/.ssh/authorized_keys`` and has no option to look elsewhere: in the same namespace, ``/etc/passwd`` is a copy
    that gives this user a home under ``folder``, so the user's own ``~/.ssh`` is never read or written. The client
    side is OpenSSH's, as for a user: ``config`` trusts Dropbear's host key and logs in with the user key."""

    name = "Dropbear"

    def __init__(self, folder: Path, *, tmp_kb: int | None = None):
        """``tmp_kb``: the sessions' ``$TMPDIR`` is a tmpfs of that many KiB (a device whose disk is full)."""
        if not DROPBEAR or not shutil.which("dropbearkey"):
            raise RuntimeError("dropbear is not installed (apt-get install dropbear-bin)")
        if os.geteuid() != 0 or not shutil.which("unshare"):
            raise RuntimeError("Dropbear's test needs root and unshare (a private mount namespace)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = folder / "dropbear_ed25519"
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(self.host_key)], check=True, capture_output=True)
        pub = subprocess.run(["dropbearkey", "-y", "-f", str(self.host_key)], check=True, capture_output=True,
                             text=True).stdout
        host_pub = next(line for line in pub.splitlines() if line.startswith("ssh-ed25519 ")).split()
        self.user_key = keygen(folder / "id_ed25519")
        home = folder / "home"
        (home / ".ssh").mkdir(parents=True)
        home.chmod(0o700)
        (home / ".ssh").chmod(0o700)
        keys = home / ".ssh" / "authorized_keys"
        keys.write_text((folder / "id_ed25519.pub").read_text())
        keys.chmod(0o600)
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config = client_config(folder, self.port, self.user_key, self.known_hosts)
        uid = os.geteuid()
        passwd = []
        for line in Path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 7 and fields[2] == str(uid):
                fields[5] = str(home)
            passwd.append(":".join(fields))
        (folder / "passwd").write_text("\n".join(passwd) + "\n")
        hide = " && ".join(f"mount -t tmpfs none {shlex.quote(d)}" for d in ("/usr/lib/openssh", "/usr/libexec/openssh")
                           if os.path.isdir(d)) or "true"
        tiny = ""
        if tmp_kb:  # Dropbear's -e passes its environment on to the sessions
            (folder / "tiny").mkdir()
            tiny = f"mount -t tmpfs -o size={tmp_kb}k none {shlex.quote(str(folder / 'tiny'))} && " \
                   f"export TMPDIR={shlex.quote(str(folder / 'tiny'))} && "
        script = (f"{hide} && mount --bind {shlex.quote(str(folder / 'passwd'))} /etc/passwd && {tiny}"
                  f"exec {shlex.quote(DROPBEAR)} -F -E -s -m -K 5{' -e' if tmp_kb else ''} -p 127.0.0.1:{self.port} "
                  f"-r {shlex.quote(str(self.host_key))} -P {shlex.quote(str(folder / 'dropbear.pid'))}")
        self._start(["unshare", "-m", "--propagation", "private", "sh", "-c", script])

    def sftp_hidden(self) -> bool:
        """Whether the server's namespace really lacks an sftp-server (what the test rests on)."""
        probe = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "sh", "-c",
                                "for f in /usr/lib/sftp-server /usr/lib/openssh/sftp-server /usr/libexec/sftp-server "
                                '/usr/libexec/openssh/sftp-server; do [ -e "$f" ] && echo "$f"; done; echo checked'],
                               capture_output=True, text=True)
        return probe.stdout.strip() == "checked"
