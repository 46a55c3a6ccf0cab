#!/usr/bin/env bash
# The main job from a fresh Debian 12 machine (as root): install what is missing, build,
# then train the embedded default job (jobs/tiny.yaml) on 2 ranks.
#   scripts/run-main.sh [extra `spectrain train` options, e.g. --set training.max_steps=50]
# Outputs go to out/tiny/ (model, data, run: metrics.jsonl, final model, checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
scripts/prepare-tiny-data.sh out/tiny/data
source scripts/env.sh
ranks=${SPECTRAIN_RANKS:-2}
echo "run-main: training jobs/tiny.yaml on $ranks ranks (outputs in out/tiny/run)"
mpiexec -n "$ranks" --oversubscribe --bind-to none build/spectrain train jobs/tiny.yaml "$@"
