"""A lock held on the device itself while it is timed, so that no two processes time one device at once, whatever
machine or search they belong to (an SSH board; not yet a device over adb, whose older adbd does not pass the end of
our input on to the shell). Pure standard library: edge side."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Callable

from resnet_edge.targets.url import TargetError
from resnet_edge.ui import safe_text

#: The device's own lock, run by the device's shell over one connection kept open: ``flock`` on a file of the login
#: user in the device's temporary folder, held by ``cat`` while it reads our standard input. Closing that input ends
#: it; so does a dropped connection (sshd closes the session), and the kernel frees the lock with the
#: process, so a killed search never leaves the device locked. Says ``busy`` while another holder has it, then
#: ``locked``; ``noflock`` where the device has no flock (util-linux and BusyBox have it).
HOLD = ('command -v flock >/dev/null 2>&1 || { echo noflock; exit 0; }; l="${TMPDIR:-/tmp}"; '
        'l="${l%/}/resnet-edge-device-$(id -u).lock"; exec 9>>"$l" || exit 3; '
        'flock -n 9 || { echo busy; flock 9 || exit 4; }; echo locked; exec cat >/dev/null')


@contextlib.contextmanager
def held(argv: list[str], device: str, say: Callable[[str], None]):
    """Run ``argv`` (a shell on the device running :data:`HOLD`) and hold what it holds until the block ends; yields
    True when the device's lock is held, False when the device has no flock or gave no answer (unreachable, or its
    temporary folder not writable: the timing that follows says what is wrong, as it would without the lock). A device
    that answers anything else: :class:`TargetError`."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError as exc:
        raise TargetError(f"{device}: cannot start the client to lock the device ({exc.strerror or exc})") from None
    try:
        reply = proc.stdout.readline(64).strip()
        if reply == b"busy":
            say(f"{device}: another process is timing this device; waiting for it")
            reply = proc.stdout.readline(64).strip()
        if not reply:  # the connection failed, or the device's shell could not open the file: no lock there; what
            yield False  # is wrong with the device is said by the timing that follows, as it is without the lock
            return
        if reply not in (b"locked", b"noflock"):
            raise TargetError(f"{device}: could not lock the device for timing (it answered "
                              f"{safe_text(reply.decode('utf-8', 'replace'), 60)!r}, exit code {proc.poll()}); "
                              "check that its temporary folder is writable")
        yield reply == b"locked"
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
