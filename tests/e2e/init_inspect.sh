#!/usr/bin/env bash
# spectrain init -> inspect round trip for a Llama-shaped and a Qwen3-shaped model (single
# file and sharded): inspect must report exactly the tensors and parameter counts that
# config.json implies, computed here independently from config.json; plus exit codes and
# messages for paths that are not model directories.
set -euo pipefail
PY=/usr/bin/python3
[[ -x $PY ]] || { echo "no /usr/bin/python3: skipped"; exit 77; }
W=$TEST_TMP/init_inspect.$$
rm -rf "$W"; mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

"$SPECTRAIN" init --out "$W/llama" --preset tiny-llama --seed 1 \
  --set rope_scaling.rope_type=llama3 --set rope_scaling.factor=8 --set rope_scaling.low_freq_factor=1 \
  --set rope_scaling.high_freq_factor=4 --set rope_scaling.original_max_position_embeddings=256
"$SPECTRAIN" init --out "$W/qwen3" --preset tiny-qwen3 --seed 2 --dtype bf16 --max-shard-bytes 300KB
"$SPECTRAIN" init --out "$W/qwen2" --preset tiny-qwen2 --set num_hidden_layers=2 --set tie_word_embeddings=false
for m in llama qwen3 qwen2; do
  "$SPECTRAIN" inspect "$W/$m" --json --tensors > "$W/$m.json"
  "$SPECTRAIN" inspect "$W/$m" --tensors > "$W/$m.txt"
done

$PY - "$W" <<'PYEOF'
import json, re, sys
W = sys.argv[1]

def expected(cfg):
    """Tensor shapes a Llama/Qwen config implies (transformers' module layout)."""
    C, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    t = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C]}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = [V, C]
    for l in range(L):
        p = f"model.layers.{l}."
        t.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                  p + "self_attn.q_proj.weight": [H * D, C], p + "self_attn.k_proj.weight": [KV * D, C],
                  p + "self_attn.v_proj.weight": [KV * D, C], p + "self_attn.o_proj.weight": [C, H * D],
                  p + "mlp.gate_proj.weight": [F, C], p + "mlp.up_proj.weight": [F, C],
                  p + "mlp.down_proj.weight": [C, F]})
        if cfg["model_type"] == "qwen2":
            for x, n in (("q", H * D), ("k", KV * D), ("v", KV * D)):
                t[p + f"self_attn.{x}_proj.bias"] = [n]
        if cfg["model_type"] == "qwen3":
            t[p + "self_attn.q_norm.weight"] = [D]
            t[p + "self_attn.k_norm.weight"] = [D]
    return t

def numel(s):
    n = 1
    for d in s:
        n *= d
    return n

def mtype(name):
    mod = re.sub(r"\.(weight|bias)$", "", name)
    parts = mod.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[i + 1:])
    return mod

fails = 0
for m, dtype, esize in (("llama", "F32", 4), ("qwen3", "BF16", 2), ("qwen2", "F32", 4)):
    cfg = json.load(open(f"{W}/{m}/config.json"))
    got = json.load(open(f"{W}/{m}.json"))
    exp = expected(cfg)
    shapes = {t["name"]: t["shape"] for t in got["tensors"]}
    if shapes != exp:
        print(m, "tensor shapes differ:",
              sorted(set(shapes) ^ set(exp)) or [k for k in exp if exp[k] != shapes.get(k)])
        fails += 1
    if any(t["dtype"] != dtype or t["bytes"] != numel(t["shape"]) * esize for t in got["tensors"]):
        print(m, "dtype/bytes wrong"); fails += 1
    total = sum(numel(s) for s in exp.values())
    if got["total_params"] != total or got["n_tensors"] != len(exp):
        print(m, "totals", got["total_params"], total, got["n_tensors"], len(exp)); fails += 1
    bytype = {}
    for n, s in exp.items():
        bytype[mtype(n)] = bytype.get(mtype(n), 0) + numel(s)
    if got["params_by_type"] != bytype:
        print(m, "params_by_type", got["params_by_type"], bytype); fails += 1
    if got["config"]["model_type"] != cfg["model_type"] or got["config"]["hidden_size"] != cfg["hidden_size"]:
        print(m, "config"); fails += 1
    txt = open(f"{W}/{m}.txt").read()
    if f"{total}" not in txt or "model.layers.0.mlp.down_proj.weight" not in txt:
        print(m, "text output lacks the total or a tensor"); fails += 1
llama = json.load(open(f"{W}/llama.json"))
if llama["config"]["rope_type"] != "llama3" or len(json.load(open(f"{W}/qwen3.json"))["files"]) < 2:
    print("rope_type or sharding not as asked"); fails += 1
sys.exit(1 if fails else 0)
PYEOF

# exit codes and messages
expect_fail() { # CODE NEEDLE CMD...
  local code=$1 needle=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [[ $rc == "$code" ]] || { echo "expected exit $code, got $rc: $*"; echo "$out"; exit 1; }
  grep -qF -- "$needle" <<<"$out" || { echo "expected '$needle' in: $out"; exit 1; }
}
expect_fail 2 "no such file" "$SPECTRAIN" inspect "$W/none"
mkdir -p "$W/empty"
expect_fail 2 "not a model directory" "$SPECTRAIN" inspect "$W/empty"
printf '\x89HDF\r\n\x1a\n0000000000' > "$W/ckpt.h5"
expect_fail 2 "HDF5" "$SPECTRAIN" inspect "$W/ckpt.h5"
expect_fail 2 "already holds a model" "$SPECTRAIN" init --out "$W/llama" --preset tiny-llama
expect_fail 2 "llama, mistral, qwen2, qwen3" "$SPECTRAIN" init --out "$W/x" --preset tiny-llama --set model_type=gpt2
cp "$W/qwen2/config.json" "$W/llama/config.json"
expect_fail 2 "is missing" "$SPECTRAIN" inspect "$W/llama"
# a bare safetensors file
"$SPECTRAIN" inspect "$W/qwen2/model.safetensors" | grep -q "total"
echo "init/inspect round trip ok"
