#!/usr/bin/env bash
# Train both estimators from the raw StatLib file and print their held-out metrics.
#   scripts/train_all.sh [DATA] [OUT_DIR]   (defaults: ../shared/data/cal_housing.data, /tmp/housing-models)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/cal_housing.data}"
out="${2:-/tmp/housing-models}"
python="${PYTHON:-.venv/bin/python}"
for estimator in hgb svr; do
  "$python" -m predictor.train --model_dir "$out/$estimator" --data "$data" --estimator "$estimator"
done
