"""sample.py against its naive oracle, a fresh full forward pass (the old-policy log-probs GRPO uses),
transformers' greedy generate on the default model, and constructed distributions; evaluate() on a
fake task with hand-computed pass@1 / cons@k."""
import copy
import math

import pytest
import torch

import sample as sample_mod
from grpo import group_token_logprobs, token_logprobs
from model import KVCache, ModelConfig, PRESETS, Transformer
from reward import Example, load_task
from sample import Rollouts, evaluate, majority_vote, sample, sample_naive, summarize

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]      # different lengths: left padding


@pytest.fixture(scope="module")
def tiny():
    return Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(std=0.2, seed=1).eval()   # std 0.2: peaked logits


@pytest.fixture
def tiny_on(tiny, device):
    """The tiny model on `device` (a copy: .to() would move the shared one)."""
    return tiny if device.type == "cpu" else copy.deepcopy(tiny).to(device)


class FixedLogits(torch.nn.Module):
    """Stands in for the policy: the same next-token logits (V,) at every position, whatever the prefix.
    Speaks the interface sample() uses (embed_tokens, new_kv_cache, forward with a cache, lm_head)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("logits", logits.float())
        self.embed_tokens = torch.nn.Embedding(len(logits), 1)

    def new_kv_cache(self, B, T_max):
        return KVCache(1, B, 1, T_max, 1, device="cpu", dtype=torch.float32)

    def lm_head(self, h):                                      # (..., 1) -> (..., V)
        return self.logits.expand(*h.shape[:-1], -1)

    def forward(self, idx, attention_mask=None, kv_cache=None, return_hidden=False):
        if kv_cache is not None:
            kv_cache.advance(torch.ones_like(idx, dtype=torch.bool) if attention_mask is None else attention_mask)
        h = torch.zeros(*idx.shape, 1)
        return h if return_hidden else self.lm_head(h)


def completions(ro: Rollouts) -> list[list[int]]:
    return [row[:n] for row, n in zip(ro.tokens.tolist(), ro.lengths.tolist())]


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (1.0, 1.0), (0.8, 0.9)])
def test_matches_naive_loop(tiny_on, temperature, top_p, monkeypatch):
    """Cached, batched, left-padded, compacted sampling = one row at a time with a full forward per token;
    with stop tokens, and with nucleus sampling (top_p)."""
    calls = []
    select_rows = KVCache.select_rows
    monkeypatch.setattr(KVCache, "select_rows",
                        lambda self, index: (calls.append(len(index)), select_rows(self, index)))
    stop = list(range(0, 320, 8))                           # ~1 token in 8: rows end at different steps
    kw = dict(group_size=3, max_new_tokens=30, temperature=temperature, top_p=top_p, stop_token_ids=stop, pad_id=1,
              seed=3)
    fast, slow = sample(tiny_on, PROMPTS, **kw), sample_naive(tiny_on, PROMPTS, **kw)
    assert completions(fast) == completions(slow)
    assert torch.equal(fast.tokens.cpu(), slow.tokens) and torch.equal(fast.stopped.cpu(), slow.stopped)
    torch.testing.assert_close(fast.logprobs.cpu(), slow.logprobs, rtol=0, atol=1e-4)
    if temperature > 0:   # greedy rows of one prompt are identical, so they all end together: no compaction
        assert len(calls) > 1, f"the batch was never compacted (select_rows calls: {calls})"
        assert len(set(fast.lengths.tolist())) > 2


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_logprobs_equal_full_forward(tiny_on, temperature):
    """The returned log-probs are what grpo.token_logprobs computes from scratch over prompt + completion."""
    tiny = tiny_on
    ro = sample(tiny, PROMPTS, group_size=4, max_new_tokens=20, temperature=temperature, stop_token_ids=[3, 4, 5],
                seed=0)
    ids, attn, comp = ro.training_batch()
    with torch.no_grad():
        fresh = token_logprobs(tiny, ids, attn, comp, temperature=temperature or 1.0)
    assert comp.sum() == ro.lengths.sum() and not ro.tokens.is_inference()    # train.py may backprop through them
    torch.testing.assert_close(ro.old_logprobs(), fresh, rtol=0, atol=1e-4)
    with torch.no_grad():   # the same through the prompt-once layout
        grouped = group_token_logprobs(tiny, *ro.prompt_batch(), ro.tokens, ro.completion_mask(), temperature or 1.0)
    torch.testing.assert_close(ro.logprobs, grouped, rtol=0, atol=1e-4)
    assert (ro.old_logprobs()[comp] < 0).all() and (ro.old_logprobs()[~comp] == 0).all()


def test_rows_do_not_depend_on_the_batch(tiny_on):
    tiny = tiny_on
    alone = sample(tiny, [PROMPTS[2]], group_size=4, max_new_tokens=12, seed=7)
    batched = sample(tiny, [PROMPTS[0], PROMPTS[2], PROMPTS[1], PROMPTS[2]], group_size=4, max_new_tokens=12, seed=7)
    assert completions(batched)[4:8] == completions(alone)
    torch.testing.assert_close(batched.logprobs[4:8], alone.logprobs, rtol=0, atol=1e-5)
    # the same prompt twice in one batch is two draws, not one copied
    assert completions(batched)[12:16] != completions(alone)
    assert completions(sample(tiny, [PROMPTS[2]], group_size=4, max_new_tokens=12, seed=8)) != completions(alone)


needs_mkl = pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="packed weights need MKL (x86 builds)")


@needs_mkl
def test_packed_linear_is_the_linear_map():
    """PackedLinear against x @ W^T + b in float64, for the row count it packed for and after it changes
    (the weight packed again), with and without a bias. float32 sums of K=64 products of O(1) terms: error
    ~ K * 2^-24 * |terms| << 1e-4."""
    g = torch.Generator().manual_seed(0)
    for bias in (False, True):
        lin = torch.nn.Linear(64, 48, bias=bias)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(48, 64, generator=g))
            if bias:
                lin.bias.copy_(torch.randn(48, generator=g))
        packed = sample_mod.PackedLinear(lin)
        for shape in [(5, 1, 64), (5, 1, 64), (3, 1, 64), (7, 64)]:
            x = torch.randn(*shape, generator=g)
            want = x.double() @ lin.weight.double().T + (lin.bias.double() if bias else 0)
            got = packed(x)
            assert got.shape == want.shape and packed.rows == x.reshape(-1, 64).size(0)
            torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4)


@needs_mkl
def test_packed_weights_sample_as_the_plain_path(tiny, monkeypatch):
    """sample() with MKL-packed decode weights returns the plain path's tokens (compaction on, so the weights
    are packed again mid-call), log-probs within float32 rounding, and leaves the model's modules as they were."""
    kw = dict(group_size=4, max_new_tokens=30, temperature=1.0, stop_token_ids=list(range(0, 320, 8)), pad_id=1, seed=3)
    calls = []
    monkeypatch.setattr(sample_mod, "PackedLinear", lambda m, cls=sample_mod.PackedLinear: calls.append(m) or cls(m))
    packed = sample(tiny, PROMPTS, **kw)
    monkeypatch.setattr(sample_mod, "PACKED_WEIGHTS", False)
    plain = sample(tiny, PROMPTS, **kw)
    assert len(calls) == sum(isinstance(m, torch.nn.Linear) for m in tiny.modules())      # the path was taken
    assert completions(packed) == completions(plain)
    torch.testing.assert_close(packed.logprobs, plain.logprobs, rtol=0, atol=1e-4)
    assert not any("forward" in vars(m) for m in tiny.modules())                        # restored


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (1.0, 1.0), (0.7, 0.9)])
def test_cuda_graph_decode_equals_eager(tiny, temperature, top_p):
    """compile=True replays each decode step from CUDA graphs, one per attention width (the cache reads
    slots in buckets of 64, so 150 steps after a 7-token prompt use 3 graphs): the same kernels as eager,
    hence the same tokens and log-probs bit for bit. No stop tokens: the eager batch is then never
    compacted, and both run one batch shape."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (benchmarks/cuda_check.py runs this suite on a GPU)")
    model = copy.deepcopy(tiny).to("cuda")
    kw = dict(group_size=3, max_new_tokens=150, temperature=temperature, top_p=top_p, seed=5)
    eager, graphed = sample(model, PROMPTS, **kw), sample(model, PROMPTS, compile=True, **kw)
    assert torch.equal(eager.tokens, graphed.tokens) and torch.equal(eager.logprobs, graphed.logprobs)
    assert eager.tokens.shape == (9, 150)
    distinct = len(set(map(tuple, eager.tokens.tolist())))
    assert distinct == (3 if temperature == 0 else 9)           # greedy: one completion per prompt


def test_compile_needs_cuda(tiny):
    with pytest.raises(ValueError, match="CUDA graphs"):
        sample(tiny, PROMPTS, group_size=2, max_new_tokens=4, compile=True)


def inverse_cdf_reference(z: torch.Tensor, top_p: float, top_k: int):
    """sample_token's truncation in float64: z (B, V) float64 tempered logits -> (order (B, K) token ids in the
    order the CDF runs: most likely first under top-k / top-p, vocabulary order otherwise; probs (B, K) of the
    kept tokens, 0 for the dropped; margin (B,), the top-p threshold's distance to the nearest prefix sum)."""
    p = z.softmax(-1)
    order = torch.arange(z.size(1)).expand_as(z)
    if top_k or top_p < 1:
        order = p.argsort(-1, descending=True)[:, :top_k or None]
    probs = p.gather(1, order)
    before = probs.cumsum(-1) - probs                                        # mass of the more likely kept tokens
    mass = top_p * probs.sum(-1, keepdim=True)
    if top_p == 1:
        return order, probs, torch.full((z.size(0),), math.inf)
    return order, torch.where(before < mass, probs, 0.0), (before - mass).abs().amin(-1)


@pytest.mark.parametrize("top_p, top_k", [(1.0, 0), (0.9, 0), (0.7, 50)])
def test_sample_token_matches_float64_inverse_cdf(device, top_p, top_k):
    """sample_token on the device against the inverse CDF in float64 on the CPU. Each row's u is put in the middle
    of a chosen token's interval of the truncated CDF (the most likely token, the median and the least likely of
    those kept with probability >= 1e-3), so the token is known: float32 moves the interval ends by ~V * 2^-24 of
    the total, far less than a half-width of 5e-4. Rows range from peaked to flat (the flat row's nucleus holds
    more than the 64 tokens the CPU sorts first, so its widening loop runs). Log-probs: of the untruncated
    softmax(logits / T), to float32 rounding of logits up to ~25 (1e-5)."""
    from sample import sample_token
    g = torch.Generator().manual_seed(0)
    V, T = 1000, 0.7
    logits = torch.randn(3, V, generator=g, dtype=torch.float64) * torch.tensor([[3.0], [1.0], [0.3]])
    logits = logits.float().double()                                         # what the device gets, exactly
    order, probs, margin = inverse_cdf_reference(logits / T, top_p, top_k)
    # float32 prefix sums of V terms are off by at most ~V * 2^-24 = 6e-5 of the total: none may be that close
    assert (margin > 1e-4).all(), "a prefix sum sits on the top-p threshold (pick another seed)"
    rows, tokens, u = [], [], []
    for b in range(3):
        cdf, total = probs[b].cumsum(0), probs[b].sum()
        big = (probs[b] / total >= 1e-3).nonzero()[:, 0]                     # CDF positions of tokens kept, >= 1e-3
        by_prob = big[probs[b, big].argsort(descending=True)]
        for j in (by_prob[0], by_prob[len(by_prob) // 2], by_prob[-1]):
            rows.append(b)
            tokens.append(order[b, j].item())
            u.append(((cdf[j] - probs[b, j] / 2) / total).item())          # the middle of token j's interval
    assert (probs[2] > 0).sum() > 64 or top_k                              # the flat row's nucleus
    tok, logp = sample_token(logits[rows].float().to(device), torch.tensor(u, dtype=torch.float32), T, top_p, top_k)
    assert tok.device.type == device.type and tok.cpu().tolist() == tokens
    want = (logits[rows] / T).log_softmax(-1).gather(1, torch.tensor(tokens)[:, None])[:, 0]
    torch.testing.assert_close(logp.cpu().double(), want, rtol=0, atol=1e-5)


def test_group_rows_are_different_samples():
    ro = sample(FixedLogits(torch.zeros(32)), [[1, 2, 3]], group_size=16, max_new_tokens=8, seed=0)
    # uniform over 32 tokens: two given rows agree on all 8 tokens with probability 32**-8, so some pair of
    # the 16 rows does with probability <= 120 * 32**-8 ~ 1e-10; a repeat means rows share their draws
    rows = completions(ro)
    assert len({tuple(r) for r in rows}) == 16


def test_stopping_and_padding(tiny_on):
    stop, pad = list(range(0, 320, 10)), 0                                   # pad_id is a stop token (pad == eos)
    ro = sample(tiny_on, PROMPTS, group_size=4, max_new_tokens=16, stop_token_ids=stop, pad_id=pad, seed=1)
    assert ro.stopped.any() and not ro.stopped.all(), "pick a seed where some rows stop and some do not"
    ids, attn, comp = ro.training_batch()
    L = max(map(len, PROMPTS))
    for i, (row, n, s) in enumerate(zip(ro.tokens.tolist(), ro.lengths.tolist(), ro.stopped.tolist())):
        assert not set(row[:n - 1]) & set(stop)                              # nothing stops a row early
        assert (row[n - 1] in stop) == s and (s or n == 16)                  # the stop token is in the completion
        assert row[n:] == [pad] * (len(row) - n)
        assert (ro.logprobs[i, n:] == 0).all() and (ro.logprobs[i, :n] < 0).all()
        assert comp[i].tolist() == [False] * L + [True] * n + [False] * (ro.tokens.size(1) - n)
        p = len(PROMPTS[i // 4])
        assert attn[i].tolist() == [False] * (L - p) + [True] * (p + n) + [False] * (ro.tokens.size(1) - n)
    assert ro.tokens.size(1) == ro.lengths.max()


def test_all_rows_stop_early():
    logits = torch.full((8,), -30.0)
    logits[5] = 0.0                                                          # token 5 with probability ~1
    ro = sample(FixedLogits(logits), PROMPTS, group_size=2, max_new_tokens=50, stop_token_ids=[5], seed=0)
    assert ro.tokens.shape == (6, 1) and ro.stopped.all() and (ro.lengths == 1).all()


@pytest.mark.parametrize("top_k, top_p, allowed", [
    (2, 1.0, {0, 1}), (1, 1.0, {0}), (0, 0.65, {0, 1}), (0, 0.75, {0, 1, 2}), (0, 0.3, {0}),
    (3, 0.5, {0, 1}),      # top-k, then top-p on the renormalised top-k: .47 before token 1 < .5
    (2, 0.55, {0})])       # .4 / .7 = .57 before token 1 >= .55 (on the full distribution, .4 would keep it)
def test_top_k_top_p_never_sample_outside(top_k, top_p, allowed):
    probs = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05])
    ro = sample(FixedLogits(probs.log()), [[1]], group_size=128, max_new_tokens=8, top_k=top_k, top_p=top_p, seed=0)
    tok = ro.tokens.flatten()
    assert set(tok.tolist()) == allowed                     # every allowed token shows up in 1024 draws
    # log-probs are of the untruncated distribution (the one GRPO scores), not the renormalised one
    torch.testing.assert_close(ro.logprobs.flatten(), probs.log()[tok])
    # frequencies follow the renormalised distribution: 5 sigma, fails by chance with probability ~1e-6
    p0 = (probs[0] / probs[sorted(allowed)].sum()).item()
    assert abs((tok == 0).float().mean().item() - p0) <= 5 * math.sqrt(p0 * (1 - p0) / tok.numel()) + 1e-9


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625])
    ro = sample(FixedLogits(probs.log()), [[1]], group_size=256, max_new_tokens=16, seed=0)
    freq = torch.bincount(ro.tokens.flatten(), minlength=5).float() / ro.tokens.numel()
    sigma = (probs * (1 - probs) / ro.tokens.numel()).sqrt()
    assert ((freq - probs).abs() <= 5 * sigma).all(), f"{freq} vs {probs}"   # 5 sigma on 4096 draws each


def test_majority_vote():
    assert majority_vote(["6", "7", "6", "7"]) == 0                         # tie: the answer seen first
    assert majority_vote([None, "7", "6", "6"]) == 2
    assert majority_vote([None, None]) is None


class CharTok:
    """Characters as token ids, 0 the stop and pad token."""
    stop_ids, pad_id = [0], 0
    def encode(self, text): return [ord(c) for c in text]
    def decode(self, ids, skip_special_tokens=False): return "".join(chr(i) for i in ids if i)


class FakeTask:
    """Test prompt i has gold answer ["4", "7", "1"][i]; a completion's answer is what follows its "="."""
    def example(self, split, i):
        assert split == "test"
        return Example(prompt=f"q{i}", answer=["4", "7", "1"][i])
    def extract(self, text):
        return text.split("=")[1] if "=" in text else None
    def reward(self, ex, text, think_prefilled=False):
        acc = float(self.extract(text) == ex.answer)
        return acc, {"accuracy": acc}


def fake_sampler(outputs: list[list[str]]):
    """A stand-in for sample.sample that gives each prompt, in call order, the next list of completions in outputs."""
    def fake_sample(model, prompts, group_size, max_new_tokens, **kw):
        texts = [t for _ in prompts for t in outputs.pop(0)]
        rows = [[ord(c) for c in t] + [0] for t in texts]                    # each ends on the stop token 0
        N = max(map(len, rows))
        return Rollouts(prompts, group_size, torch.tensor([r + [0] * (N - len(r)) for r in rows]),
                        torch.zeros(len(rows), N),
                        torch.tensor([len(r) for r in rows]), torch.ones(len(rows), dtype=torch.bool), 0)
    return fake_sample


FAKE_OUTPUTS = [["=4", "=4", "=5", "no"],       # acc 1/2, vote 4 (right)
                ["=6", "=7", "=6", "=7"],       # acc 1/2, tie 6/7 -> 6 (first seen): wrong
                ["x", "y", "z", "w"]]           # acc 0, no answer: wrong


def test_evaluate_on_fake_task(monkeypatch):
    """pass@1, its standard error and cons@k, computed by hand for 3 prompts x 4 samples."""
    monkeypatch.setattr(sample_mod, "sample", fake_sampler([list(o) for o in FAKE_OUTPUTS]))
    r = evaluate(None, CharTok(), FakeTask(), n_prompts=3, k=4, batch_prompts=2)
    assert r["pass@1"] == pytest.approx(1 / 3) and r["cons@k"] == pytest.approx(1 / 3)
    assert r["pass@1_se"] == pytest.approx(1 / 6)     # per-prompt means .5 .5 0: sample std sqrt(1/12), / sqrt(3)
    assert r["mean_len"] == pytest.approx((4 * 3 + 4 * 3 + 4 * 2) / 12) and r["truncated"] == 0
    assert [rec["voted"] for rec in r["records"]] == ["4", "6", None]
    assert r["answer_acc"] == r["pass@1"]             # a task without answer_accuracy reports its accuracy

    class Lenient(FakeTask):   # the answer anywhere: the last character
        def answer_accuracy(self, ex, text):
            return float(text[-1:] == ex.answer)
    monkeypatch.setattr(sample_mod, "sample", fake_sampler([["=4", "=4", "=5", "no"], ["=6", "=7", "=6", "7"],
                                                            ["x", "y", "z", "1"]]))
    r = evaluate(None, CharTok(), Lenient(), n_prompts=3, k=4, batch_prompts=2)
    assert r["pass@1"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)     # the accuracy reward: "7" has no "="
    assert r["answer_acc"] == pytest.approx((2 / 4 + 2 / 4 + 1 / 4) / 3)
    assert r["records"][0]["completions"] == ["=4", "=4", "=5", "no"]


def test_summarize_over_chunks_is_the_whole_evaluation(monkeypatch):
    """The same 3 prompts evaluated as two chunks (prompts 0-1, then 2): summarize over their records together gives
    the hand-computed numbers of test_evaluate_on_fake_task, and the records their test indices."""
    monkeypatch.setattr(sample_mod, "sample", fake_sampler([list(o) for o in FAKE_OUTPUTS]))
    records = [rec for first, n in ((0, 2), (2, 1))
               for rec in evaluate(None, CharTok(), FakeTask(), n_prompts=n, k=4, first=first)["records"]]
    assert [rec["index"] for rec in records] == [0, 1, 2]
    r = summarize(records, temperature=0.6)
    assert (r["pass@1"], r["pass@1_se"], r["cons@k"]) == pytest.approx((1 / 3, 1 / 6, 1 / 3))
    assert r["mean_len"] == pytest.approx(32 / 12) and (r["n"], r["k"], r["truncated"]) == (3, 4, 0)
    assert r["entropy"] == 0 and math.isnan(summarize(records, temperature=0)["entropy"])   # log-probs 0: no surprisal


def test_cli_evaluate_last_line(capsys):
    sample_mod.main(["--model", "tiny", "--device", "cpu", "--dtype", "float32", "--task", "arith",
                     "--n-prompts", "3", "-k", "2", "--max-new-tokens", "8", "--batch-prompts", "2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    head, cons, lenient = last.split(" ")
    p, se = head.removeprefix("pass@1=").split("±")
    assert cons.startswith("cons@2=") and lenient.startswith("answer_acc=")
    assert all(len(x.split(".")[1]) == 3 for x in (p, se, cons, lenient))


def test_cli_evaluation_in_chunks_dumps_the_same_records(tmp_path):
    """--first-prompt / --dump: two chunks of 2 prompts give the records of one run over 4, in order."""
    import json
    base = ["--model", "tiny", "--device", "cpu", "--dtype", "float32", "--task", "arith", "-k", "2",
            "--max-new-tokens", "6", "--batch-prompts", "2"]
    sample_mod.main(base + ["--n-prompts", "4", "--dump", str(tmp_path / "all.jsonl")])
    for first in (0, 2):
        sample_mod.main(base + ["--n-prompts", "2", "--first-prompt", str(first),
                                "--dump", str(tmp_path / f"part{first}.jsonl")])
    read = lambda name: [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
    whole, parts = read("all.jsonl"), read("part0.jsonl") + read("part2.jsonl")
    assert [r["index"] for r in whole] == [0, 1, 2, 3] and len({r["prompt"] for r in whole}) == 4
    assert parts == whole


def test_evaluate_with_real_task(tiny, tmp_path):
    from model import byte_tokenizer
    r = evaluate(tiny, byte_tokenizer(tmp_path), load_task("arith", seed=0),
                 n_prompts=2, k=3, max_new_tokens=6)
    assert r["n"] == 2 and len(r["records"]) == 2 and all(len(rec["completions"]) == 3 for rec in r["records"])
    assert 0 <= r["pass@1"] <= 1 and 0 <= r["cons@k"] <= 1 and 1 <= r["mean_len"] <= 6


def test_evaluate_entropy_by_brute_force(tiny, tmp_path, monkeypatch):
    """evaluate's entropy, the mean surprisal of the sampled tokens at top-p 1, is the token entropy in
    expectation: here against each completion token's H(softmax(logits / T)) over the vocabulary, by a float64
    full forward of every row on its own; and exactly the mean -log p of those tokens."""
    from model import byte_tokenizer
    seen, real_sample = [], sample_mod.sample
    monkeypatch.setattr(sample_mod, "sample", lambda *a, **kw: seen.append(real_sample(*a, **kw)) or seen[-1])
    T = 0.8
    r = evaluate(tiny, byte_tokenizer(tmp_path), load_task("arith", seed=0), n_prompts=4, k=4, max_new_tokens=12,
                 temperature=T, top_p=1.0, batch_prompts=2)
    model64, entropy, surprisal = copy.deepcopy(tiny).double(), [], []
    for ro in seen:
        for i in range(len(ro.lengths)):
            prompt, n = ro.prompts[i // ro.group_size], int(ro.lengths[i])
            ids = torch.tensor([prompt + ro.tokens[i, :n].tolist()])
            with torch.no_grad():
                logp = torch.log_softmax(model64(ids)[0, len(prompt) - 1:-1] / T, dim=-1)      # (n, V)
            entropy += (-(logp.exp() * logp).sum(-1)).tolist()
            surprisal += (-logp.gather(1, ids[0, len(prompt):, None])[:, 0]).tolist()
    n = len(surprisal)
    assert n == r["mean_len"] * 4 * 4
    assert r["entropy"] == pytest.approx(sum(surprisal) / n, rel=1e-4)        # float32 model vs float64
    # surprisal - entropy has mean 0 given each token's prefix, so the n terms are uncorrelated: 4 standard errors
    d = [s - h for s, h in zip(surprisal, entropy)]
    assert abs(sum(d) / n) < 4 * (sum(x * x for x in d) / n) ** 0.5 / n ** 0.5
    assert 0.5 < sum(entropy) / n                                            # a spread-out policy: the check bites
    assert math.isnan(evaluate(tiny, byte_tokenizer(tmp_path), load_task("arith", seed=0), n_prompts=1, k=1,
                               max_new_tokens=4, temperature=0)["entropy"])


@pytest.mark.slow
def test_greedy_matches_transformers():
    """Greedy completions of the default model equal transformers' generate on the same weights."""
    transformers = pytest.importorskip("transformers")
    from model import DEFAULT_MODEL, load_pretrained, resolve_model_path
    try:
        resolve_model_path(DEFAULT_MODEL)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    ours, tok = load_pretrained(DEFAULT_MODEL, device="cpu", dtype=torch.float32)
    hf = transformers.AutoModelForCausalLM.from_pretrained(resolve_model_path(DEFAULT_MODEL),
                                                           dtype=torch.float32).eval()
    prompts = [tok.encode(tok.render_chat([{"role": "user", "content": q}]))
               for q in ["What is 2 + 3?", "Name a colour.", "Write one sentence about the sea."]]
    ro = sample(ours, prompts, group_size=1, max_new_tokens=24, temperature=0, stop_token_ids=tok.stop_ids,
                pad_id=tok.pad_id)
    for prompt, got in zip(prompts, completions(ro)):
        with torch.no_grad():
            out = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24, eos_token_id=tok.stop_ids,
                              pad_token_id=tok.pad_id)
        assert got == out[0, len(prompt):].tolist()
