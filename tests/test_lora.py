"""LoRA (model.py section 6, train.py --lora-rank) against independent references: the base model (a plain copy of
the same weights), peft's LoraConfig on transformers' model with the same weights and adapter values, the merged
weights, transformers reading the merged export; and in train.py: the reference is the base, only the adapters
train, resume is exact, a checkpoint of another base model is refused.

Tolerances: float32 throughout except where a test says bf16. The logits of these tiny models are O(1); the same
network computed in another order (merged weights, peft's or transformers' code) differs by float32 rounding,
about 2^-24 relative per operation summed over a few hundred terms per layer and two layers: a few 1e-6 at most.
1e-5 (merged against adapted) and transformers' parity bound of 1e-4 (test_model.py)
leave a margin of 10x and more; a wrong scale, target or transpose moves the logits by 1e-2 or more."""
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train as T
from config import validate
from grpo import group_token_logprobs, token_logprobs
from model import (LORA_TARGETS, LoRALinear, ModelConfig, PRESETS, Transformer, add_adapters, adapters_off,
                   base_identity, load_adapters, load_pretrained, merge_adapters, merge_into, resolve_model_path, save_pretrained)
from test_model import PROMPTS, hf_logits, make_hf_tiny, padded_batch
from test_train import LetterTask, config, metric_lines

REPO = Path(__file__).resolve().parents[1]


def tiny_base(seed=1):
    """A tiny random model with every weight O(0.2), so each Linear matters to the logits."""
    return Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(std=0.2, seed=seed).eval()


def batch():
    ids = torch.randint(1, 320, (3, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, :3] = False                                   # a left-padded row
    return ids, mask


def randomise_adapters(model, seed=2, std=0.05):
    """B drawn at random too (it starts at zero), as after some training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * std)
    return model


def adapted(base, rank=4, alpha=8.0, targets=LORA_TARGETS):
    return add_adapters(copy.deepcopy(base), rank, alpha, targets, base={"path": "", "sha256": {}})


def test_adapted_model_starts_as_the_base():
    """B = 0 at init: the update adds exact zeros, so the logits are the base model's bit for bit."""
    base = tiny_base()
    model = adapted(base)
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask), base(ids, attention_mask=mask))
    n_adapted = sum(isinstance(m, LoRALinear) for m in model.modules())
    assert n_adapted == 7 * base.cfg.n_layer
    assert all(m.lora_A.abs().sum() > 0 for m in model.modules() if isinstance(m, LoRALinear))   # A is random


def test_gradients_reach_only_the_adapters_and_adapters_off_is_the_untouched_base():
    """Three AdamW steps on a loss of the logits: only lora_A / lora_B get gradients (A's is 0 at the first step,
    where B = 0; both are non-zero by the second), the base weights stay bit for bit, and with the adapters off the
    model computes exactly what the untouched base model does, while with them on it does not."""
    base = tiny_base()
    model = adapted(base)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert {n.rsplit(".", 1)[1] for n, p in model.named_parameters() if p.requires_grad} == {"lora_A", "lora_B"}
    opt = torch.optim.AdamW(trained, lr=1e-2)
    ids, mask = batch()
    for step in range(3):
        opt.zero_grad()
        model(ids, attention_mask=mask).logsumexp(-1)[mask].sum().backward()
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        assert all(m.lora_B.grad.abs().sum() > 0 for m in model.modules() if isinstance(m, LoRALinear))
        if step:
            assert all(m.lora_A.grad.abs().sum() > 0 for m in model.modules() if isinstance(m, LoRALinear))
        opt.step()
    for name, p in base.named_parameters():
        assert torch.equal(model.get_parameter(name), p), name
    with torch.no_grad():
        want = base(ids, attention_mask=mask)
        with adapters_off(model):
            assert torch.equal(model(ids, attention_mask=mask), want)
        assert (model(ids, attention_mask=mask) - want).abs().max() > 1e-2


def test_merged_weights_equal_the_adapted_forward():
    """W + (alpha/r) B A in one Linear (merge_into a plain copy; merge_adapters in place) computes the adapted
    model's logits to float32 rounding."""
    base = tiny_base()
    model = randomise_adapters(adapted(base, targets=("q_proj", "v_proj", "down_proj")))
    ids, mask = batch()
    plain = copy.deepcopy(base)
    merge_into(plain, model)
    with torch.no_grad():
        want = model(ids, attention_mask=mask)
        assert (want - base(ids, attention_mask=mask)).abs().max() > 1e-2          # the adapters do change it
        for merged in (plain, merge_adapters(copy.deepcopy(model))):
            assert (merged(ids, attention_mask=mask) - want).abs()[mask].max() <= 1e-5
    assert not any(isinstance(m, LoRALinear) for m in merge_adapters(model).modules()) and model.adapters is None


def test_shared_prompt_pass_gives_the_adapters_the_gradients_of_the_concatenated_rows():
    """grpo.group_token_logprobs runs each prompt once; with LoRA its embedding is frozen, so the prompt pass is
    not checkpointed: the adapters' gradients must still equal token_logprobs' on [prompt | completion] rows."""
    model = randomise_adapters(adapted(tiny_base()))
    prompt_ids = torch.tensor([[0, 5, 6, 7], [9, 8, 7, 6]])
    prompt_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]).bool()
    completion_ids = torch.randint(1, 320, (6, 5), generator=torch.Generator().manual_seed(0))
    completion_mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 3, 5, 1, 4])[:, None]
    weights = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    ids = torch.cat((prompt_ids.repeat_interleave(3, 0), completion_ids), 1)
    attn = torch.cat((prompt_mask.repeat_interleave(3, 0), completion_mask), 1)
    cmask = torch.cat((torch.zeros(6, 4, dtype=torch.bool), completion_mask), 1)
    grads = []
    for logp in (lambda: group_token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, 0.7),
                 lambda: token_logprobs(model, ids, attn, cmask, 0.7)[:, 4:]):
        model.zero_grad()
        (logp() * weights).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    for g, e in zip(*grads):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-5)       # float32 sums in another order


@pytest.mark.parametrize("arch, targets", [("llama", LORA_TARGETS), ("qwen2", ("q_proj", "v_proj", "up_proj"))])
def test_adapted_forward_equals_peft(arch, targets, tmp_path):
    """peft's LoraConfig(r, lora_alpha, target_modules) on transformers' model of the same weights, its lora_A and
    lora_B set to our A and B: the same logits (qwen2: q/k/v biases; a subset of targets)."""
    peft = pytest.importorskip("peft")
    hf = make_hf_tiny(arch, tmp_path)
    ours = randomise_adapters(adapted(load_pretrained(tmp_path, device="cpu")[0], rank=4, alpha=12.0,
                                      targets=targets))
    theirs = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=12.0, target_modules=list(targets),
                                                     lora_dropout=0.0))
    n = 0
    with torch.no_grad():
        for name, m in ours.named_modules():
            if isinstance(m, LoRALinear):
                lora = theirs.base_model.model.get_submodule("model." + name)
                lora.lora_A["default"].weight.copy_(m.lora_A)
                lora.lora_B["default"].weight.copy_(m.lora_B)
                n += 1
    assert n == len(targets) * ours.cfg.n_layer
    ids, mask = padded_batch([[5 + i for i in range(len(p))] for p in PROMPTS])
    with torch.no_grad():
        want = ours(ids, attention_mask=mask)
        assert (hf_logits(theirs, ids, mask) - want).abs()[mask].max() <= 1e-4
        with theirs.disable_adapter():                                         # and peft's base is our base
            with adapters_off(ours):
                assert (hf_logits(theirs, ids, mask) - ours(ids, attention_mask=mask)).abs()[mask].max() <= 1e-4
        assert (hf_logits(theirs, ids, mask) - want).abs()[mask].max() <= 1e-4   # adapters back on


def test_adapter_directory_merges_on_load_and_exports_for_transformers(tmp_path):
    """save_pretrained of an adapted model writes only the adapters and the base's identity; load_pretrained
    merges them into the base again; `python model.py --export` writes a plain directory that transformers loads,
    with the adapted model's logits. A base whose weight files changed is refused."""
    transformers = pytest.importorskip("transformers")
    make_hf_tiny("qwen2", tmp_path / "base")
    base, tok = load_pretrained(tmp_path / "base", device="cpu")
    model = randomise_adapters(add_adapters(copy.deepcopy(base), 4, 8.0, base=base_identity(tmp_path / "base")))
    save_pretrained(model, tok, tmp_path / "adapters")
    assert {p.name for p in (tmp_path / "adapters").iterdir()} >= {"adapter_config.json", "adapter.safetensors"}
    assert not (tmp_path / "adapters" / "model.safetensors").exists()
    ids, mask = padded_batch([tok.encode(p) for p in PROMPTS])
    with torch.no_grad():
        want = model(ids, attention_mask=mask)
        loaded = load_pretrained(tmp_path / "adapters", device="cpu")[0]
        assert (loaded(ids, attention_mask=mask) - want).abs()[mask].max() <= 1e-5
    subprocess.run([sys.executable, "model.py", "--model", str(tmp_path / "adapters"), "--export",
                    str(tmp_path / "merged")], cwd=REPO, check=True, capture_output=True)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    assert (hf_logits(theirs, ids, mask) - want).abs()[mask].max() <= 1e-4
    with torch.no_grad():
        base.layers[0].mlp.up_proj.weight.add_(0.01)                        # another base model, same path
    save_pretrained(base, tok, tmp_path / "base")
    with pytest.raises(ValueError, match="adapter_config.json: the adapters were trained on .* another base model"):
        load_pretrained(tmp_path / "adapters", device="cpu")


def lora_config(tmp_path, **kw):
    return config(tmp_path, **{"lora_rank": 4, "lora_alpha": 8.0, "lr": 1e-2, **kw})


def test_lora_run_trains_only_the_adapters_and_resumes_exactly(tmp_path, monkeypatch):
    """train.py --lora-rank: the optimizer holds only the adapters; the reference is the policy with its adapters
    off, so step 1's KL is exactly 0 and step 2's is not; a run resumed after step 2 logs and saves what the
    uninterrupted one does; the checkpoint holds adapters, not weights; the base weights never move."""
    monkeypatch.setattr(T, "load_task", lambda spec, seed=0: LetterTask())
    kw = dict(steps=4, save_every=2, beta=0.04)
    T.train(lora_config(tmp_path / "a", **kw))
    T.train(lora_config(tmp_path / "b", **{**kw, "steps": 2}))
    T.train(lora_config(tmp_path / "b", **kw, resume=True))
    a, b = (metric_lines(tmp_path / x / "out" / "metrics.jsonl") for x in "ab")
    assert a == b and len(a) == 4
    assert a[0]["kl_token_mean"] == 0.0 and a[1]["kl_token_mean"] > 0
    ckpt = tmp_path / "a" / "out" / "checkpoints" / "step_4"
    assert (ckpt / "adapter.safetensors").exists() and not (ckpt / "model.safetensors").exists()
    assert json.loads((ckpt / "adapter_config.json").read_text())["rank"] == 4
    assert (ckpt / "adapter.safetensors").read_bytes() == (
        tmp_path / "b" / "out" / "checkpoints" / "step_4" / "adapter.safetensors").read_bytes()
    run, _, _ = T.setup_run(lora_config(tmp_path / "c"))
    assert run.reference is run.policy and run.sampler is run.policy           # float32: the policy samples
    held = [p for g in run.optimizer.param_groups for p in g["params"]]
    assert len(held) == 2 * 7 * run.policy.cfg.n_layer and all(p.requires_grad for p in held)
    assert not any(p.requires_grad for n, p in run.policy.named_parameters() if "lora_" not in n)
    trained_base = load_pretrained(ckpt, device="cpu")[0]                      # merged: differs from the base
    fresh = load_pretrained("tiny", device="cpu")[0]
    assert any(not torch.equal(p, q) for p, q in zip(trained_base.parameters(), fresh.parameters()))


def test_lora_bf16_keeps_the_base_in_bf16_and_the_reference_exact(tmp_path, monkeypatch):
    """Under bf16 the blocks' frozen Linear weights are stored in bf16 (autocast rounds them so anyway), the
    embeddings, norms and adapters stay float32; the bf16 sampler gets the merged weights, rounded once to bf16;
    and step 1's KL is still exactly 0."""
    monkeypatch.setattr(T, "load_task", lambda spec, seed=0: LetterTask())
    cfg = lora_config(tmp_path, dtype="bfloat16", beta=0.04, steps=2)
    run, _, _ = T.setup_run(cfg)
    dtypes = {n: p.dtype for n, p in run.policy.named_parameters()}
    assert dtypes["layers.0.self_attn.q_proj.weight"] == dtypes["layers.1.mlp.down_proj.weight"] == torch.bfloat16
    assert dtypes["layers.0.self_attn.q_proj.lora_A"] == dtypes["embed_tokens.weight"] == torch.float32
    assert dtypes["layers.0.input_layernorm.weight"] == torch.float32
    randomise_adapters(run.policy)
    T.refresh_sampler(run)
    for name, m in run.policy.named_modules():
        if isinstance(m, LoRALinear):
            want = (m.weight.double() + m.scale * m.lora_B.double() @ m.lora_A.double()).to(torch.bfloat16)
            got = run.sampler.get_submodule(name).weight     # at most one bf16 step (2^-7 relative) off: the sum is
            assert got.dtype == torch.bfloat16                # rounded to float32 before bf16
            assert (got.float() - want.float()).abs().max() <= 2**-7 * want.float().abs().max()
            assert not torch.equal(got, m.weight)                              # the update did reach it
    T.train(cfg)
    rows = metric_lines(tmp_path / "out" / "metrics.jsonl")
    assert rows[0]["kl_token_mean"] == 0.0 and rows[1]["kl_token_mean"] > 0


def test_lora_sft_then_grpo_from_its_adapter_checkpoint(tmp_path, monkeypatch):
    """The pipeline's chain with --lora-rank: SFT's loss falls; GRPO starts from the SFT checkpoint (an adapter
    directory, merged on load, so new adapters start on the SFT model: step 1's KL is 0); the GRPO checkpoint
    loads merged, and equals the SFT model with the GRPO adapters applied."""
    monkeypatch.setattr(T, "load_task", lambda spec, seed=0: LetterTask())
    data = tmp_path / "sft.jsonl"
    pairs = [("2+3=", "5"), ("7+1=", "8")]
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs))
    T.train(lora_config(tmp_path / "sft", stage="sft", data=str(data), template="raw", prompts_per_step=2, epochs=30,
                        lr=3e-2, lora_rank=8))
    losses = [r["loss"] for r in metric_lines(tmp_path / "sft" / "out" / "metrics.jsonl") if "loss" in r]
    # every step sees both examples, so frozen weights would log one loss 30 times; the tiny model's tied embedding
    # (std 0.02) is frozen, which bounds its logits (norm 8 x 0.16) and so how far this loss can fall
    assert losses[-1] < 0.9 * losses[0], (losses[0], losses[-1])
    sft_ckpt = tmp_path / "sft" / "out" / "checkpoints" / "step_30"
    T.train(lora_config(tmp_path / "grpo", model=str(sft_ckpt), steps=1, beta=0.04))
    assert metric_lines(tmp_path / "grpo" / "out" / "metrics.jsonl")[0]["kl_token_mean"] == 0.0
    grpo_ckpt = tmp_path / "grpo" / "out" / "checkpoints" / "step_1"
    merged = load_pretrained(grpo_ckpt, device="cpu")[0]
    assert merged.adapters is None and not any(isinstance(m, LoRALinear) for m in merged.modules())
    sft_model = load_pretrained(sft_ckpt, device="cpu")[0]
    by_hand = add_adapters(copy.deepcopy(sft_model), 4, 8.0, base=base_identity(sft_ckpt))
    load_adapters(by_hand, grpo_ckpt)
    ids, mask = batch()
    with torch.no_grad():
        want = by_hand(ids, attention_mask=mask)
        assert (want - sft_model(ids, attention_mask=mask)).abs().max() > 1e-4      # GRPO did move the adapters
        assert (merged(ids, attention_mask=mask) - want).abs()[mask].max() <= 1e-5


def test_lora_resume_refuses_another_base_model(tmp_path, monkeypatch):
    """A checkpoint's adapters name their base model by its files' SHA-256: resuming on changed files fails."""
    monkeypatch.setattr(T, "load_task", lambda spec, seed=0: LetterTask())
    shutil.copytree(resolve_model_path("tiny"), tmp_path / "base")
    T.train(lora_config(tmp_path, model=str(tmp_path / "base"), steps=1))
    base, tok = load_pretrained(tmp_path / "base", device="cpu")
    with torch.no_grad():
        base.norm.weight.mul_(2)
    save_pretrained(base, tok, tmp_path / "base")
    with pytest.raises(T.InputError, match="another base model"):
        T.train(lora_config(tmp_path, model=str(tmp_path / "base"), steps=2, resume=True))


@pytest.mark.parametrize("flags, message", [
    (dict(lora_targets="q_proj,lm_head"), "--lora-targets q_proj,lm_head: expected distinct"),
    (dict(lora_targets="q_proj,q_proj"), "--lora-targets q_proj,q_proj: expected distinct"),
    (dict(lora_rank=-1), "--lora-rank -1: must be >= 0"),
    (dict(lora_rank=8, ref_reset_every=2), "--ref-reset-every with --lora-rank"),
    (dict(lora_rank=8, fsdp=True), "--fsdp with --lora-rank"),
])
def test_bad_lora_flags_are_refused(flags, message):
    with pytest.raises(ValueError, match=message):
        validate(T.TrainConfig(**flags))
