"""PyTorch baselines for the GPU benchmarks, run in the same session as ours (bench/gpu-compare.sh):

  train:  training tokens/s and peak memory, fp32 eager with TF32 off, random init, same B and T, and the step our
          Trainer takes (src/train/trainer.ts DEFAULT_OPTIMIZER): forward, backward, clip_grad_norm_ 1.0, AdamW
          (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on the 2-D tensors only, as src/model/params.ts splits them).
          GPT-2 sizes from --n-layer/--n-head/--n-embd/--vocab: transformers' GPT2LMHeadModel when installed, else
          the plain-torch GPT-2 of the reference fixture (the same math: tanh GELU, tied head, causal attention).
          --hf-config config.json: any family transformers knows (Llama, Qwen2, …), from_config, default (SDPA) attention.
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

        return "transformers.GPT2LMHeadModel", list(model.parameters()), loss_fn
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

        return "plain-torch GPT-2 (transformers not installed)", list(p.values()), loss_fn


def hf_model(config_path):
    """A model of any family transformers knows, from an HF config.json, random init, transformers' default
    attention (SDPA: eager mode, but the fast attention a PyTorch user gets, so the baseline is not handicapped)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(os.path.dirname(os.path.abspath(config_path)))
    model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32).to(device)

    def loss_fn(tokens, targets):
        return torch.nn.functional.cross_entropy(model(tokens).logits.flatten(0, 1).float(), targets.flatten())

    attention = getattr(model.config, "_attn_implementation", "default")
    return f"transformers {type(model).__name__} ({attention} attention)", list(model.parameters()), loss_fn, cfg.vocab_size


def bench_train(B, T, steps, n_layer, n_head, n_embd, vocab, hf_config=None, lr=1e-4):
    if hf_config:
        name, params, loss_fn, vocab = hf_model(hf_config)
    else:
        name, params, loss_fn = gpt2_model(n_layer, n_head, n_embd, vocab, max(T, 1024))
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.randint(0, vocab, (B, T), device=device)
    targets = torch.randint(0, vocab, (B, T), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step()  # warm-up, as bench/train.ts takes one
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    print(json.dumps({"bench": f"pytorch fp32 eager train ({name})", "device": device, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "B": B, "T": T, "steps": steps, "tokens_per_s": B * T * steps / seconds,
                      "ms_per_step": 1000 * seconds / steps, "peak_memory_mib": peak}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["train", "matmul"])
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--hf-config", help="an HF config.json (any family transformers knows) instead of GPT-2 sizes")
    ap.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    ap.add_argument("--threads", type=int, help="CPU threads (default: every core, as llvmpipe uses)")
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    args = ap.parse_args()
    if args.device:
        device = args.device
    # Debian's torch (libgomp) can start with one OpenMP thread on a 2-core machine; llvmpipe uses every core.
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    if args.what == "matmul":
        bench_matmul([int(s) for s in args.sizes.split(",")])
    else:
        bench_train(args.B, args.T, args.steps, args.n_layer, args.n_head, args.n_embd, args.vocab, args.hf_config)
