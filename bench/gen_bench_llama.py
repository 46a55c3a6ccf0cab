"""A random 24-block, width-1024 Llama checkpoint for bench/bench_scan.sh (numpy only).

  python3 bench/gen_bench_llama.py OUT_DIR [--layers 24] [--hidden 1024]

hidden 1024, MLP 2816, 16 heads of 64, 4 KV heads (k/v 256 x 1024), vocab 8192, BF16,
untied lm_head: 24 * 7 + 2 = 170 matrices and 49 norms, about 570 MB. Each matrix is a
low-rank signal plus Gaussian noise, so the SNRs are not all alike. Not committed: it is
written to OUT_DIR (keep it in /tmp)."""
import json
import os
import struct
import sys

import numpy as np


def bf16_bytes(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()


def main():
    out = sys.argv[1]
    args = sys.argv[2:]
    layers = int(args[args.index("--layers") + 1]) if "--layers" in args else 24
    C = int(args[args.index("--hidden") + 1]) if "--hidden" in args else 1024
    F, KV, V = C * 11 // 4, C // 4, 8192
    rng = np.random.default_rng(1234)
    shapes = [("model.embed_tokens.weight", (V, C)), ("model.norm.weight", (C,)), ("lm_head.weight", (V, C))]
    for l in range(layers):
        p = f"model.layers.{l}."
        shapes += [(p + "input_layernorm.weight", (C,)), (p + "post_attention_layernorm.weight", (C,)),
                   (p + "self_attn.q_proj.weight", (C, C)), (p + "self_attn.k_proj.weight", (KV, C)),
                   (p + "self_attn.v_proj.weight", (KV, C)), (p + "self_attn.o_proj.weight", (C, C)),
                   (p + "mlp.gate_proj.weight", (F, C)), (p + "mlp.up_proj.weight", (F, C)),
                   (p + "mlp.down_proj.weight", (C, F))]
    shapes.sort()
    header, off = {}, 0
    for name, shp in shapes:
        n = int(np.prod(shp)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for i, (name, shp) in enumerate(shapes):
            if len(shp) == 1:
                a = 1 + 0.05 * rng.standard_normal(shp, dtype=np.float32)
            else:
                r = 8 + i % 24
                u = rng.standard_normal((shp[0], r), dtype=np.float32)
                v = rng.standard_normal((r, shp[1]), dtype=np.float32)
                a = (u @ v) * (0.02 * (1 + i % 7) / np.sqrt(r * shp[1]))
                a += 0.02 * rng.standard_normal(shp, dtype=np.float32) / np.sqrt(shp[1])
            f.write(bf16_bytes(a))
    print(f"wrote {out}/model.safetensors: {len(shapes)} tensors, {off / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
