"""Issue 21's findings, one named test each (every one failed before its fix): what the newer commands let
through from hostile devices, stores and files, and what a careless user could lose.

Device nodes and FIFOs are made inside each test's own folder (``mknod``/``mkfifo``): the suite runs as root
and never touches the real ``/dev/null``. Most tests run before TensorFlow loads; those that need a model
share the suite's converted ResNet-20.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from resnet_edge.errors import ResnetEdgeError
from tests.cli_helpers import one_line_error, run
from tools.hostile_inputs import bomb, digit_folders, hostile_h5

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, timeout=120, memory_mb: int | None = None):
    """``resnet-edge ARGS`` in a process of its own; ``memory_mb`` caps its address space (what would take
    gigabytes fails there instead of on the machine)."""
    def cap():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

    return subprocess.run([sys.executable, "-m", "resnet_edge", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                          preexec_fn=cap if memory_mb else None)


def one_line(proc, *fragments) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def model(converted, tmp_path_factory):
    """A copy of the suite's converted float32 ResNet-20 with its manifest (the tests change their copies)."""
    out, m = converted
    folder = tmp_path_factory.mktemp("hostile_model")
    name = m["float32"]["file"]["path"]
    shutil.copy(out / name, folder / name)
    shutil.copy((out / name).with_suffix(".json"), (folder / name).with_suffix(".json"))
    return folder / name


def fresh(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / model.name)
    shutil.copy(model.with_suffix(".json"), folder / model.with_suffix(".json").name)
    return folder / model.name


# ---------------------------------------------------------------- 1. outputs: only regular files are replaced


def _specials(folder: Path, suffix: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    dev = folder / f"null{suffix}"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a character device like /dev/null, in our folder
    fifo = folder / f"fifo{suffix}"
    os.mkfifo(fifo)
    victim = folder / f"victim{suffix}"
    victim.write_bytes(b"someone else's")
    link = folder / f"link{suffix}"
    link.symlink_to(victim)
    return {"a character device": dev, "a FIFO": fifo, "a symbolic link": link}


@pytest.mark.parametrize("command, suffix", [("metadata", ".tflite"), ("build", ".keras"), ("convert", ".tflite")])
def test_out_never_replaces_a_device_fifo_or_symlink(model, tmp_path, command, suffix):
    folder = tmp_path / "specials"
    specials = _specials(folder, suffix)
    args = {"metadata": ["metadata", model, "--author", "A"], "build": ["build", "--depth", "20"],
            "convert": ["convert", "--depth", "20", "--samples", "8"]}[command]
    for words, target in specials.items():
        one_line_error(run(*args, "--out", target), "refusing to write", words)
        assert not list(folder.glob("*.json")), "no manifest written beside a refused output"
    assert stat.S_ISCHR(os.lstat(specials["a character device"]).st_mode)
    assert stat.S_ISFIFO(os.lstat(specials["a FIFO"]).st_mode)
    assert os.path.islink(specials["a symbolic link"]) and (folder / f"victim{suffix}").read_bytes() == b"someone else's"


def test_the_rename_itself_refuses_what_appeared_after_the_check(tmp_path):
    """The early check and the write cannot be raced: a FIFO that appears after the check is found at the
    rename (a new name is claimed with link(), which replaces nothing)."""
    from resnet_edge.io import atomic_path

    target = tmp_path / "m.tflite"
    with pytest.raises(ResnetEdgeError, match="a FIFO"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
            os.mkfifo(target)  # appears between the check and the rename
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and os.listdir(tmp_path) == ["m.tflite"]


def test_train_out_must_be_a_folder_not_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    os.mkfifo(tmp_path / "fifo")
    for out, words in (("link", "a symbolic link"), ("fifo", "a FIFO")):
        one_line(cli("train", "--model", "resnet20", "--epochs", "1", "--out", tmp_path / out), words)
    assert not list((tmp_path / "real").iterdir())


# ---------------------------------------------------------------- 2. a .json beside an output


def test_a_json_that_is_not_our_manifest_is_never_overwritten(model, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    theirs = proj / "package.json"
    theirs.write_text('{"name": "my-app", "version": "1.0.0"}\n')
    one_line_error(run("metadata", model, "--out", proj / "package.tflite", "--author", "A"),
                   "package.json exists and is not resnet-edge's manifest of package.tflite")
    proc = cli("convert", "--depth", "20", "--out", proj / "package.tflite")
    one_line(proc, "package.json exists and is not resnet-edge's manifest")
    assert "Converting" in proc.stderr and theirs.read_text() == '{"name": "my-app", "version": "1.0.0"}\n'
    assert sorted(p.name for p in proj.iterdir()) == ["package.json"]
    # our own manifest of that very file is replaced as before
    r = run("metadata", model, "--out", proj / "ours.tflite", "--author", "A")
    assert r.exit_code == 0, r.output
    r = run("metadata", proj / "ours.tflite", "--author", "B")
    assert r.exit_code == 0 and json.loads((proj / "ours.json").read_text())["file"]["path"] == "ours.tflite"


# ---------------------------------------------------------------- 3. writers of one model exclude each other


def test_two_metadata_edits_at_once_both_land(model, tmp_path):
    from resnet_edge.io import read_manifest
    from resnet_edge.tflite.inspect import read_standard

    for round_ in range(8):  # the review lost an edit in 8 of 8 rounds
        m = fresh(model, tmp_path / f"round{round_}")
        procs = [subprocess.Popen([sys.executable, "-m", "resnet_edge", "metadata", str(m), *edit], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for edit in (["--author", "Ada"], ["--license", "MIT"])]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-2000:]
        data = m.read_bytes()
        meta = read_standard(data, "m")[0]
        assert (meta["author"], meta["license"]) == ("Ada", "MIT"), (round_, meta["author"], meta["license"])
        read_manifest(m)  # raises when the manifest is stale
        assert run("eval", m, "--limit", "200", "--max-drop", "100").exit_code == 0  # a stale manifest: refused


def test_a_held_lock_makes_the_second_writer_wait_then_refuse_naming_the_holder(model, tmp_path):
    from resnet_edge.io import exclusive, lock_path

    m = fresh(model, tmp_path / "held")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from resnet_edge.io import exclusive\n"
                               f"with exclusive({str(m)!r}):\n    print('held', flush=True); time.sleep(30)"],
                              cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        started = time.monotonic()
        proc = cli("metadata", m, "--author", "B", env={"RESNET_EDGE_LOCK_WAIT": "1"})
        waited = time.monotonic() - started
        one_line(proc, "is being written by another resnet-edge process", f"PID {holder.pid}", "waited 1 s")
        assert waited < 20
    finally:
        holder.kill()
        holder.wait()
    with exclusive(m):  # the dead holder's lock is free again; re-entrant in one process
        with exclusive(m):
            assert lock_path(m).exists()
    assert not lock_path(m).exists(), "the lock file is removed on release"


# ---------------------------------------------------------------- 4. HDF5 files that point outside themselves


def test_h5_weights_read_only_data_inside_the_file(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 40)
    for name, (path, says) in hostile_h5(tmp_path, secret).items():
        one_line_error(run("build", "--weights", path, "--out", tmp_path / "never.keras"), says, "conv1_conv")
    assert not (tmp_path / "never.keras").exists()


# ---------------------------------------------------------------- 5. the results store


def _foreign_db(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES ('ada')")
    db.commit()
    db.close()
    return path


def test_reading_another_programs_database_changes_nothing(tmp_path):
    other = _foreign_db(tmp_path / "other_app.sqlite")
    before = other.read_bytes()
    one_line_error(run("results", "--store", other), "is not a resnet-edge results store", "users")
    one_line_error(run("results", "--store", other, "--json"), "not a resnet-edge results store")
    one_line_error(run("results", "--store", other, "compare", "a", "b"), "not a resnet-edge results store")
    assert other.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["other_app.sqlite"]
    db = sqlite3.connect(other)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["users"]
    # a missing store reads as empty and is not created
    r = run("results", "--store", tmp_path / "none.sqlite")
    assert r.exit_code == 0 and "no results" in r.output and not (tmp_path / "none.sqlite").exists()


def test_our_stores_are_marked_and_an_unmarked_one_of_our_tables_is_adopted(tmp_path):
    from resnet_edge.measure.results import APPLICATION_ID, SCHEMA, SCHEMA_VERSION, Store

    with Store(str(tmp_path / "new.sqlite")):
        pass
    db = sqlite3.connect(tmp_path / "new.sqlite")
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    old = sqlite3.connect(tmp_path / "old.sqlite")  # a store an earlier version wrote: no mark
    old.executescript(SCHEMA)
    old.commit()
    old.close()
    assert Store(str(tmp_path / "old.sqlite"), write=False).query() == []
    with Store(str(tmp_path / "old.sqlite")):
        pass
    assert sqlite3.connect(tmp_path / "old.sqlite").execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    newer = sqlite3.connect(tmp_path / "new.sqlite")
    newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.commit()
    one_line_error(run("results", "--store", tmp_path / "new.sqlite"), "written by a newer resnet-edge")


def _store_with_rows(path: Path, rows: list[dict]) -> None:
    from resnet_edge.measure.results import Store

    with Store(str(path)) as s:
        for r in rows:
            s.db.execute("INSERT INTO results (measured_at, toolkit_version, model_sha256, model_name, target, "
                         "target_url, device, setting, setting_key, record) VALUES (?, '0', ?, ?, 'local', 'local', "
                         "'{}', 'x', 'k', '{}')", (r["when"], "ab" * 32, r["name"]))


def test_damaged_rows_and_columns_and_odd_times_are_one_line(tmp_path):
    path = tmp_path / "r.sqlite"
    _store_with_rows(path, [{"when": b"\x1b[31mblob", "name": "m\x1b]0;x.tflite"}, {"when": 12345, "name": "n"}])
    for fmt in ([], ["--csv"], ["--json"]):  # a device's text never reaches the terminal raw, CSV included
        r = run("results", "--store", path, *fmt)
        assert r.exit_code == 0 and "\x1b" not in r.output and ("x1b" in r.output or "u001b" in r.output), (fmt, r.output)
    for since in ("0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00"):
        one_line_error(run("results", "--store", path, "--since", since), "outside the calendar")
    cut = tmp_path / "cut.sqlite"
    shutil.copy(path, cut)
    db = sqlite3.connect(cut)
    db.execute("ALTER TABLE results DROP COLUMN p90_ms")
    db.commit()
    db.close()
    one_line_error(run("results", "--store", cut), "damaged resnet-edge results store")


def test_a_read_only_store_can_still_be_queried(tmp_path):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a read-only tmpfs needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        _store_with_rows(mnt / "r.sqlite", [{"when": "2026-12-01T00:00:00.000+00:00", "name": "m.tflite"}])
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        r = run("results", "--store", mnt / "r.sqlite", "--json")
        assert r.exit_code == 0, r.output
        assert [x["model_name"] for x in json.loads(r.output)] == ["m.tflite"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_a_locked_or_full_store_never_costs_the_figures(model, tmp_path):
    """bench prints its figures first, then one warning; sweep fails each job cleanly; the store stays whole."""
    from resnet_edge.measure.results import Store

    path = tmp_path / "locked.sqlite"
    with Store(str(path)):
        pass
    locker = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time\n"
                               f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                               "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE)
    try:
        assert locker.stdout.readline().strip() == b"locked"
        env = {"RESNET_EDGE_STORE_WAIT": "1"}
        proc = cli("bench", model, "--runs", "2", "--warmup", "0", "--store", path, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "p50" in proc.stdout and "warning: not stored:" in proc.stderr and "locked" in proc.stderr
        proc = cli("sweep", model, "--target", "local", "--runs", "2", "--warmup", "0", "--store", path, env=env)
        one_line(proc, "1 of 1 jobs failed")
        assert "Traceback" not in proc.stderr
    finally:
        locker.kill()
        locker.wait()
    assert Store(str(path), write=False).query() == []
    if os.geteuid() != 0 or not shutil.which("mount"):
        return
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)], capture_output=True).returncode:
        return
    try:
        with Store(str(full / "r.sqlite")):
            pass
        _fill(full)
        proc = cli("bench", model, "--runs", "2", "--warmup", "0", "--store", full / "r.sqlite")
        assert proc.returncode == 0 and "p50" in proc.stdout and "warning: not stored:" in proc.stderr, proc.stderr
        proc = cli("sweep", model, "--target", "local", "--runs", "2", "--warmup", "0", "--store", full / "r.sqlite")
        one_line(proc, "results store")  # refused before anything runs (opening needs its WAL index), or per job
        os.remove(full / "filler")
        db = sqlite3.connect(full / "r.sqlite")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 0
        db.close()
    finally:
        subprocess.run(["umount", "-l", str(full)])


def _fill(folder: Path) -> None:
    """Fill the file system down to its last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)


# ---------------------------------------------------------------- 6. the SSH target's cleanup


@pytest.fixture(scope="module")
def liar_sshd(tmp_path_factory):
    """A real sshd whose 'device' answers mktemp with a folder it did not make (ForceCommand) and logs every
    command it is sent."""
    from tests.sshd import SSHD, Server

    if not SSHD:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server; .ci/run installs it)")
    folder = tmp_path_factory.mktemp("liar")
    script = folder / "device.sh"
    script.write_text("#!/bin/sh\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> " + str(folder / "commands.log") + "\n"
                      "case \"$SSH_ORIGINAL_COMMAND\" in\n"
                      "  *mktemp*) cat " + str(folder / "reply") + ";;\n"
                      "  *) exit 0;;\nesac\n")
    script.chmod(0o755)
    server = Server(folder / "sshd", extra=(f"ForceCommand {script}",))
    yield server, folder
    server.stop()


# One line: what mktemp prints (a device that answers "/" got `rm -rf -- /` before). Two lines: the base and the
# folder, as the runner now asks; a lie there is refused too.
@pytest.mark.parametrize("reply", ["/\n", "/home\n", "/tmp\n", "/etc/resnet-edge.ABCDEFGH\n",
                                   "/tmp\n/\n", "/tmp\n/tmp/resnet-edge.ABCDEFGH/x\n", "/tmp\n/etc/resnet-edge.ABCDEFGH\n"])
def test_a_device_naming_a_folder_it_did_not_make_gets_no_rm(liar_sshd, model, reply, monkeypatch):
    server, folder = liar_sshd
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(server.config))
    (folder / "reply").write_text(reply)
    (folder / "commands.log").write_text("")
    r = run("bench", model, "--target", server.url, "--no-store")
    one_line_error(r, "could not make a temporary folder on the device", "unexpected reply")
    sent = (folder / "commands.log").read_text()
    assert "mktemp" in sent and "rm " not in sent, sent


def test_only_mktemps_own_folders_are_removed():
    from resnet_edge.targets.ssh import _our_folder

    assert _our_folder("/tmp/resnet-edge.AbC12xYz", "/tmp") and _our_folder("/data/local/tmp/resnet-edge.AbC12xYz")
    for bad in ("/", "/tmp", "/home", "/tmp/resnet-edge.AbC12xYz/..", "/tmp/../resnet-edge.AbC12xYz",
                "/tmp/resnet-edge.AbC", "tmp/resnet-edge.AbC12xYz", "/tmp/resnet-edge.AbC12xYz\n", "/tmp//x"):
        assert not _our_folder(bad), bad
    assert not _our_folder("/var/tmp/resnet-edge.AbC12xYz", "/tmp")


def test_killed_runs_local_ssh_folders_are_swept(sshd, tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = Path("/tmp") / f"resnet-edge-pid{dead.pid}-ssh-test"
    left.mkdir(exist_ok=True)
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    r = run("devices", "check", f"{sshd.url}/?python={sys.executable}", "--json")
    assert r.exit_code == 0, r.output
    assert not left.exists()


# ---------------------------------------------------------------- metadata's inputs


@pytest.mark.parametrize("args, says", [
    (["--name", "\udcff\udcfe"], "--name is not UTF-8"),
    (["--author", "\udcff"], "--author is not UTF-8"),
    (["--mean", "1e39", "--std", "1"], "float32"),
    (["--mean", "0", "--std", "1e-50"], "float32"),
    (["--mean", "1e308", "--std", "1e-308"], "float32"),
    (["--mean", "0", "--std", "1e-320"], "float32"),
    (["--mean", "0", "--std", "1e-37"], "beyond what a float32 holds"),
])
def test_metadata_texts_and_numbers_it_cannot_write(model, tmp_path, args, says):
    m = fresh(model, tmp_path)
    before = m.read_bytes()
    one_line_error(run("metadata", m, *args), says)
    assert m.read_bytes() == before


def test_metadata_non_utf8_name_from_a_real_command_line(model, tmp_path):
    m = fresh(model, tmp_path)
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"resnet_edge", b"metadata", os.fsencode(m), b"--name",
                           b"\xff\xfe"], capture_output=True, cwd=ROOT)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr and b"not UTF-8" in proc.stderr, proc.stderr


@pytest.mark.parametrize("separator", ["\u2028", "\x0c", "\x1c", "\x85", "\u2029"])
def test_labels_split_at_newlines_only_and_refuse_control_characters(model, tmp_path, separator):
    from resnet_edge.tflite.standard import parse_labels

    m = fresh(model, tmp_path)
    before = m.read_bytes()
    names = [f"digit{i}" for i in range(10)]
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(names[:4] + [names[4] + separator + names[5]] + names[6:]) + "\n", encoding="utf-8")
    wc = subprocess.run(["wc", "-l", str(labels)], capture_output=True, text=True).stdout.split()[0]
    assert int(wc) == len(parse_labels(labels.read_bytes(), "labels")) == 9  # as `wc -l` and the Task Library count
    one_line_error(run("metadata", m, "--labels", labels), "control character")
    assert m.read_bytes() == before


def test_a_labels_file_that_is_a_fifo_or_missing_is_named_as_such(model, tmp_path):
    os.mkfifo(tmp_path / "labels.txt")
    one_line_error(run("metadata", model, "--labels", tmp_path / "labels.txt"), "give a text file")
    one_line_error(run("metadata", model, "--labels", tmp_path / "none.txt"), "labels file not found")


# ---------------------------------------------------------------- the devices file


def test_devices_file_that_is_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "devices.json"
    os.mkfifo(fifo)
    env = {"RESNET_EDGE_DEVICES": str(fifo)}
    for args in (["devices", "list"], ["devices", "add", "pi5", "ssh://pi@host"], ["bench", "m.tflite", "--target", "pi5"]):
        one_line(cli(*args, env=env, timeout=30), "is a FIFO")


def test_device_names_and_urls_that_break_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EDGE_DEVICES", str(tmp_path / "devices.json"))
    one_line_error(run("devices", "add", "pi\n", "ssh://pi@host"), "bad device name")
    one_line_error(run("devices", "add", "x", "ssh://[::1;touch]:22"), "malformed target")
    assert run("devices", "add", "good", "ssh://pi@host").exit_code == 0
    data = json.loads((tmp_path / "devices.json").read_text())
    data["devices"]["bad"] = {"url": "ssh://[::1;touch]:22", "note": "", "added": ""}
    (tmp_path / "devices.json").write_text(json.dumps(data))
    r = run("devices", "list")
    assert r.exit_code == 0 and "DAMAGED" in r.output and "good" in r.output, r.output
    one_line_error(run("bench", "m.tflite", "--target", "bad"), "the saved device bad is damaged")
    assert run("devices", "add", "other", "adb://R58M").exit_code == 0
    assert run("devices", "remove", "bad").exit_code == 0
    assert set(json.loads((tmp_path / "devices.json").read_text())["devices"]) == {"good", "other"}


# ---------------------------------------------------------------- device replies


def _reply(tmp_path: Path, name: str, result) -> Path:
    """A fake runtime Python for the SSH device: it reads the job and prints ``result`` as its reply."""
    script = tmp_path / name
    body = json.dumps({"result": result}) if not isinstance(result, str) else result
    script.write_text("#!/bin/sh\ncat > /dev/null\ncat <<'EOF'\n" + body + "\nEOF\n")
    script.chmod(0o755)
    return script


GOOD = {"setting_index": 0, "p50_ms": 1.0, "avg_ms": 1.0, "count": 50, "runs": 50, "rounds": 1, "warmup_runs": 5,
        "runtime": "litert", "runtime_version": "2.3.0", "api": "interpreter"}


@pytest.mark.parametrize("name, result, says", [
    ("records an int", {"machine": {}, "records": 5}, "holds 5 records"),
    ("no records", {"machine": {}, "records": []}, "holds 0 records"),
    ("duplicates", {"machine": {}, "records": [GOOD] * 3}, "holds 3 records"),
    ("5000 duplicates", {"machine": {}, "records": [GOOD] * 5000}, "more than the job asked for"),
    ("negative p50", {"records": [{**GOOD, "p50_ms": -5.0}]}, "p50_ms = -5.0"),
    ("negative memory", {"records": [{**GOOD, "peak_rss_overall_mb": -1}]}, "peak_rss_overall_mb = -1"),
    ("string memory", {"records": [{**GOOD, "peak_rss_init_mb": "lots"}]}, "peak_rss_init_mb = 'lots'"),
    ("weight cache a string", {"records": [{**GOOD, "weight_cache_init": "x"}]}, "weight_cache_init"),
    ("weight cache incomplete", {"records": [{**GOOD, "weight_cache_init": {"path": "p"}}]}, "weight_cache_init"),
    ("wrong count", {"records": [{**GOOD, "count": 7}]}, "count = 7"),
    ("absurd latency", {"records": [{**GOOD, "p90_ms": 1e30}]}, "p90_ms = 1e+30"),
])
def test_bench_replies_are_checked_against_what_was_asked(sshd, model, tmp_path, monkeypatch, name, result, says):
    from resnet_edge.measure.results import Store

    store = tmp_path / "r.sqlite"
    script = _reply(tmp_path, name.replace(" ", "_"), result)
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    one_line_error(run("bench", model, "--target", f"{sshd.url}/?python={script}", "--store", store), says)
    assert Store(str(store), write=False).query() == []


def test_a_device_cannot_override_the_setting_or_the_integrity(sshd, model, tmp_path, monkeypatch):
    script = _reply(tmp_path, "override", {"records": [{**GOOD, "setting": "gpu (fake)", "integrity": "verified!",
                                                        "model": "/etc/passwd", "model_bytes": 1}]})
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    r = run("bench", model, "--target", f"{sshd.url}/?python={script}", "--json", "--no-store")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.output)["records"]
    assert (rec["setting"], rec["integrity"], rec["model"]) == ("xnnpack", "verified", str(model))
    assert rec["model_bytes"] == model.stat().st_size


def test_an_oversized_reply_is_refused_before_it_is_parsed(sshd, model, tmp_path, monkeypatch):
    big = tmp_path / "big"
    big.write_text("#!/bin/sh\ncat > /dev/null\n" + sys.executable + " -c \"import sys; sys.stdout.write('[],' * "
                   "(20 << 20))\"\n")
    big.chmod(0o755)
    # 60 MB of "[]," took 1.65 GB to parse before: in a process capped at 1.5 GB
    one_line(cli("bench", model, "--target", f"{sshd.url}/?python={big}", "--no-store", memory_mb=1536,
                 env={"RESNET_EDGE_SSH_CONFIG": str(sshd.config)}), "more than the job asked")


def _device_python(tmp_path: Path, name: str, body: str) -> Path:
    """A fake runtime Python on the SSH device: the runner's place is taken by ``body`` (Python), which reads the
    job from standard input and writes what a hostile device would."""
    script = tmp_path / name
    script.write_text(f"#!{sys.executable}\nimport json, sys\nimport numpy as np\njob = json.load(sys.stdin)\n{body}\n")
    script.chmod(0o755)
    return script


SETTING = {"runtime": "litert", "runtime_version": "2.3", "api": "interpreter"}


@pytest.mark.parametrize("settings, says", [
    ([{}], "runtime = None"),
    ("a string", "settings = 'a string'"),
    ([{"runtime": "litert", "api": "interpreter"}], "runtime_version = None"),
    ([SETTING, SETTING], "settings = '2 settings'"),
])
def test_eval_replies_must_describe_their_setting(sshd, model, tmp_path, monkeypatch, settings, says):
    script = _device_python(tmp_path, "eval_device", (
        "n = np.load('x.npy').shape[0]\nnp.save(job['outputs'][0], np.full((n, 10), 0.1, np.float32))\n"
        f"print(json.dumps({{'result': {{'machine': {{}}, 'settings': {settings!r}}}}}))"))
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    one_line_error(run("eval", model, "--limit", "20", "--target", f"{sshd.url}/?python={script}"), says)


@pytest.mark.parametrize("scores, says", [
    ("np.full((n, 10, 1), 0.1, np.float32)", "shape (20, 10, 1)"),
    ("np.full((n, 3), 0.1, np.float32)", "shape (20, 3)"),
    ("np.full((n, 10), np.nan, np.float32)", "NaN or infinite"),
])
def test_eval_scores_must_fit_the_model_and_be_finite(sshd, model, tmp_path, monkeypatch, scores, says):
    script = _device_python(tmp_path, "scores_device", (
        f"n = np.load('x.npy').shape[0]\nnp.save(job['outputs'][0], {scores})\n"
        f"print(json.dumps({{'result': {{'machine': {{}}, 'settings': [{SETTING!r}]}}}}))"))
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    one_line_error(run("eval", model, "--limit", "20", "--target", f"{sshd.url}/?python={script}"), says)


@pytest.mark.parametrize("labels, skipped, says", [
    ("np.zeros(0, np.int64)", 0, "found no images"),
    ("np.zeros(4, np.int64)", -1000, "skipped = -1000"),
    ("np.zeros(4, np.int64)", 1e30, "skipped = 1e+30"),
    ("np.zeros(4, np.int64)", True, "skipped = True"),
])
def test_device_folder_replies_are_checked(sshd, model, tmp_path, monkeypatch, labels, skipped, says):
    script = _device_python(tmp_path, "folder_device", (
        f"y = {labels}\nnp.save(job['labels_out'], y)\n"
        "[np.save(o, np.full((len(y), 10), 0.1, np.float32)) for o in job['outputs']]\n"
        "print(json.dumps({'result': {'machine': {}, 'classes': [str(i) for i in range(10)], 'images': len(y), "
        f"'skipped': {skipped!r}, 'settings': [{SETTING!r}]}}}}))"))
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    one_line_error(run("eval", model, "--data", "device-folder:/nowhere", "--target",
                       f"{sshd.url}/?python={script}"), says)


@pytest.mark.parametrize("text, says", [
    ("count=50 first=1000 curr=1000 min=900 max=1100 avg=1000 std=10\nInference timings in us: Init: 5000, First "
     "inference: 1000, Warmup (avg): 1000, Inference (avg): 1e+300\n", "avg_ms"),
    ("count=50 first=1000 curr=1000 min=900 max=1e+299 avg=1000 std=10\n", "max_ms"),
    ("Inference timings in us: Init: 5000, First inference: 1000, Warmup (av", "measured nothing"),
    ("\x1b[2J\x1b]0;owned\x07ERROR: \x1b[31mbad", "measured nothing"),
])
def test_benchmark_model_text_is_checked(tmp_path, text, says):
    """The adb path's parser and checks on cut-off, absurd and escape-filled benchmark_model text (the real adb
    client with a fake device end runs in test_adb_target; this is the part that reads the text)."""
    from resnet_edge.runtime.replies import clean_record
    from resnet_edge.targets.adb import parse_benchmark_output

    with pytest.raises(ResnetEdgeError) as info:
        clean_record(parse_benchmark_output(text), "adb://x")
    assert says in str(info.value) and "\x1b" not in str(info.value)


# ---------------------------------------------------------------- image folders


def test_local_eval_counts_and_names_what_it_skips(model, digits, tmp_path):
    root = digit_folders(tmp_path / "imgs", digits)
    test = root / "test"
    (test / "0" / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(test / "1" / "fifo.png")
    (test / "2" / "bomb.png").write_bytes(bomb())  # refused by its header before decoding
    good = next((test / "3").glob("*.png"))
    (test / "3" / "cut.png").write_bytes(good.read_bytes()[:-60])  # cut off: decoding fails, Pillow's verify passes
    r = run("eval", model, "--data", f"folder:{root}", "--split", "test", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    named = " ".join(rep["skipped_files"])
    assert rep["skipped"] == 4 and rep["n"] == 20, (rep["skipped"], rep["n"], named)
    for name in ("zero.png", "fifo.png", "bomb.png", "cut.png"):
        assert name in named, (name, named)
    assert "13000 x 13000 pixels, more than the limit" in named
    human = run("eval", model, "--data", f"folder:{root}")
    assert human.exit_code == 0 and "4 unreadable, skipped; e.g." in human.output, human.output
    one_line_error(run("eval", model, "--data", f"folder:{root}", "--strict"), "unreadable image")
    # the bound is an option: a lower one refuses these 32 x 32 images too
    one_line_error(run("eval", model, "--data", f"folder:{digit_folders(tmp_path / 'ok', digits)}", "--max-pixels",
                       "100"), "no readable")


def test_the_pixel_bound_runs_before_decoding_in_a_memory_capped_child(tmp_path):
    """A 13000 x 13000 PNG would need 500 MB to decode: with a 300 MB address-space cap the check refuses it
    (and a 48-megapixel header passes the default bound)."""
    big = tmp_path / "bomb.png"
    big.write_bytes(bomb())
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (900 << 20, 900 << 20))\n"
            "from resnet_edge.harness import BadImage, MAX_PIXELS, open_image\n"
            "assert 8000 * 6000 < MAX_PIXELS\n"
            "try:\n    open_image(sys.argv[1])\nexcept BadImage as e:\n    print('refused', e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("refused 13000 x 13000"), proc.stderr[-1000:]


# ---------------------------------------------------------------- weights: bounds and early errors


def test_safetensors_headers_are_bounded_before_parsing(tmp_path):
    cases = {
        "huge header": (struct.pack("<Q", 99_900_000) + b"{" + b" " * 1000, "header claims 99,900,000 bytes"),
        "many tensors": (None, "header claims"),
        "5000 tensors": (None, "5,000 tensors; a ResNet state dict"),
        "zero-byte classifier": (None, "classes"),
    }
    many = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(1_000_000)}  # 1.74 GB before
    header = json.dumps(many).encode()
    cases["many tensors"] = (struct.pack("<Q", len(header)) + header, "header claims")
    few = json.dumps({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(5000)}).encode()
    cases["5000 tensors"] = (struct.pack("<Q", len(few)) + few, cases["5000 tensors"][1])
    from safetensors.numpy import save_file

    from tests.torchvision_reference import random_state_dict

    sd = random_state_dict(18, classes=3)
    sd["fc.weight"] = np.zeros((2_000_000, 0), np.float32)
    sd["fc.bias"] = np.zeros(1, np.float32)
    save_file(sd, str(tmp_path / "zero.safetensors"))
    for name, (data, says) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        if data is not None:
            path.write_bytes(data)
        else:
            path = tmp_path / "zero.safetensors"
        proc = cli("build", "--weights", path, "--out", tmp_path / "never.keras", memory_mb=1200, timeout=60)
        one_line(proc, says)
    assert not (tmp_path / "never.keras").exists()


def test_weights_problems_are_found_before_tensorflow_and_leave_no_folder(tmp_path):
    from safetensors.numpy import save_file

    from tests.torchvision_reference import random_state_dict

    sd = random_state_dict(18, classes=3)
    bad = {**sd, "layer2.0.bn1.running_var": np.full_like(sd["layer2.0.bn1.running_var"], np.nan)}
    save_file(bad, str(tmp_path / "nan.safetensors"))
    folder = tmp_path / "photos"
    from PIL import Image

    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((64, 64, 3), i * 10, np.uint8)).save(folder / c / f"{i}.png")
    code = ("import sys\nfrom resnet_edge.cli import main\nsys.argv = ['resnet-edge'] + sys.argv[1:]\n"
            "try:\n    main()\nfinally:\n    print('tensorflow' in sys.modules, file=sys.stderr)\n")
    for args in (["build", "--weights", tmp_path / "nan.safetensors", "--out", tmp_path / "m.keras"],
                 ["train", "--weights", tmp_path / "nan.safetensors", "--data", f"folder:{folder}",
                  "--out", tmp_path / "run"]):
        proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr[-2000:]
        assert "NaN" in proc.stderr and proc.returncode == 1, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.keras").exists()
