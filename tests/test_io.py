"""Atomic writes: a failure (or an interrupt) leaves the old file as it was and no temporary file."""

import json
import os
import stat

import pytest

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.io import atomic_path, atomic_write_json, ensure_writable


def test_interrupted_write_keeps_old_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_successful_write_replaces_and_uses_umask_permissions(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_directory_as_output_is_refused(tmp_path):
    with pytest.raises(ResnetEdgeError, match="is a directory"):
        ensure_writable(tmp_path)
