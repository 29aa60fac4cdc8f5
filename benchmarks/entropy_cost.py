"""
What logging the policy's entropy costs a GRPO step: grpo.LMHeadLogprobs forward + backward with and without
with_entropy, on random weights of the default model's LM head (SmolLM2-135M: V = 49152, C = 576), bf16
autocast as train.py runs on the CPU, alternating, median of --repeats.

    python benchmarks/entropy_cost.py                      # ~1 min on 2 cores
    python benchmarks/entropy_cost.py --tokens 1152 --step-s 21.7

--tokens is a step's completion tokens (README's step line: 64 rows x len_mean 18 = 1152) and --step-s that
step's seconds, so the last line gives the extra time as a share of a whole step. The entropy is computed
in the first update of a step only (train.policy_update), so this is its whole cost.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from grpo import LMHeadLogprobs  # noqa: E402


def timed(h, w, targets, with_entropy: bool, micro_tokens: int) -> float:
    """Seconds for the step's LM-head work: forward and backward, micro-batch by micro-batch, as policy_update."""
    t0 = time.perf_counter()
    for i in range(0, h.size(0), micro_tokens):
        hh = h[i:i + micro_tokens].detach().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            out = LMHeadLogprobs.apply(hh, w, targets[i:i + micro_tokens], 1.0, 128, with_entropy)
        logp = out[0] if with_entropy else out
        logp.sum().backward()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=1152, help="completion tokens per step")
    ap.add_argument("--micro-tokens", type=int, default=144, help="tokens per micro-batch (8 rows x 18)")
    ap.add_argument("--step-s", type=float, default=21.69, help="seconds of a whole GRPO step, for the share")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    V, C = 49152, 576
    w = (torch.randn(V, C) * 0.02).requires_grad_()
    h = torch.randn(args.tokens, C)
    targets = torch.randint(0, V, (args.tokens,))
    timed(h, w, targets, True, args.micro_tokens)                  # warm-up: kernels, allocator
    times = {False: [], True: []}
    for _ in range(args.repeats):
        for with_entropy in (False, True):
            w.grad = None
            times[with_entropy].append(timed(h, w, targets, with_entropy, args.micro_tokens))
    base, ent = statistics.median(times[False]), statistics.median(times[True])
    print(f"threads={torch.get_num_threads()} tokens={args.tokens} LM head forward+backward: "
          f"{base:.3f} s without entropy, {ent:.3f} s with (medians of {args.repeats})")
    print(f"entropy costs {ent - base:+.3f} s per step = {100 * (ent - base) / args.step_s:+.2f}% of a "
          f"{args.step_s} s step")


if __name__ == "__main__":
    main()
