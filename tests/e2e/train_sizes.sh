#!/usr/bin/env bash
# Sizes that overflow or exhaust memory are input errors found before anything big is
# allocated (issue 18.2): exit 2 (never 134 or an OOM kill) with the predicted bytes and the
# key to change, one test per class. Products of job keys (accumulation x batch, batch x
# sequence, epochs x steps per epoch) are refused by `check` and `train` alike; the memory
# formula (shards and optimizer state, gathered units, activations, evaluation activations,
# step inputs) against the host's memory, here pretended small with the test hook
# SPECTRAIN_TEST_HOST_MEMORY_BYTES, and once for real with a config.json whose matrices no
# host holds; token data, a Spectrum YAML and a job file that are directories say what was
# expected.
source "$(dirname "$0")/lib/train_common.sh"
set +e # exit statuses are checked one by one
W=$TEST_TMP/train_sizes
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
fail=0
# expect NAME PATTERN... -- COMMAND...: exit 2 and every (fixed-string) pattern in the output
expect() {
  local name=$1 pats=()
  shift
  while [[ $1 != -- ]]; do pats+=("$1"); shift; done
  shift
  "$@" > "$W/$name.log" 2>&1
  local rc=$?
  [[ $rc == 2 ]] || { echo "FAIL: $name: exit $rc, expected 2"; cat "$W/$name.log"; fail=1; return; }
  for p in "${pats[@]}"; do
    grep -qF -- "$p" "$W/$name.log" || { echo "FAIL: $name: no '$p' in:"; cat "$W/$name.log"; fail=1; }
  done
}
train() { # one rank without a launcher (a singleton MPI start is faster), else mpiexec
  if [[ ${NP:-1} == 1 ]]; then "$SPECTRAIN" train "$W/job.yaml" --resume none "$@"
  else $MPIEXEC -n "$NP" "$SPECTRAIN" train "$W/job.yaml" --resume none "$@"; fi
}

# products of job keys: check and train, before the model is read
for cmd in check train; do
  expect "accum_$cmd" "training.gradient_accumulation_steps 8000000000 x training.per_device_train_batch_size 4 = 3.2e+10 sequences per rank and step: at most 2147483647" \
    "lower gradient_accumulation_steps" -- \
    $([[ $cmd == check ]] && echo "$SPECTRAIN check $W/job.yaml" || echo train) --set training.gradient_accumulation_steps=8000000000
done
expect batch_seq "training.per_device_train_batch_size 100000000 x training.max_seq_length 16 = 1.6e+09 tokens per micro-batch" \
  "at most 1073741824 (2^30)" -- train --set training.per_device_train_batch_size=100000000
expect eval_seq "training.per_device_eval_batch_size 8000000000 x training.max_seq_length 16" \
  "lower per_device_eval_batch_size" -- train --set training.per_device_eval_batch_size=8000000000
expect epochs "training.num_train_epochs 1e+300 x 625 steps per epoch (2500 samples / global batch 4) = 6.25e+302 optimizer steps: at most 9e15" \
  -- train --set training.max_steps=-1 --set training.num_train_epochs=1e300

# the memory formula against a host pretended to have 64 MiB: the largest part names the key
export SPECTRAIN_TEST_HOST_MEMORY_BYTES=67108864
expect mem_act "this job needs about" "of host memory per rank" "more than its 64.00 MiB (SPECTRAIN_TEST_HOST_MEMORY_BYTES)" \
  "The largest part is activations of a micro-batch of 2048 x 16 tokens: lower training.per_device_train_batch_size" \
  "or set training.gradient_checkpointing: true" -- train --set training.per_device_train_batch_size=2048
expect mem_eval "The largest part is evaluation activations of 4096 x 16 tokens: lower training.per_device_eval_batch_size" \
  -- train --set training.per_device_eval_batch_size=4096
expect mem_inputs "step inputs 518.80 MiB" \
  "The largest part is the step's token buffers (training.gradient_accumulation_steps 1000000 x per_device_train_batch_size 4 x max_seq_length 16 tokens per rank): lower training.gradient_accumulation_steps" \
  -- train --set training.gradient_accumulation_steps=1000000
NP=2 expect mem_ranks "for the 2 rank(s) on this host, more than its 64.00 MiB" \
  -- train --set training.per_device_train_batch_size=1024
# gathered units: a config.json with a 10^6-token vocabulary (two 128 MB matrices) over a few
# KiB of weights (the formula needs only the config), 2 ranks, one trainable norm, nothing
# resharded; 200 MiB
mkdir -p "$W/wide"
cp "$FIXTURES/model/llama/model.safetensors" "$W/wide/"
$PY -c 'import json,sys; c=json.load(open(sys.argv[1])); c["vocab_size"]=1000000; json.dump(c,open(sys.argv[2],"w"))' \
  "$FIXTURES/model/llama/config.json" "$W/wide/config.json"
printf 'unfrozen_parameters:\n- ^model.norm.weight$\n' > "$W/norm.yaml"
SPECTRAIN_TEST_HOST_MEMORY_BYTES=209715200 NP=2 expect mem_gather \
  "The largest part is gathered units (sharding.prefetch 1, limit_all_gathers true, reshard_after_forward false): lower sharding.prefetch, or set sharding.limit_all_gathers and sharding.reshard_after_forward to true" \
  -- train --set model.path="$W/wide" --set spectrum.unfrozen_parameters="$W/norm.yaml" \
  --set sharding.reshard_after_forward=false --set training.per_device_train_batch_size=1 \
  --set training.per_device_eval_batch_size=1 --set data.validation=null
unset SPECTRAIN_TEST_HOST_MEMORY_BYTES

# for real: a config.json of 10^6-wide matrices (~90 TiB of state); no host has that
mkdir -p "$W/huge"
cp "$FIXTURES/model/llama/model.safetensors" "$W/huge/"
$PY -c 'import json,sys; c=json.load(open(sys.argv[1])); c["hidden_size"]=c["intermediate_size"]=1000000; json.dump(c,open(sys.argv[2],"w"))' \
  "$FIXTURES/model/llama/config.json" "$W/huge/config.json"
expect mem_real "TiB of host memory per rank" "(physical memory)" \
  "The largest part is parameter shards, gradients and AdamW state" "run on more ranks or hosts" \
  -- train --set model.path="$W/huge"
grep -q "cgroup limit\|physical memory" "$W/mem_real.log" || fail=1

# directories where files belong
mkdir -p "$W/dir.jsonl" "$W/dirtxt"
expect dir_train "$W/dir.jsonl: is a directory; expected a JSONL file of token records" -- train --set data.train="$W/dir.jsonl"
expect dir_val "$W/dirtxt: is a directory; expected a text file (read as bytes) or a token file" -- train --set data.validation="$W/dirtxt"
expect dir_yaml "$W/dirtxt: is a directory; expected a Spectrum unfrozen_parameters YAML file" -- train --set spectrum.unfrozen_parameters="$W/dirtxt"
expect dir_job "$W/dirtxt: is a directory; expected a job file (YAML" -- "$SPECTRAIN" train "$W/dirtxt"
expect dir_eval "$W/dirtxt: is a directory; expected a text file" -- "$SPECTRAIN" eval --model "$FIXTURES/model/llama" --data "$W/dirtxt"
[[ ! -e $W/out/ckpt-1.h5 ]] || { echo "FAIL: a refused job trained"; fail=1; }
((fail)) && exit 1
echo "ok: sizes that overflow or do not fit are refused up front naming the key"
