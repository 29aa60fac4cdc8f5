"""
benchmarks/batch_rows.py: the sampler's decode throughput against the number of rows sampled together.

    python benchmarks/batch_rows.py --model qwen2.5-coder-0.5b-instruct --rows 8,16,32,64
    python benchmarks/batch_rows.py --model qwen2.5-coder-1.5b-instruct --rows 32,64,128 --max-new-tokens 64

Workload: the first B GSM8K test problems in the boxed template (--task: any reward.py task with test problems),
one row each, --max-new-tokens new tokens with stopping disabled so every row runs the full length, temperature 0.7,
the dtype this CPU suits (sample.default_dtype), torch.set_num_threads(2). The row counts alternate round by round
after one short untimed warm-up each; each figure is the median of --runs. A decode step of a small model on a
CPU reads every weight once whatever B is, so while memory bandwidth bounds it, more rows cost little more time:
the figures say where that stops. Prints per B: ms per decode step (prefill included, / tokens) and tokens/s.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model import load_pretrained  # noqa: E402
from reward import load_task, render_prompt  # noqa: E402
from sample import default_dtype, sample  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--task", default="gsm8k:../shared/data/gsm8k_train.jsonl,test=../shared/data/gsm8k_test.jsonl")
    ap.add_argument("--rows", default="8,16,32,64", help="comma-separated row counts B")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="tokens per row (stopping disabled)")
    ap.add_argument("--runs", type=int, default=2, help="timed runs per row count (the median is reported)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    dtype = default_dtype(torch.device("cpu"))
    model, tok = load_pretrained(args.model, device="cpu", dtype=dtype)
    task = load_task(args.task, seed=0)
    rows = [int(b) for b in args.rows.split(",")]
    texts = [render_prompt(task.example("test", i), "boxed", tok, False) for i in range(max(rows))]
    N, times = args.max_new_tokens, {b: [] for b in rows}
    for b in rows:                                                            # warm-up
        sample(model, [tok.encode(t) for t in texts[:b]], 1, 4, temperature=0.7)
    for r in range(args.runs):
        for b in rows:
            t0 = time.perf_counter()
            ro = sample(model, [tok.encode(t) for t in texts[:b]], 1, N, temperature=0.7, seed=r)
            times[b].append(time.perf_counter() - t0)
            assert (ro.lengths == N).all()
            print(f"run {r} B={b}: {times[b][-1]:.1f} s", flush=True)
    print(f"{args.model}, {dtype}, {N} new tokens per row, torch {torch.__version__}")
    for b in rows:
        s = statistics.median(times[b])
        print(f"B={b} step_ms={1000 * s / N:.1f} tokens_per_s={b * N / s:.1f}")


if __name__ == "__main__":
    main()
