"""bench and eval on an emulated arm64 Raspberry Pi over SSH (tools/pi_device.py: Debian bookworm arm64 under
qemu user mode, its own sshd, Python 3.11 and the aarch64 LiteRT wheel, no TensorFlow). Slow and needs root
and the built system, so it runs by hand: sudo python tools/pi_device.py build; python -m pytest -m slow
tests/test_pi.py. Same predictions as on x86 (int8 within one quantization step, float32 within 1e-4); latencies
are marked as emulated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_edge.cli import cli

ROOT = Path(os.environ.get("RESNET_EDGE_PI_ROOT", "/var/tmp/resnet-edge-pi"))
TOOL = Path(__file__).resolve().parents[1] / "tools" / "pi_device.py"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not (ROOT / "opt/litert/bin/python").exists(),
                                 reason=f"needs root and the emulated Pi: sudo python tools/pi_device.py build --root {ROOT}")]


@pytest.fixture(scope="module")
def pi():
    subprocess.run([sys.executable, str(TOOL), "start", "--root", str(ROOT)], check=True, timeout=300)
    keys = Path(str(ROOT) + ".keys")
    old = os.environ.get("RESNET_EDGE_SSH_CONFIG")
    os.environ["RESNET_EDGE_SSH_CONFIG"] = str(keys / "ssh_config")
    yield (keys / "target").read_text().strip()
    subprocess.run([sys.executable, str(TOOL), "stop", "--root", str(ROOT)], timeout=120)
    if old is None:
        os.environ.pop("RESNET_EDGE_SSH_CONFIG", None)
    else:
        os.environ["RESNET_EDGE_SSH_CONFIG"] = old


@pytest.fixture(scope="module")
def models(converted):
    out, m = converted
    return {mode: out / m[mode]["file"]["path"] for mode in m}


def test_device_check_and_bench_on_the_emulated_pi(pi, models):
    facts = json.loads(CliRunner().invoke(cli, ["devices", "check", pi, "--json", "--timeout", "300"]).output)
    assert facts["arch"] == "aarch64" and facts["emulated"] is True and facts["runtimes"]["litert"]
    r = CliRunner().invoke(cli, ["bench", str(models["int8"]), str(models["float32"]), "--target", pi, "--runs", "3",
                                 "--warmup", "1", "--threads", "1", "--timeout", "900"])
    assert r.exit_code == 0, r.output
    assert "EMULATED" in r.output and "its latencies are not a device's" in r.output


def _here_and_there(pi, model, digits, limit=None):
    """Scores of the digits test split (``limit``: its first images) here (x86) and on the emulated Pi (arm64),
    XNNPACK at one thread."""
    from resnet_edge.measure.bench import predict
    from resnet_edge.measure.evaluation import model_inputs, preprocessing
    from resnet_edge.runtime.runner import check_model
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.targets import resolve

    c = check_model(model)
    x, _ = model_inputs(digits, "test", c["inputs"], c["outputs"], preprocessing(c["info"], digits), limit=limit)
    [(here, _)] = predict(c, [Setting(threads=1)], x)
    [(there, _)] = predict(c, [Setting(threads=1)], x, target=resolve(pi), timeout=900)
    assert there.shape == here.shape
    return c, here, there


def test_int8_on_arm64_agrees_with_x86_within_a_quantization_step(pi, models, digits):
    """Not bit-identity, which two runtime versions on two CPUs never promised (their integer kernels may round a
    requantization differently: seen on an Intel Xeon with AVX-512 VNNI and AMX, LiteRT 2.3.0, against LiteRT 2.1.6
    on the emulated Cortex-A76), but what holds: every score within one quantization step of the int8 softmax, and
    the same class for every image but near-ties (at most 1% of them)."""
    from resnet_edge.metrics import agreement

    c, here, there = _here_and_there(pi, models["int8"], digits)
    a = agreement(here, there, c["outputs"][0]["integer_step"])
    print(f"\nint8 x86 vs arm64 over {a['n']} test images: top-1 agreement {a['top1_agreement']:.2%}, at most "
          f"{a['max_diff_steps']} step(s), {a['scores_differing']} of {a['scores']} scores differ on "
          f"{a['inputs_differing']} images")
    assert a["step"] == 1 / 256 and a["max_diff_steps"] <= 1
    assert a["top1_agreement"] >= 0.99


def test_float32_on_arm64_agrees_with_x86(pi, models, digits):
    _, here, there = _here_and_there(pi, models["float32"], digits, limit=100)  # float32 is slow under qemu
    assert np.abs(here - there).max() < 1e-4 and (here.argmax(1) == there.argmax(1)).all()


def test_eval_on_the_emulated_pi_equals_eval_here(pi, models):
    here = json.loads(CliRunner().invoke(cli, ["eval", str(models["int8"]), "--json", "--limit", "200"]).output)
    r = CliRunner().invoke(cli, ["eval", str(models["int8"]), "--json", "--limit", "200", "--target", pi,
                                 "--timeout", "900"])
    assert r.exit_code == 0, r.output
    there = json.loads(r.output)
    assert there["top1"] == here["top1"] and there["confusion_matrix"] == here["confusion_matrix"]


def test_eval_of_images_that_live_on_the_emulated_pi(pi, models, digits):
    """device-folder:DIR: PNG files on the Pi, decoded there by Pillow (aarch64): the same accuracy and
    confusions as eval --data digits here."""
    from PIL import Image

    folder = ROOT / "root" / "digits-test"
    test = digits.split("test").take(100)
    for i, (img, label) in enumerate(zip(test.x, test.y)):
        (folder / digits.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / digits.classes[label] / f"{i:04d}.png")
    here = json.loads(CliRunner().invoke(cli, ["eval", str(models["int8"]), "--json", "--limit", "100"]).output)
    r = CliRunner().invoke(cli, ["eval", str(models["int8"]), "--json", "--target", pi, "--data",
                                 "device-folder:/root/digits-test", "--timeout", "900"])
    assert r.exit_code == 0, r.output
    there = json.loads(r.output)
    assert there["n"] == 100 and there["top1"] == here["top1"]
    assert there["confusion_matrix"] == here["confusion_matrix"]
