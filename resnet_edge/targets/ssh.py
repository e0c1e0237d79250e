"""``ssh://[user@]host[:port]``: run the edge runner on a Linux board with the system's OpenSSH.

One run: ``mktemp -d`` on the device, a copy of the models over the ssh connection itself (``cat`` on the device,
no SFTP needed, so Dropbear and an sshd without SFTP work; under generated names, ``m0.tflite``, ...:
no local file name ever reaches the remote shell) and of the runner (``harness.py``, stdlib + numpy + a
runtime), the runner started with the job on standard input, one JSON result read back (bounded,
parsed as JSON, never evaluated), files the job wrote fetched with a bounded ``cat``, and the folder
removed, whatever happened. Every remote argument is quoted with :func:`shlex.quote`.

ssh runs with ``BatchMode=yes`` (never a password prompt; an unknown host key fails instead of being
accepted: the user's known_hosts decides, as for their own ssh), ``ConnectTimeout`` and server keep-alives
(a dropped connection ends the run within about 15 s), and multiplexing: the run's ssh calls
share one connection (a private ``ControlPath``; the master exits when this process does).
``$RESNET_EDGE_SSH_CONFIG`` passes ``-F FILE``.

Pure standard library: edge side.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Callable

from resnet_edge import _child
from resnet_edge.targets.hold import HOLD, held
from resnet_edge.targets.url import TargetError, TargetURL
from resnet_edge.ui import safe_text

CONFIG_ENV = "RESNET_EDGE_SSH_CONFIG"


_FOLDER = re.compile(r"\A(/[A-Za-z0-9._-]+)*/resnet-edge\.[A-Za-z0-9]{8}\Z")


def _our_folder(folder: str, base: str | None = None) -> bool:
    """Whether ``folder`` is one mkdtemp makes: ``BASE/resnet-edge.XXXXXXXX`` (``base``: the device's
    temporary directory, when known), an absolute path of plain components without ``.`` or ``..``."""
    if len(folder) > 1024 or not _FOLDER.match(folder) or any(c in (".", "..") for c in folder.split("/")):
        return False
    return base is None or folder.rsplit("/", 1)[0] == base.rstrip("/")


class TargetLost(TargetError):
    """The connection dropped in the middle of a run: what was measured before it is kept."""


def _failure(target: TargetURL, lines: list[str], connect_timeout: float) -> TargetError | None:
    """What went wrong when ssh itself failed (exit 255), as one line; None when its words are unknown."""
    text = "\n".join(lines)
    where = f"{target.host}" + (f":{target.port}" if target.port else "")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return TargetError(f"{target}: the host key of {where} has CHANGED since you last connected (a reinstalled "
                           "device, or someone in between): check it, then update ~/.ssh/known_hosts (ssh-keygen -R)")
    if "Host key verification failed" in text or "No ED25519 host key is known" in text or "host key is known" in text:
        return TargetError(f"{target}: the host key of {where} is not in your known_hosts: connect once with "
                           f"`ssh {'-p %d ' % target.port if target.port else ''}{target.host}` to check and accept it "
                           "(resnet-edge never accepts a host key itself)")
    if "Permission denied" in text or "Too many authentication failures" in text:
        return TargetError(f"{target}: the device refused the login ({_last(lines)}): put your public key in its "
                           "~/.ssh/authorized_keys (ssh-copy-id) or load it in your agent; resnet-edge never asks for "
                           "a password")
    if "Could not resolve hostname" in text or "Name or service not known" in text:
        return TargetError(f"{target}: cannot resolve the host name {target.host}: check it, or use the device's IP "
                           "address")
    if "Connection refused" in text:
        return TargetError(f"{target}: {where} refused the connection: is sshd running on the device, on that port?")
    if any(s in text for s in ("Connection timed out", "Operation timed out", "No route to host",
                               "Network is unreachable", "connect to host")):
        return TargetError(f"{target}: cannot reach {where} ({_last(lines)}; waited {connect_timeout:g} s): is the "
                           "device on and on this network?")
    if any(s in text for s in ("closed by remote host", "Connection closed", "Broken pipe", "Connection reset",
                               "Timeout, server", "not responding", "client_loop")):
        return TargetLost(f"{target}: the connection dropped ({_last(lines)})")
    return None


def _last(lines: list[str]) -> str:
    useful = [line for line in lines if line.strip() and not line.startswith("Warning: Permanently added")]
    return safe_text(useful[-1].strip() if useful else "no message", 200)


class SSHTarget:
    """A device reached with ``ssh``; see the module text."""

    #: One run per model: when the link drops, what was measured before is kept.
    one_model_per_run = True

    def groups(self, settings: list) -> list[list[int]]:
        """Every setting in one run: the device's Python runs them all."""
        return [list(range(len(settings)))]

    def __init__(self, target: TargetURL, *, connect_timeout: float = 10, timeout: float = 1800):
        self.target, self.connect_timeout, self.timeout = target, connect_timeout, timeout
        self._control: str | None = None

    def _control_path(self) -> str:
        """One connection for all of a run's ssh calls (OpenSSH multiplexing): a private folder
        under /tmp (a socket path must stay short), closed and removed when this process ends."""
        if self._control is None:
            from resnet_edge import _tmp

            base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
            _tmp.sweep(base)  # what killed runs left (their PID is in the name)
            folder = tempfile.mkdtemp(prefix=f"resnet-edge-pid{os.getpid()}-ssh-", dir=base)
            self._control = os.path.join(folder, "cm")
            atexit.register(self._close_master, folder)
        return self._control

    def _close_master(self, folder: str) -> None:
        port = ["-p", str(self.target.port)] if self.target.port else []
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["ssh", *self._options(), *port, "-O", "exit", "--", self.target.host],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)

    def __str__(self) -> str:
        return str(self.target)

    # commands

    def _options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_path()}", "-o", "ControlPersist=60"]
        config = os.environ.get(CONFIG_ENV, "").strip()
        if config:
            opts = ["-F", config] + opts
        if self.target.user:
            opts += ["-o", f"User={self.target.user}"]
        return opts

    def _ssh(self, remote_command: str) -> list[str]:
        port = ["-p", str(self.target.port)] if self.target.port else []
        return ["ssh", *self._options(), *port, "--", self.target.host, remote_command]

    def _python(self) -> str:
        python = self.target.python
        if python.startswith("~/"):
            return '"$HOME"/' + shlex.quote(python[2:])
        return shlex.quote(python)

    def shell(self, remote_command: str, *, timeout: float = 60, input: bytes | None = None,
              max_stdout: int = 1 << 20) -> tuple[int, _child.Collected]:
        """Run one remote command; its exit code and output. ssh's own failures become :class:`TargetError`."""
        try:
            proc = subprocess.Popen(self._ssh(remote_command), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise TargetError(f"{self}: cannot run ssh ({exc.strerror or exc}): install OpenSSH's client "
                              "(apt install openssh-client)") from None
        if input is not None:
            try:
                proc.stdin.write(input)
                proc.stdin.close()
            except OSError:
                pass
        got = _child.collect(proc, timeout=timeout, max_stdout=max_stdout)
        if got.ended == "timeout":
            raise TargetLost(f"{self}: no answer within {timeout:g} s")
        if proc.returncode == 255:
            raise _failure(self.target, got.err_lines, self.connect_timeout) or \
                TargetError(f"{self}: ssh failed ({_last(got.err_lines)})")
        return proc.returncode, got

    #: The device's reply to :meth:`mkdtemp`: its temporary directory, then the folder mktemp made in it.
    MKDTEMP = ('b="${TMPDIR:-/tmp}"; b="${b%/}"; d=$(mktemp -d "$b/resnet-edge.XXXXXXXX") && [ -d "$d" ] && '
               '[ ! -L "$d" ] && [ -O "$d" ] && [ -z "$(ls -A -- "$d")" ] && printf "%s\\n%s\\n" "$b" "$d"')

    def mkdtemp(self) -> str:
        """A new folder on the device, which :meth:`cleanup` may remove: only a reply naming a folder of
        mktemp's pattern directly under the device's temporary directory, checked there to be a new, empty
        directory owned by the login user, is accepted (a device that answers ``/`` is refused)."""
        code, got = self.shell(self.MKDTEMP, timeout=self.connect_timeout + 30, max_stdout=4096)
        lines = got.stdout.decode("utf-8", errors="replace").strip().split("\n")
        if code != 0 or len(lines) != 2 or not _our_folder(lines[1], lines[0]):
            raise TargetError(f"{self}: could not make a temporary folder on the device "
                              f"({_last(got.err_lines) if code else 'unexpected reply ' + safe_text(' '.join(lines), 80)})")
        return lines[1]

    #: What a failed copy's ``cat`` or shell says on the device, and what to tell the user.
    COPY_FAILURES = (("No space left on device", "the device's disk is full"),
                     ("Disk quota exceeded", "the login's disk quota on the device is used up"),
                     ("Read-only file system", "the device's temporary folder is on a read-only file system"),
                     ("Permission denied", "the login may not write in the device's temporary folder"))

    def upload(self, files: dict[str, str], folder: str) -> None:
        """Copy ``{remote name: local path}`` into ``folder``, each file as the standard input of a ``cat`` run
        over the ssh connection, then its size checked on the device.

        Not scp: OpenSSH 9's scp speaks SFTP, which a server without an SFTP subsystem (Dropbear on most boards,
        an sshd without a ``Subsystem sftp`` line) does not have; scp's legacy protocol (``scp -O``) needs an
        ``scp`` program on the device, which a Dropbear image often lacks, is deprecated by OpenSSH, and hands the
        remote path to the remote shell. ``cat`` and ``wc`` are on every POSIX device, the one channel carries the
        bytes with nothing but the shell in between, the remote path is a generated name quoted with
        :func:`shlex.quote`, and a copy cut short is caught by the size check instead of being run."""
        size = sum(os.path.getsize(p) for p in files.values())
        for name, local in files.items():
            remote = shlex.quote(f"{folder}/{name}")
            expected = os.path.getsize(local)
            # The shell reports what it saw: "copied", or the size that arrived (never exit 255, ssh's own code).
            command = (f"umask 077 && cat > {remote} && n=$(wc -c < {remote}) && [ $n -eq {expected} ] && "
                       f'echo copied || {{ echo "short ${{n:-0}}"; exit 3; }}')
            try:
                with open(local, "rb") as source:
                    proc = subprocess.Popen(self._ssh(command), stdin=source, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE)
            except OSError as exc:
                raise TargetError(f"{self}: cannot run ssh ({exc.strerror or exc}): install OpenSSH's client "
                                  "(apt install openssh-client)") from None
            got = _child.collect(proc, timeout=self.connect_timeout + 60 + expected / 1e6, max_stdout=4096)
            if got.ended == "timeout":
                raise TargetLost(f"{self}: copying {size / 1e6:.1f} MB to the device did not finish in time")
            if proc.returncode == 255:
                raise _failure(self.target, got.err_lines, self.connect_timeout) or \
                    TargetError(f"{self}: ssh failed while copying to the device ({_last(got.err_lines)})")
            reply = got.stdout.decode("utf-8", errors="replace").strip()
            if proc.returncode == 0 and reply == "copied":
                continue
            text = "\n".join(got.err_lines)
            why = next((what for sign, what in self.COPY_FAILURES if sign in text), None)
            if why:
                raise TargetError(f"{self}: copying {name} to the device failed: {why} ({_last(got.err_lines)})")
            if reply.startswith("short "):
                raise TargetLost(f"{self}: copying {name} to the device was cut short ({safe_text(reply[6:], 20)} of "
                                 f"{expected} bytes arrived)")
            if proc.returncode == 127 or "not found" in text:
                raise TargetError(f"{self}: the device's shell lacks cat or wc ({_last(got.err_lines)}): resnet-edge "
                                  "needs a POSIX shell with cat, wc and mktemp on the device")
            raise TargetError(f"{self}: copying {name} to the device failed ({_last(got.err_lines)})")

    def fetch(self, folder: str, name: str, max_bytes: int) -> bytes:
        """A file the job wrote, read with a bounded ``cat``: more than ``max_bytes`` is refused."""
        code, got = self.shell(f"cat -- {shlex.quote(folder + '/' + name)}", timeout=self.connect_timeout + 120,
                               max_stdout=max_bytes)
        if got.ended == "too_much":
            raise TargetError(f"{self}: the device sent back more than {max_bytes >> 20} MB for {name}; refused")
        if code != 0:
            raise TargetError(f"{self}: the result file {name} is missing on the device ({_last(got.err_lines)})")
        return got.stdout

    def cleanup(self, folder: str, kill: bool) -> None:
        """Remove ``folder`` (and first stop the runner, when it may still run). Errors are ignored: the
        device may be gone; mktemp's folders are in the device's temporary folder."""
        if not _our_folder(folder):  # never remove anything but a folder of mkdtemp's pattern
            return
        q = shlex.quote(folder)
        stop = f'p=$(cat {q}/.pid 2>/dev/null) && {{ kill -9 -- "-$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; }}; ' if kill else ""
        try:
            self.shell(f"{stop}rm -rf -- {q}", timeout=self.connect_timeout + 20)
        except TargetError:
            pass

    # the runner

    def run(self, job: dict, send: dict[str, str], fetch: tuple[str, ...] = (), *, memory: int | None = None,
            timeout: float | None = None, progress: Callable[[str], None] | None = None,
            reply_bytes: int = 1 << 20) -> tuple[dict, dict[str, bytes]]:
        """Run the edge runner with ``job`` (whose file names are those of ``send``, relative to the run's
        folder) on the device; its result (a reply of at most ``reply_bytes``: what the job can need, so a
        hostile reply costs no more to parse) and the ``fetch`` files' bytes (each at most 64 MB)."""
        from resnet_edge import harness
        from resnet_edge.runtime.jobs import parse_result, wants_gpu
        from resnet_edge.runtime.replies import HarnessFailed

        timeout = timeout or self.timeout
        gpu = wants_gpu(job)
        folder = self.mkdtemp()
        finished = False
        try:
            self.upload({**send, "harness.py": harness.__file__}, folder)
            # The address-space cap protects the device from a hostile model, as here (not for a GPU driver).
            cap = f"ulimit -v {memory >> 10} 2>/dev/null; " if memory and not gpu else ""
            # The shell leads the session sshd made for it, so its pid is the process group that cleanup kills.
            # It never exits 255 itself: that code is ssh's own (a connection failure).
            command = (f"cd {shlex.quote(folder)} && echo $$ > .pid && {{ {cap}{self._python()} harness.py; rc=$?; "
                       'if [ "$rc" -eq 255 ]; then rc=254; fi; exit "$rc"; }')
            try:
                proc = subprocess.Popen(self._ssh(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
            except OSError as exc:
                raise TargetError(f"{self}: cannot run ssh ({exc.strerror or exc})") from None
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except OSError:
                pass
            started = time.monotonic()
            got = _child.collect(proc, timeout=timeout, max_stdout=reply_bytes,
                                 on_progress=lambda t: progress and progress(safe_text(t, 200)))
            if got.ended == "timeout":
                raise TargetLost(f"{self}: the run did not finish within {timeout:g} s (--timeout); it was stopped and "
                                 "its files removed")
            if proc.returncode == 255:
                raise _failure(self.target, got.err_lines, self.connect_timeout) or \
                    TargetLost(f"{self}: the connection dropped after {time.monotonic() - started:.0f} s "
                               f"({_last(got.err_lines)})")
            text = "\n".join(got.err_lines)
            if proc.returncode == 127:
                raise TargetError(f"{self}: there is no {self.target.python} on the device: install Python >= "
                                  f"{'.'.join(map(str, harness.MIN_PYTHON))} (sudo apt install python3) or name one "
                                  "with ?python=PATH in the target URL")
            if "SyntaxError" in text:
                raise TargetError(f"{self}: {self.target.python} on the device is too old for the edge runner (it needs "
                                  f"Python >= {'.'.join(map(str, harness.MIN_PYTHON))}): install a newer one and name "
                                  "it with ?python=PATH in the target URL")
            if "error: no TFLite runtime importable" in text or "error: numpy is not installed" in text:
                python = self.target.python
                raise TargetError(f"{self}: {python} on the device has no TFLite runtime: on the device run `python3 -m "
                                  "venv ~/litert && ~/litert/bin/pip install ai-edge-litert` and add ?python=~/litert/bin/"
                                  f"python to the target URL (or `{python} -m pip install ai-edge-litert` where pip may "
                                  "install; tflite-runtime works too)")
            def crashed(failed):
                why = _child.describe_failure(failed, memory)
                if 128 < failed.returncode < 160:  # the shell's code for a runner killed by a signal
                    with contextlib.suppress(ValueError):
                        why = f"{signal.Signals(failed.returncode - 128).name} ({why})"
                return f"the runtime on the device failed: {why}"

            try:
                result = parse_result(proc.returncode, got, crashed)
            except HarnessFailed as exc:
                raise HarnessFailed(f"{self}: {exc}") from None
            files = {name: self.fetch(folder, name, 64 << 20) for name in fetch}
            finished = True
            return result, files
        finally:
            self.cleanup(folder, kill=not finished)

    @contextlib.contextmanager
    def hold(self, say: Callable[[str], None] = lambda text: None):
        """Hold the device's own lock while the block runs, so that no other process times this device at once,
        whatever machine or search it belongs to (:data:`resnet_edge.targets.hold.HOLD`). Yields True when held, False when the device has
        no ``flock`` (then nothing is held there and the caller's own lock is all there is)."""
        with held(self._ssh(HOLD), str(self), say) as got:
            yield got

    def probe(self, timeout: float | None = None) -> dict:
        """What the device can run (the runner's ``probe``): machine, Python, numpy, runtimes, memory."""
        result, _ = self.run({"op": "probe"}, {}, timeout=timeout or self.connect_timeout + 60)
        return result
