"""Our engine against transformers' own models, for every family, on a machine that has transformers.

For each random-config fixture folder (test/fixtures/families/<family>/ from make_families.py, and
test/fixtures/tiny-random-gpt2/), transformers' AutoModelForCausalLM loads the folder as we wrote it (eager
attention, float64 — transformers' RMSNorms still compute in float32), computes the weighted mean loss of the
fixture's batch and every parameter gradient; bench/family-gradients.ts computes ours on the GPU from the same
folder and batch. Printed per family: the loss relative error, the worst per-tensor gradient relative error
(max |ours - theirs| / max |theirs|), and the same for transformers against our float64 PyTorch fixture (that
the fixture's hand-written torch model is transformers' model). A figure, not a test: it prints, and exits 1 only
when a family errs by more than 1e-4 (a real mismatch, not float32 rounding).

  bash bench/families-vs-transformers.sh       (or: python3 bench/families-vs-transformers.py [--bun PATH])
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test", "fixtures"))
from safetensors_io import read as read_tensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "test", "fixtures")
FAMILIES = ["gpt2", "llama", "qwen2", "qwen3", "gemma", "gemma2", "phi"]
LIMIT = 1e-4


def read_safetensors(path):
    """Every tensor of a safetensors file (the fixture scripts' reader), as float64."""
    return {name: t.to(torch.float64) for name, t in read_tensors(path).items()}


def folders(family):
    if family == "gpt2":
        return os.path.join(FIXTURES, "tiny-random-gpt2"), os.path.join(FIXTURES, "gpt2-reference.json"), os.path.join(FIXTURES, "gpt2-reference.safetensors")
    d = os.path.join(FIXTURES, "families", family)
    return d, os.path.join(d, "reference.json"), os.path.join(d, "reference.safetensors")


def rel(a, b):
    scale = b.abs().max().item()
    d = (a - b).abs().max().item()
    return d / scale if scale > 0 else d


def worst(ours, theirs):
    w = (0.0, "")
    for name, t in theirs.items():
        if name not in ours:
            return (float("inf"), f"{name} missing")
        e = rel(ours[name], t)
        if e > w[0]:
            w = (e, name)
    return w


def transformers_gradients(model_dir, batch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64, attn_implementation="eager")
    model.train(False)  # dropout off (all 0 in these configs anyway)
    B, T = batch["B"], batch["T"]
    tokens = torch.tensor(batch["tokens"]).reshape(B, T)
    targets = torch.tensor(batch["targets"]).reshape(-1)
    weights = torch.tensor(batch["weights"], dtype=torch.float64)
    logits = model(input_ids=tokens).logits
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="none")
    loss = (nll * weights).sum() / weights.sum()
    loss.backward()
    # a tied lm_head is one parameter with the embedding, listed once under the embedding's name
    return loss.item(), {name: p.grad.detach() for name, p in model.named_parameters()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bun", default=os.path.join(ROOT, "node_modules", ".bin", "bun"))
    args = parser.parse_args()
    import transformers

    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"{'family':8} {'loss ours':>12} {'loss HF':>12} {'loss err':>9} {'grad err':>9}  worst tensor (ours vs HF) | HF vs fixture: loss, grads")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            model_dir, batch_path, reference_path = folders(family)
            with open(batch_path) as f:
                batch = json.load(f)
            try:
                hf_loss, hf_grads = transformers_gradients(model_dir, batch)
            except Exception as err:  # e.g. Qwen3 needs transformers >= 4.51, Gemma 2 >= 4.42
                print(f"{family:8} transformers cannot build it: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                failed = True
                continue
            out = os.path.join(tmp, f"{family}.safetensors")
            run = subprocess.run([args.bun, os.path.join(ROOT, "bench", "family-gradients.ts"), "--model", model_dir, "--batch", batch_path, "--out", out],
                                 cwd=ROOT, capture_output=True, text=True)
            if run.returncode != 0:
                print(f"{family:8} our engine failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
                failed = True
                continue
            ours_summary = json.loads(run.stdout.strip().splitlines()[-1])
            ours = {k[len("grad."):]: v for k, v in read_safetensors(out).items()}
            fixture = {k[len("grad."):]: v for k, v in read_safetensors(reference_path).items() if k.startswith("grad.")}
            loss_err = abs(ours_summary["loss"] - hf_loss) / abs(hf_loss)
            grad_err, grad_name = worst(ours, hf_grads)
            fix_loss = abs(hf_loss - batch["loss"]) / abs(batch["loss"])
            fix_grad, _ = worst(hf_grads, fixture)
            print(f"{family:8} {ours_summary['loss']:12.8f} {hf_loss:12.8f} {loss_err:9.2e} {grad_err:9.2e}  {grad_name} | {fix_loss:.2e}, {fix_grad:.2e}")
            failed |= max(loss_err, grad_err, fix_loss, fix_grad) > LIMIT
            adapter = ours_summary["adapter"]
    print(f"our adapter: {adapter}" if "adapter" in locals() else "")
    print("MISMATCH (> 1e-4)" if failed else f"all families within {LIMIT}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
