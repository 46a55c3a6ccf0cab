#!/usr/bin/env python3
"""Check (by hand, needs PyPI torch + transformers): spectrain's JSONL target convention
equals Hugging Face's label shifting inside the causal-LM loss.

spectrain (src/io/data.c, fill_one_) turns a record (input_ids, labels) of length n <= T into
  inputs[t]  = input_ids[t] for t < n, else 0
  targets[t] = labels[t + 1] for t + 1 < n, else -100
and the loss is the mean cross-entropy over targets != -100 (the count of counted targets
normalises the loss). This script builds those arrays exactly that way, takes logits from a
small random LlamaForCausalLM and compares our loss with model(input_ids, labels=labels).loss.
Run: python3 scripts/check_label_shift.py    (prints the losses; exits 1 on a mismatch)
"""
import sys

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

IGNORE = -100


def spectrain_sample(input_ids, labels, T):
    """The arrays data_fill writes for one JSONL record (after truncation to T)."""
    ids = list(input_ids)[:T]
    lab = list(labels if labels is not None else input_ids)[:T]
    n = len(ids)
    inputs = np.zeros(T, dtype=np.int64)
    targets = np.full(T, IGNORE, dtype=np.int64)
    inputs[:n] = ids
    for t in range(T):
        if t + 1 < n:
            targets[t] = lab[t + 1]
    return inputs, targets


def spectrain_loss(logits, targets):
    """Mean cross-entropy over counted targets (logits: T x V)."""
    logits = logits.astype(np.float64)
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    keep = targets != IGNORE
    return -logp[np.arange(len(targets))[keep], targets[keep]].mean(), int(keep.sum())


def main():
    torch.manual_seed(0)
    V, T = 97, 16
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).eval()
    rng = np.random.default_rng(1)
    worst = 0.0
    cases = []
    for n in (2, 5, 11, 16, 23):  # 23 > T: truncated, as a tokenizer with max_length=T does
        ids = rng.integers(0, V, n).tolist()
        cases.append((ids, None))                                  # labels = input_ids
        lab = list(ids)
        lab[: n // 2] = [IGNORE] * (n // 2)                        # prompt masked (SFT)
        cases.append((ids, lab))
    for ids, lab in cases:
        n = len(ids)
        inputs, targets = spectrain_sample(ids, lab, T)
        with torch.no_grad():
            x = torch.tensor([ids[:T]])
            y = torch.tensor([(lab if lab is not None else ids)[:T]])
            hf = model(input_ids=x, labels=y).loss.item()
            # logits of our padded inputs: causal, so positions < n do not see the padding
            logits = model(input_ids=torch.from_numpy(inputs)[None]).logits[0].numpy()
        ours, count = spectrain_loss(logits, targets)
        rel = abs(ours - hf) / abs(hf)
        worst = max(worst, rel)
        print(f"n={n:2d} labels={'masked' if lab else 'ids   '} counted={count:2d} "
              f"hf={hf:.6f} spectrain={ours:.6f} rel={rel:.2e}")
    print(f"worst relative difference {worst:.2e}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
