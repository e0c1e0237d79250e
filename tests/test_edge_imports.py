"""The edge side must run on a device without TensorFlow: prove it in a subprocess where TensorFlow,
tf_keras and tfmot cannot be imported."""

import json
import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent(
    """
    import sys
    class Block:
        BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked for this test")
    sys.meta_path.insert(0, Block())
    """
)


def run_without_tf(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True)


def test_edge_packages_import_without_tensorflow():
    proc = run_without_tf(
        """
        import resnet_edge, resnet_edge.runtime, resnet_edge.tflite, resnet_edge.targets
        import resnet_edge.arch, resnet_edge.arch.spec, resnet_edge.cli, resnet_edge.io, resnet_edge.ui
        import resnet_edge._child, resnet_edge.tflite.integrity, resnet_edge.tflite.inspect, resnet_edge.tflite.readiness
        import resnet_edge.runtime.runner, resnet_edge.runtime.setting, resnet_edge.runtime.jobs, resnet_edge.harness
        import resnet_edge.measure, resnet_edge.measure.bench, resnet_edge.targets.local
        import resnet_edge.measure.evaluation, resnet_edge.cli.edge, resnet_edge.cli.devices, resnet_edge.cli.render
        import resnet_edge.targets.ssh, resnet_edge.targets.adb, resnet_edge.targets.devices
        import resnet_edge.measure.results, resnet_edge.measure.sweep
        import resnet_edge.tflite.standard, resnet_edge.tflite.apps, resnet_edge.cli.host, resnet_edge.cli.options
        from resnet_edge.runtime import interpreter_class
        interpreter_class()  # a TFLite runtime without TensorFlow
        assert not [m for m in sys.modules if m.split(".")[0] in Block.BLOCKED], "TensorFlow was imported"
        print("ok")
        """
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_models_command_runs_without_tensorflow():
    proc = run_without_tf(
        """
        from resnet_edge.cli import main
        main(["models", "--family", "cifar"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "resnet56" in proc.stdout


def test_host_command_without_tensorflow_says_what_to_install():
    proc = run_without_tf(
        """
        from resnet_edge.cli import main
        main(["build", "--depth", "20", "--out", "/tmp/never-written.keras"])
        """
    )
    assert proc.returncode == 1
    assert "pip install 'resnet-edge[host]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_edge_install_from_a_wheel(tmp_path, converted):
    """The README's device install: a wheel built in the checkout, installed with the edge extra into a fresh
    venv, runs `resnet-edge inspect`, `bench` and `metadata` there without TensorFlow."""
    import os
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parents[1]
    wheels, venv = tmp_path / "dist", tmp_path / "venv"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(root)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-1000:]
    (wheel,) = wheels.glob("resnet_edge-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[edge]"], capture_output=True, text=True,
                         timeout=900)
    if pip.returncode != 0:
        pytest.skip(f"the edge extra's packages do not install here: {pip.stderr.strip()[-200:]}")
    listed = subprocess.run([str(venv / "bin" / "pip"), "list"], capture_output=True, text=True).stdout.lower()
    assert "ai-edge-litert" in listed and "tensorflow" not in listed
    from tests.test_reliability import tile_model

    model = tmp_path / "tile.tflite"
    model.write_bytes(tile_model(1000))
    proc = subprocess.run([str(venv / "bin" / "resnet-edge"), "inspect", str(model)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0 and "not verified" in proc.stdout and "TILE" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([str(venv / "bin" / "resnet-edge"), "bench", str(model), "--runs", "3", "--threads", "1,2",
                           "--json"], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)["records"]
    assert [r["threads"] for r in records] == [1, 2] and all(r["p50_ms"] > 0 and r["peak_rss_init_mb"] > 0 for r in records)
    ours = converted[0] / "model_float32.tflite"
    proc = subprocess.run([str(venv / "bin" / "resnet-edge"), "metadata", str(ours), "--author", "Edge Team", "--out",
                           str(tmp_path / "app.tflite")], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0 and "by Edge Team" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([str(venv / "bin" / "resnet-edge"), "inspect", str(tmp_path / "app.tflite"), "--target", "cpu"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0 and "verified (the checksum" in proc.stdout and "by Edge Team" in proc.stdout, proc.stdout
