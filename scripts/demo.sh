#!/usr/bin/env bash
# The demo: sets up and builds Kiln (scripts/setup.sh), then classifies eight ImageNet sample images with
# torchvision's MobileNetV2 built into a Kiln engine (optimizer, fast CPU tactics where available), printing
# the top-5 classes of each.
#
# Usage: bash scripts/demo.sh [IMAGE...]   (default: 8 images from ../shared/data/imagenet-sample)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

data=../shared/data/imagenet-sample
images=("$@")
if [ "${#images[@]}" = 0 ]; then
  if [ ! -d "${data}/images" ]; then
    echo "demo.sh: ${data}/images not found; pass image files as arguments" >&2
    exit 1
  fi
  # Eight classes spread over the 1,000 (the first ones are all fish).
  for file in n01530575_brambling.JPEG n01644373_tree_frog.JPEG n02085620_Chihuahua.JPEG \
              n02504458_African_elephant.JPEG n03000134_chainlink_fence.JPEG n03417042_garbage_truck.JPEG \
              n04037443_racer.JPEG n07753592_banana.JPEG; do
    images+=("${data}/images/${file}")
  done
fi
labels=()
if [ -f "${data}/labels.csv" ]; then labels=(--labels "${data}/labels.csv"); fi

echo
echo "=== build/kiln classify models/mobilenetv2.onnx (${#images[@]} images) ==="
build/kiln classify models/mobilenetv2.onnx "${images[@]}" "${labels[@]}" --top 5
