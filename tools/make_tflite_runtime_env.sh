#!/usr/bin/env bash
# A small virtual environment with the last tflite-runtime release (2.14, Python <= 3.11) and numpy < 2,
# as many Raspberry Pis have it. tflite-runtime 2.14 was built against numpy 1.x and does not load beside
# numpy 2 (which TensorFlow 2.21's environment uses), so `resnet-edge convert` checks models in this
# environment: point RESNET_EDGE_TFLITE_RUNTIME_PYTHON at its python.
#   bash tools/make_tflite_runtime_env.sh [DIR]      (default: .tflite-runtime-env)
set -euo pipefail
dir=${1:-.tflite-runtime-env}
py=${PYTHON:-python3}
"$py" -m venv "$dir"
"$dir/bin/python" -m pip install -q "numpy<2" "tflite-runtime==2.14.0"
"$dir/bin/python" -c "import tflite_runtime; print('tflite-runtime', tflite_runtime.__version__, 'ready in $dir')"
echo "export RESNET_EDGE_TFLITE_RUNTIME_PYTHON=$(cd "$dir" && pwd)/bin/python"
