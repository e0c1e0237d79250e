"""Atomic file writes: an artifact is either whole or absent, never half-written.

Every writer goes through :func:`atomic_path`: the data goes to a temporary file in the destination's
own directory (so the final ``os.replace`` is atomic on the same file system), and the temporary file
is removed if anything fails, including a KeyboardInterrupt. A file that was already there stays
untouched until the new one is complete.

A model and its manifest are replaced together or not at all (:func:`replace_together`): both are
written to temporary files first, then a small journal naming both renames is written atomically (the
commit point), then both renames happen and the journal goes. A process killed (even ``kill -9``)
before the journal exists leaves the old pair as it was; killed after, the next write into that folder
(every :func:`replace_together` first calls :func:`recover`) completes the renames. Temporary names carry the writer's PID, so
:func:`recover` also removes what a dead writer left half-written, and never a live writer's files.
Nothing but a regular file is ever replaced (:func:`check_output`): a symbolic link, FIFO, device or socket
at an output path is refused before any work starts and again at the instant of the rename (a new name is
claimed with ``link``, which never follows or replaces anything). A ``.json`` beside an artifact is
replaced only when it is resnet-edge's manifest of that artifact (:func:`check_manifest_slot`).

Writers of one artifact exclude each other (:func:`exclusive`): a lock file beside it, held with
``flock`` and removed on release; a second writer waits a bounded time, then refuses in one line naming
the holder. The same lock serves any path, a run's folder included.
Pure Python: safe on the edge side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from resnet_edge._tmp import pid_alive
from resnet_edge.errors import ResnetEdgeError

#: Open flags for a file that must not block (a FIFO) nor follow a link, and is not inherited by children.
_NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ('a FIFO', 'a character device', ...)."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def mode_of(path: str | os.PathLike, follow: bool = False, doing: str = "write") -> int | None:
    """The file type and mode of ``path`` (a link itself unless ``follow``), or None when nothing is there (or
    a parent is not a folder: that is reported when it is made); another failure is one line."""
    try:
        return (os.stat(path) if follow else os.lstat(path)).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ResnetEdgeError(f"cannot {doing} {path}: {exc.strerror or exc}; choose another path") from None


def check_output(path: str | os.PathLike) -> None:
    """Refuse ``path`` as an output when it exists and is anything but a regular file (a symbolic link is
    refused, not followed): writing would replace a device node, a FIFO or what a link points to."""
    mode = mode_of(path)
    if mode is None or stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ResnetEdgeError(f"cannot write {path}: it is a directory; give a file name such as {Path(path) / 'model.keras'}")
    raise ResnetEdgeError(f"refusing to write {path}: it is {file_kind(mode)}, not a regular file; "
                          "resnet-edge replaces only regular files: choose another output path")


#: What a manifest of ours says it describes.
MANIFEST_KINDS = ("keras-model", "tflite-model")


def check_manifest_slot(artifact: str | os.PathLike) -> None:
    """Refuse to write ``artifact`` when the ``.json`` beside it (its manifest's name) exists and is not
    resnet-edge's manifest of a file of that name: it is someone else's file, which writing would replace."""
    mp = manifest_path(artifact)
    check_output(mp)
    if not mp.exists():
        return
    describes = None
    try:
        if mp.stat().st_size <= MAX_MANIFEST_BYTES:
            data = json.loads(mp.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("kind") in MANIFEST_KINDS and isinstance(data.get("file"), dict):
                describes = str(data["file"].get("path"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        describes = None
    if describes == Path(artifact).name:
        return
    name = Path(artifact).name
    what = f"resnet-edge's manifest of {describes}, not of {name}" if describes else \
        f"not resnet-edge's manifest of {name}"
    raise ResnetEdgeError(f"refusing to write {artifact}: {mp} exists and is {what}, and writing would replace it; "
                          "move it away or choose another output name")


def ensure_writable(path: str | os.PathLike, manifest: bool = False) -> Path:
    """Create the parent directory of ``path`` if needed and check that it can be written.

    Raises :class:`ResnetEdgeError` (one line) when the directory cannot be created or written, or when
    ``path`` exists and is not a regular file (:func:`check_output`). ``manifest``: ``path`` is an artifact
    whose manifest will be written beside it (:func:`check_manifest_slot`).
    """
    path = Path(path)
    check_output(path)  # a directory there too
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResnetEdgeError(f"cannot create the directory {parent}: {exc.strerror or exc}; choose another output path") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ResnetEdgeError(f"cannot write to {parent}: permission denied; choose another output path")
    if manifest:
        check_manifest_slot(path)
    return path


def read_regular(path: str | os.PathLike, limit: int, what: str = "file", give: str = "a regular file",
                 error: type = ResnetEdgeError) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (``what`` it is, in words): never a FIFO,
    which would block, nor a device such as /dev/zero, which would read without end. Anything else is one
    line of ``error``, saying to ``give`` something else."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory; give {give}") from None
    except OSError as exc:
        raise error(f"cannot open {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path} is a directory; give {give}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path} is {file_kind(st.st_mode)}, not a regular file; give {give}")
        if st.st_size > limit:
            raise error(f"{path} is {st.st_size:,} bytes, more than a {what} can be ({limit:,})")
        # Ask for what the file holds (and a byte more, to see it grow), not for the limit: read(n) reserves n
        # bytes first, so read(limit + 1) of a 100 kB model would reserve gigabytes.
        data = fh.read(st.st_size + 1)
    if len(data) > st.st_size:
        raise error(f"{path} grew while it was read; read it again when whatever writes it is done")
    return data


def check_run_folder(path: str | os.PathLike) -> None:
    """A run's folder (``train --out``): absent or a directory, and not a symbolic link (what a link points
    to would be written instead)."""
    mode = mode_of(path, doing="use --out")
    if mode is not None and not stat.S_ISDIR(mode):
        raise ResnetEdgeError(f"refusing --out {path}: it is {file_kind(mode)}, not a directory; give a folder "
                              "for the run (it is made if absent)")


def _put(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, which must be absent or a regular file at this very moment: a new name is
    claimed with ``link`` (which fails if anything appeared there, and follows nothing); an existing one is
    opened without following links and checked to be the regular file that is then replaced."""
    try:
        os.link(tmp, final, follow_symlinks=False)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: check, then rename
        check_output(final)
        os.replace(tmp, final)
        return
    else:
        os.unlink(tmp)
        return
    try:
        fd = os.open(final, os.O_RDONLY | _NO_FOLLOW)
    except OSError:
        check_output(final)  # a link (ELOOP) or an unreadable name: say what it is
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            check_output(final)
            raise ResnetEdgeError(f"refusing to write {final}: it is not a regular file")
    finally:
        os.close(fd)
    os.replace(tmp, final)


#: How long a writer waits for another writer of the same file (seconds; ``RESNET_EDGE_LOCK_WAIT``).
LOCK_WAIT_ENV = "RESNET_EDGE_LOCK_WAIT"
LOCK_WAIT = 10.0
_held: dict[str, int] = {}  # the locks this process holds, by thread and lock file


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of ``path``: ``.NAME.lock`` beside it."""
    path = Path(os.path.abspath(path))
    return path.parent / f".{path.name}.lock"


def env_seconds(variable: str, default: float, most: float) -> float:
    """Seconds from the environment variable ``variable``, within 0..``most`` (``default`` when unset or
    not a number)."""
    try:
        return min(max(float(os.environ.get(variable, default)), 0.0), most)
    except ValueError:
        return default


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, wait: float | None = None,
              waiting: "Callable[[str], None] | None" = None) -> Iterator[None]:
    """Hold the write lock of ``path`` (a file or a folder) for the block: another process that wants it
    waits up to ``wait`` seconds (default ``$RESNET_EDGE_LOCK_WAIT`` or 10; ``math.inf``: as long as it
    takes), then gets a one-line :class:`ResnetEdgeError` naming the holder (its PID and command);
    ``waiting(holder)`` is called once when it starts to wait. Re-entrant within a process. The lock file is
    removed on release; a waiter that locked a file removed meanwhile tries again."""
    import fcntl
    import threading

    lock = lock_path(path)
    key = f"{threading.get_ident()}:{lock}"  # re-entrant in one thread; another thread waits as another process does
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    wait = env_seconds(LOCK_WAIT_ENV, LOCK_WAIT, 600.0) if wait is None else wait
    deadline = time.monotonic() + wait
    ensure_writable(lock)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644)
        except OSError as exc:
            check_output(lock)
            raise ResnetEdgeError(f"cannot lock {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            check_output(lock)
            raise ResnetEdgeError(f"cannot lock {path}: {lock} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if waiting is not None:
                waiting(holder)
                waiting = None
            if time.monotonic() >= deadline:
                raise ResnetEdgeError(f"{path} is being written by another resnet-edge process ({holder}); waited "
                                      f"{wait:g} s: let it finish and run this again (set {LOCK_WAIT_ENV} to wait "
                                      "longer)") from None
            time.sleep(0.05)
            continue
        try:
            same = os.fstat(fd).st_ino == os.lstat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed it as we opened it: lock the new one
    try:
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:6]))[:200]
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command,
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(), 0)
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _holder(fd: int) -> str:
    """Who holds a lock, from what it wrote in the lock file (bounded, escaped)."""
    from resnet_edge.ui import safe_text

    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"PID {int(info['pid'])}, {safe_text(info.get('command', ''), 120)}, since {safe_text(info.get('since', ''), 30)}"
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "a process that is starting"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); move it over ``path`` only on success."""
    final = ensure_writable(path)
    tmp_path = _temporary_beside(final)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the usual permissions
        _put(tmp_path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _temporary_beside(final: Path) -> Path:
    """An empty temporary file beside ``final``: ``.NAME.pidPID.XXXX.tmpSUFFIX``, the name :func:`recover`
    recognizes (the PID says whose it is)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.pid{os.getpid()}.", suffix=f".tmp{final.suffix}",
                                   dir=final.parent)
    except OSError as exc:
        raise ResnetEdgeError(f"cannot write in {final.parent}: {exc.strerror or exc}; choose another output path") from None
    os.close(fd)
    return Path(tmp)


def current_umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


#: The XDG base folders resnet-edge keeps its own files in: (variable, default under the home folder).
XDG_BASES = {"config": ("XDG_CONFIG_HOME", ".config"), "data": ("XDG_DATA_HOME", ".local/share"),
             "cache": ("XDG_CACHE_HOME", ".cache")}


def user_path(kind: str, *parts: str) -> str:
    """A path in resnet-edge's own folder of an XDG base (``config``, ``data`` or ``cache``):
    ``$XDG_CONFIG_HOME/resnet-edge/PARTS``, else ``~/.config/resnet-edge/PARTS``, and so on."""
    variable, default = XDG_BASES[kind]
    base = os.environ.get(variable, "").strip() or os.path.join(os.path.expanduser("~"), default)
    return os.path.join(base, "resnet-edge", *parts)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: A manifest is a few kB (a long run's history: tens of kB); more is not a manifest of ours.
MAX_MANIFEST_BYTES = 16 << 20


def read_manifest(artifact: str | os.PathLike, sha256: str | None = None) -> dict:
    """The sidecar manifest of an artifact (empty when there is none). Raises :class:`ResnetEdgeError`
    when it is not readable JSON, or when the sha256 it records is not the artifact's (``sha256``: the
    artifact's hash when the caller has it already): the two were not replaced together, so what the
    manifest says (recipe, normalization, labels) may be another model's."""
    mp = manifest_path(artifact)
    if not mp.is_file():
        return {}
    if mp.stat().st_size > MAX_MANIFEST_BYTES:
        raise ResnetEdgeError(f"{mp} is {mp.stat().st_size:,} bytes, too large for a manifest; remove it")
    try:
        manifest = json.loads(mp.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        raise ResnetEdgeError(f"{mp} is not readable JSON; remove it or write the model again") from None
    if not isinstance(manifest, dict):
        raise ResnetEdgeError(f"{mp} is not a manifest (a JSON object was expected); remove it")
    recorded = (manifest.get("file") or {}).get("sha256") if isinstance(manifest.get("file"), dict) else None
    if recorded and Path(artifact).is_file() and recorded != (sha256 or sha256_file(artifact)):
        raise ResnetEdgeError(f"{mp} does not describe {Path(artifact).name} (its sha256 differs): one was replaced "
                              "without the other; write the model again, or remove the stale manifest")
    return manifest


def manifest_path(artifact: str | os.PathLike) -> Path:
    """The sidecar manifest of an artifact: ``model.keras`` -> ``model.json``."""
    return Path(artifact).with_suffix(".json")


JOURNAL_SUFFIX = ".commit"
_WRITER = re.compile(r"\.pid(\d+)\.")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replace_together(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths`` (all in one directory); when the block succeeds, move them
    all into place together, or (if killed first) none of them. See the module docstring."""
    finals = [ensure_writable(p) for p in paths]
    folder = finals[0].parent
    if any(f.parent.resolve() != folder.resolve() for f in finals):
        raise ValueError("replace_together: the files must share a directory")
    for f in finals[1:]:
        if f == manifest_path(finals[0]):
            check_manifest_slot(finals[0])
    with exclusive(finals[0]):
        with _replace_together(folder, finals) as tmps:
            yield tmps


@contextlib.contextmanager
def _replace_together(folder: Path, finals: list[Path]) -> Iterator[list[Path]]:
    recover(folder)
    tmps: list[Path] = []
    try:
        for f in finals:
            tmps.append(_temporary_beside(f))
    except ResnetEdgeError:
        for t in tmps:
            t.unlink(missing_ok=True)
        raise
    journal = folder / f".{finals[0].name}.pid{os.getpid()}{JOURNAL_SUFFIX}"
    try:
        yield tmps
        mode = 0o666 & ~current_umask()
        for t in tmps:
            if t.is_file():
                os.chmod(t, mode)
                with open(t, "rb") as fh:
                    os.fsync(fh.fileno())
        atomic_write_bytes(journal, json.dumps([[t.name, f.name] for t, f in zip(tmps, finals)]).encode())
        _commit(folder, journal)
    except BaseException:
        if not journal.exists():  # not committed: the old files stay, the new ones go
            for t in tmps:
                with contextlib.suppress(OSError):
                    t.unlink()
        raise


def _commit(folder: Path, journal: Path) -> None:
    pairs = json.loads(journal.read_text())
    for tmp_name, final_name in pairs:
        if "/" in tmp_name or "/" in final_name:  # a journal names files of its own directory only
            raise ResnetEdgeError(f"refusing the damaged journal {journal}")
        tmp = folder / tmp_name
        if tmp.exists():
            _put(tmp, folder / final_name)
    _fsync_dir(folder)
    journal.unlink()
    _fsync_dir(folder)


def recover(folder: str | os.PathLike) -> list[str]:
    """Finish what a killed writer in ``folder`` committed, and remove what it left uncommitted.

    Returns the names it completed or removed. Only files of writers whose process is gone are touched.
    Errors (a read-only directory) are ignored: a reader still notices a mismatch through checksums.
    """
    folder = Path(folder)
    done: list[str] = []
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return done
    dead = []
    for path in entries:
        found = _WRITER.search(path.name)
        if path.name.startswith(".") and found and int(found.group(1)) != os.getpid() and not pid_alive(int(found.group(1))):
            dead.append(path)
    for path in dead:  # committed pairs first: their temporary files are the new versions
        if path.name.endswith(JOURNAL_SUFFIX):
            with contextlib.suppress(OSError, ValueError, ResnetEdgeError):
                _commit(folder, path)
                done.append(path.name)
    for path in entries:  # lock files a killed writer left: removed when nobody holds them
        if path.name.startswith(".") and path.name.endswith(".lock") and _unheld(path):
            done.append(path.name)
    for path in dead:  # then what was never committed
        if ".tmp" in path.name and (path.exists() or path.is_symlink()):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                done.append(path.name)
    return done


def _unheld(lock: Path) -> bool:
    """Remove ``lock`` if no process holds it (a killed writer's); whether it was removed."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY | _NO_FOLLOW)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(lock)  # a waiter that opened it meanwhile sees its inode gone and locks a new one
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
