"""Saved devices: names for target URLs, kept in a small JSON file.

The file is ``$RESNET_EDGE_DEVICES`` when set, else ``$XDG_CONFIG_HOME/resnet-edge/devices.json``
(``~/.config/resnet-edge/devices.json``). It is read bounded (1 MB) and checked entry by entry, written
atomically (temporary file, then rename) under a lock, so two ``devices add`` at once lose nothing.

Pure standard library: edge side.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os

from resnet_edge.errors import ConfigError

ENV = "RESNET_EDGE_DEVICES"
MAX_BYTES = 1 << 20
MAX_NOTE = 200


def path() -> str:
    """Where the devices file is (it need not exist)."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return env
    from resnet_edge.io import user_path

    return user_path("config", "devices.json")


def _read(p: str) -> bytes | None:
    """The devices file's bytes (None when absent): a regular file only (a FIFO would block the reader, a
    device never end), at most 1 MB."""
    from resnet_edge.io import mode_of, read_regular

    if mode_of(p, follow=True, doing="read the devices file") is None:
        return None
    return read_regular(p, MAX_BYTES, "devices file", f"a devices file: point {ENV} at one (or unset it)", ConfigError)


def load() -> dict[str, dict]:
    """``{name: {"url", "note", "added"}}``; an absent file is empty; a damaged one is one line. An entry
    whose URL is malformed is kept, marked with ``"error"``, so that ``list`` shows it, ``remove`` can remove
    it and using it (:func:`get`) is refused."""
    from resnet_edge.targets.url import NAME_RE, parse_url
    from resnet_edge.ui import safe_text

    p = path()
    raw = _read(p)
    if raw is None:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
        entries = data["devices"]
        if not isinstance(entries, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError, UnicodeDecodeError):
        raise ConfigError(f"the devices file {p} is damaged (not the JSON resnet-edge writes): fix or remove it") from None
    out = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or not NAME_RE.match(name) or not isinstance(entry, dict) \
                or not isinstance(entry.get("url"), str):
            raise ConfigError(f"the devices file {safe_text(p)} has a damaged entry {safe_text(name, 40)}: fix or "
                              "remove it")
        out[name] = {"url": entry["url"][:1000], "note": str(entry.get("note") or "")[:MAX_NOTE],
                     "added": str(entry.get("added") or "")[:40]}
        try:
            parse_url(entry["url"], name=name)  # a bad URL in the file is refused like a typed one
        except ConfigError as exc:
            out[name]["error"] = str(exc)[:300]
    return out


def get(name: str) -> dict:
    devices = load()
    if name not in devices:
        known = ", ".join(sorted(devices)) or "none saved yet"
        raise ConfigError(f"no device named {name!r} (saved: {known}); add it with resnet-edge devices add {name} URL")
    if "error" in devices[name]:
        raise ConfigError(f"the saved device {name} is damaged ({devices[name]['error']}); fix it with resnet-edge "
                          f"devices add {name} URL --replace")
    return devices[name]


@contextlib.contextmanager
def _locked():
    """The devices file's write lock (:func:`resnet_edge.io.exclusive`): two ``devices add`` at once lose nothing."""
    from resnet_edge.io import exclusive

    p = path()
    with exclusive(p, wait=60):
        yield p


def _write(p: str, devices: dict) -> None:
    """Write the devices, each as its URL, note and time added (what :func:`load` marked is not saved)."""
    from resnet_edge.io import atomic_write_bytes

    saved = {name: {k: entry[k] for k in ("url", "note", "added")} for name, entry in devices.items()}
    atomic_write_bytes(p, (json.dumps({"version": 1, "devices": saved}, indent=2, sort_keys=True) + "\n").encode())


def add(name: str, url: str, note: str = "", replace: bool = False) -> dict:
    """Save ``name`` for ``url`` (checked as a target URL first)."""
    from resnet_edge.targets.url import NAME_RE, parse_url

    if not NAME_RE.match(name or ""):
        raise ConfigError(f"bad device name {name!r}: 1-64 letters, digits, . _ - (starting with a letter or digit)")
    if name == "local":
        raise ConfigError("'local' is this machine already; choose another name")
    target = parse_url(url, name=name)
    if target.local:
        raise ConfigError("a saved device is ssh://... or adb://...; 'local' needs no name")
    if len(note) > MAX_NOTE or not all(c.isprintable() for c in note):
        raise ConfigError(f"--note is one line of at most {MAX_NOTE} characters")
    with _locked() as p:
        devices = load()
        if name in devices and not replace:
            raise ConfigError(f"a device named {name!r} exists ({devices[name]['url']}); remove it first or add --replace")
        devices[name] = {"url": url, "note": note,
                         "added": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        _write(p, devices)
    return devices[name]


def remove(name: str) -> dict:
    with _locked() as p:
        devices = load()
        if name not in devices:
            raise ConfigError(f"no device named {name!r} (saved: {', '.join(sorted(devices)) or 'none'})")
        entry = devices.pop(name)
        _write(p, devices)
    return entry
