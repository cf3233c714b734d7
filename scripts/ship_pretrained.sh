#!/usr/bin/env bash
# Train, calibrate, evaluate and export the shipped model into src/digitlab/pretrained/ (issues 9, 19).
#
#   scripts/ship_pretrained.sh [extra `digitlab run` options for both members, e.g. --set epochs=12]
#
# The shipped model is the vote of two `strong` models (`digitlab ensemble`): RECIPE, which adds
# issue 9's trust options to the preset (20 epochs, no label smoothing), and RECIPE plus touching
# pairs (issue 19: numbers on forms). Each `digitlab run` trains its model, calibrates it on the
# validation split and evaluates it on the test set; `digitlab ensemble` averages the two, fits the
# vote's own temperature and thresholds on the same split and evaluates it (metrics.json with ECE,
# NLL, risk-coverage; report.html). Its files are then copied into the package, exported to ONNX
# (the serving runtime) and indexed for `predict --neighbours`, and the trust benchmarks are re-run
# on the shipped model. About 70 minutes on 2 cores (training ~15 + ~25, MNIST-C ~12).
# src/digitlab/pretrained/README.md says why each option is there.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs}
NAME=${NAME:-strong-shipped}
RECIPE=(--set outlier_exposure=0.5 --set rendered_digits=12000 --set corruptions=0.25)
PAIRS=(--set touching_pairs=3000)
DEST=src/digitlab/pretrained

"$BIN/digitlab" run --preset strong "${RECIPE[@]}" --name "$NAME-plain" --out "$RUNS" "$@"
"$BIN/digitlab" run --preset strong "${RECIPE[@]}" "${PAIRS[@]}" --name "$NAME-pairs" --out "$RUNS" "$@"
"$BIN/digitlab" ensemble "$RUNS/$NAME-plain" "$RUNS/$NAME-pairs" --name "$NAME" --out "$RUNS"
cp "$RUNS/$NAME/model.keras" "$RUNS/$NAME/config.json" "$RUNS/$NAME/metrics.json" "$DEST/"
rm -f "$DEST/model.onnx" "$DEST/model.onnx.json"
"$BIN/digitlab" export "$DEST" --format onnx
"$BIN/digitlab" neighbours "$DEST" --per-class 1000 --rebuild
"$BIN/python" benchmarks/bench_calibration.py --figures docs --write
"$BIN/python" benchmarks/bench_nondigits.py --montage docs/nondigits.png --write
"$BIN/python" benchmarks/bench_mnist_c.py --montage docs/mnist_c.png --write
"$BIN/python" benchmarks/bench_forms.py --n 200 --write
echo "shipped: $DEST (from $RUNS/$NAME); update $DEST/README.md with the recipe and the numbers above"
