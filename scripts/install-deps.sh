#!/usr/bin/env bash
# Installs the Debian 12 packages spectrain needs to build and test. Idempotent: installs
# only what is missing; waits for the apt lock instead of failing. Run as root.
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also what the test suite needs (Python reference, fuzzing,
#                                    a one-machine Slurm cluster for the sbatch tests, and
#                                    iproute2 for the simulated multi-host cluster)
#   scripts/install-deps.sh --bench  also python3-venv, with which bench/run_model_bench.sh
#                                    makes its PyTorch peer's venv (torch from PyPI)
#   scripts/install-deps.sh --slurm  also Slurm (slurmctld, slurmd, client) and munge, for
#                                    slurm/local-cluster.sh; nothing is started at install
set -euo pipefail
want=(build-essential cmake pkg-config git
      openmpi-bin libopenmpi-dev libscalapack-openmpi-dev libhdf5-openmpi-dev hdf5-tools
      libyaml-dev libopenblas-dev liblapacke-dev libjansson-dev
      libopenblas0-openmp       # OpenBLAS's OpenMP build: one thread pool with our loops
      libdnnl-dev               # oneDNN: the CPU bf16 matrix products (training.bf16)
      libpcre2-dev libutf8proc-dev  # the tokenizer: Unicode regexes, normalization
      bible-kjv-text bible-kjv  # the tiny job's English text (scripts/prepare-tiny-data.sh)
      python3.11-doc python3)   # the main job's second domain (prepare-finetune-data.sh), its summary
slurm=(slurmctld slurmd slurm-client munge)
for arg in "$@"; do
  case "$arg" in
    --test) want+=(clang libclang-rt-14-dev python3-numpy librsvg2-bin chromium "${slurm[@]}"
                   iproute2 util-linux) ;;  # ip netns, tc, nsenter, unshare: tests/cluster/
    --slurm) want+=("${slurm[@]}") ;;
    --bench) want+=(python3-venv) ;;
    *) echo "install-deps: unknown option '$arg' (expected --test, --slurm or --bench)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#want[@]} packages present"
fi
