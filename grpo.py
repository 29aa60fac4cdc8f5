"""
GRPO, the policy update of DeepSeek-R1: the clipped objective of DeepSeekMath (eq. 3) with its k3 KL
penalty to a frozen reference model (eq. 4), outcome-supervised group advantages (§4.1.2), and the
variants later papers found useful. Papers, by the names used below:
  DeepSeekMath  Shao et al. 2024, arXiv 2402.03300
  Dr. GRPO      Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective", arXiv 2503.20783
  DAPO          Yu et al. 2025, arXiv 2503.14476 (§3.1 clip-higher, §3.3 token-level loss)
  Lite PPO      "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning", arXiv 2508.08221
  GSPO          Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv 2507.18071
  INTELLECT-2   Prime Intellect 2025, arXiv 2505.07291 (§4.1: two-sided clipping)
  k3            Schulman 2020, "Approximating KL Divergence" (blog note)

    python -m pytest tests/test_grpo.py -q     # every function against hand-computed numbers, CPU, ~5 s

One optimiser step, its rollouts split into micro-batches (row slices) to fit in memory
(tests/test_grpo.py::test_micro_batches_match_one_batch runs this loop):

    A = group_advantages(rewards, G)                        # (B,): needs whole groups, so once per step
    norm = loss_normalizer(completion_mask, loss_agg)       # a count over the whole step
    for mb in micro_batches:
        logp = token_logprobs(policy, ids[mb], attn[mb], completion_mask[mb], temperature)
        loss, metrics = grpo_loss(logp, old_logp[mb], ref_logp[mb], A[mb], completion_mask[mb],
                                  normalizer=norm, loss_agg=loss_agg)
        loss.backward()                                     # the micro-batch losses sum to the step's loss

Choices:
  1. std is the population std (divide by G, torch `correction=0`). The paper writes std(r) without
     saying which; with it, a group's advantages have mean 0 and mean square 1 (eps aside). Bessel's
     correction would scale every advantage by sqrt((G-1)/G), one factor for all groups, so it only
     shifts the balance against the KL term: the same as beta / that factor (Adam ignores the loss's
     overall scale). A group whose rewards are all equal gets advantage exactly 0, not rounding / eps.
  2. loss_agg defaults to "seq_mean_token_mean", the paper's 1/G sum_i 1/|o_i| sum_t. "token_mean" (DAPO)
     and "seq_mean_token_sum_norm" (Dr. GRPO) weigh every token alike instead, which removes the 1/|o_i|
     length bias (a long wrong answer is penalised less per token than a short one).
  3. Log-probs are scored at the sampling temperature (logits / T, in float32), so the policy in the
     ratio is the one that sampled. If the sampler also uses top-p or top-k, the scored distribution
     is still the full softmax and is NOT the sampled one: the ratio and KL are then slightly off-policy.
  4. Masks come from positions and lengths, never from token ids: the stop token (EOS) is a trained
     action even when pad == EOS.
  5. k3 is unbiased for KL(pi || pi_ref) on tokens sampled from pi; ours come from pi_old, which
     equals pi on the first update of each batch (mu = 1, R1's setting).
  6. Variants, each off by default and a few lines next to the formula it changes (grpo_loss): GSPO's
     sequence-level ratio, INTELLECT-2's two-sided clip; the policy's token entropy comes out of the LM
     head's chunk loop (LMHeadLogprobs). DAPO's dynamic sampling and soft overlong punishment change the
     batch and the reward, not the loss: train.py and reward.py.
"""
import torch

LOSS_AGGS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """rewards: (B,) float32, B = n_prompts * group_size, rows g*G .. g*G+G-1 answer prompt g.
    Returns (B,) float32: one advantage per completion, shared by all its tokens (outcome supervision).
      scale="group": A_i = (r_i - mean(r_group)) / (std(r_group) + eps)   DeepSeekMath §4.1.2
      scale="none":  A_i =  r_i - mean(r_group)                            Dr. GRPO (Fig. 1)
      scale="batch": A_i = (r_i - mean(r_group)) / (std(r_batch) + eps)   group mean, batch std: Lite PPO;
                     r_batch = all B rewards
    std is the population std (header choice 1)."""
    assert rewards.dim() == 1 and rewards.numel() % group_size == 0, \
        f"rewards {tuple(rewards.shape)} is not a flat batch of whole groups of {group_size}"
    r = rewards.float().view(-1, group_size)                        # (n_prompts, G)
    centered = r - r.mean(dim=1, keepdim=True)
    # mean() can round (three rewards of 0.9 give 6e-8 off), and 6e-8 / eps is not 0: force all-equal groups to 0
    centered = centered.masked_fill(_all_equal(r), 0.0)
    if scale == "group":
        centered = centered / (r.std(dim=1, keepdim=True, correction=0) + eps)
    elif scale == "batch":
        centered = centered / (r.std(correction=0) + eps)
    elif scale != "none":
        raise ValueError(f"scale={scale!r}: expected 'group', 'none' or 'batch'")
    return centered.view(-1)


def zero_std_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """rewards: (B,) as in group_advantages -> (B / group_size,) bool, True where the group's G rewards are all
    equal: their advantages are 0, so they teach nothing (DAPO §3.2's dynamic sampling drops them)."""
    return _all_equal(rewards.view(-1, group_size))[:, 0]


def zero_std_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose G rewards are all equal (zero_std_groups). rewards: (B,) as in group_advantages."""
    return zero_std_groups(rewards, group_size).float().mean().item()


def _all_equal(r: torch.Tensor) -> torch.Tensor:
    """r: (n_prompts, G) -> (n_prompts, 1) bool, exact equality (no tolerance)."""
    return (r == r[:, :1]).all(dim=1, keepdim=True)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref), DeepSeekMath eq. 4 (Schulman's "k3"):
    pi_ref/pi - log(pi_ref/pi) - 1, elementwise on any shape. Always >= 0, and 0 iff logp == ref_logp."""
    log_ratio = ref_logp - logp                                     # log(pi_ref / pi)
    return log_ratio.exp() - log_ratio - 1


def loss_normalizer(completion_mask: torch.Tensor, loss_agg: str, max_len: int | None = None) -> float:
    """The count that the summed per-token losses of one whole optimiser step are divided by.
    completion_mask: (B, T) bool over EVERY row of the step (all micro-batches; in distributed training,
    all-reduce SUM the per-rank values: each one is a count, so the step's value is the sum of its parts'):
      "seq_mean_token_mean":     B, the number of sequences (grpo_loss weights each token 1/|o_i|)  eq. 3
      "token_mean":              sum_i |o_i|, the number of completion tokens          DAPO §3.3
      "seq_mean_token_sum_norm": B * max_len, max_len a constant (the generation budget)   Dr. GRPO
    Computed once per step and passed to every grpo_loss call of that step, whose losses are then summed."""
    if loss_agg == "seq_mean_token_mean":
        return float(completion_mask.size(0))
    if loss_agg == "token_mean":
        return float(completion_mask.sum().item())                 # .item(): a CPU-GPU sync, once per step
    if loss_agg == "seq_mean_token_sum_norm":
        assert max_len is not None and max_len >= 1, "Dr. GRPO divides by a constant max_len: pass it"
        return float(completion_mask.size(0) * max_len)
    raise ValueError(f"loss_agg={loss_agg!r}: expected one of {LOSS_AGGS}")


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor | None, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, completion_mask: torch.Tensor, *, normalizer: float,
              loss_agg: str = "seq_mean_token_mean", clip_eps_low: float = 0.2,
              clip_eps_high: float | None = None, beta: float = 0.04, importance_sampling: str = "token",
              clip_delta: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative GRPO objective (DeepSeekMath eq. 3), for gradient descent. Per completion token:
        loss_t = -[min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) - beta k3(logp, ref_logp)],
        rho = exp(logp - old_logp);  eps_high > eps_low is DAPO's clip-higher (§3.1; DAPO uses 0.2 / 0.28).
    Returns (sum_t weight_t loss_t / normalizer, metrics); weight_t = 1/|o_i| for "seq_mean_token_mean", else 1.
      logp:      (B, T) float32 from token_logprobs, with grad
      old_logp:  (B, T) from the policy that sampled, no grad; or None on the first and only update of
                 these samples (mu = 1): then old_logp = logp.detach(), rho = 1, and the gradient is A grad log pi
      ref_logp:  (B, T) from the reference model, no grad; may be None when beta == 0 (no KL term at all)
      advantages: (B,) from group_advantages; completion_mask: (B, T) bool
      normalizer: loss_normalizer(...) over the whole optimiser step, with the same loss_agg. Required:
                 there is no safe default once a step is split into micro-batches.
    Variants (defaults: off):
      importance_sampling="sequence": GSPO: one ratio per sequence, the geometric mean of its tokens',
            s_i = exp(1/|o_i| sum_t log(pi_t / pi_old_t)), clipped per sequence (eps 3e-4 / 4e-4 in its §5.1).
            It enters each token as in GSPO-token, s_i,t = sg[s_i] pi_t / sg[pi_t] (sg: no gradient): the value
            is s_i, the gradient s_i grad log pi_t, so with "seq_mean_token_mean" the loss equals GSPO's sequence-level
            -1/G sum_i min(s_i A_i, clip(s_i) A_i) in value and gradient (tests/test_grpo.py). With mu = 1
            (old_logp None) s_i = 1 and it is the same as "token". With "token_mean" each sequence's term is
            weighted by its length (as TRL does). A sequence lies within one micro-batch, so s_i needs nothing
            from the others.
      clip_delta = delta > 0: INTELLECT-2's two-sided clip (§4.1): min(min(rho, delta) A, clip(rho) A). For A < 0
            a ratio past delta gets no gradient, and the token's loss is capped at -delta A (one sampled token
            whose probability grew far past pi_old would otherwise dominate the step). For A > 0 nothing changes
            when delta > 1 + eps_high (train.py checks it).
    metrics (floats, over this call's completion tokens; to combine calls weight by "completion_tokens"):
      ratio_token_mean (the ratio each token uses: s_i under GSPO), clipped_low_frac (A < 0 and rho < 1 - eps_low:
      that token gets no gradient), clipped_high_frac (A > 0 and rho > 1 + eps_high: likewise), kl_token_mean
      (mean k3; only if beta > 0), clipped_delta_frac (A < 0 and rho > delta; only if clip_delta > 0)."""
    assert loss_agg in LOSS_AGGS, f"loss_agg={loss_agg!r}: expected one of {LOSS_AGGS}"
    assert importance_sampling in ("token", "sequence"), f"importance_sampling={importance_sampling!r}"
    B, T = completion_mask.shape
    assert logp.shape == (B, T) and advantages.shape == (B,), \
        f"logp {tuple(logp.shape)}, advantages {tuple(advantages.shape)}, completion_mask {(B, T)}"
    mask = completion_mask
    lengths = mask.sum(dim=1)                                       # (B,) |o_i|
    own_count = lengths.sum() if loss_agg == "token_mean" else B    # this micro-batch's part of the normaliser
    if normalizer < own_count:
        raise ValueError(f"normalizer={normalizer} is smaller than this micro-batch's own count {int(own_count)}: "
                         f"compute it once over the whole step with loss_normalizer(mask, {loss_agg!r})")
    eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high

    # From here on, everything is over the N completion tokens only, as (N,) vectors: padding never enters.
    lp = logp[mask]
    old = lp.detach() if old_logp is None else old_logp[mask]
    A = advantages[:, None].expand(B, T)[mask]                      # outcome supervision: A_i at every token of o_i
    log_ratio = lp - old
    if importance_sampling == "sequence":                           # GSPO: log s_i, the mean over o_i's tokens
        log_s = log_ratio.new_zeros(B, T).masked_scatter(mask, log_ratio.detach()).sum(1) / lengths.clamp(min=1)
        log_ratio = log_s[:, None].expand(B, T)[mask] + (lp - lp.detach())        # sg[s_i] pi_t / sg[pi_t]
    ratio = torch.exp(log_ratio)
    unclipped = ratio.clamp(max=clip_delta) if clip_delta else ratio             # INTELLECT-2: min(rho, delta)
    surrogate = torch.minimum(unclipped * A, ratio.clamp(1 - clip_eps_low, 1 + eps_high) * A)
    per_token = -surrogate
    if beta != 0:
        assert ref_logp is not None, "beta > 0 needs ref_logp"
        kl = kl_k3(lp, ref_logp[mask])
        per_token = per_token + beta * kl
    if loss_agg == "seq_mean_token_mean":
        weight = (1.0 / lengths.clamp(min=1))[:, None].expand(B, T)[mask]   # 1/|o_i| at each token of o_i
        per_token = per_token * weight
    loss = per_token.sum() / normalizer

    with torch.no_grad():
        metrics = {
            "ratio_token_mean": ratio.mean().item(),
            "clipped_low_frac": ((ratio < 1 - clip_eps_low) & (A < 0)).float().mean().item(),
            "clipped_high_frac": ((ratio > 1 + eps_high) & (A > 0)).float().mean().item(),
            "completion_tokens": float(lp.numel()),
        }
        if beta != 0:
            metrics["kl_token_mean"] = kl.mean().item()
        if clip_delta:
            metrics["clipped_delta_frac"] = ((ratio > clip_delta) & (A < 0)).float().mean().item()
    return loss, metrics


# -----------------------------------------------------------------------------
# Scoring: the log-probs of completions under a model (the policy, the reference)


def completion_mask_from_lengths(prompt_len: int, completion_lens: torch.Tensor, T: int) -> torch.Tensor:
    """Row layout: [prompt, left-padded to prompt_len | completion_lens[i] tokens, stop token included | right pad].
    completion_lens: (B,) int64. Returns (B, T) bool, True at prompt_len <= t < prompt_len + completion_lens[i].
    Built from positions only (header choice 4)."""
    assert prompt_len >= 1, "the first completion token needs at least one prompt token to be predicted from"
    assert int(completion_lens.max()) + prompt_len <= T, f"prompt_len={prompt_len} + longest completion > T={T}"
    pos = torch.arange(T, device=completion_lens.device)            # (T,)
    return (pos >= prompt_len) & (pos < prompt_len + completion_lens[:, None])


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor,
                   temperature: float = 1.0, chunk_size: int = 128, with_entropy: bool = False):
    """log pi(input_ids[:, t] | input_ids[:, :t]) under softmax(logits / temperature), at completion tokens.
    input_ids: (B, T) int64; attention_mask, completion_mask: (B, T) bool. Returns (B, T) float32, 0 where
    completion_mask is False, aligned with input_ids (the logits at t-1 predict the token at t).
    with_entropy=True returns (log-probs, entropy): the second (B, T) float32, no grad, is the entropy in nats
    of the distribution each completion token was drawn from, H_t = -sum_v p_v log p_v at that temperature.

    The LM head runs only on the N positions that predict a completion token, chunk_size rows at a time,
    so at most chunk_size x V float32 logits exist at once, and none is kept for backward (LMHeadLogprobs)."""
    B, T = input_ids.shape
    assert completion_mask.shape == (B, T) and completion_mask.dtype == torch.bool
    assert not completion_mask[:, 0].any(), "a token at position 0 has no prefix to be predicted from"
    assert temperature > 0, "score at the temperature that sampled; temperature 0 (argmax) has no log-probs"
    hidden = model(input_ids, attention_mask=attention_mask, return_hidden=True)   # (B, T, C)
    predicts = completion_mask[:, 1:]                               # (B, T-1): hidden at t predicts token t+1
    h = hidden[:, :-1][predicts]                                    # (N, C)
    targets = input_ids[:, 1:][predicts]                            # (N,) the tokens they predict
    return _scatter_logprobs(model.lm_head, h, targets, completion_mask, temperature, chunk_size, with_entropy)


def group_token_logprobs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, temperature: float = 1.0, chunk_size: int = 128,
                         with_entropy: bool = False):
    """token_logprobs for GRPO's layout, running each prompt once instead of G times.
    prompt_ids: (P, L) int64, left-padded; prompt_mask: (P, L) bool. completion_ids: (B, N) int64 with
    B = P * G, rows g*G .. g*G+G-1 continuing prompt g; completion_mask: (B, N) bool, True at each row's
    completion tokens (a prefix of the row). Returns (B, N) float32: log pi(completion[:, j] | prompt,
    completion[:, :j]) under softmax(logits / temperature), 0 where completion_mask is False; with_entropy=True
    returns (log-probs, entropy) as token_logprobs does.

    The prompt's keys/values are computed once and shared with its G rows through a DynamicKVCache, so
    autograd sends each row's gradient back through the one shared prompt pass. With a 110-token
    prompt and 64-token completions this does ~2.2x less work than token_logprobs on the
    concatenated rows, to which it is equal (tests/test_grpo.py).

    Under grad, the prompt pass runs in a reentrant torch.utils.checkpoint: no grad in the forward,
    recomputed with grad in backward once the completions' gradients have reached its outputs, and
    back-propagated there into the weights' .grad. Otherwise every weight would have two uses, the
    prompt's and the completions', and autograd would hold each weight's completion gradient
    (float32, all layers: as large as the weights) until the prompt pass, the last in backward, adds
    its part. (The embedding is passed in only because a reentrant checkpoint needs an input that
    requires grad for its outputs to require grad.) Not under FSDP2 (train.py --fsdp), which gathers
    and reduces gradients in hooks of its own that a second backward inside backward would bypass."""
    from model import DynamicKVCache
    P, B = prompt_ids.size(0), completion_ids.size(0)
    assert B % P == 0 and completion_mask.shape == completion_ids.shape, "completions must be whole groups"
    assert prompt_mask[:, -1].all(), "prompts must be left-padded (the last position is real)"
    n_layer = len(model.layers)

    def prompt_pass(ids, mask, _weight):
        cache = DynamicKVCache(n_layer, P, device=ids.device)
        h = model(ids, attention_mask=mask, kv_cache=cache, return_hidden=True)[:, -1]   # (P, C)
        return (h, cache.mask, cache.lengths, *cache.k, *cache.v)

    weight = model.embed_tokens.weight
    if torch.is_grad_enabled() and weight.requires_grad and not _fsdp_sharded(model):
        out = torch.utils.checkpoint.checkpoint(prompt_pass, prompt_ids, prompt_mask, weight, use_reentrant=True)
    else:
        out = prompt_pass(prompt_ids, prompt_mask, weight)
    h_prompt, cache = out[0], DynamicKVCache(n_layer, P, device=prompt_ids.device)
    cache.mask, cache.lengths, cache.pos = out[1], out[2], prompt_ids.size(1)
    cache.k, cache.v = list(out[3:3 + n_layer]), list(out[3 + n_layer:])
    cache.repeat_rows(B // P)
    h = model(completion_ids, attention_mask=completion_mask, kv_cache=cache, return_hidden=True)      # (B, N, C)
    del cache             # what backward needs of it, attention has saved (or checkpoint_blocks recomputes)
    # hidden state j-1 predicts completion token j; the prompt's last one predicts token 0
    h_first = h_prompt[:, None].expand(P, B // P, h.size(-1)).reshape(B, 1, h.size(-1))              # (B, 1, C)
    h = torch.cat((h_first, h[:, :-1]), dim=1)                                                          # (B, N, C)
    return _scatter_logprobs(model.lm_head, h[completion_mask], completion_ids[completion_mask], completion_mask,
                             temperature, chunk_size, with_entropy)


def _fsdp_sharded(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:                                 # a torch build without torch.distributed
        return False
    return isinstance(model, FSDPModule)


def _scatter_logprobs(lm_head, h: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, temperature: float,
                      chunk_size: int, with_entropy: bool = False):
    """h: (n, C) hidden states predicting targets (n,), the True positions of mask (B, T) in row-major
    order. Returns (B, T) float32 log-probs at those positions, 0 elsewhere (LMHeadLogprobs, below); with
    with_entropy, (log-probs, entropies) laid out alike."""
    assert lm_head.bias is None, "the LM head has no bias in any supported architecture"
    out = LMHeadLogprobs.apply(h, lm_head.weight, targets, temperature, chunk_size, with_entropy)   # (n,) each
    zeros = torch.zeros(mask.shape, dtype=torch.float32, device=h.device)
    if with_entropy:                                                # fills True positions in row-major order
        return zeros.masked_scatter(mask, out[0]), zeros.masked_scatter(mask, out[1])
    return zeros.masked_scatter(mask, out)


# -----------------------------------------------------------------------------
# The LM head's log-probs without the (n, V) logits: equal to log_softmax(h W^T / T).gather(y) in values
# and gradients (tests/test_grpo.py), only cheaper in memory


VOCAB_SLICE = 4096      # rows of W's gradient formed at a time in LMHeadLogprobs.backward


class LMHeadLogprobs(torch.autograd.Function):
    """logp_i = log softmax(h_i W^T / temperature)[y_i], i.e. z_y - logsumexp(z) with z = h W^T / T, for
    n rows, chunk_size rows at a time; h: (n, C), W: (V, C), y: (n,) int64 -> (n,) float32. With
    with_entropy, also each row's entropy H_i = -sum_v p_iv log p_iv, p_i = softmax(z_i), (n,) float32 with no
    gradient: the policy's entropy at every sampled token, from the logits each chunk forms anyway (one more
    pass over the chunk; `python benchmarks/entropy_cost.py` measures it).

    The (n, V) logits are the largest tensors of a training step, so neither direction keeps them:
    forward saves h and each row's logsumexp (n floats); backward recomputes one chunk of logits at a
    time and forms d logp_i / d z_ij = (1[j = y_i] - p_ij) / T in place. The matmuls run in the
    autocast dtype when autocast is on (as nn.Linear would), the softmax in float32, and W's gradient
    is accumulated over chunks in W's dtype. Equal to log_softmax(lm_head(h) / T).gather(y) in values
    and gradients (tests/test_grpo.py)."""

    @staticmethod
    def forward(ctx, h, weight, targets, temperature: float, chunk_size: int, with_entropy: bool):
        dt = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
        w = weight.to(dt)                                           # (V, C), one cast for all chunks
        logp = torch.empty(h.size(0), dtype=torch.float32, device=h.device)
        lse = torch.empty_like(logp)
        entropy = torch.empty_like(logp) if with_entropy else None
        for i in range(0, h.size(0), chunk_size):
            z = (h[i:i + chunk_size].to(dt) @ w.t()).float()       # (c, V)
            if temperature != 1:
                z.div_(temperature)
            lse[i:i + chunk_size] = z.logsumexp(-1)
            logp[i:i + chunk_size] = z.gather(1, targets[i:i + chunk_size, None])[:, 0] - lse[i:i + chunk_size]
            if with_entropy:                                        # z becomes log p in place: H = -sum p log p
                z.sub_(lse[i:i + chunk_size, None])
                entropy[i:i + chunk_size] = -z.exp().mul_(z).sum(-1)
        ctx.save_for_backward(h, w, targets, lse)
        ctx.temperature, ctx.chunk_size, ctx.weight_dtype = temperature, chunk_size, weight.dtype
        if with_entropy:
            ctx.mark_non_differentiable(entropy)
            return logp, entropy
        return logp

    @staticmethod
    def backward(ctx, g, *_):                                       # g: (n,) float32, d loss / d logp
        h, w, targets, lse = ctx.saved_tensors
        T, c = ctx.temperature, ctx.chunk_size
        grad_h = torch.empty(h.shape, dtype=h.dtype, device=h.device) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(w.shape, dtype=ctx.weight_dtype, device=w.device) if ctx.needs_input_grad[1] else None
        for i in range(0, h.size(0), c):
            h_c, g_c = h[i:i + c].to(w.dtype), g[i:i + c, None] / T          # (c, C), (c, 1)
            z = (h_c @ w.t()).float()                                           # (c, V), recomputed
            if T != 1:
                z.div_(T)
            dz = z.sub_(lse[i:i + c, None]).exp_().mul_(-g_c)                  # -g p / T, in place
            dz.scatter_add_(1, targets[i:i + c, None], g_c)                    # + g / T at the target
            dz = dz.to(w.dtype)
            if grad_h is not None:
                grad_h[i:i + c] = dz @ w
            if grad_w is not None:        # in vocabulary slices: no (V, C) temporary, nor its float32 copy
                for v in range(0, w.size(0), VOCAB_SLICE):
                    grad_w[v:v + VOCAB_SLICE] += dz[:, v:v + VOCAB_SLICE].t() @ h_c
        return grad_h, grad_w, None, None, None, None
