#!/usr/bin/env python3
"""The peer of bench/bench_model.c: the same Llama model (transformers LlamaForCausalLM,
fp32 parameters, sdpa attention), batch and sequence length trained with torch.optim.AdamW
and clip_grad_norm_ on the CPU with the same thread count; full training and only the top
fraction of blocks trainable (requires_grad False elsewhere). --precision bf16 runs the
forward and the loss under torch.autocast("cpu", dtype=torch.bfloat16) (fp32 master
weights, AdamW in fp32), as a PyTorch user trains in mixed precision on a CPU.
--roofline N first times an N^3 matmul in fp32 and in bf16 (the GEMM roofline).
Prints
  "RESULT gemm torch PRECISION N gflops_wall gflops_per_cpu_second" and
  "RESULT torch PRECISION MODE fwd_ms bwd_ms opt_ms step_ms tokens_per_s 0 cpu_ms" lines."""
import argparse
import contextlib
import os
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def roofline(n, dtype, reps=5):
    """The fastest of reps n^3 products C = A B^T, by wall time and per CPU-second."""
    a = (torch.arange(n * n, dtype=torch.float32).reshape(n, n) % 7 * 0.1).to(dtype)
    b = (torch.arange(n * n, dtype=torch.float32).reshape(n, n) % 5 * 0.1).to(dtype)
    torch.matmul(a, b.t())
    bw = bc = 1e30
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        torch.matmul(a, b.t())
        bw, bc = min(bw, time.perf_counter() - t0), min(bc, time.process_time() - c0)
    return 2.0 * n ** 3 / bw / 1e9, 2.0 * n ** 3 / bc / 1e9


def run(args, top_frac, mode):
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.ffn,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
                      max_position_embeddings=args.seq, rms_norm_eps=1e-5,
                      tie_word_embeddings=bool(args.tied), attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).float()
    model.train()
    L = args.layers
    top = max(1, int(top_frac * L + 0.5))  # as bench_model.c
    for n, p in model.named_parameters():
        if top_frac < 1.0:
            p.requires_grad_(any(n.startswith("model.layers.%d." % l) for l in range(L - top, L)))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim == 2]
    no_decay = [p for n, p in params if p.ndim != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
    bf16 = args.precision == "bf16"
    g = torch.Generator().manual_seed(7)
    best = None  # the fastest timed step (wall) and the least CPU time of a step
    best_cpu = 1e30
    for s in range(args.warmup + args.steps):
        ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
        c0, t0 = time.process_time(), time.perf_counter()
        opt.zero_grad(set_to_none=False)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            loss = model(input_ids=ids, labels=ids).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        t3, c3 = time.perf_counter(), time.process_time()
        if s >= args.warmup:
            if best is None or t3 - t0 < sum(best):
                best = (t1 - t0, t2 - t1, t3 - t2)
            best_cpu = min(best_cpu, c3 - c0)
        if s == 0:
            print("torch %s %s: first-step loss %.4f" % (args.precision, mode, loss.item()),
                  flush=True)
    f, b, o = best
    st = f + b + o
    print("RESULT torch %s %s %.2f %.2f %.2f %.2f %.1f 0 %.2f" % (
        args.precision, mode, 1e3 * f, 1e3 * b, 1e3 * o, 1e3 * st, args.batch * args.seq / st,
        1e3 * best_cpu), flush=True)
    print("  torch     %s %-4s fwd %8.1f ms  bwd %8.1f ms  opt %6.1f ms  step %8.1f ms  %8.0f "
          "tokens/s  cpu %.1f ms" % (args.precision, mode, 1e3 * f, 1e3 * b, 1e3 * o, 1e3 * st,
                                     args.batch * args.seq / st, 1e3 * best_cpu), flush=True)


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(layers=8, hidden=256, ffn=704, heads=8, kv_heads=4, vocab=256, batch=4,
                     seq=256, steps=5, warmup=1, roofline=0).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--tied", action="store_true", help="tie lm_head to the embedding")
    ap.add_argument("--top-frac", type=float, default=0.25)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("  torch %s, %d threads, %s, oneDNN %s" % (
        torch.__version__, torch.get_num_threads(),
        "MKL" if torch.backends.mkl.is_available() else "no MKL",
        "yes" if torch.backends.mkldnn.is_available() else "no"), flush=True)
    if args.roofline > 0:
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            w, c = roofline(args.roofline, dt)
            print("RESULT gemm torch %s %d %.2f %.2f" % (name, args.roofline, w, c))
            print("  torch %s matmul %d^3: %.1f GFLOP/s, %.1f GFLOP per CPU-second" % (
                name, args.roofline, w, c), flush=True)
    if args.steps > 0:
        run(args, 1.0, "full")
        run(args, args.top_frac, "top")


if __name__ == "__main__":
    main()
