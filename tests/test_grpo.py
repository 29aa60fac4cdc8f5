"""grpo.py against hand computations and against autograd on a tiny stand-in model. CPU, float32/64, exact.

    python -m pytest tests/test_grpo.py -q
"""
import math

import pytest
import torch
import torch.nn as nn

import grpo
from grpo import (LOSS_AGGS, completion_mask_from_lengths, group_advantages, group_token_logprobs, grpo_loss, kl_k3,
                  loss_normalizer, token_logprobs, zero_std_fraction)

ln = math.log


class TinyLM(nn.Module):
    """Stands in for model.Transformer with the same interface: model(idx, attention_mask, return_hidden)
    and model.lm_head. Causal: position t sees tokens <= t through a cumulative sum; masked tokens count 0."""
    def __init__(self, vocab_size=13, n_embd=8):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.mix = nn.Linear(n_embd, n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx, attention_mask=None, return_hidden=False):
        x = self.wte(idx)                                            # (B, T, C)
        if attention_mask is not None:
            x = x * attention_mask[..., None]
        h = torch.tanh(self.mix(x.cumsum(dim=1)))                    # (B, T, C)
        return h if return_hidden else self.lm_head(h)


def naive_token_logprobs(model, ids, attn, cmask, temperature):
    """The oracle: full (B, T, V) logits, full log_softmax, shift by one, zero outside the completion."""
    logp_all = torch.log_softmax(model(ids, attention_mask=attn).float() / temperature, dim=-1)   # (B, T, V)
    picked = logp_all[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)                         # (B, T-1)
    out = torch.zeros(ids.shape, device=ids.device)
    out[:, 1:] = torch.where(cmask[:, 1:], picked, 0.0)
    return out


def rollout_batch(seed=0, vocab_size=13):
    """6 rows = 2 prompts x G=3, layout [left-padded prompt (4) | completion | right pad], T = 9.
    Completion lengths differ (1..5), so each loss_agg weights the rows differently."""
    g = torch.Generator().manual_seed(seed)
    prompt_len, T = 4, 9
    lens = torch.tensor([1, 5, 3, 2, 4, 5])
    prompt_pad = torch.tensor([2, 0, 1, 0, 3, 1])                    # left padding inside the prompt block
    ids = torch.randint(1, vocab_size, (6, T), generator=g)
    cmask = completion_mask_from_lengths(prompt_len, lens, T)
    pos = torch.arange(T)
    attn = (pos >= prompt_pad[:, None]) & (pos < prompt_len + lens[:, None])
    ids[~attn] = 0                                                   # pad id 0
    return ids, attn, cmask


# ---- group advantages ------------------------------------------------------------------------------

def test_group_advantages_group_scale_uses_population_std():
    # group [1,0,0,0]: mean 1/4, population var 3/16, std sqrt(3)/4 -> A = [sqrt(3), -1/sqrt(3) x3]
    #   (Bessel's std 1/2 would give [1.5, -0.5 x3])
    # group [0,1,2,3]: mean 3/2, population var 5/4 -> A = [-3, -1, 1, 3] / (2 sqrt(5/4)) = [-1.3416, -0.4472, ...]
    A = group_advantages(torch.tensor([1., 0, 0, 0, 0, 1, 2, 3]), group_size=4, eps=0.0)
    expected = [1.7320508, -0.5773503, -0.5773503, -0.5773503, -1.3416408, -0.4472136, 0.4472136, 1.3416408]
    torch.testing.assert_close(A, torch.tensor(expected))
    # with the default eps = 1e-4 the first advantage is 0.75 / (0.4330127 + 1e-4)
    A0 = group_advantages(torch.tensor([1., 0, 0, 0]), 4)[0].item()
    assert A0 == pytest.approx(0.75 / (0.4330127 + 1e-4), rel=1e-6)


def test_group_advantages_none_and_batch_scales():
    r = torch.tensor([1., 0, 0, 0, 0, 1, 2, 3])
    # "none" (Dr. GRPO): only the group mean (1/4 and 3/2) is subtracted
    torch.testing.assert_close(group_advantages(r, 4, scale="none"),
                               torch.tensor([0.75, -0.25, -0.25, -0.25, -1.5, -0.5, 0.5, 1.5]))
    # "batch": same numerators, one divisor: the population std of all 8 rewards,
    # sqrt(mean(r^2) - mean(r)^2) = sqrt(15/8 - 49/64) = sqrt(71)/8 = 1.0532687
    torch.testing.assert_close(group_advantages(r, 4, scale="batch", eps=0.0),
                               torch.tensor([0.7120690, -0.2373563, -0.2373563, -0.2373563,
                                             -1.4241381, -0.4747127, 0.4747127, 1.4241381]))
    with pytest.raises(ValueError):
        group_advantages(r, 4, scale="rank")


@pytest.mark.parametrize("scale", ["group", "none", "batch"])
def test_all_equal_group_gets_exactly_zero_advantage(scale):
    # float32 mean([0.9, 0.9, 0.9]) is 6e-8 off 0.9; divided by std + eps that would leave ~6e-4, not 0
    A = group_advantages(torch.tensor([0.9, 0.9, 0.9, 0.0, 1.0, 1.0]), group_size=3, scale=scale)
    assert A[:3].tolist() == [0.0, 0.0, 0.0]
    assert A[3:].abs().min() > 0.1


def test_zero_std_fraction():
    # groups of 2: [1,1] equal, [0,1] not, [0.5,0.5] equal, [0,0] equal -> 3/4
    assert zero_std_fraction(torch.tensor([1., 1, 0, 1, .5, .5, 0, 0]), group_size=2) == 0.75
    assert zero_std_fraction(torch.tensor([0., 1, 1, 0]), group_size=2) == 0.0


# ---- KL -------------------------------------------------------------------------------------------

def test_kl_k3_by_hand():
    # pi = 0.6, pi_ref = 0.3: 0.5 - ln 0.5 - 1 = ln 2 - 0.5;  pi = 0.3, pi_ref = 0.6: 2 - ln 2 - 1 = 1 - ln 2
    logp, ref = torch.tensor([ln(.6), ln(.3), ln(.5)]), torch.tensor([ln(.3), ln(.6), ln(.5)])
    torch.testing.assert_close(kl_k3(logp, ref), torch.tensor([0.19314718, 0.30685282, 0.0]))


def test_kl_zero_at_reference_positive_elsewhere_and_pulls_toward_it():
    logp = torch.log(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    assert kl_k3(logp, logp).abs().max().item() < 1e-15                        # policy == reference
    ref = torch.log(torch.tensor([0.3, 0.2, 0.9], dtype=torch.float64))
    kl = kl_k3(logp, ref)
    assert kl[0] > 0 and kl[1] > 0 and kl[2] == 0
    # d k3 / d logp = 1 - pi_ref / pi: a descent step on beta * k3 moves logp toward ref_logp
    x = logp.clone().requires_grad_()
    (0.04 * kl_k3(x, ref)).sum().backward()
    torch.testing.assert_close(x.grad, 0.04 * (1 - (ref - logp).exp()))
    stepped = logp - 1.0 * x.grad
    assert ((stepped - ref).abs()[:2] < (logp - ref).abs()[:2]).all()
    assert torch.sign(-x.grad[:2]).tolist() == torch.sign(ref - logp)[:2].tolist() == [1.0, -1.0]


# ---- the loss by hand -----------------------------------------------------------------------------

def hand_batch():
    """Row 0: A = +1, |o| = 2; row 1: A = -2, |o| = 3. T = 3. pi / pi_old per token:
    row 0: 0.6/0.4 (rho 1.5) and 0.6/0.45 (rho 4/3), both clipped high: min(rho, 1.2) = 1.2  loss -1.2, -1.2
    row 1: 0.2/0.4 (rho 0.5, clipped low: min(-1, -1.6) = -1.6),  0.5/0.5 (rho 1),
           0.3/0.2 (rho 1.5, A < 0 so unclipped: min(-3, -2.4) = -3)                  loss 1.6, 2.0, 3.0
    pi_ref = pi except row 0 token 1 (0.3): k3 = ln 2 - 0.5 = 0.19314718, so with beta = 0.1 that token's
    loss is -1.2 + 0.019314718 = -1.18068528. Row 0's third slot is padding and holds garbage (5.0)."""
    logp = torch.tensor([[ln(.6), ln(.6), 5.0], [ln(.2), ln(.5), ln(.3)]])
    old = torch.tensor([[ln(.4), ln(.45), 5.0], [ln(.4), ln(.5), ln(.2)]])
    ref = torch.tensor([[ln(.6), ln(.3), 5.0], [ln(.2), ln(.5), ln(.3)]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    return logp, old, ref, torch.tensor([1.0, -2.0]), mask


@pytest.mark.parametrize("loss_agg, normalizer, expected", [
    ("seq_mean_token_mean", 2.0, 0.50482868),       # 1/2 [(-1.2 - 1.18068528)/2 + (1.6 + 2 + 3)/3]
    ("token_mean", 5.0, 0.84386294),                # (-2.38068528 + 6.6) / 5
    ("seq_mean_token_sum_norm", 10.0, 0.42193147),  # (-2.38068528 + 6.6) / (2 rows * max_len 5)
])
def test_grpo_loss_by_hand(loss_agg, normalizer, expected):
    logp, old, ref, A, mask = hand_batch()
    assert loss_normalizer(mask, loss_agg, max_len=5) == normalizer
    loss, m = grpo_loss(logp, old, ref, A, mask, normalizer=normalizer, loss_agg=loss_agg, beta=0.1)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert m["clipped_low_frac"] == pytest.approx(1 / 5)              # row 1 token 0
    assert m["clipped_high_frac"] == pytest.approx(2 / 5)             # row 0 (row 1 token 2 has A < 0)
    assert m["ratio_token_mean"] == pytest.approx((1.5 + 4 / 3 + 0.5 + 1 + 1.5) / 5)
    assert m["kl_token_mean"] == pytest.approx(0.19314718 / 5)
    assert m["completion_tokens"] == 5


def test_clip_fractions_count_only_tokens_whose_clipped_branch_is_active():
    # row 0, A = +1: rho 0.5 (not clipped: A > 0 on the low side), 1.5 (clipped high), 1.0
    # row 1, A = -1: rho 0.5 (clipped low), 1.5 (not clipped: A < 0 on the high side), pad
    old = torch.full((2, 3), ln(0.4))
    logp = old + torch.log(torch.tensor([[0.5, 1.5, 1.0], [0.5, 1.5, 1.0]]))
    mask = torch.tensor([[True, True, True], [True, True, False]])
    _, m = grpo_loss(logp, old, None, torch.tensor([1.0, -1.0]), mask, normalizer=2.0, beta=0.0)
    assert m["clipped_low_frac"] == pytest.approx(1 / 5) and m["clipped_high_frac"] == pytest.approx(1 / 5)


def test_grpo_loss_beta_zero_needs_no_reference_and_reports_no_kl():
    logp, old, _, A, mask = hand_batch()
    loss, m = grpo_loss(logp, old, None, A, mask, normalizer=5.0, loss_agg="token_mean", beta=0.0)
    assert loss.item() == pytest.approx((-1.2 - 1.2 + 1.6 + 2.0 + 3.0) / 5, abs=1e-6)
    assert "kl_token_mean" not in m
    with pytest.raises(AssertionError):
        grpo_loss(logp, old, None, A, mask, normalizer=5.0, beta=0.04)


def test_normalizer_too_small_for_the_micro_batch_is_refused():
    logp, old, ref, A, mask = hand_batch()
    with pytest.raises(ValueError):   # a sequence count (2) passed where token_mean needs a token count (>= 5)
        grpo_loss(logp, old, ref, A, mask, normalizer=loss_normalizer(mask, "seq_mean_token_mean"),
                  loss_agg="token_mean")


def test_loss_normalizer_counts_and_adds_up_over_parts():
    mask = completion_mask_from_lengths(2, torch.tensor([3, 1, 4, 2]), 8)     # 4 sequences, 10 tokens
    assert loss_normalizer(mask, "seq_mean_token_mean") == 4
    assert loss_normalizer(mask, "token_mean") == 10
    assert loss_normalizer(mask, "seq_mean_token_sum_norm", max_len=6) == 24
    for agg in LOSS_AGGS:   # a count: the step's value is the sum of its parts' (what an all-reduce SUM needs)
        parts = loss_normalizer(mask[:1], agg, 6) + loss_normalizer(mask[1:], agg, 6)
        assert loss_normalizer(mask, agg, 6) == parts
    with pytest.raises(ValueError):
        loss_normalizer(mask, "sum")


# ---- clipping -------------------------------------------------------------------------------------

def token_loss_and_grad(rho, A, eps_low=0.2, eps_high=None, **kw):
    """Loss and its gradient w.r.t. logp for one token with the given ratio and advantage (beta = 0)."""
    old = torch.tensor([[ln(0.5)]], dtype=torch.float64)
    logp = (old + ln(rho)).requires_grad_()
    loss, _ = grpo_loss(logp, old, None, torch.tensor([A], dtype=torch.float64), torch.tensor([[True]]),
                        normalizer=1.0, clip_eps_low=eps_low, clip_eps_high=eps_high, beta=0.0, **kw)
    loss.backward()
    return loss.item(), logp.grad.item()


def token_grad(rho, A, eps_low=0.2, eps_high=None, **kw):
    """Gradient of the loss w.r.t. logp for one token with the given ratio and advantage (beta = 0)."""
    return token_loss_and_grad(rho, A, eps_low, eps_high, **kw)[1]


def test_clipped_tokens_get_no_gradient():
    assert token_grad(rho=1.3, A=+1.0) == 0.0                        # A > 0, rho > 1 + 0.2
    assert token_grad(rho=0.7, A=-1.0) == 0.0                        # A < 0, rho < 1 - 0.2
    assert token_grad(rho=1.25, A=+1.0) == 0.0                       # 1.25 > 1.2 is clipped ...
    assert token_grad(rho=1.25, A=+1.0, eps_high=0.28) == pytest.approx(-1.25)   # ... clip-higher lets it through
    assert token_grad(rho=1.29, A=+1.0, eps_high=0.28) == 0.0        # ... but not 1.29 > 1.28
    assert token_grad(rho=0.75, A=-1.0, eps_high=0.28) == 0.0        # eps_high leaves the low side at 1 - 0.2
    # the other side of each bound is not clipped: the gradient is d(-rho A)/dlogp = -rho A
    assert token_grad(rho=0.7, A=+1.0) == pytest.approx(-0.7)
    assert token_grad(rho=1.3, A=-1.0) == pytest.approx(1.3)


# ---- GSPO: one ratio per sequence -----------------------------------------------------------------

def gspo_batch():
    """Row 0: A = +1, |o| = 2, pi / pi_old = 0.6/0.4 (1.5) and 0.4/0.6 (2/3): s_0 = (1.5 * 2/3)^(1/2) = 1.
    Row 1: A = -2, |o| = 3, pi / pi_old = 0.2/0.4, 0.5/0.5, 0.1/0.2: s_1 = (1/2 * 1 * 1/2)^(1/3) = 0.62996052,
    below 1 - 0.2, and A < 0, so the whole sequence is clipped: min(s A, 0.8 A) = min(-1.25992, -1.6) = -1.6.
    Per token (GRPO) the same rows give: row 0 min(1.5, 1.2) = 1.2 (clipped) and 2/3; row 1 -1.6 (clipped),
    -2 and -1.6 (clipped). Padding holds garbage (5.0, 7.0) that must not enter s_i."""
    logp = torch.tensor([[ln(.6), ln(.4), 5.0], [ln(.2), ln(.5), ln(.1)]], dtype=torch.float64)
    old = torch.tensor([[ln(.4), ln(.6), 7.0], [ln(.4), ln(.5), ln(.2)]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    return logp, old, torch.tensor([1.0, -2.0], dtype=torch.float64), mask


def test_gspo_ratio_and_clipping_by_hand():
    logp, old, A, mask = gspo_batch()
    x = logp.clone().requires_grad_()
    loss, m = grpo_loss(x, old, None, A, mask, normalizer=2.0, beta=0.0, importance_sampling="sequence")
    loss.backward()
    # 1/2 [(-1 - 1)/2 + (1.6 + 1.6 + 1.6)/3] = 1/2 (-1 + 1.6); 1e-6: the weights 1/|o_i| are float32
    assert loss.item() == pytest.approx(0.3, abs=1e-6)
    # row 0 unclipped: d/dlogp_t of -1/2 * 1/2 * s_0 A = -1/4 s_0 = -1/4 at each token; row 1 clipped: 0
    torch.testing.assert_close(x.grad, torch.tensor([[-0.25, -0.25, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64))
    s1 = 0.5 ** (2 / 3)
    assert m["ratio_token_mean"] == pytest.approx((1 + 1 + 3 * s1) / 5)
    assert m["clipped_low_frac"] == pytest.approx(3 / 5) and m["clipped_high_frac"] == 0.0
    # the same rows per token: 1/2 [(-1.2 - 2/3)/2 + (1.6 + 2 + 1.6)/3] = 0.4; gradient only at the unclipped
    # tokens: row 0 token 1, -1/4 * 2/3; row 1 token 1, -1/2 * 1/3 * (-2) * 1
    x = logp.clone().requires_grad_()
    loss, _ = grpo_loss(x, old, None, A, mask, normalizer=2.0, beta=0.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.4, abs=1e-6)
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, -1 / 6, 0.0], [0.0, 1 / 3, 0.0]], dtype=torch.float64))


def test_gspo_clip_range_of_the_paper():
    """eps 3e-4 / 4e-4 (GSPO §5.1), A = +1 in both rows. Row 0: log-ratios 2e-4, 4e-4, s = e^3e-4 < 1 + 4e-4:
    kept, gradient -1/4 s per token. Row 1: log-ratios 1e-3, 0, s = e^5e-4 > 1 + 4e-4: clipped, no gradient,
    though its first token alone (e^1e-3) and the second (1) straddle the range."""
    old = torch.full((2, 2), ln(0.3), dtype=torch.float64)
    x = (old + torch.tensor([[2e-4, 4e-4], [1e-3, 0.0]], dtype=torch.float64)).requires_grad_()
    loss, m = grpo_loss(x, old, None, torch.tensor([1.0, 1.0], dtype=torch.float64), torch.ones(2, 2, dtype=torch.bool),
                        normalizer=2.0, beta=0.0, clip_eps_low=3e-4, clip_eps_high=4e-4, importance_sampling="sequence")
    loss.backward()
    s0 = math.exp(3e-4)
    assert loss.item() == pytest.approx(-(s0 + 1.0004) / 2, abs=1e-9)
    torch.testing.assert_close(x.grad, torch.tensor([[-s0 / 4, -s0 / 4], [0.0, 0.0]], dtype=torch.float64))
    assert m["clipped_high_frac"] == pytest.approx(1 / 2)


@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_gspo_token_form_equals_the_sequence_objective(eps):
    """sg[s_i] pi_t / sg[pi_t] per token, averaged per sequence, is GSPO's -1/G sum_i min(s_i A_i, clip(s_i) A_i)
    with s_i = exp(mean_t log pi_t/pi_old_t) differentiated as a whole: the same value and gradient."""
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([1, 4, 3, 5, 2, 5])
    mask = completion_mask_from_lengths(1, lengths, 6)[:, 1:]                         # (6, 5)
    logp = torch.log(torch.rand(6, 5, generator=g, dtype=torch.float64)) * mask
    old = logp + 0.15 * torch.randn(6, 5, generator=g, dtype=torch.float64) * mask
    A = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0], dtype=torch.float64)
    x = logp.clone().requires_grad_()
    loss, m = grpo_loss(x, old, None, A, mask, normalizer=6.0, beta=0.0, clip_eps_low=eps,
                        importance_sampling="sequence")
    got = torch.autograd.grad(loss, x)[0]
    y = logp.clone().requires_grad_()
    s = torch.exp(((y - old) * mask).sum(1) / lengths)                               # (6,) with grad
    want_loss = -torch.minimum(s * A, s.clamp(1 - eps, 1 + eps) * A).sum() / 6
    want = torch.autograd.grad(want_loss, y)[0]
    assert loss.item() == pytest.approx(want_loss.item(), abs=1e-6)      # grpo_loss's 1/|o_i| is float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    if eps == 0.05:                                   # the clipped branch is exercised too
        assert m["clipped_low_frac"] + m["clipped_high_frac"] > 0


def test_gspo_on_policy_is_grpo():
    """mu = 1 (old_logp None): s_i = 1, so the loss and its gradient are GRPO's, bit for bit."""
    torch.manual_seed(0)
    model, (ids, attn, cmask) = TinyLM(), rollout_batch()
    A = group_advantages(torch.tensor([1., 0, 0, 0.5, 0.5, 1]), 3)
    grads = []
    for level in ("token", "sequence"):
        logp = token_logprobs(model, ids, attn, cmask)
        loss, _ = grpo_loss(logp, None, None, A, cmask, normalizer=6.0, beta=0.0, importance_sampling=level)
        grads.append(param_grads(model, loss))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


# ---- two-sided clipping (INTELLECT-2) --------------------------------------------------------------

def test_two_sided_clip_caps_negative_advantages_by_hand():
    # A = -1, rho = 5: GRPO's loss is -min(5 * -1, 1.2 * -1) = 5 with gradient -rho A = 5; with delta = 4 it is
    # -min(min(5, 4) * -1, -1.2) = 4, and no gradient
    assert token_loss_and_grad(5.0, -1.0) == pytest.approx((5.0, 5.0))
    assert token_loss_and_grad(5.0, -1.0, clip_delta=4.0) == pytest.approx((4.0, 0.0))
    # below delta nothing changes: rho = 3 -> loss 3, gradient 3
    assert token_loss_and_grad(3.0, -1.0, clip_delta=4.0) == pytest.approx((3.0, 3.0))
    # A > 0: delta > 1 + eps_high leaves it alone: rho = 5 -> -min(4, 1.2) = -1.2 (clipped, as without delta);
    # rho = 1.1 -> -1.1, gradient -1.1
    assert token_loss_and_grad(5.0, 1.0, clip_delta=4.0) == pytest.approx((-1.2, 0.0))
    assert token_loss_and_grad(1.1, 1.0, clip_delta=4.0) == pytest.approx((-1.1, -1.1))
    old = torch.full((1, 3), ln(0.1))
    _, m = grpo_loss(old + torch.log(torch.tensor([[5.0, 3.0, 5.0]])), old, None, torch.tensor([-1.0]),
                     torch.ones(1, 3, dtype=torch.bool), normalizer=1.0, beta=0.0, clip_delta=4.0)
    assert m["clipped_delta_frac"] == pytest.approx(2 / 3)


def test_two_sided_clip_equals_verl_dual_clip():
    """verl's dual-clip PPO (clip_ratio_c = c, its compute_policy_loss_vanilla) writes the same thing another way:
    loss = max(-rho A, -clip(rho) A), and for A < 0 at most -c A. With c = delta > 1 + eps_high the two agree
    for every ratio and advantage, in value and gradient (README's table says where they still differ)."""
    for a in (-2.0, -0.3, 0.3, 2.0):
        for r in (0.1, 0.5, 0.79, 1.0, 1.1, 1.3, 2.0, 2.99, 3.01, 3.5, 10.0):
            y = torch.tensor(math.log(r), dtype=torch.float64, requires_grad=True)
            ratio = y.exp()
            verl = torch.maximum(-a * ratio, -a * ratio.clamp(0.8, 1.2))
            if a < 0:
                verl = torch.minimum(verl, torch.tensor(-a * 3.0, dtype=torch.float64))
            verl.backward()
            assert token_loss_and_grad(r, a, clip_delta=3.0) == pytest.approx((verl.item(), y.grad.item())), (a, r)


# ---- on the device, against float64 on the CPU -----------------------------------------------------

def reference_grpo_loss(logp, old, ref, A, mask, loss_agg, eps_low, eps_high, beta, clip_delta, max_len):
    """DeepSeekMath eq. 3 with the k3 penalty, written out row by row (float64 in, float64 out): the mean or sum
    over each completion's tokens of -min(min(rho, delta) A, clip(rho) A) + beta k3, over the step's count."""
    rows = []
    for i in range(mask.size(0)):
        lp, o, r = logp[i][mask[i]], old[i][mask[i]], ref[i][mask[i]]
        rho = (lp - o).exp()
        capped = rho.clamp(max=clip_delta) if clip_delta else rho
        per_token = -torch.minimum(capped * A[i], rho.clamp(1 - eps_low, 1 + eps_high) * A[i])
        per_token = per_token + beta * ((r - lp).exp() - (r - lp) - 1)
        rows.append(per_token.mean() if loss_agg == "seq_mean_token_mean" else per_token.sum())
    count = {"seq_mean_token_mean": mask.size(0), "token_mean": mask.sum().item(),
             "seq_mean_token_sum_norm": mask.size(0) * max_len}[loss_agg]
    return torch.stack(rows).sum() / count


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
@pytest.mark.parametrize("variant", [dict(), dict(clip_eps_high=0.28, clip_delta=1.5)])
def test_grpo_loss_on_device_matches_float64(device, loss_agg, variant):
    """grpo_loss in float32 on the device against the objective written out in float64 on the CPU: loss,
    gradient and metrics, off-policy (some ratios clipped low, high and past delta). float32 exp and sums over
    ~25 tokens of O(1) terms: ~1e-6; no ratio within 1e-3 of a clip bound, where float32 could pick the other side."""
    g = torch.Generator().manual_seed(4)
    mask = completion_mask_from_lengths(1, torch.tensor([2, 5, 3, 1, 6, 4]), 7)[:, 1:]         # (6, 6)
    logp = torch.log(torch.rand(6, 6, generator=g)) * mask
    old = logp + 0.4 * torch.randn(6, 6, generator=g) * mask
    ref = logp + 0.2 * torch.randn(6, 6, generator=g) * mask
    A = group_advantages(torch.tensor([1., 0, 0, 0.2, 0.9, 1]), 3)
    eps_low, eps_high, delta = 0.2, variant.get("clip_eps_high", 0.2), variant.get("clip_delta", 0.0)
    rho = (logp - old).double().exp()[mask]
    bounds = torch.tensor([1 - eps_low, 1 + eps_high] + ([delta] if delta else []), dtype=torch.float64)
    assert (rho[:, None] - bounds).abs().min() > 1e-3, "a ratio sits on a clip bound (pick another seed)"
    norm = loss_normalizer(mask, loss_agg, max_len=6)

    x = logp.to(device, copy=True).requires_grad_()
    loss, m = grpo_loss(x, old.to(device), ref.to(device), A.to(device), mask.to(device), normalizer=norm,
                        loss_agg=loss_agg, **variant)
    loss.backward()
    y = logp.double().requires_grad_()
    want = reference_grpo_loss(y, old.double(), ref.double(), A.double(), mask, loss_agg, eps_low, eps_high, 0.04,
                               delta, max_len=6)
    want.backward()
    assert loss.device.type == device.type and loss.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(x.grad.cpu().double(), y.grad, rtol=1e-5, atol=1e-6)
    Am = A.double()[:, None].expand(6, 6)[mask]
    assert m["clipped_low_frac"] == pytest.approx(((rho < 1 - eps_low) & (Am < 0)).double().mean().item())
    assert m["clipped_high_frac"] == pytest.approx(((rho > 1 + eps_high) & (Am > 0)).double().mean().item())
    assert m["ratio_token_mean"] == pytest.approx(rho.mean().item(), rel=1e-5)
    d = (ref - logp).double()[mask]
    assert m["kl_token_mean"] == pytest.approx((d.exp() - d - 1).mean().item(), rel=1e-5, abs=1e-7)
    assert m["clipped_low_frac"] > 0 and m["clipped_high_frac"] > 0                 # both branches taken
    if delta:
        frac = ((rho > delta) & (Am < 0)).double().mean().item()
        assert m["clipped_delta_frac"] == pytest.approx(frac) and frac > 0


@pytest.mark.parametrize("autocast", [False, True])
def test_lm_head_logprobs_on_device_match_float64(device, autocast, monkeypatch):
    """LMHeadLogprobs (chunks of 3 rows, W's gradient in vocabulary slices of 40) on the device, in float32 or with
    its matmuls in bf16 under autocast (as training runs on CUDA), against log_softmax(h W^T / T)[y], the entropy
    and the gradients of sum_i c_i logp_i in float64 on the CPU, from the inputs the matmuls see (bf16-rounded under
    autocast). float32: rounding ~1e-6. bf16: the logits are rounded to bf16 (2^-8 relative, |z| <= zmax), which
    moves logp by up to 2^-7 zmax and H_i by up to 2^-8 zmax * 2 sum_j p_ij |z_ij - zbar_i| (first order); the
    gradients take that through p, plus a bf16 rounding of dz and of each product: 2^-8 (3 + 2 zmax) relative."""
    monkeypatch.setattr(grpo, "VOCAB_SLICE", 40)
    g = torch.Generator().manual_seed(0)
    n, C, V, T = 10, 16, 97, 0.7
    h, W = torch.randn(n, C, generator=g), 0.25 * torch.randn(V, C, generator=g)
    y, c = torch.randint(0, V, (n,), generator=g), torch.randn(n, generator=g)
    hd, Wd = (t.to(device, copy=True).requires_grad_() for t in (h, W))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        logp, entropy = grpo.LMHeadLogprobs.apply(hd, Wd, y.to(device), T, 3, True)
    grad_h, grad_W = torch.autograd.grad((logp * c.to(device)).sum(), (hd, Wd))
    assert logp.dtype == entropy.dtype == torch.float32 and grad_W.dtype == torch.float32

    seen = (lambda t: t.bfloat16().double()) if autocast else (lambda t: t.double())
    h64, W64 = seen(h).requires_grad_(), seen(W).requires_grad_()
    z = h64 @ W64.T / T                                                       # (n, V)
    lp = z.log_softmax(-1)
    want = lp.gather(1, y[:, None])[:, 0]
    p = lp.exp()
    want_entropy = -(p * lp).sum(-1)
    want_h, want_W = torch.autograd.grad((want * c.double()).sum(), (h64, W64))
    if not autocast:
        torch.testing.assert_close(logp.cpu().double(), want.detach(), rtol=0, atol=1e-5)
        torch.testing.assert_close(entropy.cpu().double(), want_entropy.detach(), rtol=0, atol=1e-5)
        torch.testing.assert_close(grad_h.cpu().double(), want_h, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad_W.cpu().double(), want_W, rtol=1e-5, atol=1e-6)
        return
    z, p = z.detach(), p.detach()
    zmax = z.abs().amax(-1)                                                   # (n,)
    assert ((logp.cpu().double() - want.detach()).abs() <= 2**-7 * zmax + 1e-5).all()
    spread = (p * (z - (p * z).sum(-1, keepdim=True)).abs()).sum(-1)          # sum_j p_ij |z_ij - zbar_i|
    assert ((entropy.cpu().double() - want_entropy.detach()).abs() <= 2**-8 * zmax.max() * 2 * spread + 1e-5).all()
    rel = 2**-8 * (3 + 2 * zmax.max().item())
    for got, exp in ((grad_h, want_h), (grad_W, want_W)):
        assert (got.cpu().double() - exp).norm() <= rel * exp.norm()


# ---- gradients on a tiny model --------------------------------------------------------------------

def param_grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
def test_on_policy_gradient_is_the_policy_gradient(loss_agg):
    # mu = 1: old = current (detached), so rho = 1 and nothing is clipped; the gradient must be
    # sum_t w_t [-A_i grad log pi_t + beta grad k3_t] / normalizer, w_t = 1/|o_i| or 1
    torch.manual_seed(0)
    model, (ids, attn, cmask) = TinyLM(), rollout_batch()
    A = group_advantages(torch.tensor([1., 0, 0, 0.5, 0.5, 1]), 3)
    with torch.no_grad():
        ref = token_logprobs(TinyLM(), ids, attn, cmask)             # another random model
    norm = loss_normalizer(cmask, loss_agg, max_len=6)
    for old in ("none", "detached"):
        logp = token_logprobs(model, ids, attn, cmask)
        loss, m = grpo_loss(logp, None if old == "none" else logp.detach(), ref, A, cmask,
                            normalizer=norm, loss_agg=loss_agg)
        assert m["ratio_token_mean"] == 1.0 and m["clipped_low_frac"] == m["clipped_high_frac"] == 0.0
        got = param_grads(model, loss)
        logp = token_logprobs(model, ids, attn, cmask)
        w = cmask / cmask.sum(1, keepdim=True) if loss_agg == "seq_mean_token_mean" else cmask.float()
        pg = (w * (-A[:, None] * logp + 0.04 * kl_k3(logp, ref))).sum() / norm
        for g, e in zip(got, param_grads(model, pg)):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
def test_micro_batches_match_one_batch(loss_agg):
    """The loop in grpo.py's header: one normaliser for the step, micro-batch losses summed."""
    torch.manual_seed(0)
    model, (ids, attn, cmask) = TinyLM(), rollout_batch()
    A = group_advantages(torch.tensor([1., 0, 0, 0.2, 0.9, 1]), 3)
    with torch.no_grad():
        old = token_logprobs(model, ids, attn, cmask) + 0.3 * torch.randn(ids.shape) * cmask   # off-policy
        ref = token_logprobs(TinyLM(), ids, attn, cmask)
    norm = loss_normalizer(cmask, loss_agg, max_len=6)

    def step(splits, normalizer):
        model.zero_grad()
        total = 0.0
        for a, b in splits:
            logp = token_logprobs(model, ids[a:b], attn[a:b], cmask[a:b])
            loss, _ = grpo_loss(logp, old[a:b], ref[a:b], A[a:b], cmask[a:b], loss_agg=loss_agg,
                                normalizer=normalizer(a, b))
            loss.backward()
            total += loss.item()
        return total, [p.grad.clone() for p in model.parameters()]

    full_loss, full_grads = step([(0, 6)], lambda a, b: norm)
    for splits in ([(0, 1), (1, 4), (4, 6)], [(0, 5), (5, 6)], [(i, i + 1) for i in range(6)]):
        loss, grads = step(splits, lambda a, b: norm)
        assert loss == pytest.approx(full_loss, rel=1e-5, abs=1e-7)
        for g, e in zip(grads, full_grads):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    # the test can tell: normalising each micro-batch by its own count gives another loss
    local, _ = step([(0, 1), (1, 4), (4, 6)], lambda a, b: loss_normalizer(cmask[a:b], loss_agg, max_len=6))
    assert abs(local - full_loss) > 1e-3


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
@pytest.mark.parametrize("variant", [dict(importance_sampling="sequence"), dict(clip_delta=1.5),
                                     dict(importance_sampling="sequence", clip_delta=1.5, clip_eps_high=0.28)])
def test_micro_batches_match_one_batch_for_each_variant(loss_agg, variant):
    """GSPO's per-sequence ratio and the two-sided clip need nothing outside a sequence's micro-batch: any
    split of the rows gives the one-batch loss and gradient (float64 log-probs, so only the loss is tested,
    not a model's float32 rounding), and the variant does change the loss."""
    g = torch.Generator().manual_seed(5)
    mask = completion_mask_from_lengths(1, torch.tensor([2, 5, 3, 1, 4, 5]), 6)[:, 1:]           # (6, 5)
    logp = torch.log(torch.rand(6, 5, generator=g, dtype=torch.float64)) * mask
    old = logp + 0.3 * torch.randn(6, 5, generator=g, dtype=torch.float64) * mask               # off-policy
    ref = logp + 0.2 * torch.randn(6, 5, generator=g, dtype=torch.float64) * mask
    A = group_advantages(torch.tensor([1., 0, 0, 0.2, 0.9, 1]), 3).double()
    norm = loss_normalizer(mask, loss_agg, max_len=6)

    def step(splits, **kw):
        x = logp.clone().requires_grad_()
        total = sum(grpo_loss(x[a:b], old[a:b], ref[a:b], A[a:b], mask[a:b], normalizer=norm, loss_agg=loss_agg,
                              **kw)[0] for a, b in splits)
        total.backward()
        return total.item(), x.grad

    full_loss, full_grad = step([(0, 6)], **variant)
    for splits in ([(0, 1), (1, 4), (4, 6)], [(0, 5), (5, 6)], [(i, i + 1) for i in range(6)]):
        loss, grad = step(splits, **variant)
        assert loss == pytest.approx(full_loss, rel=1e-12, abs=1e-14)
        torch.testing.assert_close(grad, full_grad, rtol=1e-12, atol=1e-14)
    assert abs(full_loss - step([(0, 6)])[0]) > 1e-4


@pytest.mark.parametrize("scale", ["group", "none", "batch"])
def test_equal_reward_group_gets_no_policy_gradient(scale):
    logp0 = torch.log(torch.rand(6, 5, generator=torch.Generator().manual_seed(1)))
    old = logp0 + 0.1                                                # off-policy: rho = e^-0.1
    cmask = completion_mask_from_lengths(1, torch.tensor([2, 4, 3, 1, 4, 2]), 5)
    A = group_advantages(torch.tensor([0.9, 0.9, 0.9, 0.0, 1.0, 0.25]), 3, scale=scale)
    logp = logp0.clone().requires_grad_()
    loss, _ = grpo_loss(logp, old, None, A, cmask, normalizer=6.0, beta=0.0)
    loss.backward()
    assert logp.grad[:3].abs().max().item() == 0.0                   # rows of the all-0.9 group
    assert logp.grad[3:][cmask[3:]].abs().min().item() > 0.0         # every token of the other group


# ---- log-probs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature, chunk_size, vocab_slice", [(1.0, 512, 4096), (0.7, 2, 5), (1.3, 1, 1)])
def test_token_logprobs_match_full_log_softmax(device, temperature, chunk_size, vocab_slice, monkeypatch):
    monkeypatch.setattr(grpo, "VOCAB_SLICE", vocab_slice)      # the LM head's gradient, slice by slice
    torch.manual_seed(0)
    model, (ids, attn, cmask) = TinyLM().to(device), (t.to(device) for t in rollout_batch())
    got = token_logprobs(model, ids, attn, cmask, temperature=temperature, chunk_size=chunk_size)
    want = naive_token_logprobs(model, ids, attn, cmask, temperature)
    torch.testing.assert_close(got, want)
    assert (got[cmask] < 0).all() and (got[~cmask] == 0).all()
    # gradients too (LMHeadLogprobs' own backward, chunk by chunk)
    w = torch.arange(9.0, device=device)
    for g, e in zip(param_grads(model, (got * w).sum()), param_grads(model, (want * w).sum())):
        torch.testing.assert_close(g, e)
    # the temperature matters: scoring at T = 1 would give other numbers
    if temperature != 1.0:
        assert (got - naive_token_logprobs(model, ids, attn, cmask, 1.0)).abs().max() > 1e-3


@pytest.mark.parametrize("temperature, chunk_size", [(1.0, 512), (0.7, 2), (1.3, 1)])
def test_entropy_matches_categorical(temperature, chunk_size):
    """with_entropy: H_t of softmax(logits / T) at every completion token, equal to torch.distributions'
    Categorical entropy; the log-probs and their gradients are those without it; any split of the rows
    (micro-batches) gives the same entropies."""
    torch.manual_seed(0)
    model, (ids, attn, cmask) = TinyLM(), rollout_batch()
    logp, entropy = token_logprobs(model, ids, attn, cmask, temperature, chunk_size, with_entropy=True)
    with torch.no_grad():
        logits = model(ids, attention_mask=attn).float() / temperature                     # (B, T, V)
    want = torch.zeros(ids.shape)
    want[:, 1:] = torch.where(cmask[:, 1:], torch.distributions.Categorical(logits=logits[:, :-1]).entropy(), 0.0)
    torch.testing.assert_close(entropy, want)
    assert (entropy[cmask] > 0).all() and not entropy.requires_grad
    plain = token_logprobs(model, ids, attn, cmask, temperature, chunk_size)
    assert torch.equal(logp, plain)
    for g, e in zip(param_grads(model, (logp * torch.arange(9.0)).sum()),
                    param_grads(model, (plain * torch.arange(9.0)).sum())):
        assert torch.equal(g, e)
    parts = [token_logprobs(model, ids[a:b], attn[a:b], cmask[a:b], temperature, chunk_size, with_entropy=True)[1]
             for a, b in ((0, 1), (1, 4), (4, 6))]
    torch.testing.assert_close(torch.cat(parts), entropy)


def tiny_groups():
    """model.py's tiny model, and 2 prompts (one left-padded) x G = 3 completions of lengths 5, 2, 3, 5, 1, 4:
    (model, prompt_ids (2, 4), prompt_mask (2, 4), completion_ids (6, 5), completion_mask (6, 5))."""
    import model as model_py
    model = model_py.Transformer(model_py.ModelConfig(**model_py.PRESETS["tiny"])).init_weights(std=0.2, seed=1)
    prompt_ids = torch.tensor([[0, 5, 6, 7], [9, 8, 7, 6]])
    prompt_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]).bool()
    completion_ids = torch.randint(1, model.cfg.vocab_size, (6, 5), generator=torch.Generator().manual_seed(0))
    completion_mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 3, 5, 1, 4])[:, None]
    return model, prompt_ids, prompt_mask, completion_ids, completion_mask


def test_group_entropy_equals_the_concatenated_rows():
    """group_token_logprobs' entropies (each prompt run once) are token_logprobs' on the concatenated rows."""
    model, prompt_ids, prompt_mask, completion_ids, completion_mask = tiny_groups()
    _, got = group_token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, 0.8, chunk_size=3,
                                  with_entropy=True)
    ids = torch.cat((prompt_ids.repeat_interleave(3, 0), completion_ids), 1)
    attn = torch.cat((prompt_mask.repeat_interleave(3, 0), completion_mask), 1)
    cmask = torch.cat((torch.zeros(6, 4, dtype=torch.bool), completion_mask), 1)
    _, want = token_logprobs(model, ids, attn, cmask, 0.8, with_entropy=True)
    torch.testing.assert_close(got, want[:, 4:], rtol=1e-5, atol=1e-5)
    assert (got[completion_mask] > 0).all() and (got[~completion_mask] == 0).all()


def test_token_logprobs_never_keeps_full_vocab_logits_for_backward():
    V = 97                                                          # no other dimension is 97
    torch.manual_seed(0)
    model, (ids, attn, cmask) = TinyLM(vocab_size=V), rollout_batch(vocab_size=V)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        token_logprobs(model, ids, attn, cmask, chunk_size=4).sum().backward()
    W = tuple(model.lm_head.weight.shape)                           # (V, C): the LM head's weight may be saved
    assert saved and not [s for s in saved if V in s and tuple(s) != W], f"saved for backward: {saved}"


def test_eos_equal_pad_is_trained():
    # pad id == EOS id == 0. Row 0: prompt [5 6 7], completion [3 0] (0 = EOS), then pads 0 0 0.
    # Row 1: prompt [0 4 9] (left pad), completion [8 2 1 0]. The mask comes from lengths, so both EOS count.
    ids = torch.tensor([[5, 6, 7, 3, 0, 0, 0, 0],
                        [0, 4, 9, 8, 2, 1, 0, 0]])
    cmask = completion_mask_from_lengths(3, torch.tensor([2, 4]), 8)
    assert cmask.int().tolist() == [[0, 0, 0, 1, 1, 0, 0, 0],
                                    [0, 0, 0, 1, 1, 1, 1, 0]]
    attn = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    torch.manual_seed(0)
    model = TinyLM()
    logp = token_logprobs(model, ids, attn, cmask)
    assert logp[0, 4] < 0 and logp[1, 6] < 0                         # the EOS tokens are scored
    assert (logp[0, 5:] == 0).all() and logp[1, 7] == 0              # the pads are not
    loss, m = grpo_loss(logp, None, None, torch.tensor([1.0, -1.0]), cmask, normalizer=2.0, beta=0.0)
    assert m["completion_tokens"] == 6
    # stopping gets a gradient: the EOS row of the LM head moves
    assert param_grads(model, loss)[-1][0].abs().sum() > 0


def test_against_model_py_when_present(device):
    """The same oracle check on the real model.Transformer (tied LM head, left and right padding)."""
    model_py = pytest.importorskip("model", reason="model.py not written yet")
    model = model_py.Transformer(model_py.ModelConfig(**model_py.PRESETS["tiny"])).init_weights(std=0.2, seed=0)
    model = model.to(device)
    ids, attn, cmask = (t.to(device) for t in rollout_batch(vocab_size=model.cfg.vocab_size))
    got = token_logprobs(model, ids, attn, cmask, temperature=0.8, chunk_size=3)
    want = naive_token_logprobs(model, ids, attn, cmask, 0.8)
    torch.testing.assert_close(got, want)
    # float32 sums in another order (the tied embedding's gradient is summed over 3-row chunks)
    for g, e in zip(param_grads(model, got.sum()), param_grads(model, want.sum())):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_group_token_logprobs_equals_scoring_the_concatenated_rows():
    """Sharing each prompt's pass with its G rows changes nothing: values and gradients equal
    token_logprobs on [left-padded prompt | completion | right padding] rows."""
    import model as model_py
    model = model_py.Transformer(model_py.ModelConfig(**model_py.PRESETS["tiny"])).init_weights(std=0.2, seed=1)
    G, prompts = 3, [[5, 6, 7, 8, 9], [11, 12]]
    L, N = 5, 4
    prompt_ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[False] * (L - len(p)) + [True] * len(p) for p in prompts])
    lengths = torch.tensor([4, 1, 3, 2, 4, 4])                                   # (B,) completions of 2 groups of 3
    completion_ids = torch.randint(1, model.cfg.vocab_size, (6, N), generator=torch.Generator().manual_seed(0))
    completion_mask = torch.arange(N)[None, :] < lengths[:, None]                # (B, N)
    got = group_token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, 0.7, chunk_size=5)
    ids = torch.cat((prompt_ids.repeat_interleave(G, 0), completion_ids), 1)     # (B, L + N)
    attn = torch.cat((prompt_mask.repeat_interleave(G, 0), completion_mask), 1)
    cmask = torch.cat((torch.zeros(6, L, dtype=torch.bool), completion_mask), 1)
    want = token_logprobs(model, ids, attn, cmask, 0.7)[:, L:]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got[~completion_mask] == 0).all() and (got[completion_mask] < 0).all()
    weights = torch.randn(6, N, generator=torch.Generator().manual_seed(1))     # any loss of the log-probs
    for g, e in zip(param_grads(model, (got * weights).sum()), param_grads(model, (want * weights).sum())):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4)   # float32 sums in another order


def test_checkpointed_blocks_give_the_same_log_probs_and_gradients():
    """model.checkpoint_blocks (activation checkpointing) recomputes each block in backward, the shared
    prompt cache included: same values and gradients, and far fewer tensors kept for backward."""
    model, prompt_ids, prompt_mask, completion_ids, completion_mask = tiny_groups()
    weights = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    out = {}
    for ckpt in (False, True):
        model.checkpoint_blocks, saved = ckpt, []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            logp = group_token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, 0.9)
        out[ckpt] = logp, param_grads(model, (logp * weights).sum()), sum(saved)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=0, atol=0)
    for g, e in zip(out[True][1], out[False][1]):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    assert out[True][2] < out[False][2] / 2, (out[True][2], out[False][2])


def test_prompt_pass_gradients_do_not_wait_for_the_prompt():
    """Each weight's gradient from the completions reaches .grad as soon as its layer is done, and the
    prompt pass adds its own part afterwards (a second accumulation), instead of autograd holding the
    completions' part of every weight until the prompt pass, last in backward, is done."""
    model, prompt_ids, prompt_mask, completion_ids, completion_mask = tiny_groups()
    for ckpt in (False, True):
        model.checkpoint_blocks, events = ckpt, []
        hooks = [p.register_post_accumulate_grad_hook(lambda p, n=n: events.append(n))
                 for n, p in model.named_parameters() if n.startswith("layers.")]
        model.zero_grad()
        group_token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask).sum().backward()
        for h in hooks:
            h.remove()
        first, last = "layers.0.mlp.down_proj.weight", f"layers.{model.cfg.n_layer - 1}.mlp.down_proj.weight"
        assert events.count(first) == events.count(last) == 2, events
        # the last layer's completion part is in .grad before the first layer is reached
        assert events.index(last) < events.index(first)
