"""
benchmarks/lora.py: the two choices train.py makes for --lora-rank, each against its alternative, CPU.

    python benchmarks/lora.py sampler            # sampling with the adapters merged, or as a low-rank update
    python benchmarks/lora.py memory             # a LoRA GRPO run's peak RSS, base weights in bf16 or float32
    python benchmarks/lora.py memory --model qwen2.5-coder-0.5b-instruct --steps 1

sampler: the default model, 4 chat prompts x G = 8 x --tokens new tokens with stopping off, --rank adapters (B
random, as after training) on every block Linear, in --dtype (bfloat16 and float32 by default). "merged" is a plain
model holding W + (alpha/r) B A: full fine-tuning's sampler, plus the merge (model.merge_into) timed apart, once per
sampling pass (train.refresh_sampler's choice in bf16); "low-rank update" samples the adapted model itself (every
parameter in the dtype), each LoRALinear computing x W^T + (alpha/r) (x A^T) B^T, which MKL's packed float32
weights (sample.packed_linears) do not cover (the choice in float32, where the policy samples itself). The two
alternate, --runs each after a warm-up; medians of tokens/s.

memory: train.train with --lora-rank --rank on --model, bf16 autocast, --steps GRPO steps of 4 prompts x G = 8 x
64 tokens, beta 0.04, one process per run; peak RSS (VmHWM) of each: the frozen base Linears in bf16
(train.add_lora's choice), in float32 (base_dtype=float32), and full fine-tuning (--lora-rank 0) for scale.
"""
import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model import DEFAULT_MODEL, LoRALinear, add_adapters, load_pretrained, merge_into  # noqa: E402
from sample import sample  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Explain photosynthesis in simple terms.",
             "Write a short poem about the sea.", "If I have 3 apples and eat one, how many are left?"]


def tokens_per_s(model, prompts, G, N) -> float:
    t0 = time.perf_counter()
    ro = sample(model, prompts, group_size=G, max_new_tokens=N, temperature=1.0, seed=0)     # no stop ids
    assert (ro.lengths == N).all()
    return ro.lengths.sum().item() / (time.perf_counter() - t0)


def sampler(args):
    base, tok = load_pretrained(DEFAULT_MODEL, device="cpu", dtype=torch.float32)
    prompts = [tok.encode(tok.render_chat([{"role": "user", "content": q}])) for q in QUESTIONS]
    policy = add_adapters(copy.deepcopy(base), args.rank, 2.0 * args.rank, base={"path": "", "sha256": {}})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in policy.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.01)
    for dtype in [getattr(torch, d) for d in args.dtype.split(",")]:
        merged = copy.deepcopy(base).to(dtype)
        lowrank = copy.deepcopy(policy).to(dtype)
        t0 = time.perf_counter()
        merge_into(merged, policy)
        merge_s = time.perf_counter() - t0
        sides = {"merged": merged, "low-rank update": lowrank}
        for model in sides.values():
            tokens_per_s(model, prompts, args.G, 8)                                      # warm-up
        rates = {name: [] for name in sides}
        for _ in range(args.runs):
            for name, model in sides.items():
                rates[name].append(tokens_per_s(model, prompts, args.G, args.tokens))
                print(f"{dtype} {name}: {rates[name][-1]:.1f} tokens/s", flush=True)
        m, lr = (statistics.median(rates[k]) for k in sides)
        sample_s = len(prompts) * args.G * args.tokens / m
        print(f"dtype={str(dtype).removeprefix('torch.')} rank={args.rank} merged_tokens_per_s={m:.1f} "
              f"lowrank_tokens_per_s={lr:.1f} lowrank_vs_merged={lr / m - 1:+.1%} merge_s={merge_s:.3f} "
              f"merge_share_of_pass={merge_s / (merge_s + sample_s):.1%}", flush=True)


def memory_child(args):
    """One train.train run in this process; prints its peak RSS."""
    import train as T
    if args.base_dtype == "float32":
        add = T.add_adapters
        T.add_adapters = lambda *a, **kw: add(*a, **{**kw, "base_dtype": torch.float32})
    with tempfile.TemporaryDirectory(prefix="lora_memory_") as out:
        cfg = T.TrainConfig(model=args.model, task="arith", dtype="bfloat16", group_size=8, prompts_per_step=4,
                            max_new_tokens=64, steps=args.steps, beta=0.04, eval_prompts=0, save_every=0,
                            rollouts_every=0, lora_rank=args.lora_rank, out_dir=out, threads=2)
        T.train(cfg)
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(f"peak_rss_gib={int(hwm.split()[1]) / 2**20:.3f}", flush=True)


def memory(args):
    runs = [("LoRA, base Linears in bf16 (used)", args.rank, "compute"),
            ("LoRA, base Linears in float32", args.rank, "float32"),
            ("full fine-tuning", 0, "compute")]
    for label, rank, base_dtype in runs:
        out = subprocess.run([sys.executable, __file__, "memory-child", "--lora-rank", str(rank), "--base-dtype",
                              base_dtype, "--steps", str(args.steps), "--model", args.model],
                             capture_output=True, text=True, check=True)
        print(f"{label}: {out.stdout.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["sampler", "memory", "memory-child"])
    ap.add_argument("--rank", type=int, default=32, help="LoRA rank")
    ap.add_argument("--dtype", default="bfloat16,float32", help="sampler: dtypes, comma-separated")
    ap.add_argument("-G", type=int, default=8, help="sampler: completions per prompt")
    ap.add_argument("--tokens", type=int, default=128, help="sampler: new tokens per row")
    ap.add_argument("--runs", type=int, default=3, help="sampler: timed runs per side")
    ap.add_argument("--steps", type=int, default=2, help="memory: GRPO steps per run")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="memory: the model")
    ap.add_argument("--lora-rank", type=int, default=0, help=argparse.SUPPRESS)       # memory-child
    ap.add_argument("--base-dtype", default="compute", help=argparse.SUPPRESS)        # memory-child
    args = ap.parse_args()
    torch.set_num_threads(2)
    {"sampler": sampler, "memory": memory, "memory-child": memory_child}[args.what](args)
