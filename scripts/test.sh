#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: install, build, ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh
cd build
set +e
ctest --output-on-failure -j"$(nproc)" "$@" 2>&1 | tee ctest.log
rc=${PIPESTATUS[0]}
set -e
# ctest ends with the list of tests that did not run (the GPU tests skip without a GPU);
# finish with one plain count line after it. Skipped tests count as neither.
summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' ctest.log | tail -1 || true)
if [[ -n $summary ]]; then
  failed=$(sed -E 's/.* ([0-9]+) tests? failed.*/\1/' <<<"$summary")
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$summary")
  skipped=$(grep -c '\*\*\*Skipped' ctest.log || true)
  echo "skipped (no GPU, or a tool missing): $skipped"
  echo "$((total - failed - skipped)) passed, $failed failed"
fi
exit "$rc"
