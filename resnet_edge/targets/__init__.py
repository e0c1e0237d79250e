"""Edge side: where a model runs (this machine, a Raspberry Pi over SSH, an Android phone over adb).

A target is written as a URL or as the name of a saved device (``resnet-edge devices``):

* ``local``: this machine (the default);
* ``ssh://[user@]host[:port][/?python=PATH]``: any Linux board with Python >= 3.9, numpy and a TFLite
  runtime, reached with the system's OpenSSH (the user's ``~/.ssh/config``, keys, agent and jump hosts
  apply; ``$RESNET_EDGE_SSH_CONFIG`` names another config file);
* ``adb://[SERIAL]``: an Android device, measured with LiteRT's ``benchmark_model`` binary.

The URL is parsed in :mod:`resnet_edge.targets.url`; :func:`open_target` gives the runner for any of them,
``local`` included (:class:`~resnet_edge.targets.local.LocalTarget`), so bench, eval and sweep have one path.
Imports nothing from TensorFlow; a test proves it.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from resnet_edge.errors import ConfigError
from resnet_edge.targets.url import (HOST_RE, KINDS, NAME_RE, PYTHON_RE, SERIAL_RE, USER_RE,  # noqa: F401
                                     TargetError, TargetURL, parse_url)

LOCAL = TargetURL("local", "local", "local")


def resolve(text: str | None) -> TargetURL:
    """A URL, or a saved device's name (looked up in the devices file), as a :class:`TargetURL`."""
    if text is None or text == "local":
        return LOCAL
    text = str(text).strip()
    if "://" in text:
        return parse_url(text)
    if not NAME_RE.match(text):
        raise ConfigError(f"malformed target {text!r}: use local, ssh://[user@]host[:port], adb://[SERIAL] or a "
                          "device name (resnet-edge devices list)")
    from resnet_edge.targets import devices

    entry = devices.get(text)
    return parse_url(entry["url"], name=text)


def open_target(target: TargetURL | None, *, benchmark_binary: str | None = None):
    """The runner for ``target`` (None: this machine): :class:`~resnet_edge.targets.local.LocalTarget`,
    :class:`~resnet_edge.targets.ssh.SSHTarget` or :class:`~resnet_edge.targets.adb.AdbTarget`.
    ``benchmark_binary`` is the adb runner's (a local benchmark_model to push); the others run the harness."""
    target = target or LOCAL
    if target.kind == "local":
        from resnet_edge.targets.local import LocalTarget

        return LocalTarget(target)
    if target.kind == "ssh":
        from resnet_edge.targets.ssh import SSHTarget

        return SSHTarget(target)
    if target.kind == "adb":
        from resnet_edge.targets.adb import AdbTarget

        return AdbTarget(target, benchmark_binary=benchmark_binary)
    raise ConfigError(f"unknown target kind {target.kind!r}; valid: {', '.join(KINDS)}")


@contextlib.contextmanager
def device_hold(target: TargetURL, say: Callable[[str], None] = lambda text: None):
    """The device's own lock while the block runs, where the device has one (an SSH device:
    :meth:`~resnet_edge.targets.ssh.SSHTarget.hold`; a device over adb or this machine: none, the caller's own lock is
    all there is). Yields whether it is held."""
    if target.kind != "ssh":
        yield False
        return
    with open_target(target).hold(say) as got:
        yield got
