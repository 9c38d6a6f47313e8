#!/usr/bin/env bash
# The GPU measurement in one run, for a session lent the device machine (docs/GPU.md, issue 9 §6).
# Run from the repository root on the device, after onnxruntime-gpu is installed into /tmp/site
# (shared/gpu/device-ort.sh install), carrying .cache/models (the small embedded models):
#     bash tools/gpu_device_bench.sh            # writes $OUT/bench-<date>-gpu.json and logs
# Needs only what the device image has: python3 with torch, onnx, numpy, opencv; no aiortc/PyAV.
set -euo pipefail
OUT=${OUT:-/tmp/gpu-bench}
MODELS=${MODELS:-.cache/models}
STREAMS=${STREAMS:-1,4,16,64}
SECONDS_PER_LEVEL=${SECONDS_PER_LEVEL:-5}
export SWAPRTC_STANDINS_DIR=${SWAPRTC_STANDINS_DIR:-/tmp/standins}
export PYTHONPATH="/tmp/site:server${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
nvidia-smi -L | tee "$OUT/gpu.txt" || true
python3 -c "import onnxruntime as o; o.preload_dlls(); print(o.__version__, o.get_available_providers())" \
  | tee "$OUT/onnxruntime.txt"
# Random-weight stand-ins with the real architectures, built with the device's own torch.
[ -f "$SWAPRTC_STANDINS_DIR/inswapper_128.onnx" ] \
  || python3 tools/build_standins.py --out "$SWAPRTC_STANDINS_DIR" --no-time 2>&1 | tail -12
# The fp16 stand-in needs onnxconverter-common (pure Python): used when its wheel is carried in wheels/.
if ls wheels/onnxconverter_common-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-deps --no-index --target /tmp/site wheels/onnxconverter_common-*.whl
  python3 tools/build_standins.py --out "$SWAPRTC_STANDINS_DIR" --fp16 || true
fi
run() {  # $1: name, rest: extra flags
  local name=$1; shift
  python3 -m swaprtc bench --suite gpu --weights standins --models-dir "$MODELS" --no-auto-download \
    --providers CUDA,CPU --streams "$STREAMS" --seconds "$SECONDS_PER_LEVEL" --frames 60 \
    --output "$OUT/$name.json" "$@" 2> "$OUT/$name.log" > /dev/null || echo "$name failed (see $name.log)"
}
run "bench-$(date -u +%F)-gpu"                 # defaults: io binding, CUDA graphs, fp16 auto
run "bench-$(date -u +%F)-gpu-fp32-plain" --fp16 off --io-binding off --no-cuda-graph
ls -la "$OUT"
