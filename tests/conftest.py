"""Shared fixtures. Building a Keras model costs seconds, so each distinct spec is built once."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def private_stores(tmp_path_factory):
    """bench and sweep add to a results store, and devices live in a config file: in the tests, both are
    private files, never the user's (~/.local/share, ~/.config)."""
    import os

    folder = tmp_path_factory.mktemp("stores")
    saved = {k: os.environ.get(k) for k in ("RESNET_EDGE_RESULTS", "RESNET_EDGE_DEVICES", "XDG_CACHE_HOME")}
    os.environ["RESNET_EDGE_RESULTS"] = str(folder / "results.sqlite")
    os.environ["RESNET_EDGE_DEVICES"] = str(folder / "devices.json")
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")
    yield folder
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@functools.lru_cache(maxsize=None)
def built(spec):
    """The Keras model of ``spec`` (a frozen, hashable ResNetSpec), built once per test session."""
    from resnet_edge._tf import keras
    from resnet_edge.arch.keras_model import build_model

    keras.utils.set_random_seed(0)
    return build_model(spec)


@pytest.fixture(scope="session")
def build():
    return built


@pytest.fixture(scope="session")
def digits():
    """The bundled digits data set (loaded once)."""
    from resnet_edge.data import load

    return load("digits")


@pytest.fixture(scope="session")
def trained_resnet20(digits, tmp_path_factory):
    """A ResNet-20 trained for 5 epochs on the digits (about 97% validation accuracy; 3 epochs gave 31% once
    strided convolutions padded symmetrically, too weak for parity bounds to mean much): the float model the
    optimization and conversion tests start from (the path of its model.keras, with its manifest beside it)."""
    from resnet_edge.train import Recipe, spec_for_data, train

    run = tmp_path_factory.mktemp("r20")
    train(spec_for_data(digits, model="resnet20"), digits, run, Recipe(epochs=5, batch_size=64), verbose=0)
    return run / "model.keras"


@pytest.fixture(scope="session")
def converted(trained_resnet20, digits, tmp_path_factory):
    """All five modes of the trained model, converted in one call (int8 with int8 input/output)."""
    from resnet_edge.convert import convert

    out = tmp_path_factory.mktemp("tfl")
    manifests = convert(model_path=trained_resnet20, modes=["float32", "float16", "dynamic", "int8", "int16x8"], out=str(out),
                        data=digits, io="int8", targets=("cpu", "gpu", "nnapi"), parity_samples=200,
                        check_old_runtime=False)
    return out, {m["mode"]: m for m in manifests}


@pytest.fixture(scope="session")
def qat_run(trained_resnet20, tmp_path_factory):
    """`resnet-edge qat` on the trained ResNet-20 (1 epoch, 256 examples a split), run once for the optimization
    and conversion tests: (the path of q.h5, the manifest the command printed)."""
    import json

    from tests.cli_helpers import run

    out = tmp_path_factory.mktemp("qat") / "q.h5"
    r = run("qat", trained_resnet20, "--epochs", "1", "--limit", "256", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    return out, json.loads(r.output)


@pytest.fixture(scope="session")
def pruned_run(trained_resnet20, digits, tmp_path_factory):
    """Magnitude pruning of the trained ResNet-20 to 50% (constant schedule, the first convolution left dense, 1
    epoch, 256 examples a split), run once: (the path of p.keras, the manifest)."""
    from resnet_edge.optimize.prune import prune

    out = tmp_path_factory.mktemp("pruned") / "p.keras"
    m = prune(trained_resnet20, digits, out, sparsity=0.5, schedule="constant", skip=("first",), epochs=1, limit=256,
              verbose=0)
    return out, m


@pytest.fixture(scope="session")
def old_runtime_python(tmp_path_factory):
    env = tmp_path_factory.mktemp("trenv") / "env"
    proc = subprocess.run(["bash", str(ROOT / "tools" / "make_tflite_runtime_env.sh"), str(env)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"tflite-runtime 2.14 does not install here: {proc.stderr.strip()[-200:]}")
    return str(env / "bin" / "python")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 with throwaway keys (tests/sshd.py)."""
    from tests.sshd import SSHD, Server

    if not SSHD:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server; .ci/run installs it)")
    server = Server(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def _server(make, skip: str):
    try:
        server = make()
    except RuntimeError as exc:
        pytest.skip(f"{skip}: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd_without_sftp(tmp_path_factory):
    """OpenSSH's sshd with no ``Subsystem sftp`` line: OpenSSH 9's scp cannot copy to it."""
    from tests.sshd import Server

    yield from _server(lambda: Server(tmp_path_factory.mktemp("sshd-no-sftp"), sftp=False), "no OpenSSH server")


@pytest.fixture(scope="session")
def dropbear(tmp_path_factory):
    """Dropbear (Debian's dropbear-bin) where no sftp-server can be found, as on a board (tests/sshd.py)."""
    from tests.sshd import Dropbear

    yield from _server(lambda: Dropbear(tmp_path_factory.mktemp("dropbear")),
                       "Dropbear not runnable here (apt-get install dropbear-bin; .ci/run installs it)")
