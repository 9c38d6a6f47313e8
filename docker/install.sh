#!/usr/bin/env bash
# The one install recipe shared by the Docker images and CI (which runs it into a scratch venv
# so a broken image recipe fails CI even though no Docker engine runs there).
#   docker/install.sh <python> [cpu|gpu]
set -euo pipefail
py="${1:-python3}"
flavour="${2:-cpu}"
root="$(cd "$(dirname "$0")/.." && pwd)"

"$py" -m pip install --disable-pip-version-check -q --upgrade pip
if [ "$flavour" = "gpu" ]; then
  # onnxruntime and onnxruntime-gpu share one import package: install the project without the
  # CPU build, then the GPU build.
  "$py" -m pip install --disable-pip-version-check -q "$root[gpu,triton,c2pa]"
  "$py" -m pip uninstall -y -q onnxruntime || true
  "$py" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps \
    "onnxruntime-gpu>=1.31"
else
  # [triton]: the same image serves as a worker of the shared inference tier (--inference-url);
  # [c2pa]: `swaprtc swap` in the image signs its outputs with C2PA content credentials.
  "$py" -m pip install --disable-pip-version-check -q "$root[triton,c2pa]"
fi
# Smoke check: the package imports and the CLI answers.
"$py" -c "import swaprtc.cli, onnxruntime, aiortc, av, cv2, tritonclient.grpc, c2pa; print('swaprtc install ok, ort', onnxruntime.__version__, onnxruntime.get_available_providers())"
