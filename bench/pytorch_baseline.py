"""PyTorch baselines for the GPU benchmarks, run in the same session as ours (bench/gpu-compare.sh):

  train:  GPT-2 training tokens/s and peak memory, fp32 eager with TF32 off, AdamW, random init, same B and T.
          Uses transformers' GPT2LMHeadModel when installed, else the plain-torch GPT-2 of the reference fixture
          (the same math: tanh GELU, tied head, causal attention).
  matmul: torch.matmul fp32 (cuBLAS, TF32 off) TFLOP/s at the sizes our matmul bench uses.

Prints one JSON object per line. Usage: python3 bench/pytorch_baseline.py [train|matmul] [--B 8 --T 1024 --steps 20]
"""
import argparse
import json
import os
import sys
import time

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
device = "cuda" if torch.cuda.is_available() else "cpu"


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


def bench_matmul(sizes):
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        for _ in range(3):
            a @ b
        sync()
        reps = 20 if device == "cuda" else 2
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        seconds = (time.perf_counter() - start) / reps
        print(json.dumps({"bench": "torch.matmul fp32", "device": device, "n": n, "tflops": 2 * n**3 / seconds / 1e12}))


def gpt2_model(n_layer, n_head, n_embd, vocab, n_positions):
    try:
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab, n_positions=n_positions,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new")
        model = GPT2LMHeadModel(cfg).to(device)

        def loss_fn(tokens, targets):
            return torch.nn.functional.cross_entropy(model(tokens).logits.flatten(0, 1), targets.flatten())

        return "transformers.GPT2LMHeadModel", model.parameters(), loss_fn
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "fixtures"))
        from make_reference import gpt2_logits  # noqa: E402

        C = n_embd
        shapes = {"transformer.wte.weight": (vocab, C), "transformer.wpe.weight": (n_positions, C),
                  "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
        for i in range(n_layer):
            for name, shape in [("ln_1.weight", (C,)), ("ln_1.bias", (C,)), ("attn.c_attn.weight", (C, 3 * C)),
                                ("attn.c_attn.bias", (3 * C,)), ("attn.c_proj.weight", (C, C)), ("attn.c_proj.bias", (C,)),
                                ("ln_2.weight", (C,)), ("ln_2.bias", (C,)), ("mlp.c_fc.weight", (C, 4 * C)),
                                ("mlp.c_fc.bias", (4 * C,)), ("mlp.c_proj.weight", (4 * C, C)), ("mlp.c_proj.bias", (C,))]:
                shapes[f"transformer.h.{i}.{name}"] = shape
        p = {k: (torch.randn(*s, device=device) * 0.02).requires_grad_() for k, s in shapes.items()}
        cfg = {"n_layer": n_layer, "n_head": n_head, "layer_norm_epsilon": 1e-5}

        def loss_fn(tokens, targets):
            return torch.nn.functional.cross_entropy(gpt2_logits(p, cfg, tokens).flatten(0, 1), targets.flatten())

        return "plain-torch GPT-2 (transformers not installed)", p.values(), loss_fn


def bench_train(B, T, steps, n_layer=12, n_head=12, n_embd=768, vocab=50257):
    name, params, loss_fn = gpt2_model(n_layer, n_head, n_embd, vocab, max(T, 1024))
    params = list(params)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, vocab, (B, T), device=device)
    targets = torch.randint(0, vocab, (B, T), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    print(json.dumps({"bench": f"pytorch fp32 eager train ({name})", "device": device, "B": B, "T": T, "steps": steps,
                      "tokens_per_s": B * T * steps / seconds, "peak_memory_mib": peak}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["train", "matmul"])
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    args = ap.parse_args()
    if args.what == "matmul":
        bench_matmul([int(s) for s in args.sizes.split(",")])
    else:
        bench_train(args.B, args.T, args.steps)
