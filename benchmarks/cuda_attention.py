"""benchmarks/cuda_attention.py (CUDA only; from the repo root): decode attention at Qwen2.5-1.5B's heads
(B=512, nh=12, nkv=2, hs=128, S=384 of a 1024-slot cache, bf16): for each kernel, is the CUDA-graph replay
equal to the eager call bit for bit (and one eager call to the next), and how long does one call take?
Results: benchmarks/results/cuda_check_h200_run3.log."""
import sys
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
sys.path.insert(0, ".")
from model import matmul_attention
torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
B, nh, nkv, hs, Tmax, S = 512, 12, 2, 128, 1024, 384
kc = torch.randn(B, nkv, Tmax, hs, device=dev, dtype=dt)
vc = torch.randn(B, nkv, Tmax, hs, device=dev, dtype=dt)
q = torch.randn(B, nh, 1, hs, device=dev, dtype=dt)
start = torch.randint(0, 64, (B,), device=dev)
mask = (torch.arange(S, device=dev)[None, :] >= start[:, None])[:, None, None, :]    # (B,1,1,S) left padding
k, v = kc[:, :, :S], vc[:, :, :S]
fmask = torch.zeros(mask.shape, device=dev, dtype=dt).masked_fill(~mask, float("-inf"))

def sdpa(m, backend=None):
    def f():
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)
    return f

def sdpa_rep(m, backend):   # k, v repeated to nh heads (no enable_gqa)
    def f():
        kk, vv = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, kk, vv, attn_mask=m)
    return f

def mm_contig():
    return matmul_attention(q, k.contiguous(), v.contiguous(), mask)

def mm_bf16_scores():   # scores and softmax in bf16-out matmul, float32 softmax on a smaller tensor
    qq = q.reshape(B, nkv, nh // nkv, hs)
    att = torch.einsum("bgqd,bgsd->bgqs", qq, k).float() * hs ** -0.5
    att = att.masked_fill(~mask.view(B, 1, 1, S), float("-inf")).softmax(-1)
    return torch.einsum("bgqs,bgsd->bgqd", att.to(dt), v).reshape(B, nh, 1, hs)

variants = {"matmul_attention": lambda: matmul_attention(q, k, v, mask), "matmul_contig": mm_contig,
            "einsum": mm_bf16_scores, "sdpa_default_bool": sdpa(mask), "sdpa_default_float": sdpa(fmask),
            "sdpa_efficient_bool": sdpa(mask, SDPBackend.EFFICIENT_ATTENTION),
            "sdpa_efficient_float": sdpa(fmask, SDPBackend.EFFICIENT_ATTENTION),
            "sdpa_cudnn_bool": sdpa(mask, SDPBackend.CUDNN_ATTENTION),
            "sdpa_math_bool": sdpa(mask, SDPBackend.MATH),
            "sdpa_efficient_rep": sdpa_rep(mask, SDPBackend.EFFICIENT_ATTENTION),
            "sdpa_cudnn_rep": sdpa_rep(mask, SDPBackend.CUDNN_ATTENTION)}
ref = matmul_attention(q.float(), k.float(), v.float(), mask)
for name, fn in variants.items():
    try:
        s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3): eager = fn()
        torch.cuda.current_stream().wait_stream(s)
        eager = fn().clone()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = fn()
        g.replay(); torch.cuda.synchronize()
        eq = torch.equal(out, eager)
        eager2 = fn(); same_eager = torch.equal(eager2, eager)
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(100): g.replay()
        e1.record(); torch.cuda.synchronize()
        us = e0.elapsed_time(e1) * 10
        err = ((out.float() - ref).norm() / ref.norm()).item()
        diff = (out.float() - eager.float()).abs().max().item()
        print(f"{name:22s} graph==eager {eq!s:5s} eager==eager {same_eager!s:5s} maxdiff {diff:.2e} "
              f"{us:7.1f} us/call  rel_err_vs_fp32 {err:.2e}", flush=True)
    except Exception as e:
        print(f"{name:22s} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
kv_bytes = 2 * B * nkv * S * hs * 2
print(f"K+V bytes per call {kv_bytes/1e6:.1f} MB -> {kv_bytes/4.8e12*1e6:.1f} us at 4.8 TB/s")
