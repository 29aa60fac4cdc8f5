"""
benchmarks/attention.py: model.matmul_attention against torch's SDPA on the CPU, for the shapes r1 runs.

    python benchmarks/attention.py          # ~10 seconds on 2 cores

Why it exists: model.py's Attention uses grouped_sdpa (SDPA with the query heads folded under their kv head) for
CPU decode steps, matmul_attention for GRPO's masked CPU batches in bf16, and SDPA elsewhere; this prints what
those choices buy. Shapes are the default model's (SmolLM2-135M: 9 query heads, 3 kv heads, head size 64),
bf16 and float32, torch.set_num_threads(2):
    decode   B=32 rows, T=1 query, S=300 keys (a slice of a longer cache, as in sample.py), no grad
    grpo     B=8 rows (one group), T=128 completion queries, S=188 keys (60 prompt + 128), causal and a
             padded tail, forward alone and forward + backward
Each figure is the median of --runs calls after one untimed call, in milliseconds per layer:
    shape=... dtype=... grad=... sdpa_ms=... matmul_ms=... ratio=... [grouped_ms=... (decode only)]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model import grouped_sdpa, matmul_attention  # noqa: E402

NH, NKV, HS = 9, 3, 64


def inputs(B, T, S, dtype, sliced):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, NH, T, HS, generator=g, dtype=dtype)
    k, v = (torch.randn(B, NKV, S + 64 if sliced else S, HS, generator=g, dtype=dtype)[:, :, :S] for _ in range(2))
    causal = torch.arange(S)[None, :] <= torch.arange(S - T, S)[:, None]                       # (T, S)
    lengths = torch.linspace(S // 4, S, B).long()                                               # real keys per row
    mask = (causal & (torch.arange(S) < lengths[:, None, None]))[:, None]                      # (B, 1, T, S)
    return q, k, v, mask


def timed(f, q, k, v, mask, grad: bool, runs: int) -> float:
    times = []
    for i in range(runs + 1):
        qq, kk, vv = (t.detach().requires_grad_(grad) for t in (q, k, v))
        t0 = time.perf_counter()
        with torch.set_grad_enabled(grad):
            y = f(qq, kk, vv, mask)
            if grad:
                y.sum().backward()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (B, T, S), sliced, grads in [("decode", (32, 1, 300), True, [False]),
                                           ("grpo", (8, 128, 188), False, [False, True])]:
        for dtype in (torch.bfloat16, torch.float32):
            q, k, v, mask = inputs(B, T, S, dtype, sliced)
            torch.testing.assert_close(matmul_attention(q, k, v, mask), sdpa(q, k, v, mask),
                                       **({"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}))
            for grad in grads:
                a, b = timed(sdpa, q, k, v, mask, grad, args.runs), timed(matmul_attention, q, k, v, mask, grad, args.runs)
                line = (f"shape={name} B={B} T={T} S={S} dtype={str(dtype).removeprefix('torch.')} grad={grad} "
                        f"sdpa_ms={a:.2f} matmul_ms={b:.2f} ratio={a / b:.2f}")
                if T == 1:
                    torch.testing.assert_close(grouped_sdpa(q, k, v, mask), sdpa(q, k, v, mask))
                    line += f" grouped_ms={timed(grouped_sdpa, q, k, v, mask, grad, args.runs):.2f}"
                print(line)


if __name__ == "__main__":
    main()
