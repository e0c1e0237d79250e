#!/usr/bin/env bash
# The GPU check of bench and eval, in two halves (never part of the tests or CI: CI has no GPU).
#
#   bash tools/gpu_check.sh prepare   # here, with TensorFlow: trains ResNet-20 on digits (15 epochs), converts it
#                                     # (float32, float16, int8) and a fresh 10-class ResNet-18 (float16, int8) into
#                                     # .gpu-models/, and fetches LiteRT's cp312 wheel and the Vulkan loaders
#                                     # (../shared/gpu/prepare.sh) into .whl/ and .gl/; about 2 minutes, 60 MB
#   bash tools/gpu_check.sh device    # on the lent GPU machine (the device tool's run, carrying .whl, .gl and
#                                     # .gpu-models): bench on the GPU and on the CPU (1 and 4 threads), eval --diff
#                                     # cpu,gpu of every model, and an eval gate on the GPU; output under $OUT
set -u
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
  set -e
  for d in /.gpu-models/ /.whl/ /.gl/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
  run=$(mktemp -d)
  python -m resnet_edge train --model resnet20 --data digits --epochs 15 --out "$run/r20"
  python -m resnet_edge convert "$run/r20/model.keras" --float32 --float16 --int8 --out .gpu-models/
  python -m resnet_edge convert --depth 18 --classes 10 --float16 --int8 --out .gpu-models/
  rm -rf "$run"
  bash ../shared/gpu/prepare.sh
  exit 0 ;;
device) ;;
*) echo "usage: bash tools/gpu_check.sh prepare|device" >&2; exit 2 ;;
esac
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export PYTHONUNBUFFERED=1
M=.gpu-models
P="python3 -m resnet_edge"
L=$OUT/log.txt
run() { echo "\$ resnet-edge $*" | tee -a "$L"; timeout 150 $P "$@" 2>&1 | tee -a "$L"; echo "rc=${PIPESTATUS[0]}" | tee -a "$L"; }
{ date -u; nvidia-smi -L 2>&1; python3 --version; lscpu | grep -E "Model name|^CPU\(s\)"; } >> "$L" 2>&1
R20="$M/model_float32.tflite $M/model_float16.tflite $M/model_int8.tflite"
R18="$M/resnet18_float16.tflite $M/resnet18_int8.tflite"
timeout 200 $P bench $R20 $R18 --accelerator gpu --runs 100 --warmup 10 --json > "$OUT/bench_gpu.json" 2>>"$L"
echo "bench gpu json rc=$?" >> "$L"
timeout 200 $P bench $R20 $R18 --accelerator cpu --threads 1,4 --runs 100 --warmup 10 --json > "$OUT/bench_cpu.json" 2>>"$L"
echo "bench cpu json rc=$?" >> "$L"
run bench $M/model_float32.tflite $M/resnet18_float16.tflite --accelerator gpu --runs 50
for m in model_float32 model_float16 model_int8; do
  run eval $M/$m.tflite --diff cpu,gpu
  timeout 150 $P eval $M/$m.tflite --diff cpu,gpu --json > "$OUT/eval_$m.json" 2>>"$L"
done
for m in resnet18_float16 resnet18_int8; do
  run eval $M/$m.tflite --resize --limit 100 --diff cpu,gpu
done
run eval $M/model_float32.tflite --accelerator gpu --min-accuracy 95
echo done >> "$L"
