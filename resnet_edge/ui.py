"""Readable output for people (aligned tables) and exact output for machines (``--json``).

Pure Python: used by the edge-side commands too.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Sequence


def safe_text(value: Any, limit: int = 200) -> str:
    """Text that came from a file or a device, made safe for a terminal: control characters, escape
    sequences and invisible formatting characters are shown escaped (``\\x1b``), bytes that are not
    UTF-8 become U+FFFD, and anything longer than ``limit`` characters is cut with a note of how much."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", errors="replace")
    text = str(value)
    cut = len(text) > limit
    shown = text[:limit]
    out = []
    for ch in shown:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    result = "".join(out)
    return result + f"... ({len(text) - limit:,} more characters)" if cut else result


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to at most ``limit`` characters at a space, so that no word or URL is cut in half."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit + 1].rsplit(" ", 1)[0] if " " in text[:limit + 1] else text[:limit]
    return cut.rstrip(" ,;:(") + " ..."


def si(n: float, unit: str = "") -> str:
    """11689512 -> '11.69M'; 1814073344 -> '1.81G'."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def human_bytes(n: int) -> str:
    """Sizes in binary-free decimal megabytes, as model zoos quote them: 46.83 MB."""
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], *, right: Iterable[str] = ()) -> str:
    """Format ``rows`` as an aligned text table. ``columns`` are (key, header); keys in ``right`` are
    right-aligned (numbers)."""
    right = set(right)
    cells = [[h for _, h in columns]] + [["" if r.get(k) is None else str(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if columns[i][0] in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """Two aligned columns: label and value."""
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)


def emit(obj: Any, as_json: bool, human: Callable[[Any], str], echo: Callable[[str], None] = print) -> None:
    """Print ``obj`` as JSON or through ``human``."""
    echo(to_json(obj) if as_json else human(obj))


def progress_line(as_json: bool = False) -> Callable[[str], None] | None:
    """A progress callback that writes one line on stderr, each overwriting the last, when stderr is a
    terminal (None otherwise, or with ``--json``); :func:`end_progress` clears it. It writes to its own
    copy of the terminal's descriptor, so its lines pass even while native stderr is being held back
    (:func:`resnet_edge._native.quiet_native_stderr`)."""
    import os
    import sys

    if as_json or not sys.stderr.isatty():
        return None
    sys.stderr.flush()
    fd = os.dup(sys.stderr.fileno())

    def show(text: str) -> None:
        os.write(fd, f"\r\x1b[K{safe_text(text, 160)}".encode("utf-8", "replace"))

    show.fd = fd  # type: ignore[attr-defined]
    return show


def end_progress(show: Callable[[str], None] | None) -> None:
    """Clear the line :func:`progress_line` wrote (once; later calls do nothing)."""
    import os

    fd = getattr(show, "fd", None)
    if fd is not None:
        os.write(fd, b"\r\x1b[K")
        os.close(fd)
        show.fd = None  # type: ignore[union-attr]
