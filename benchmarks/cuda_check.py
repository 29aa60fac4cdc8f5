"""
benchmarks/cuda_check.py: r1 on a GPU in one call. Runs the test suite with CUDA visible, times the
sampler against transformers' generate on random-weight models of three real shapes, checks that the
CUDA-graph decode gives the eager tokens, and times one GRPO step through train.py.

    python benchmarks/cuda_check.py --out cuda_out                      # on a CUDA machine (~8 min on an H200)
    python benchmarks/cuda_check.py --out /tmp/cc --device cpu --small  # the same path end to end on a CPU

Sections, in this order (each writes its lines to OUT/log.txt and its figures to OUT/results.json; a
failing section is logged and the others still run):
  1. sampler: per shape (SmolLM2-135M, Qwen2.5-0.5B, Qwen2.5-1.5B; configs below, random weights: the
     same cost as real ones), bf16, P=64 prompts (random ids, 32-96 tokens, left-padded) x G=8 x N=512
     new tokens, stopping off, temperature 1: tokens/s = P*G*N / wall seconds of one call, prefill
     included, for ours eager, ours with CUDA graphs (sample(compile=True)), and transformers generate
     (default cache; at --hf-static-shape also a static cache, which transformers compiles, in a child
     process with a time limit). Sides alternate, --runs timed runs each after a short warm-up; the
     median is reported. Before timing, eager and graphs are compared on the same seed (greedy and
     sampled, 64 tokens): tokens and log-probs must be equal bit for bit. One layer's decode attention
     is timed both ways (model.matmul_attention, SDPA).
     Roofline per decode step at batch B = P*G and the run's mean key length S:
       bytes = matmul weights (every Linear and the LM head, 2 bytes each) + K and V read (B*S*2*n_kv_head
               *head_dim*n_layer*2 bytes); FLOPs = 2*matmul weights*B + 4*B*n_head*S*head_dim*n_layer.
     Bounds: bytes / --bandwidth and FLOPs / --flops (datasheet figures by default; the measured copy
     bandwidth and bf16 matmul rate are printed beside them). Each side's tokens/s is printed as a
     fraction of each bound.
  2. grpo: two GRPO steps of train.py (16 prompts x G=8, 512 new tokens, train.py's defaults otherwise:
     beta 0.04, micro-batches of 8, activation checkpointing, CUDA-graph sampling) on the 0.5B shape,
     random weights, the arith task: seconds per step (the second is warm) and peak
     torch.cuda.max_memory_allocated.
  3. tests: python -m pytest tests {--pytest-args} with CUDA visible (tests that take `device` run on
     cpu and cuda), in whatever is left of --budget seconds.
The last lines are a short table.
"""
import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from model import ModelConfig, Transformer  # noqa: E402
from sample import sample  # noqa: E402

SHAPES = {   # the Hugging Face configs' fields that set the cost
    "SmolLM2-135M": dict(arch="llama", vocab_size=49152, n_layer=30, n_head=9, n_kv_head=3, n_embd=576,
                         intermediate_size=1536, head_dim=64, rope_theta=100000.0, tie_embeddings=True),
    "Qwen2.5-0.5B": dict(arch="qwen2", vocab_size=151936, n_layer=24, n_head=14, n_kv_head=2, n_embd=896,
                         intermediate_size=4864, head_dim=64, rope_theta=1e6, tie_embeddings=True),
    "Qwen2.5-1.5B": dict(arch="qwen2", vocab_size=151936, n_layer=28, n_head=12, n_kv_head=2, n_embd=1536,
                         intermediate_size=8960, head_dim=128, rope_theta=1e6, tie_embeddings=True),
}
SMALL = {    # --small: the same code on CPU-sized shapes
    "tiny-llama": dict(arch="llama", vocab_size=512, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                       intermediate_size=128, head_dim=16, tie_embeddings=True),
    "tiny-qwen2": dict(arch="qwen2", vocab_size=1024, n_layer=2, n_head=4, n_kv_head=2, n_embd=128,
                       intermediate_size=256, head_dim=32, tie_embeddings=True),
}

LOG = None


def log(*parts):
    line = " ".join(str(p) for p in parts)
    print(line, flush=True)
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_model(shape: dict, device, dtype, seed: int = 0) -> Transformer:
    """Random weights made on the device: normal(0, 0.02) matrices, ones for norms, zero biases."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = Transformer(ModelConfig(**shape))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    return model.to(dtype).requires_grad_(False).eval()


def hf_model(ours: Transformer, device, dtype):
    """transformers' model of the same config, holding our weights."""
    import transformers
    cfg = transformers.AutoConfig.for_model(**ours.cfg.to_hf())
    with torch.device(device):
        hf = transformers.AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    state = {("" if k == "lm_head.weight" else "model.") + k: v for k, v in ours.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    if ours.cfg.tie_embeddings:
        hf.tie_weights()
    return hf.eval()


def random_prompts(P: int, vocab: int, lo: int, hi: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lo, hi + 1, (P,), generator=g).tolist()
    return [torch.randint(1, vocab, (n,), generator=g).tolist() for n in lens]


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def run_hf(hf, prompts, G, N, device, seed, static=False):
    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts], device=device)
    torch.manual_seed(seed)
    kw = dict(cache_implementation="static") if static else {}
    with torch.inference_mode():
        out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                          num_return_sequences=G, max_new_tokens=N, min_new_tokens=N, pad_token_id=0,
                          eos_token_id=None, **kw)
    assert out.shape == (len(prompts) * G, L + N), out.shape
    return out


def probe(device):
    """Measured ceilings: device-to-device copy bandwidth (bytes read + written) and a bf16 matmul rate."""
    if device.type != "cuda":
        return {}
    x = torch.empty(2**30, dtype=torch.uint8, device=device).random_(0, 255)
    y = torch.empty_like(x)
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        y.copy_(x)
        a @ b
    res = {}
    for name, fn, work in (("copy_GBps", lambda: y.copy_(x), 2 * x.numel() / 1e9),
                           ("matmul_TFLOPs", lambda: a @ b, 2 * 8192**3 / 1e12)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            fn()
        end.record()
        torch.cuda.synchronize()
        res[name] = work * 10 / (start.elapsed_time(end) / 1e3)
    del x, y, a, b
    torch.cuda.empty_cache()
    return res


def roofline(cfg: ModelConfig, B: int, S_mean: float, bandwidth: float, flops: float) -> dict:
    """Per decode step: bytes moved and FLOPs (header), and the tokens/s each bound allows."""
    linear = cfg.n_layer * (cfg.n_embd * (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim
                            + cfg.n_head * cfg.head_dim * cfg.n_embd + 3 * cfg.n_embd * cfg.intermediate_size)
    weights = linear + cfg.vocab_size * cfg.n_embd                      # + the LM head
    kv = B * S_mean * 2 * cfg.n_kv_head * cfg.head_dim * cfg.n_layer * 2
    step_bytes = 2 * weights + kv
    step_flops = 2 * weights * B + 4 * B * cfg.n_head * S_mean * cfg.head_dim * cfg.n_layer
    return {"step_GB": step_bytes / 1e9, "step_TFLOP": step_flops / 1e12,
            "mem_bound_tok_s": B / (step_bytes / bandwidth), "compute_bound_tok_s": B / (step_flops / flops)}


def attention_microbench(cfg: ModelConfig, B: int, S: int, device, dtype) -> dict:
    """One decode step's attention for one layer: model.matmul_attention against SDPA (mask + GQA)."""
    from model import matmul_attention
    q = torch.randn(B, cfg.n_head, 1, cfg.head_dim, device=device, dtype=dtype)
    kv = [torch.randn(B, cfg.n_kv_head, S + 64, cfg.head_dim, device=device, dtype=dtype)[:, :, :S] for _ in range(2)]
    mask = torch.ones(B, 1, 1, S, dtype=torch.bool, device=device)
    mask[::2, :, :, :S // 4] = False
    fns = {"matmul_attention": lambda: matmul_attention(q, *kv, mask),
           "sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(q, *kv, attn_mask=mask, enable_gqa=True)}
    ref = fns["sdpa"]().float()
    err = ((fns["matmul_attention"]().float() - ref).norm() / ref.norm()).item()
    out = {"rel_err": err}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        _, dt = timed(lambda: [fn() for _ in range(20)], device)
        out[name + "_us"] = dt / 20 * 1e6
    return out


def bench_sampler(name, shape, args, device, results):
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    P, G, N = args.prompts, args.group_size, args.max_new_tokens
    model = random_model(shape, device, dtype)
    cfg = model.cfg
    prompts = random_prompts(P, cfg.vocab_size, *args.prompt_len)
    L = max(map(len, prompts))
    r = {"shape": name, "P": P, "G": G, "N": N, "L": L}
    graphs = device.type == "cuda"
    if graphs:   # equality first: the same seed through eager and graphs
        for temp in (0.0, 1.0):
            kw = dict(group_size=G, max_new_tokens=min(N, 64), temperature=temp, seed=1)
            a, b = sample(model, prompts, **kw), sample(model, prompts, compile=True, **kw)
            r[f"equal_T{temp:g}"] = bool(torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs))
            log(f"{name}: eager vs graphs, temperature {temp:g}, {min(N, 64)} tokens: "
                f"tokens equal {torch.equal(a.tokens, b.tokens)}, log-probs equal {torch.equal(a.logprobs, b.logprobs)}")
    r["attention"] = attention_microbench(cfg, P * G, L + N // 2, device, dtype)
    log(f"{name}: one layer's decode attention at B={P * G}, S={L + N // 2}: {r['attention']}")
    hf = hf_model(model, device, dtype) if not args.no_hf else None
    if hf is not None:   # the same weights: logits agree (a sanity check that the comparison is fair)
        ids = torch.tensor([prompts[0][:32]], device=device)
        with torch.no_grad():
            d = (model(ids).float() - hf(ids).logits.float()).abs().max().item()
        r["hf_max_logit_diff"] = d
        log(f"{name}: ours vs transformers logits on one prompt, max abs diff {d:.4f} ({dtype})")
    sides = {"ours_eager": lambda s: sample(model, prompts, G, N, seed=s)}
    if graphs:
        sides["ours_graphs"] = lambda s: sample(model, prompts, G, N, seed=s, compile=True)
    if hf is not None:
        sides["hf_generate"] = lambda s: run_hf(hf, prompts, G, N, device, s)
    for side, fn in sides.items():      # warm-up: a short run of each (graph capture, cuBLAS handles, ...)
        if side == "hf_generate":
            run_hf(hf, prompts, G, 8, device, 0)
        else:
            sample(model, prompts, G, 8, seed=0, compile=side == "ours_graphs")
    times = {side: [] for side in sides}
    for run in range(args.runs):
        for side, fn in sides.items():
            if side == "hf_generate" and run >= args.hf_runs:
                continue
            _, dt = timed(lambda: fn(run), device)
            times[side].append(dt)
            log(f"{name} run {run} {side:12s} {P * G * N / dt:10.0f} tokens/s ({dt:.2f} s)")
    for side, ts in times.items():
        r[side + "_tok_s"] = P * G * N / statistics.median(ts)
        r[side + "_runs_s"] = ts
    if graphs and name == args.hf_static_shape:
        r["hf_static_tok_s"] = hf_static_child(name, args)
    bw, fl = args.bandwidth * 1e12, args.flops * 1e12
    r["roofline"] = roofline(cfg, P * G, L + (N + 1) / 2, bw, fl)
    for side in [s for s in ("ours_eager", "ours_graphs", "hf_generate", "hf_static") if r.get(s + "_tok_s")]:
        r[side + "_frac_mem"] = r[side + "_tok_s"] / r["roofline"]["mem_bound_tok_s"]
        r[side + "_frac_compute"] = r[side + "_tok_s"] / r["roofline"]["compute_bound_tok_s"]
    log(f"{name}: {json.dumps({k: v for k, v in r.items() if k != 'attention'})}")
    results["sampler"].append(r)
    del model, hf
    if device.type == "cuda":
        torch.cuda.empty_cache()


def hf_static_child(name, args) -> float | None:
    """transformers generate with a static cache (which it compiles) at one shape, in a child process
    with a time limit, since compilation may take minutes. Returns tokens/s of the timed run, or None."""
    cmd = [sys.executable, __file__, "--hf-static-child", name, "--out", args.out, "--runs", "1",
           "--prompts", str(args.prompts), "--group-size", str(args.group_size),
           "--max-new-tokens", str(args.max_new_tokens), "--dtype", args.dtype]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.hf_static_timeout)
    except subprocess.TimeoutExpired:
        log(f"{name}: transformers static cache + compile did not finish in {args.hf_static_timeout} s")
        return None
    with open(Path(args.out) / "hf_static.log", "w") as f:
        f.write(p.stdout + p.stderr)
    lines = [l for l in p.stdout.splitlines() if l.startswith("hf_static_tok_s=")]
    log(f"{name}: transformers static cache + compile: {lines[-1] if lines else 'failed (hf_static.log)'}"
        f" ({time.time() - t0:.0f} s with compilation)")
    return float(lines[-1].split("=")[1]) if lines else None


def run_hf_static_child(args):
    device = torch.device("cuda")
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    model = random_model(SHAPES[args.hf_static_child], device, dtype)
    hf = hf_model(model, device, dtype)
    del model
    prompts = random_prompts(args.prompts, hf.config.vocab_size, 32, 96)
    G, N = args.group_size, args.max_new_tokens
    _, dt0 = timed(lambda: run_hf(hf, prompts, G, N, device, 0, static=True), device)   # compiles
    print(f"first call (compiles): {dt0:.1f} s", flush=True)
    _, dt = timed(lambda: run_hf(hf, prompts, G, N, device, 1, static=True), device)
    print(f"hf_static_tok_s={args.prompts * G * N / dt:.1f}", flush=True)


def bench_grpo(args, device, results):
    """Two GRPO steps of train.train on the 0.5B shape (or a tiny one with --small)."""
    import train as train_mod
    from model import byte_tokenizer, save_pretrained
    shape = SMALL["tiny-qwen2"] if args.small else SHAPES["Qwen2.5-0.5B"]
    work = Path(tempfile.mkdtemp(prefix="cuda_check_grpo_"))
    model = random_model(shape, device, torch.float32)
    save_pretrained(model, byte_tokenizer(work), work / "model")
    del model
    train_mod.save_checkpoint = lambda *a, **k: None         # the timing is of the step, not of writing GBs
    P, G, N = (4, 2, 16) if args.small else (16, 8, 512)
    cfg = train_mod.TrainConfig(model=str(work / "model"), task="arith", steps=2, prompts_per_step=P,
                                group_size=G, max_new_tokens=N, eval_prompts=0, rollouts_every=0,
                                out_dir=str(work / "out"), device=str(device), dtype=args.dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_mod.train(cfg)
    steps = [json.loads(l) for l in (work / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "step_s" in s]
    r = {"P": P, "G": G, "N": N, "step_s": [s["step_s"] for s in steps],
         "sample_tok_s": [s["sample_tok_s"] for s in steps], "len_mean": [s["len_mean"] for s in steps]}
    if device.type == "cuda":
        r["peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    log(f"grpo: {json.dumps(r)}")
    results["grpo"] = r


def run_tests(args, results):
    cmd = [sys.executable, "-m", "pytest", "tests", *args.pytest_args.split()]
    t0 = time.time()
    timeout = max(30, args.budget - (t0 - T_START)) if args.budget else None
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = "timeout", _text(e.stdout), _text(e.stderr)
    (Path(args.out) / "pytest.log").write_text(stdout + stderr)
    tail = [l for l in stdout.strip().splitlines() if l.strip()][-1:] or ["(no output)"]
    results["tests"] = {"rc": rc, "summary": tail[0], "seconds": time.time() - t0}
    log(f"tests: rc={rc} {tail[0]} ({time.time() - t0:.0f} s)")
    for line in stdout.splitlines():
        if line.startswith(("FAILED", "ERROR")):
            log("  " + line)


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


T_START = time.time()


def main():
    global LOG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for log.txt, results.json, pytest.log")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--small", action="store_true", help="tiny shapes and workload (a CPU check of this script)")
    ap.add_argument("--sections", default="tests,sampler,grpo", help="comma-separated subset to run")
    ap.add_argument("--shapes", default=None, help="comma-separated shape names (default: all of the size)")
    ap.add_argument("--pytest-args", default="-q -x", help="arguments after `pytest tests`")
    ap.add_argument("--budget", type=int, default=470, help="seconds for the whole script: the tests, which run "
                    "last, get what is left (0 = no limit)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--runs", type=int, default=2, help="timed runs of each of ours (median)")
    ap.add_argument("--hf-runs", type=int, default=1, help="timed runs of transformers (median)")
    ap.add_argument("--no-hf", action="store_true", help="skip transformers' default generate (not --hf-static-shape)")
    ap.add_argument("--hf-static-shape", default="Qwen2.5-1.5B", help="shape for transformers' static cache + compile")
    ap.add_argument("--hf-static-timeout", type=int, default=150)
    ap.add_argument("--hf-static-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bandwidth", type=float, default=4.8, help="TB/s for the memory bound (H200 datasheet)")
    ap.add_argument("--flops", type=float, default=800.0, help="TFLOP/s for the compute bound (bf16 dense)")
    args = ap.parse_args()
    args.prompt_len = (32, 96)
    if args.hf_static_child:
        return run_hf_static_child(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    LOG = out / "log.txt"
    if args.small:
        args.prompts, args.group_size, args.max_new_tokens, args.prompt_len = 2, 2, 16, (3, 7)
    device = torch.device(args.device)
    shapes = SMALL if args.small else SHAPES
    if args.shapes:
        shapes = {k: shapes[k] for k in args.shapes.split(",")}
    sections = args.sections.split(",")
    results = {"sampler": [], "torch": torch.__version__, "device": str(device),
               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None, "args": vars(args)}
    try:
        import transformers
        results["transformers"] = transformers.__version__
    except ImportError:
        args.no_hf = True
    log(f"torch {torch.__version__}, transformers {results.get('transformers')}, device {device} {results['gpu'] or ''}")
    t_start = time.time()
    steps = [("probe", lambda: results.update(probe=probe(device)) or log(f"probe: {results['probe']}")),
             *[("sampler", lambda n=n, s=s: bench_sampler(n, s, args, device, results)) for n, s in shapes.items()],
             ("grpo", lambda: bench_grpo(args, device, results)),
             ("tests", lambda: run_tests(args, results))]
    for section, fn in steps:
        if section not in sections and section != "probe":
            continue
        t0 = time.time()
        try:
            fn()
        except Exception as e:   # keep going: one broken section must not cost the others' GPU time
            import traceback
            log(f"{section}: FAILED {type(e).__name__}: {e}")
            log(traceback.format_exc())
            results.setdefault("failed", []).append(f"{section}: {type(e).__name__}: {e}")
        log(f"[{section} {time.time() - t0:.0f} s, total {time.time() - t_start:.0f} s]")
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    summary(results, args)


def summary(results, args):
    log("\n=== summary ===")
    if "tests" in results:
        log(f"tests: {results['tests']['summary']}")
    if results.get("probe"):
        log(f"measured: copy {results['probe']['copy_GBps']:.0f} GB/s, bf16 matmul {results['probe']['matmul_TFLOPs']:.0f} "
            f"TFLOP/s; bounds use {args.bandwidth} TB/s and {args.flops} TFLOP/s")
    log(f"{'shape':14s} {'eager':>9s} {'graphs':>9s} {'hf':>9s} {'hf_static':>9s} {'graphs/hf':>9s} "
        f"{'mem_bound':>9s} {'cmp_bound':>9s} {'graph%mem':>9s} {'graph%cmp':>9s} equal")
    for r in results["sampler"]:
        g = r.get("ours_graphs_tok_s") or float("nan")
        hf = max([v for v in (r.get("hf_generate_tok_s"), r.get("hf_static_tok_s")) if v] or [float("nan")])
        rf = r["roofline"]
        log(f"{r['shape']:14s} {r.get('ours_eager_tok_s', math.nan):9.0f} {g:9.0f} "
            f"{r.get('hf_generate_tok_s') or math.nan:9.0f} {r.get('hf_static_tok_s') or math.nan:9.0f} {g / hf:9.2f} "
            f"{rf['mem_bound_tok_s']:9.0f} {rf['compute_bound_tok_s']:9.0f} {g / rf['mem_bound_tok_s']:9.1%} "
            f"{g / rf['compute_bound_tok_s']:9.1%} {r.get('equal_T0')},{r.get('equal_T1')}")
    if "grpo" in results:
        g = results["grpo"]
        log(f"grpo step ({g['P']}x{g['G']}x{g['N']}): {', '.join(f'{s:.1f}' for s in g['step_s'])} s, "
            f"sampling {', '.join(f'{s:.0f}' for s in g['sample_tok_s'])} tokens/s, peak {g.get('peak_GiB', math.nan):.1f} GiB")
    for f in results.get("failed", []):
        log(f"FAILED {f}")


if __name__ == "__main__":
    main()
