"""An emulated arm64 Raspberry Pi on this machine, reachable over real SSH: the nearest thing to a Pi here.

Debian bookworm arm64 (the base of Raspberry Pi OS 64-bit) under qemu user-mode emulation, with its own
sshd on a loopback port, Python 3.11, numpy, Pillow and the aarch64 ai-edge-litert wheel (2.1.6: newer ones crash under Debian's qemu 7.2),
and no TensorFlow.
Latencies under emulation mean nothing (about 100x slower); correctness, the SSH path, a remote Python
without TensorFlow and another CPU architecture are real.

    sudo python tools/pi_device.py build  [--root /var/tmp/resnet-edge-pi]   # about 6 minutes, ~650 MB
    sudo python tools/pi_device.py start  [--root ...]   # prints the target URL and the ssh config to use
    sudo python tools/pi_device.py stop   [--root ...]

``start`` writes ``ROOT.keys/ssh_config`` (a throwaway user key and the Pi's host key in its own
known_hosts, never the user's ~/.ssh) and ``ROOT.keys/target`` (the URL). Use them as
``RESNET_EDGE_SSH_CONFIG=ROOT.keys/ssh_config resnet-edge bench m.tflite --target $(cat ROOT.keys/target)``.
``pytest -m slow tests/test_pi.py`` runs bench and eval on it (it starts and stops it when built).
Needs root (debootstrap, chroot, mounts, binfmt_misc), qemu-user-static, debootstrap and the network
to Debian's mirror and PyPI (for the build only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sshd import free_port, keygen  # noqa: E402

DEFAULT_ROOT = "/var/tmp/resnet-edge-pi"
#: The newest LiteRT that runs under Debian bookworm's qemu 7.2 user mode: 2.2.0 and 2.3.0 die with SIGSEGV
#: creating an Interpreter there (seen 2026-11-27; a real Pi runs them). 2.1.6 runs.
PI_LITERT = "ai-edge-litert==2.1.6"
#: The CPU qemu emulates for every program run over SSH: the Raspberry Pi 5's (qemu's default "max" CPU has
#: extensions no Pi has, and XNNPACK then picks kernels that qemu 7.2 gets wrong).
PI_CPU = "cortex-a76"
MIRROR = "http://deb.debian.org/debian"
MOUNTS = ("proc", "sys", "dev")


def sh(*cmd, **kw):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def binfmt() -> None:
    """Register qemu's arm64 interpreter with the kernel (flag F: it works inside a chroot)."""
    if not os.path.ismount("/proc/sys/fs/binfmt_misc"):
        sh("mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc")
    if os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
        return
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf").read_text()
    line = next(l for l in conf.splitlines() if l.strip() and not l.startswith("#"))
    Path("/proc/sys/fs/binfmt_misc/register").write_text(line)


def mount(root: Path) -> None:
    for name in MOUNTS:
        target = root / name
        if not os.path.ismount(target):
            sh("mount", "--bind", f"/{name}", target)


def unmount(root: Path) -> None:
    for name in reversed(MOUNTS):
        if os.path.ismount(root / name):
            subprocess.run(["umount", "-l", str(root / name)])


def build(root: Path) -> None:
    for tool in ("debootstrap", "qemu-aarch64-static"):
        if not shutil.which(tool):
            sh("apt-get", "install", "-y", "-q", "qemu-user-static", "debootstrap", "openssh-server")
            break
    binfmt()
    started = time.monotonic()
    if not (root / "usr/bin/python3").exists():
        sh("debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
           "--include=python3,python3-venv,openssh-server,ca-certificates", "bookworm", root, MIRROR)
        shutil.copy("/usr/bin/qemu-aarch64-static", root / "usr/bin/")
        sh("chroot", root, "/debootstrap/debootstrap", "--second-stage")
    wheels = root / "opt/wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    sh(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.11",
       "--implementation", "cp", "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux_2_27_aarch64",
       "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64", "-d", wheels,
       PI_LITERT, "numpy<2.5", "pillow")
    mount(root)
    try:
        if not (root / "opt/litert/bin/python").exists():
            sh("chroot", root, "python3", "-m", "venv", "/opt/litert")
        sh("chroot", root, "/opt/litert/bin/pip", "install", "-q", "--no-index", "--find-links", "/opt/wheels",
           PI_LITERT, "numpy", "pillow")
        sh("chroot", root, "ssh-keygen", "-A")
    finally:
        unmount(root)
    print(f"built {root} in {time.monotonic() - started:.0f} s")


def start(root: Path) -> str:
    if not (root / "opt/litert/bin/python").exists():
        raise SystemExit(f"{root} is not built: sudo python tools/pi_device.py build --root {root}")
    binfmt()
    keys = Path(str(root) + ".keys")
    keys.mkdir(exist_ok=True)
    user_key = keys / "id_ed25519"
    if not user_key.exists():
        keygen(user_key)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((keys / "id_ed25519.pub").read_text())
    port = free_port()
    host_pub = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (keys / "ssh_config").write_text(
        f"Host *\n  User root\n  IdentityFile {user_key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
        f"  UserKnownHostsFile {keys / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  PasswordAuthentication no\n")
    mount(root)
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    sh("chroot", root, "/usr/sbin/sshd", "-p", str(port), "-o", "ListenAddress=127.0.0.1", "-o", "UsePAM=no",
       "-o", f"SetEnv=QEMU_CPU={PI_CPU}",
       "-o", "PidFile=/run/resnet-edge-sshd.pid", "-o", "PermitRootLogin=prohibit-password")
    url = f"ssh://127.0.0.1:{port}/?python=/opt/litert/bin/python"
    (keys / "target").write_text(url + "\n")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = subprocess.run(["ssh", "-F", str(keys / "ssh_config"), "-p", str(port), "-o", "BatchMode=yes",
                                "127.0.0.1", "uname", "-m"], capture_output=True, text=True)
        if probe.returncode == 0:
            print(f"the emulated Pi answers ({probe.stdout.strip()}): "
                  f"RESNET_EDGE_SSH_CONFIG={keys / 'ssh_config'} resnet-edge devices check '{url}'")
            return url
        time.sleep(1)
    raise SystemExit(f"the emulated Pi's sshd did not answer on port {port}")


def stop(root: Path) -> None:
    pid_file = root / "run/resnet-edge-sshd.pid"
    if pid_file.exists():
        subprocess.run(["kill", pid_file.read_text().strip()])
        pid_file.unlink(missing_ok=True)
    unmount(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["build", "start", "stop"])
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"where the arm64 system lives (default {DEFAULT_ROOT})")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run it as root (debootstrap, chroot and mounts need it)")
    root = Path(args.root)
    {"build": build, "start": start, "stop": stop}[args.action](root)


if __name__ == "__main__":
    main()
