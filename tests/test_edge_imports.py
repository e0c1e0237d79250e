"""The edge side must run on a device without TensorFlow: prove it in a subprocess where TensorFlow,
tf_keras and tfmot cannot be imported."""

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
        import resnet_edge.runtime.runner, resnet_edge.runtime.bench, resnet_edge.runtime.timing
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
