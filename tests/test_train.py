"""train.py on the tiny random model (CPU, float32): a GRPO update improves the objective on its own
batch, SFT memorises a few examples, resume is exact, and bad input fails before any work (checkpoints
themselves: test_checkpoint.py; metrics.jsonl's reader: test_metrics.py)."""
import copy
import json
import os
import string
import subprocess
import sys

import pytest
import torch

import train as T
from config import validate
from grpo import group_token_logprobs, grpo_loss, loss_normalizer
from model import load_pretrained
from reward import Example
from sample import sample


class LetterTask:
    """Reward = share of lowercase ASCII letters in the completion. A random model's byte soup gives
    every group different rewards, so every step has a gradient (a real task would give all zeros)."""
    name = "letters"

    def example(self, split, i):
        return Example(prompt=f"{split} question {i}", answer="")

    def size(self, split):
        return None

    def reward(self, example, completion, think_prefilled=False, weights=None):
        acc = sum(c in string.ascii_lowercase for c in completion) / max(len(completion), 1)
        return acc, {"accuracy": acc, "format": 0.0}

    def extract(self, completion):
        return completion[:1] or None


@pytest.fixture
def letters(monkeypatch):
    monkeypatch.setattr(T, "load_task", lambda spec, seed=0: LetterTask())


class HalfEqualTask(LetterTask):
    """LetterTask, except that prompts with an even index ("train question 4") score 0.5 whatever the
    completion: their groups have zero reward variance, the others' vary."""

    def reward(self, example, completion, think_prefilled=False, weights=None):
        if int(example.prompt.rsplit(" ", 1)[1]) % 2 == 0:
            return 0.5, {"accuracy": 0.5, "format": 0.0}
        return super().reward(example, completion, think_prefilled, weights)


class EqualTask(LetterTask):
    """Every completion scores 0.5: every group has zero reward variance."""

    def reward(self, example, completion, think_prefilled=False, weights=None):
        return 0.5, {"accuracy": 0.5, "format": 0.0}


@pytest.fixture
def half_equal(monkeypatch):
    monkeypatch.setattr(T, "load_task", lambda spec, seed=0: HalfEqualTask())


def config(tmp_path, **kw):
    base = dict(model="tiny", task="letters", out_dir=str(tmp_path / "out"), dtype="float32", group_size=4,
                prompts_per_step=2, max_new_tokens=8, steps=2, eval_prompts=0, save_every=0, lr=1e-3,
                micro_batch_size=3, rollouts_every=1, seed=0, lr_schedule="constant")
    # lr_schedule constant: the tests below "kill" a run by giving it fewer --steps, which under the linear
    # schedule is another run (its lr depends on --steps); test_resume_under_the_linear_schedule kills one for real
    cfg = T.TrainConfig(**{**base, **kw})
    validate(cfg)
    return cfg


def metric_lines(path):
    """metrics.jsonl without the wall-clock fields, which no two runs share."""
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if k not in ("step_s", "sample_tok_s")})
    return out


def test_grpo_update_improves_the_objective_on_its_batch(tmp_path, letters):
    cfg = config(tmp_path, beta=0.0, lr=3e-3)
    policy, tok = load_pretrained("tiny", device="cpu")
    policy.requires_grad_(True)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
    run = T.Run(cfg, tok, policy, opt, task=LetterTask())
    batch = T.collect_rollouts(run, 0)
    assert batch.advantages.abs().sum() > 0
    before = copy.deepcopy(policy.state_dict())
    def logprobs():
        with torch.no_grad():
            return group_token_logprobs(policy, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask)
    logp0 = logprobs()
    T.policy_update(run, batch)
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
    logp1 = logprobs()
    norm = loss_normalizer(batch.loss_mask, cfg.loss_agg)
    args = dict(normalizer=norm, loss_agg=cfg.loss_agg, beta=0.0)
    loss0, _ = grpo_loss(logp0, logp0, None, batch.advantages, batch.loss_mask, **args)
    loss1, _ = grpo_loss(logp1, logp0, None, batch.advantages, batch.loss_mask, **args)
    assert abs(loss0.item()) < 1e-6          # on-policy, centred advantages: the loss is ~0 (README)
    assert loss1.item() < -1e-3               # after the step: the surrogate objective went up


def test_micro_batches_trimmed_to_their_longest_row_change_nothing(tmp_path, letters):
    """Each micro-batch runs only up to its longest completion; the gradient equals the one of a single
    micro-batch over all rows at full width (float32 sums in another order aside)."""
    cfg = config(tmp_path, beta=0.04, micro_batch_size=8)
    policy, tok = load_pretrained("tiny", device="cpu")
    batch = T.collect_rollouts(T.Run(cfg, tok, policy, task=LetterTask()), 0)
    lengths = [3, 5, 2, 4] + batch.lengths[4:]                       # group 0 ends early: width 5, not N
    assert max(lengths[:4]) < batch.completion_ids.size(1) == max(lengths)
    mask = torch.arange(batch.completion_ids.size(1))[None, :] < torch.tensor(lengths)[:, None]
    batch.lengths, batch.completion_mask, batch.loss_mask = lengths, mask, mask
    assert_micro_batches_change_nothing(cfg, tok, policy, batch, (8, 4))      # one micro-batch; one per group


def assert_micro_batches_change_nothing(cfg, tok, policy, batch, sizes, lr=0.0):
    """policy_update's gradients (each optimiser step's, as the optimiser sees them; SGD with lr) with each
    micro-batch size are equal (float32 sums in another order aside), and not all zero."""
    grads = {}
    for mb in sizes:
        model = copy.deepcopy(policy).requires_grad_(True)
        ref = copy.deepcopy(policy).requires_grad_(False)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        step = opt.step                    # the gradients, as the optimiser sees them (zero_grad follows)
        opt.step = lambda mb=mb: grads.setdefault(mb, []).extend(p.grad.clone() for p in model.parameters()) or step()
        T.policy_update(T.Run(T.TrainConfig(**{**vars(cfg), "micro_batch_size": mb}), tok, model, opt, reference=ref),
                        batch)
    assert sum(g.abs().sum() for g in grads[sizes[0]]) > 0
    for mb in sizes[1:]:
        for a, b in zip(grads[sizes[0]], grads[mb]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_micro_batches_change_nothing_under_every_variant(tmp_path):
    """A dynamic-sampling batch with the overlong penalty, updated twice (mu = 2, the second off-policy: SGD
    with lr 1 moved the weights) with GSPO's ratio and the two-sided clip: one micro-batch, or one per group,
    give the same gradients at both updates."""
    cfg = config(tmp_path, prompts_per_step=4, beta=0.04, dynamic_sampling=True, overlong_buffer=4, num_iterations=2,
                 importance_sampling_level="sequence", clip_delta=1.5)
    policy, tok = load_pretrained("tiny", device="cpu")
    batch = T.collect_rollouts(T.Run(cfg, tok, policy, task=HalfEqualTask()), 0)
    assert "sampling_rounds" in batch.sampling
    assert_micro_batches_change_nothing(cfg, tok, policy, batch, (16, 4), lr=1.0)


def rollouts(tmp_path, task, step=0, **kw):
    """collect_rollouts of one step on the tiny model: 4 prompts x G = 4, 8 new tokens."""
    cfg = config(tmp_path, prompts_per_step=4, **kw)
    policy, tok = load_pretrained("tiny", device="cpu")
    return T.collect_rollouts(T.Run(cfg, tok, policy, task=task), step)


def test_dynamic_sampling_ends_with_p_groups_that_vary(tmp_path):
    """Round 0 of step 1 takes prompts 4..7: 4 and 6 score 0.5 in every row (dropped), 5 and 7 vary. Two are
    missing and half of the groups so far varied, so round 1 samples 2 / (1/2) = 4 prompts, round 0's indices
    shifted by the odd EXTRA_ROUND_OFFSET (odd, even, odd, even): 2 more vary, and the step has its 4."""
    batch = rollouts(tmp_path, HalfEqualTask(), step=1, dynamic_sampling=True)
    off = T.EXTRA_ROUND_OFFSET
    assert [ex.prompt for ex in batch.examples] == [f"train question {i}" for i in (5, 7, off + 4, off + 6)]
    assert batch.sampling == {"sampling_rounds": 2, "zero_std_filled": 0.0}
    assert batch.zero_std_groups == 0.5                     # the first round's share, as without dynamic sampling
    assert not T.zero_std_groups(batch.rewards, 4).any()
    assert batch.completion_ids.size(0) == 16 and batch.completion_mask.sum().item() == sum(batch.lengths)
    assert batch.sampled_tokens > sum(batch.lengths)        # the dropped groups' tokens were sampled too
    # the same seed gives the same step; the groups kept are the very rows round 0 and round 1 sampled
    again = rollouts(tmp_path, HalfEqualTask(), step=1, dynamic_sampling=True)
    assert again.texts == batch.texts and torch.equal(again.completion_ids, batch.completion_ids)
    plain = rollouts(tmp_path, HalfEqualTask(), step=1)
    assert plain.texts[4:8] == batch.texts[:4] and plain.texts[12:16] == batch.texts[4:8]
    assert "sampling_rounds" not in plain.sampling and plain.zero_std_groups == 0.5


def test_dynamic_sampling_stops_at_the_cap_and_fills_with_equal_groups(tmp_path):
    batch = rollouts(tmp_path, EqualTask(), dynamic_sampling=True, max_sampling_rounds=2)
    assert batch.sampling == {"sampling_rounds": 3, "zero_std_filled": 1.0}
    assert [ex.prompt for ex in batch.examples] == [f"train question {i}" for i in range(4)]   # round 0's, in order
    assert (batch.advantages == 0).all() and batch.zero_std_groups == 1.0


def test_overlong_penalty_enters_the_reward(tmp_path):
    """--overlong-buffer 8 = --max-new-tokens: each completion of n tokens loses n / 8 of reward (DAPO eq. 13
    with L_cache = L_max), logged as the part "overlong"."""
    batch = rollouts(tmp_path, LetterTask(), overlong_buffer=8, overlong_penalty=0.5)
    for (total, parts), n in zip(batch.scored, batch.lengths):
        assert parts["overlong"] == -0.5 * n / 8 and total == pytest.approx(parts["accuracy"] - 0.5 * n / 8)
    assert batch.rewards.tolist() == pytest.approx([total for total, _ in batch.scored])


KERNEL_SHAPES = """
import sys, torch
import train
if sys.argv[1] == "capped":
    train.cap_kernel_caches(16)
rss = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
bf16 = torch.bfloat16
x, w, out = torch.randn(700 * 576, dtype=bf16), torch.randn(1536, 576, dtype=bf16), torch.empty(700 * 1536, dtype=bf16)
torch.matmul(x[:576].view(1, 576), w.t())
r0 = rss()
for M in range(300, 700):        # 400 shapes, no new tensor memory
    torch.matmul(x[:M * 576].view(M, 576), w.t(), out=out[:M * 1536].view(M, 1536))
print(rss() - r0)
"""


def test_kernel_caches_are_capped():
    """bf16 matmuls of 400 shapes (out= preallocated) grow the process by the compiled kernels kept;
    cap_kernel_caches, called before the first one, cuts that growth."""
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    growth = {mode: float(subprocess.run([sys.executable, "-c", KERNEL_SHAPES, mode], cwd=root, env=env, check=True,
                                         capture_output=True, text=True).stdout) for mode in ("default", "capped")}
    if growth["default"] < 50:
        pytest.skip(f"this CPU's bf16 matmuls keep no per-shape kernels ({growth})")
    assert growth["capped"] < growth["default"] / 4, growth


def test_fused_adamw_steps_like_default_adamw():
    """train.py's fused AdamW against torch's default AdamW, fed the same gradients for 3 steps. Gradients
    of size ~1, far above AdamW's eps, so each update lr * m_hat / (sqrt(v_hat) + eps) is well conditioned:
    the two may differ by a few float32 roundings per step, far below the ~lr a wrong step would move a
    weight. (Comparing after steps whose gradients come from the diverging weights is not well conditioned:
    a gradient near 0 may change sign, and Adam then moves that weight by ~lr the other way.)"""
    from model import ModelConfig, PRESETS, Transformer
    base = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(seed=3)
    g = torch.Generator().manual_seed(1)
    feed = [[torch.randn(p.shape, generator=g) for p in base.parameters()] for _ in range(3)]
    weights, lr = [], 1e-2
    for fused in (False, True):
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1, fused=fused)
        for step_grads in feed:
            for p, gr in zip(model.parameters(), step_grads):
                p.grad = gr.clone()
            opt.step()
        weights.append(model.state_dict())
    moved = max((weights[0][n] - w).abs().max().item() for n, w in base.state_dict().items())
    assert moved > lr                          # the steps did move the weights (3 steps of ~lr each)
    # per step and weight a few float32 roundings: of the decay w * (1 - lr * wd), of the update, of w - update
    atol = 3 * 4 * torch.finfo(torch.float32).eps * max(w.abs().max().item() for w in weights[0].values())
    assert atol < lr / 1000
    for name, w in weights[0].items():
        torch.testing.assert_close(weights[1][name], w, rtol=0, atol=atol, msg=name)


def test_bf16_reference_starts_at_zero_kl(tmp_path, letters):
    """Under bf16 autocast the reference (bf16 Linear weights, float32 embeddings and norms) computes the
    very numbers the policy computes before its first update: step 1's KL is exactly 0, step 2's is not."""
    T.train(config(tmp_path, dtype="bfloat16", beta=0.04, steps=2, lr=1e-2))
    rows = [r for r in metric_lines(tmp_path / "out" / "metrics.jsonl") if "kl_token_mean" in r]
    assert rows[0]["kl_token_mean"] == 0.0 and rows[1]["kl_token_mean"] > 0


def test_sft_memorises_a_few_examples(tmp_path):
    data = tmp_path / "sft.jsonl"
    pairs = [("2+3=", "5"), ("7+1=", "8"), ("4+4=", "8"), ("9+0=", "9")]
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs))
    cfg = config(tmp_path, stage="sft", data=str(data), template="raw", prompts_per_step=4, epochs=150,
                 lr=3e-3, task="arith")
    T.train(cfg)
    losses = [r["loss"] for r in metric_lines(tmp_path / "out" / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 150 and losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    model, tok = load_pretrained(tmp_path / "out" / "checkpoints" / "step_150", device="cpu")
    from sample import sample
    ro = sample(model, [tok.encode(p) for p, _ in pairs], group_size=1, max_new_tokens=4, temperature=0.0,
                stop_token_ids=tok.stop_ids, pad_id=tok.pad_id)
    got = [tok.decode(ro.tokens[i, :n].tolist(), skip_special_tokens=True) for i, n in enumerate(ro.lengths.tolist())]
    assert got == [c for _, c in pairs]


def test_rollouts_file_keeps_the_gold_answer_and_the_reward_parts(tmp_path):
    """OUT/rollouts/: the gold answer is "gold", so the reward part called answer does not overwrite it."""
    T.train(config(tmp_path, task="arith", steps=1))
    rows = [json.loads(line) for line in (tmp_path / "out" / "rollouts" / "step_000001.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4
    weights = T.parse_weights(T.TrainConfig().reward_weights)
    for r in rows:
        a, b = r["prompt"].removeprefix("Compute ").split(" + ")
        assert r["gold"] == str(int(a) + int(b)) and r["answer"] in (0.0, 1.0)
        assert r["reward"] == pytest.approx(sum(w * r[k] for k, w in weights.items()))


def test_resume_reproduces_the_uninterrupted_run(tmp_path, letters):
    T.train(config(tmp_path / "a", steps=4, save_every=2, beta=0.04))
    T.train(config(tmp_path / "b", steps=2, save_every=2, beta=0.04))          # "killed" after step 2
    T.train(config(tmp_path / "b", steps=4, save_every=2, beta=0.04, resume=True))
    a, b = (metric_lines(tmp_path / x / "out" / "metrics.jsonl") for x in "ab")
    assert [r for r in a if r["step"] in (3, 4)] == [r for r in b if r["step"] in (3, 4)]
    assert len(a) == len(b) == 4
    wa, wb = (load_pretrained(tmp_path / x / "out" / "checkpoints" / "step_4", device="cpu")[0] for x in "ab")
    assert all(torch.equal(p, q) for p, q in zip(wa.parameters(), wb.parameters()))


def test_resume_reproduces_a_run_with_every_variant(tmp_path, half_equal):
    """Dynamic sampling (its extra rounds' prompts and seeds are functions of the step), GSPO with mu = 2, the
    two-sided clip and the overlong penalty: a run resumed after step 2 logs what the uninterrupted one does."""
    kw = dict(save_every=2, beta=0.04, dynamic_sampling=True, importance_sampling_level="sequence", num_iterations=2,
              clip_delta=2.0, overlong_buffer=4, prompts_per_step=4)
    T.train(config(tmp_path / "a", steps=4, **kw))
    T.train(config(tmp_path / "b", steps=2, **kw))
    T.train(config(tmp_path / "b", steps=4, resume=True, **kw))
    a, b = (metric_lines(tmp_path / x / "out" / "metrics.jsonl") for x in "ab")
    assert a == b and len(a) == 4
    for r in a:     # (the overlong penalty makes some even prompts' groups vary: zero_std_groups <= 0.5)
        assert r["sampling_rounds"] >= 2 and 0 < r["zero_std_groups"] <= 0.5 and r["overlong"] <= 0
        assert r["entropy"] > 0 and "clipped_delta_frac" in r
    wa, wb = (load_pretrained(tmp_path / x / "out" / "checkpoints" / "step_4", device="cpu")[0] for x in "ab")
    assert all(torch.equal(p, q) for p, q in zip(wa.parameters(), wb.parameters()))


def test_sampler_refuses_prompts_past_the_context(letters):
    policy, _ = load_pretrained("tiny", device="cpu")
    n = policy.cfg.max_seq_len
    with pytest.raises(ValueError, match="exceeds the model's context"):
        sample(policy, [[5] * (n - 3)], group_size=2, max_new_tokens=4)


def test_ref_reset_survives_resume(tmp_path, letters):
    """After a reference reset, the reference is part of the state: resume must not fall back to the initial model."""
    kw = dict(steps=4, save_every=3, beta=0.5, ref_reset_every=2)
    T.train(config(tmp_path / "a", **kw))
    T.train(config(tmp_path / "b", **{**kw, "steps": 3}))
    T.train(config(tmp_path / "b", **kw, resume=True))
    a, b = (metric_lines(tmp_path / x / "out" / "metrics.jsonl") for x in "ab")
    assert a[-1]["kl_token_mean"] > 0 and a[-1] == b[-1]


def test_rollouts_and_metrics_are_written(tmp_path, letters):
    T.train(config(tmp_path, steps=2))
    out = tmp_path / "out"
    rows = [json.loads(l) for l in (out / "rollouts" / "step_000001.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {"prompt", "completion", "reward", "accuracy", "advantage"} <= set(rows[0])
    m = metric_lines(out / "metrics.jsonl")[-1]
    for key in ("reward", "accuracy", "format", "len_mean", "len_max", "truncated", "kl_token_mean",
                "clipped_low_frac", "zero_std_groups", "grad_norm", "entropy"):
        assert key in m, key


# --- bad input fails before any work ------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--stage", "sft"], "needs --data"),
    (["--group-size", "1"], "at least 2"),
    (["--clip-eps", "0.3", "--clip-eps-high", "0.2"], "clip-eps-high"),
    (["--loss-agg", "sum"], "loss-agg"),
    (["--reward-weights", "accuracy"], "name=number"),
    (["--temperature", "0"], "temperature"),
    (["--steps", "0"], "--steps 0: must be >= 1"),
    (["--steps", "-3"], "--steps -3: must be >= 1"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints -1: must be >= 0"),
    (["--eval-k", "0"], "--eval-k 0"),
    (["--top-p", "0"], "--top-p 0"),
    (["--clip-delta", "1.2"], "--clip-delta 1.2: must be > 1 + the upper clip epsilon = 1.2"),
    (["--clip-delta", "1.25", "--clip-eps-high", "0.28"], "= 1.28"),
    (["--importance-sampling-level", "seq"], "expected token or sequence"),
    (["--overlong-buffer", "100", "--max-new-tokens", "48"], "--overlong-buffer 100"),
    (["--overlong-penalty", "-1"], "--overlong-penalty -1.0: must be >= 0"),
    (["--max-sampling-rounds", "-1"], "--max-sampling-rounds -1: must be >= 0"),
])
def test_contradictory_flags(argv, message, capsys):
    with pytest.raises(SystemExit):
        T.parse_config(argv)
    assert message in capsys.readouterr().err


def test_unknown_task_fails_before_loading_the_model(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "load_pretrained", lambda *a, **k: pytest.fail("loaded a model before checking the task"))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        T.train(config(tmp_path, task="nope"))


def test_unknown_reward_weight_and_unwritable_out_dir_fail_before_loading_the_model(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "load_pretrained", lambda *a, **k: pytest.fail("loaded a model before checking"))
    with pytest.raises(ValueError, match="fromat"):
        T.train(config(tmp_path, task="arith", reward_weights="accuracy=1,fromat=1"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="--out-dir .*file.*not a writable directory"):
        T.train(T.TrainConfig(**{**vars(config(tmp_path, task="arith")), "out_dir": str(tmp_path / "file")}))


@pytest.mark.parametrize("content, message", [
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff\xfe", "completion": "b"}\n', "bad.jsonl:2: not UTF-8"),
    (b'{"messages": [{"content": "hi"}, {"role": "assistant", "content": "b"}]}\n', "bad.jsonl:1: 'messages'"),
])
def test_bad_sft_file_names_file_and_line(tmp_path, content, message):
    data = tmp_path / "bad.jsonl"
    data.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        T.read_sft_data(str(data))


def test_fresh_run_starts_a_fresh_metrics_log(tmp_path, letters):
    """A run killed before its first checkpoint left lines behind; running again (no checkpoint to resume
    from) must not append to them."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "reward": 9}\n{"step": 2, "rew')
    T.train(config(tmp_path, steps=1))
    assert [r["step"] for r in metric_lines(out / "metrics.jsonl")] == [1]
    assert metric_lines(out / "metrics.jsonl")[0]["reward"] != 9


def test_sft_examples_past_the_context_are_refused(tmp_path):
    from model import PRESETS
    data = tmp_path / "long.jsonl"
    long = "x" * (PRESETS["tiny"].get("max_seq_len", 2048) + 10)         # one byte-level token per character
    rows = [json.dumps({"prompt": "a", "completion": "b"}), "", json.dumps({"prompt": long, "completion": "b"})]
    data.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"long.jsonl:3: prompt \+ completion are 20\d\d tokens, longer than the "
                                         "model's context of 2048 tokens; too long: 1 of 2 examples"):
        T.train(config(tmp_path, stage="sft", data=str(data), template="raw", task="arith"))


@pytest.mark.parametrize("content, message", [
    (b"", "no examples"), (b"\n  \n", "no examples"),
    (b'{"prompt": "1+1", "answer": "2"}\n{"prompt": "\xff", "answer": "2"}\n', "task.jsonl:2: not UTF-8"),
])
def test_bad_task_file_fails_before_loading_the_model(tmp_path, monkeypatch, content, message):
    monkeypatch.setattr(T, "load_pretrained", lambda *a, **k: pytest.fail("loaded a model before checking"))
    (tmp_path / "task.jsonl").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        T.train(config(tmp_path, task=f"jsonl:{tmp_path / 'task.jsonl'}"))


def test_empty_test_split_fails_before_loading_the_model(tmp_path, monkeypatch):
    """One problem, which the hash puts in the train split: evaluation would have no prompt."""
    from reward import _split_of
    monkeypatch.setattr(T, "load_pretrained", lambda *a, **k: pytest.fail("loaded a model before checking"))
    prompt = next(f"{a}+1" for a in range(100) if _split_of(f"{a}+1") == "train")
    (tmp_path / "task.jsonl").write_text(json.dumps({"prompt": prompt, "answer": "2"}) + "\n")
    with pytest.raises(ValueError, match="the test split is empty"):
        T.train(config(tmp_path, task=f"jsonl:{tmp_path / 'task.jsonl'}", eval_prompts=2))


def test_empty_prompt_under_raw_template_names_the_line(tmp_path):
    data = tmp_path / "sft.jsonl"
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "", "completion": "b"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="sft.jsonl:2: the prompt is empty"):
        T.train(config(tmp_path, stage="sft", data=str(data), template="raw", task="arith"))


def test_malformed_sft_data_names_the_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        T.train(config(tmp_path, stage="sft", data=str(data), template="raw", task="arith"))


def test_help_lists_the_documented_flags(capsys):
    with pytest.raises(SystemExit):
        T.parse_config(["--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--task", "--template", "--group-size", "--prompts-per-step", "--max-new-tokens",
                 "--temperature", "--top-p", "--lr", "--warmup-steps", "--weight-decay", "--grad-clip", "--beta",
                 "--clip-eps", "--clip-eps-high", "--num-iterations", "--loss-agg", "--scale-rewards",
                 "--ref-reset-every", "--reward-weights", "--mask-truncated", "--micro-batch-size", "--steps",
                 "--dtype", "--device", "--compile", "--seed", "--out-dir", "--resume", "--eval-every",
                 "--eval-prompts", "--eval-k", "--save-every", "--stage", "--data", "--epochs", "--clip-delta",
                 "--importance-sampling-level", "--dynamic-sampling", "--max-sampling-rounds", "--overlong-buffer",
                 "--overlong-penalty", "--lora-rank", "--lora-alpha", "--lora-targets"):
        assert flag in text, flag


def test_lr_schedules_by_hand():
    """--lr-schedule constant (R1) and linear (transformers' get_linear_schedule_with_warmup), hand-computed."""
    cfg = T.TrainConfig(lr=1.0, warmup_steps=2, lr_schedule="linear")
    assert [T.lr_at(s, 10, cfg) for s in range(10)] == [0.5, 1.0, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8]
    cfg = T.TrainConfig(lr=2.0, lr_schedule="linear")
    assert T.lr_at(0, 20, cfg) == 2.0 and T.lr_at(19, 20, cfg) == 2.0 / 20
    cfg = T.TrainConfig(lr=2.0, warmup_steps=4, lr_schedule="constant")
    assert [T.lr_at(s, 6, cfg) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="lr-schedule"):
        validate(T.TrainConfig(lr_schedule="cosine"))


def test_resume_under_the_linear_schedule(tmp_path, letters, monkeypatch):
    """The linear schedule depends on --steps, so a run is killed for real (mid-run, after its step-2
    checkpoint) and resumed with the same flags: it reproduces the uninterrupted run, lr included."""
    T.train(config(tmp_path / "a", steps=4, save_every=2, lr_schedule="linear"))
    real = T.grpo_step

    def killed_at_step_3(run, step):
        if step == 2:
            raise KeyboardInterrupt
        return real(run, step)
    monkeypatch.setattr(T, "grpo_step", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        T.train(config(tmp_path / "b", steps=4, save_every=2, lr_schedule="linear"))
    monkeypatch.setattr(T, "grpo_step", real)
    T.train(config(tmp_path / "b", steps=4, save_every=2, lr_schedule="linear", resume=True))
    a, b = (metric_lines(tmp_path / x / "out" / "metrics.jsonl") for x in "ab")
    assert [r for r in a if r["step"] in (3, 4)] == [r for r in b if r["step"] in (3, 4)]
    assert [r["lr"] for r in a] == [1e-3, 0.75e-3, 0.5e-3, 0.25e-3]


def test_names_moved_out_of_train_still_resolve():
    """train.X for a name now in config.py or checkpoint.py is that module's object; an unknown name is an
    AttributeError naming it."""
    import checkpoint
    import config
    assert T.validate is config.validate and T.checkpoint_damage is checkpoint.checkpoint_damage
    from train import load_newest_intact
    assert load_newest_intact is checkpoint.load_newest_intact
    with pytest.raises(AttributeError, match="no_such_name"):
        T.no_such_name


@pytest.mark.parametrize("flags, message", [
    (dict(dtype="float16"), "float16: training needs loss scaling"),
    (dict(compile=True, fsdp=True, device="cuda"), "--compile with --fsdp"),
    (dict(compile=True, device="cpu"), "--compile compiles for CUDA"),
])
def test_unsupported_runtime_combinations_are_refused(flags, message):
    """float16 (no loss scaling: the LM head's gradient underflows), --compile with --fsdp (the compiled
    wrapper hides the sharded model from the prompt pass's checkpoint choice) and --compile off CUDA are
    refused before any work starts."""
    with pytest.raises(ValueError, match=message):
        validate(T.TrainConfig(**flags))
    with pytest.raises(SystemExit):
        T.parse_config([f"--{k}" if v is True else f"--{k}={v}" for k, v in flags.items()])
