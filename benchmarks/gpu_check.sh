#!/usr/bin/env bash
# A GPU check, on a machine with a GPU (from the repository root, after `make venv`):
#   bash benchmarks/gpu_check.sh [images]
# Prints, in one run:
#   1. the GPUs TensorFlow sees, and the precision --precision auto takes there;
#   2. VGG16 extraction images/s per --precision at 224 px (benchmarks/image_features.py, part 5), and (2b) the same
#      for the KerasHub backbones' architectures (--backbones; needs Requirements-hub.txt);
#   3. the input pipeline's images/s (decode + resize), to compare with 2: is the GPU kept fed?
#   4. a head's training step with and without XLA, per precision, pooled (512) and flattened (25,088) features;
#   5. `make demo`'s wall time (the demo data set is generated first when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
IMAGES=${1:-512}
export TF_CPP_MIN_LOG_LEVEL=2

echo "== 1. devices"
$PY - <<'PY'
import tensorflow as tf
from emorec.precision import native_support, resolve_precision
gpus = tf.config.list_physical_devices("GPU")
print("GPUs:", [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus] or "none")
print("native:", native_support(), "-> --precision auto runs", resolve_precision("auto"))
PY

echo "== 2. extraction images/s per precision (VGG16, 224 px, $IMAGES images)"
$PY benchmarks/image_features.py --images "$IMAGES" --image-size 224 2>/dev/null  # JSON: "precision" per precision

echo "== 2b. extraction images/s per KerasHub backbone and precision (real sizes, random weights, 224 px)"
if $PY -c "import keras_hub" 2>/dev/null; then
    $PY benchmarks/image_features.py --backbones vgg16 clip vit siglip dinov2 resnet50 efficientnet_b0 densenet121 --images "$IMAGES" \
        --precisions float32 bfloat16 float16 2>/dev/null
else
    echo "KerasHub is not installed here (pip install -r Requirements-hub.txt): skipped"
fi

echo "== 3. input pipeline images/s (decode + resize to 224 px)"
make data >/dev/null
$PY benchmarks/input_pipeline.py --image-size 224 --images 2000 2>&1 | grep -E "images/s|JPEGs"

echo "== 4. a head's training step, with and without XLA"
for features in 512 25088; do
    $PY benchmarks/xla_step.py --features "$features" --precisions float32,bfloat16,float16 2>&1 | grep -E "device|XLA"
done

echo "== 5. make demo"
start=$(date +%s)
make demo >/tmp/emorec-gpu-check-demo.log 2>&1
echo "make demo: $(( $(date +%s) - start )) s (its log: /tmp/emorec-gpu-check-demo.log)"
