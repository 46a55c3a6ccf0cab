#!/usr/bin/env python3
"""The published Spectrum table (docs: Qwen3-8B on SQuAD; full fine-tune vs Spectrum at 50,
25 and 10 %) at small scale, on this machine, same data and steps for every row, plus two
controls the article did not have: the bottom-SNR 25 % and a random 25 %.

  1. a Llama of --blocks x --width is initialised and pretrained on the King James Bible
     (so its matrices carry signal), 2. scanned (`spectrain analyze`), 3. fine-tuned on
     Python's documentation once per row and seed (`spectrain train`, --ranks ranks),
  4. printed as a Markdown table: trainable parameters, per-rank peak memory, optimizer
     bytes, validation loss, loss difference vs full, wall time (training loop, as the
     run's metrics.jsonl measured it), time saved vs full;
     mean over seeds, with the spread (max - min) as the noise.

Standard library only; drives the built binary. Runs are cached in --work (a finished
run is not repeated), so an interrupted table continues where it stopped.

With --model DIR (a pretrained Hugging Face directory, e.g. SmolLM2-135M imported by
`spectrain import`) steps 1 is skipped and the rows fine-tune that model on --train, with
--val held out (token files from `spectrain tokenize`, or anything `spectrain train` reads).

usage: bench/spectrum_table.py [--blocks 8] [--width 384] [--pretrain-steps 200]
         [--steps 150] [--seeds 1,2] [--ranks 2] [--work out/bench-table] [--quick]
       bench/spectrum_table.py --model DIR --train FILE --val FILE [--steps N] ..."""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(args, log):
    with open(log, "w") as f:
        p = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if p.returncode:
        sys.exit(f"spectrum_table: {' '.join(args)} failed ({p.returncode}); see {log}")


def job_yaml(path, model, out, train, val, steps, seed, trainable, a):
    spectrum = ("  top_percent: 100\n" if trainable is None
                else f"  unfrozen_parameters: {trainable}\n")
    with open(path, "w") as f:
        f.write(f"""output_dir: {out}
model:
  path: {model}
data:
  train: {train}
  {"validation_split" if re.fullmatch(r"[0-9.]+", val) else "validation"}: {val}
spectrum:
{spectrum}training:
  max_seq_length: {a.seq}
  per_device_train_batch_size: {a.batch // a.ranks}
  per_device_eval_batch_size: {a.batch // a.ranks}
  max_steps: {steps}
  learning_rate: {a.lr}
  lr_scheduler_type: cosine
  warmup_steps: {max(1, steps // 10)}
  weight_decay: 0.1
  adam_beta2: 0.95
  max_grad_norm: 1.0
  seed: {seed}
  logging_steps: {max(1, steps // 10)}
  eval_steps: {steps}
  eval_max_batches: {a.eval_batches}
  save_steps: 0
""")


def write_yaml(path, selected_by_type):
    """An unfrozen-parameters YAML in Spectrum's layout (docs/spectrum-method.md §4)."""
    with open(path, "w") as f:
        f.write("unfrozen_parameters:\n- ^lm_head.weight$\n- ^model.embed_tokens.weight$\n")
        for ty, mods in selected_by_type.items():
            f.write(f"# {ty} layers\n")
            for m in mods:
                f.write(f"- {m}\n")


def controls(snr_json, work, seed):
    """Bottom-SNR 25 % and random 25 % per type, the same counts Spectrum's top 25 % keeps."""
    table = json.load(open(snr_json))
    by_type = {}
    for mod, v in table.items():
        by_type.setdefault(v["type"], []).append((mod, v["snr"]))
    bottom, rand = {}, {}
    rng = random.Random(seed)
    for ty, mods in by_type.items():
        k = len(mods) * 25 // 100
        order = sorted(range(len(mods)), key=lambda i: (mods[i][1], -i))  # ascending, reverse ties
        bottom[ty] = [mods[i][0] for i in order[:k]]
        rand[ty] = [m for m, _ in rng.sample(mods, k)] if k else []
    pb, pr = f"{work}/bottom25.yaml", f"{work}/random25.yaml"
    write_yaml(pb, bottom)
    write_yaml(pr, rand)
    return pb, pr


def metrics(out):
    rows = [json.loads(line) for line in open(f"{out}/metrics.jsonl")]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    mem = [r for r in rows if r.get("event") == "memory_end"][-1]
    comm = [r for r in rows if r.get("event") == "comm_theory"][-1]
    return {
        "trainable": comm["trainable_params"],
        "total": comm["trainable_params"] + comm["frozen_params"],
        "peak": max(r["peak_rss"] for r in mem["ranks"]),
        "optim": max(r.get("optimizer", 0) for r in mem["ranks"]),
        "val": val[-1],
        # training time as the loop measured it (excludes start-up and loading)
        "train_s": [r["elapsed_s"] for r in rows if "elapsed_s" in r][-1],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="global batch (sequences per step)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pretrain-steps", type=int, default=200)
    ap.add_argument("--steps", type=int, default=150, help="fine-tuning steps per row")
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--work", default="out/bench-table")
    ap.add_argument("--quick", action="store_true", help="a tiny smoke run of the whole script")
    ap.add_argument("--model", help="a pretrained model directory to fine-tune (no pretraining)")
    ap.add_argument("--train", help="with --model: the fine-tuning data")
    ap.add_argument("--val", help="with --model: the held-out validation data")
    a = ap.parse_args()
    if a.model and not (a.train and a.val):
        ap.error("--model needs --train and --val")
    if a.quick:
        a.blocks, a.width, a.seq, a.pretrain_steps, a.steps, a.eval_batches = 4, 64, 32, 6, 4, 1
    exe = f"{ROOT}/build/spectrain"
    env_mpi = ["mpiexec", "-n", str(a.ranks), "--oversubscribe", "--bind-to", "none", exe]
    for k, v in {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                 "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                 "OMP_WAIT_POLICY": "PASSIVE"}.items():
        os.environ.setdefault(k, v)
    w = os.path.abspath(a.work)
    os.makedirs(w, exist_ok=True)
    if a.model:
        model, pyt, pyv = os.path.abspath(a.model), os.path.abspath(a.train), os.path.abspath(a.val)
        what = f"{os.path.basename(model.rstrip('/'))} (pretrained), fine-tuned on {os.path.basename(pyt)}"
    else:
        sh([f"{ROOT}/scripts/prepare-tiny-data.sh", f"{w}/data"], f"{w}/prep1.log")
        sh([f"{ROOT}/scripts/prepare-finetune-data.sh", f"{w}/data"], f"{w}/prep2.log")
        kjv, pyt, pyv = f"{w}/data/kjv.txt", f"{w}/data/pydoc-train.txt", f"{w}/data/pydoc-val.txt"

        base = f"{w}/base"
        if not os.path.exists(f"{base}/final/config.json"):
            heads = max(1, a.width // 64)
            sh([exe, "init", "--out", f"{w}/init", "--preset", "tiny-llama", "--force", "--seed", "1",
                "--set", f"num_hidden_layers={a.blocks}", "--set", f"hidden_size={a.width}",
                "--set", f"num_attention_heads={heads}", "--set", f"num_key_value_heads={heads}",
                "--set", f"intermediate_size={a.width * 8 // 3 // 32 * 32}",
                "--set", f"max_position_embeddings={max(a.seq, 128)}"], f"{w}/init.log")
            job_yaml(f"{w}/pretrain.yaml", f"{w}/init", base, kjv, "0.02", a.pretrain_steps, 1, None, a)
            print(f"pretraining {a.blocks} x {a.width} on the KJV Bible, {a.pretrain_steps} steps ...", flush=True)
            sh(env_mpi + ["train", f"{w}/pretrain.yaml"], f"{w}/pretrain.log")
        model = f"{base}/final"
        what = (f"{a.blocks} blocks x width {a.width}, pretrained {a.pretrain_steps} steps on "
                f"the KJV Bible, fine-tuned on Python's docs")
    sh(env_mpi + ["analyze", "--model", model, "--model-name", "bench", "--top-percent", "50", "25",
                  "10", "--out", f"{w}/scan", "--quiet"], f"{w}/scan.log")
    y = lambda p: f"{w}/scan/snr_results_bench_unfrozenparameters_{p}percent.yaml"
    rows = [("full", None), ("Spectrum 50 %", y(50)), ("Spectrum 25 %", y(25)),
            ("Spectrum 10 %", y(10))]
    seeds = [int(s) for s in a.seeds.split(",")]
    results = {}
    for seed in seeds:
        bottom, rand = controls(f"{w}/scan/model_snr_results/snr_results_bench.json", w, seed)
        for name, yaml in rows + [("bottom-SNR 25 % (control)", bottom), ("random 25 % (control)", rand)]:
            tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + f"-s{seed}"
            out = f"{w}/runs/{tag}"
            done = f"{out}/wall_s"
            if not os.path.exists(done):
                job_yaml(f"{w}/{tag}.yaml", model, out, pyt, pyv, a.steps, seed, yaml, a)
                print(f"fine-tuning: {name}, seed {seed} ...", flush=True)
                t0 = time.monotonic()
                shutil.rmtree(out, ignore_errors=True)  # an unfinished earlier try starts over
                sh(env_mpi + ["train", f"{w}/{tag}.yaml"], f"{w}/{tag}.log")
                open(done, "w").write(f"{time.monotonic() - t0:.3f}\n")
            m = metrics(out)
            m["wall"] = m["train_s"]
            results.setdefault(name, []).append(m)

    def mean(xs):
        return sum(xs) / len(xs)

    def spread(xs):
        return max(xs) - min(xs)

    full = results["full"]
    fv, fw = mean([m["val"] for m in full]), mean([m["wall"] for m in full])
    print(f"\nSpectrum: {what}, {a.steps} steps x {a.batch} x {a.seq} tokens, {a.ranks} ranks, "
          f"seeds {a.seeds} (mean; ± = max - min over seeds)\n")
    print("| run | trainable params | peak mem / rank (MiB) | optimizer bytes / rank (MiB) | val loss "
          "| vs full | wall time (s) | time saved |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ms in results.items():
        v, wt = [m["val"] for m in ms], [m["wall"] for m in ms]
        tr = ms[0]["trainable"]
        print(f"| {name} | {tr:,} ({100 * tr / ms[0]['total']:.1f} %) | {mean([m['peak'] for m in ms]) / 2**20:.0f} "
              f"| {mean([m['optim'] for m in ms]) / 2**20:.2f} | {mean(v):.4f} ± {spread(v):.4f} "
              f"| {mean(v) - fv:+.4f} | {mean(wt):.1f} ± {spread(wt):.1f} | {100 * (1 - mean(wt) / fw):.1f} % |")


if __name__ == "__main__":
    main()
