#!/usr/bin/env bash
# Train, calibrate, evaluate and export the shipped model into src/digitlab/pretrained/ (issue 9).
#
#   scripts/ship_pretrained.sh [extra `digitlab run` options, e.g. --set epochs=12]
#
# `digitlab run` trains the preset, then calibrates it on the validation split (temperature baked
# into model.keras, thresholds in config.json) and evaluates it on the test set (metrics.json with
# ECE, NLL, risk-coverage; report.html with the reliability and risk-coverage figures). The model
# files are then copied into the package, exported to ONNX (the serving runtime) and indexed for
# `predict --neighbours`, and the three trust benchmarks are re-run on the shipped model. About 35
# minutes on 2 cores (training ~15, MNIST-C ~12). RECIPE adds issue 9's trust options to the `strong`
# preset (20 epochs, no label smoothing);
# src/digitlab/pretrained/README.md says why each is there.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs}
NAME=${NAME:-strong-shipped}
RECIPE=(--set outlier_exposure=0.5 --set rendered_digits=12000 --set corruptions=0.25)
DEST=src/digitlab/pretrained

"$BIN/digitlab" run --preset strong "${RECIPE[@]}" --name "$NAME" --out "$RUNS" "$@"
cp "$RUNS/$NAME/model.keras" "$RUNS/$NAME/config.json" "$RUNS/$NAME/metrics.json" "$DEST/"
rm -f "$DEST/model.onnx" "$DEST/model.onnx.json"
"$BIN/digitlab" export "$DEST" --format onnx
"$BIN/digitlab" neighbours "$DEST" --per-class 1000 --rebuild
"$BIN/python" benchmarks/bench_calibration.py --figures docs --write
"$BIN/python" benchmarks/bench_nondigits.py --montage docs/nondigits.png --write
"$BIN/python" benchmarks/bench_mnist_c.py --montage docs/mnist_c.png --write
echo "shipped: $DEST (from $RUNS/$NAME); update $DEST/README.md with the recipe and the numbers above"
