"""
benchmarks/sample_vs_hf.py: sample.py against transformers' generate, same model, same workload.

    python benchmarks/sample_vs_hf.py > bench.log     # ~10 minutes on 2 cores
    python benchmarks/sample_vs_hf.py --only ours     # just our sampler, to iterate on speed
    python benchmarks/sample_vs_hf.py --compaction    # ours with stopping on: compaction on vs off

Workload: the default model (SmolLM2-135M-Instruct), 4 chat prompts, G=8 samples each,
256 new tokens with stopping disabled so every row runs the full length, temperature 1.0, top-p 1,
top-k 0, torch.set_num_threads(2). Both sides run in the dtype this CPU suits (--dtype auto:
sample.default_dtype, bfloat16 with native bf16 matmuls, else float32, where bf16 is emulated and slow;
--dtype float32|bfloat16|both to pin it); configurations alternate (ours, hf, ours, hf, ...) after one
short untimed warm-up each, and each figure is the median of --runs runs. transformers runs in each of
--hf-configs (its default, a static cache, eager attention) and its fastest is the one compared.
tokens/s = 4 * 8 * 256 / wall-clock seconds of one call (prefill included). A roofline line gives one
decode step's bytes (weights, and keys/values at the mean length) and FLOPs, this machine's copy bandwidth
and matmul rate (a quick probe), and the tokens/s each allows. The last
line compares each side in its best dtype:
    sample_tokens_per_s=... hf_tokens_per_s=... ratio=...
Peak RSS is the process's (ru_maxrss), read once before transformers is loaded (ours alone) and at the end.

--compaction measures what dropping finished rows from the batch buys (sample.COMPACT_AT), on the same
prompts with stopping on (the chat stop token), bf16, temperature 1.0: rows then end at different steps.
Both settings must return the same completions; the figure is wall-clock seconds per call.
"""
import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model import DEFAULT_MODEL, load_pretrained, resolve_model_path  # noqa: E402
import sample as sample_mod  # noqa: E402
from sample import sample  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Explain photosynthesis in simple terms.",
             "Write a short poem about the sea.", "If I have 3 apples and eat one, how many are left?"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def run_ours(model, prompts, G, N, seed, packed=True):
    sample_mod.PACKED_WEIGHTS = packed
    t0 = time.perf_counter()
    ro = sample(model, prompts, group_size=G, max_new_tokens=N, temperature=1.0, seed=seed)   # no stop ids
    dt = time.perf_counter() - t0
    assert (ro.lengths == N).all()
    return ro.lengths.sum().item() / dt


def run_hf(model, prompts, G, N, pad_id, seed, cache=None):
    L = max(map(len, prompts))
    ids = torch.tensor([[pad_id] * (L - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             num_return_sequences=G, max_new_tokens=N, min_new_tokens=N, pad_token_id=pad_id,
                             cache_implementation=cache)
    dt = time.perf_counter() - t0
    assert out.shape == (len(prompts) * G, L + N)
    return len(prompts) * G * N / dt


def compaction(prompts, tok, G, N, runs):
    model, _ = load_pretrained(DEFAULT_MODEL, device="cpu", dtype=torch.bfloat16)
    kw = dict(group_size=G, max_new_tokens=N, stop_token_ids=tok.stop_ids, pad_id=tok.pad_id)
    sample(model, prompts, max_new_tokens=8, **{k: v for k, v in kw.items() if k != "max_new_tokens"})   # warm-up
    times, outs, default = {"on": [], "off": []}, {}, sample_mod.COMPACT_AT
    for r in range(runs):
        for name, at in (("on", default), ("off", 0.0)):
            sample_mod.COMPACT_AT = at
            t0 = time.perf_counter()
            outs[name] = sample(model, prompts, seed=r, **kw)
            times[name].append(time.perf_counter() - t0)
        assert torch.equal(outs["on"].tokens, outs["off"].tokens), "compaction changed the completions"
        ro = outs["on"]
        print(f"run {r}: lengths {sorted(ro.lengths.tolist())}, compaction on {times['on'][-1]:.1f} s, "
              f"off {times['off'][-1]:.1f} s", flush=True)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"compaction_on_s={on:.1f} compaction_off_s={off:.1f} speedup={off / on:.2f}")


def machine_rates(dtype) -> tuple[float, float]:
    """This machine's copy bandwidth (bytes read + written per second, 256 MB float32 buffers) and matmul rate
    (FLOP/s of a 1024^3 matmul in dtype) at the current thread count: a quick probe, best of 5 each."""
    x = torch.empty(2**26, dtype=torch.float32)                         # 256 MB
    y = torch.empty_like(x)
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    y.copy_(x), a @ b                                                    # warm-up
    copy, mm = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        y.copy_(x)
        copy.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        a @ b
        mm.append(time.perf_counter() - t0)
    return 2 * x.numel() * 4 / min(copy), 2 * 1024**3 / min(mm)


def roofline(model, dtype, rows: int, seq_mean: float, threads: int) -> tuple[str, float]:
    """One decode step's bytes and FLOPs over this machine's measured copy bandwidth and matmul rate."""
    cfg, size = model.cfg, torch.finfo(dtype).bits // 8
    params = sum(p.numel() for p in model.parameters())                 # tied LM head counted once
    kv = rows * seq_mean * 2 * cfg.n_kv_head * cfg.head_dim * cfg.n_layer * size
    step_bytes, step_flops = params * size + kv, 2 * params * rows
    bandwidth, rate = machine_rates(dtype)
    mem_bound, compute_bound = rows * bandwidth / step_bytes, rows * rate / step_flops
    return (f"roofline ({dtype}, {threads} threads): step {step_bytes / 1e6:.0f} MB, {step_flops / 1e9:.1f} GFLOP; "
            f"copy {bandwidth / 1e9:.1f} GB/s, matmul {rate / 1e9:.0f} GFLOP/s; bounds {mem_bound:.0f} tokens/s "
            f"(memory), {compute_bound:.0f} tokens/s (compute)"), min(mem_bound, compute_bound)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per configuration (the median is reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("-G", type=int, default=8, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="tokens per sample (stopping disabled)")
    ap.add_argument("--only", choices=["ours", "hf"], default=None, help="run one side only")
    ap.add_argument("--compaction", action="store_true", help="instead: ours with stopping, compaction on vs off")
    ap.add_argument("--packed-weights", default="on", choices=["on", "off", "both"],
                    help="ours in float32: MKL-packed decode weights (sample.packed_linears); both: on, off alternating")
    ap.add_argument("--hf-configs", default="default,static,eager",
                    help="transformers configurations, comma-separated: default (sdpa attention, dynamic cache), "
                         "static (cache_implementation='static'), eager (attn_implementation='eager'); the fastest "
                         "is the ratio's")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "both"],
                    help="both sides' dtype; auto = sample.default_dtype (what this CPU runs fastest)")
    args = ap.parse_args()
    bad = set(args.hf_configs.split(",")) - {"default", "static", "eager"}
    if bad:
        ap.error(f"--hf-configs: unknown {sorted(bad)}; expected default, static, eager")
    torch.set_num_threads(args.threads)
    G, N = args.G, args.max_new_tokens
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {DEFAULT_MODEL}, 4 prompts x G={G} x {N} tokens")

    base, tok = load_pretrained(DEFAULT_MODEL, device="cpu", dtype=torch.float32)
    prompts = [tok.encode(tok.render_chat([{"role": "user", "content": q}])) for q in QUESTIONS]
    if args.compaction:
        return compaction(prompts, tok, G, N, args.runs)
    dtypes = {"auto": [sample_mod.default_dtype(torch.device("cpu"))], "float32": [torch.float32],
              "bfloat16": [torch.bfloat16], "both": [torch.float32, torch.bfloat16]}[args.dtype]
    print(f"dtypes: {', '.join(map(str, dtypes))} (--dtype {args.dtype})")
    configs = {}                                           # name -> callable(seed) -> tokens/s
    if args.only != "hf":
        for dtype in dtypes:
            m = base if dtype == torch.float32 else load_pretrained(DEFAULT_MODEL, device="cpu", dtype=dtype)[0]
            both = args.packed_weights == "both" and dtype == torch.float32      # packing is float32 only
            for packed in ([True, False] if both else [args.packed_weights == "on"]):
                name = f"ours {dtype}" + ("" if packed or dtype != torch.float32 else " unpacked")
                configs[name] = lambda seed, m=m, packed=packed: run_ours(m, prompts, G, N, seed, packed)
                run_ours(m, prompts, G, 8, 0, packed)      # warm-up
        print(f"peak RSS, ours only: {peak_rss_mb():.0f} MB")
    if args.only != "ours":
        import transformers
        print(f"transformers {transformers.__version__}")
        for dtype in dtypes:
            loaded = {}                                    # attention implementation -> model (default, static share)
            for hf_config in args.hf_configs.split(","):
                attn = "eager" if hf_config == "eager" else "sdpa"
                cache = "static" if hf_config == "static" else None
                if attn not in loaded:
                    loaded[attn] = transformers.AutoModelForCausalLM.from_pretrained(
                        resolve_model_path(DEFAULT_MODEL), dtype=dtype, attn_implementation=attn).eval()
                hf = loaded[attn]
                name = f"hf {dtype}" + ("" if hf_config == "default" else f" {hf_config}")
                try:
                    run_hf(hf, prompts, G, 8, tok.pad_id, 0, cache)        # warm-up
                except Exception as e:                                     # a configuration this version lacks
                    print(f"{name}: failed ({type(e).__name__}: {e}); left out", flush=True)
                    continue
                configs[name] = lambda seed, hf=hf, cache=cache: run_hf(hf, prompts, G, N, tok.pad_id, seed, cache)

    configs = dict(sorted(configs.items(), key=lambda kv: kv[0].split(" ")[1]))   # ours, hf, ours, hf per dtype
    results = {name: [] for name in configs}
    for r in range(args.runs):
        for name, run in configs.items():
            results[name].append(run(seed=r))
            print(f"run {r} {name:22s} {results[name][-1]:7.1f} tokens/s", flush=True)
    med = {name: statistics.median(v) for name, v in results.items()}
    for name, v in med.items():
        print(f"median {name:22s} {v:7.1f} tokens/s")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    ours = max((v for k, v in med.items() if k.startswith("ours")), default=float("nan"))
    hf = max((v for k, v in med.items() if k.startswith("hf")), default=float("nan"))
    line, bound = roofline(base, dtypes[-1], len(prompts) * G, max(map(len, prompts)) + N / 2, args.threads)
    print(line + f"; ours {ours / bound:.1%}, transformers {hf / bound:.1%} of the lower bound")
    print(f"sample_tokens_per_s={ours:.1f} hf_tokens_per_s={hf:.1f} ratio={ours / hf:.2f}")


if __name__ == "__main__":
    main()
