"""Target URLs, parsed strictly: what :mod:`resnet_edge.targets` opens. A target is written as:

* ``local``: this machine (the default);
* ``ssh://[user@]host[:port][/?python=PATH]``: any Linux board with Python >= 3.9, numpy and a TFLite
  runtime, reached with the system's OpenSSH (the user's ``~/.ssh/config``, keys, agent and jump hosts
  apply; ``$RESNET_EDGE_SSH_CONFIG`` names another config file);
* ``adb://[SERIAL]``: an Android device, measured with LiteRT's ``benchmark_model`` binary.

Everything here is parsed strictly: a host, user or serial that could be read as an option by ssh or
adb (a leading ``-``) or that holds shell characters is refused in one line.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from resnet_edge.errors import ConfigError

# \A...\Z, not ^...$: "$" also matches before a final newline ("pi\n" would pass).
NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
HOST_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,252}\Z")
USER_RE = re.compile(r"\A[A-Za-z0-9._][A-Za-z0-9._-]{0,63}\Z")
SERIAL_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
#: A remote Python given in the URL: a path or a command name, no shell characters.
PYTHON_RE = re.compile(r"\A~?[A-Za-z0-9._/+-]{1,255}\Z")
KINDS = ("local", "ssh", "adb")


class TargetError(ConfigError):
    """A target that cannot be reached or used: one line, what is wrong and what to do."""


@dataclasses.dataclass(frozen=True)
class TargetURL:
    """A parsed target: ``kind`` is local, ssh or adb; ``name`` is what the user typed (a URL or a
    device name), ``url`` the URL it stands for."""

    kind: str
    url: str
    name: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    serial: str | None = None

    def __str__(self) -> str:
        return self.name

    @property
    def local(self) -> bool:
        """This machine: a delegate's path and the like are checked here, not on a device."""
        return self.kind == "local"


def parse_url(text: str, name: str | None = None) -> TargetURL:
    """``local``, ``ssh://...`` or ``adb://...`` -> :class:`TargetURL`; anything else is a ConfigError."""
    text = str(text).strip()
    name = name or text
    if text == "local":
        return TargetURL("local", "local", name)
    scheme, sep, _ = text.partition("://")
    if not sep or scheme not in ("ssh", "adb"):
        raise ConfigError(f"malformed target {text!r}: use local, ssh://[user@]host[:port] or adb://[SERIAL], "
                          "or the name of a saved device (resnet-edge devices list)")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise ConfigError(f"malformed target {text!r}: it holds spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as exc:
        raise ConfigError(f"malformed target {text[:200]!r}: {exc}; write ssh://[user@]host[:port], ssh://[::1]:2222 "
                          "or adb://SERIAL") from None
    if parts.fragment:
        raise ConfigError(f"malformed target {text!r}: remove the '#...' part")
    if scheme == "adb":
        serial = parts.netloc or None
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"malformed target {text!r}: an adb target is adb:// or adb://SERIAL (as `adb devices` "
                              "lists it)")
        if serial is not None and not SERIAL_RE.match(serial):
            raise ConfigError(f"malformed adb serial {serial!r}: letters, digits and . _ : - only")
        return TargetURL("adb", text, name, serial=serial)
    netloc = parts.netloc
    user, at, hostport = netloc.rpartition("@")
    if at and not USER_RE.match(user):
        raise ConfigError(f"malformed ssh user {user!r} in {text!r}: letters, digits and . _ - only")
    host, port = hostport, None
    if hostport.startswith("["):  # [IPv6]:port
        end = hostport.find("]")
        host, rest = hostport[1:end] if end > 0 else "", hostport[end + 1:] if end > 0 else ""
        if not host or not re.fullmatch(r"[0-9A-Fa-f:.]+", host) or (rest and not rest.startswith(":")):
            raise ConfigError(f"malformed IPv6 host in {text!r}: write ssh://[::1]:2222")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = hostport.partition(":")
        port_text = port_text if colon else None
        if not HOST_RE.match(host or ""):
            raise ConfigError(f"malformed ssh host {host!r} in {text!r}: a host name, an IP address or a Host alias "
                              "of your ~/.ssh/config (letters, digits, . _ -)")
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"malformed port {port_text!r} in {text!r}: a number 1..65535")
        port = int(port_text)
    if parts.path not in ("", "/"):
        raise ConfigError(f"malformed target {text!r}: no path after the host (the remote Python goes in ?python=PATH)")
    python = "python3"
    if parts.query:
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        unknown = set(query) - {"python"}
        if unknown or len(query.get("python", [])) > 1:
            raise ConfigError(f"malformed target {text!r}: the only option is ?python=PATH")
        python = query["python"][0]
        if not PYTHON_RE.match(python):
            raise ConfigError(f"malformed remote python {python!r}: a path such as ~/venv/bin/python or /usr/bin/python3")
    return TargetURL("ssh", text, name, host=host, user=user or None, port=port, python=python)
