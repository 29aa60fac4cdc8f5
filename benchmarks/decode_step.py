"""
benchmarks/decode_step.py: where one decode step of the sampler spends its time on the CPU, and what packed
weights do to its matmuls, and which attention kernel a decode step should use (benchmarks/README.md, "CPU: the
sampler's decode step").

    python benchmarks/decode_step.py profile --dtype float32    # ms per step, and the top ops (torch.profiler)
    python benchmarks/decode_step.py matmuls                    # the step's matmuls: plain vs packed weights
    python benchmarks/decode_step.py compile --dtype bfloat16   # torch.compile (inductor, CPU) over the step
    python benchmarks/decode_step.py attention --dtype float32  # the step with each attention kernel
    python benchmarks/decode_step.py breakdown --dtype float32  # the step's wall-clock by component

profile: the default model, B = 32 rows of a random 40-token prompt (prefilled once), 64 greedy decode steps
through Transformer.forward with a KVCache; prints the median step, then the profiler's table over 8 more.
matmuls: a (32, in) x (in, out) matmul for each linear shape of the default model, plain F.linear against
the weight packed once (MKL for float32, oneDNN for both dtypes), microseconds per call and the sum over one
step (30 layers x q, k, v, o, gate, up, down + the LM head). torch.set_num_threads(2).
compile: the profile's 64 greedy steps eagerly, then through torch.compile(dynamic=True) (inductor, CPU), printing
the seconds since the compiled run began every 8 steps (compilation included), then a second compiled run.
attention: the sampler's decode steps (packed weights as sample() has them, sampling at temperature 1) over keys
40 .. 200, with model.attend's decode-step kernel replaced by each of grouped_sdpa (what model.py uses), SDPA
with enable_gqa and matmul_attention; each kernel has its own cache and rows, and they take turns step by step
(machine drift hits all alike); each of --rounds rounds prints each kernel's median step in ms.
breakdown: the same decode steps as sample() runs them, with a wall-clock timer around each component (the
transformer's linears, the LM head, attention, RMSNorm, RoPE, KV cache writes, sample_token; the rest is the
residual adds, SiLU, embedding, masks and Python), --rounds runs of 160 steps: ms per step and share of it.
"""
import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model import DEFAULT_MODEL, load_pretrained  # noqa: E402

B, L = 32, 40
SHAPES = {"q/o": (576, 576, 60), "k/v": (192, 576, 60), "gate/up": (1536, 576, 60), "down": (576, 1536, 30),
          "lm_head": (49152, 576, 1)}   # (out, in, calls per decode step)


def load(dtype: torch.dtype):
    """The default model in dtype on the CPU, and B random prompts of L tokens, ids (B, L) int64 (seed 0)."""
    model, _ = load_pretrained(DEFAULT_MODEL, device="cpu", dtype=dtype)
    return model, torch.randint(100, 10000, (B, L), generator=torch.Generator().manual_seed(0))


def prefilled(model, ids, steps: int):
    """A KVCache with room for `steps` decode steps after the prompts ids (B, L), prefilled with them."""
    cache = model.new_kv_cache(B, L + steps)
    model(ids, attention_mask=torch.ones(B, L, dtype=torch.bool), kv_cache=cache, return_hidden=True)
    return cache


def profile(dtype: torch.dtype, steps: int = 64):
    model, ids = load(dtype)

    from torch.profiler import profile as torch_profile

    def decode(n, profiled=False):        # prefill, then n steps (only they are timed and profiled)
        with torch.inference_mode():
            cache = prefilled(model, ids, n)
            tok, times = ids[:, -1:], []
            with torch_profile() if profiled else contextlib.nullcontext() as p:
                for _ in range(n):
                    t0 = time.perf_counter()
                    tok = model(tok, kv_cache=cache)[:, -1].argmax(-1, keepdim=True)
                    times.append(time.perf_counter() - t0)
        return times, p
    decode(8)                                                    # warm-up
    times, _ = decode(steps)
    print(f"{dtype}: median decode step {statistics.median(times) * 1e3:.1f} ms over {steps} steps, B={B}")
    print(decode(8, profiled=True)[1].key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def compiled(dtype: torch.dtype, steps: int = 64):
    model, ids = load(dtype)

    def decode(fwd, label):
        with torch.inference_mode():
            cache = prefilled(model, ids, steps)
            tok, times, t_start = ids[:, -1:], [], time.perf_counter()
            for i in range(steps):
                t0 = time.perf_counter()
                tok = fwd(tok, cache)[:, -1].argmax(-1, keepdim=True)
                times.append(time.perf_counter() - t0)
                if (i + 1) % 8 == 0:
                    print(f"{dtype} {label}: {i + 1} steps, {time.perf_counter() - t_start:.1f} s", flush=True)
        print(f"{dtype} {label}: median step {statistics.median(times) * 1e3:.1f} ms", flush=True)
    eager = lambda tok, cache: model(tok, kv_cache=cache)        # noqa: E731
    decode(eager, "eager")
    step = torch.compile(eager, dynamic=True)
    decode(step, "compiled, first run (compilation included)")
    decode(step, "compiled, second run")


def attention_kernels(dtype: torch.dtype, rounds: int, steps: int = 160):
    import model as M
    from sample import packed_linears, sample_token
    model, ids = load(dtype)
    kernels = {"grouped_sdpa": M.grouped_sdpa, "matmul_attention": M.matmul_attention,
               "sdpa_enable_gqa": lambda q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                                     enable_gqa=True)}
    grouped = M.grouped_sdpa
    results = {name: [] for name in kernels}
    try:
        for r in range(rounds):
            with torch.inference_mode(), packed_linears(model):
                state = {}
                for name in kernels:            # one cache and one batch of rows per kernel, prefilled alike
                    state[name] = [prefilled(model, ids, steps), ids[:, -1], []]
                u = torch.rand(B, generator=torch.Generator().manual_seed(r))
                for _ in range(steps):          # the kernels take turns step by step, so drift hits all alike
                    for name, kernel in kernels.items():
                        M.grouped_sdpa = kernel             # attend calls it for every CPU decode step
                        cache, tok, times = state[name]
                        t0 = time.perf_counter()
                        state[name][1], _ = sample_token(model(tok[:, None], kv_cache=cache)[:, -1], u)
                        times.append(time.perf_counter() - t0)
            for name in kernels:
                results[name].append(statistics.median(state[name][2]) * 1e3)
            print(f"round {r} {dtype}: " + ", ".join(f"{n} {v[-1]:.1f} ms" for n, v in results.items()), flush=True)
    finally:
        M.grouped_sdpa = grouped
    base = statistics.median(results["grouped_sdpa"])
    print(f"{dtype} median decode step over rounds, B={B}, keys {L}..{L + steps}: " + ", ".join(
        f"{n} {statistics.median(v):.1f} ms ({statistics.median(v) / base - 1:+.0%})" for n, v in results.items()))


def breakdown(dtype: torch.dtype, rounds: int, steps: int = 160):
    import model as M
    import sample as S
    model, ids = load(dtype)
    spent = {}

    def timer(fn, key):
        def timed_fn(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
            return out
        return timed_fn
    places = [(M, "grouped_sdpa"), (M, "apply_rope"), (M.RMSNorm, "forward"), (M.KVCache, "update"),
              (S, "sample_token")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in places]
    for (obj, name, fn), key in zip(saved, ["attention", "RoPE", "RMSNorm", "KV cache writes", "sampling"]):
        setattr(obj, name, timer(fn, key))
    try:
        for r in range(rounds):
            with torch.inference_mode(), S.packed_linears(model):
                for m in model.modules():       # after packed_linears, which sets each linear's forward
                    if isinstance(m, torch.nn.Linear):
                        m.forward = timer(m.forward, "LM head" if m is model.lm_head else "linears")
                cache = prefilled(model, ids, steps)
                tok, u = ids[:, -1], torch.rand(B, generator=torch.Generator().manual_seed(r))
                spent.clear()
                t0 = time.perf_counter()
                for _ in range(steps):
                    tok, _ = S.sample_token(model(tok[:, None], kv_cache=cache)[:, -1], u)
                total = time.perf_counter() - t0
            for m in model.modules():
                m.__dict__.pop("forward", None)         # the timers (packed_linears drops its own)
            spent["rest"] = total - sum(spent.values())
            parts = ", ".join(f"{k} {v / steps * 1e3:.1f} ({v / total:.0%})" for k, v in spent.items())
            print(f"round {r} {dtype}: {total / steps * 1e3:.1f} ms per step (keys {L}..{L + steps}, B={B}): {parts}",
                  flush=True)
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)


def timed(f, n: int) -> float:
    for _ in range(5):
        f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e6


def matmuls():
    for dtype in (torch.float32, torch.bfloat16):
        total = {}
        for name, (out, inp, per_step) in SHAPES.items():
            w, x = (torch.randn(out, inp) * 0.02).to(dtype), torch.randn(B, inp).to(dtype)
            n = 20 if name == "lm_head" else 200
            with torch.inference_mode():
                res = {"plain": timed(lambda: F.linear(x, w), n)}
                if dtype == torch.float32:
                    mw = torch.ops.mkl._mkl_reorder_linear_weight(w, B)
                    res["mkl_packed"] = timed(lambda: torch.ops.mkl._mkl_linear(x, mw, w, None, B), n)
                pw = torch.ops.mkldnn._reorder_linear_weight(w, B)
                res["onednn_packed"] = timed(lambda: torch.ops.mkldnn._linear_pointwise(x, pw, None, "none", [], ""), n)
            for k, v in res.items():
                total[k] = total.get(k, 0) + v * per_step
            print(f"{dtype} {name:8s} us per call: " + ", ".join(f"{k} {v:.1f}" for k, v in res.items()), flush=True)
        print(f"{dtype} one decode step's matmuls, ms: " + ", ".join(f"{k} {v / 1e3:.1f}" for k, v in total.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["profile", "matmuls", "compile", "attention", "breakdown"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="profile's dtype; auto = sample.default_dtype (bfloat16 with native bf16, else float32)")
    ap.add_argument("--rounds", type=int, default=4, help="attention: rounds of the kernels in turn; breakdown: runs")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    from sample import default_dtype
    dtype = default_dtype(torch.device("cpu")) if args.dtype == "auto" else getattr(torch, args.dtype)
    {"profile": lambda: profile(dtype), "matmuls": matmuls, "compile": lambda: compiled(dtype),
     "attention": lambda: attention_kernels(dtype, args.rounds),
     "breakdown": lambda: breakdown(dtype, args.rounds)}[args.what]()


if __name__ == "__main__":
    main()
