"""
train.py: the main job. GRPO straight on a model against rule rewards (DeepSeek-R1-Zero), or SFT on
a jsonl of completions (R1's cold start and rejection-sampling stages), with resumable checkpoints.

    python train.py                                    # GRPO on the default model, CPU-sized defaults
    python train.py --model tiny --steps 2 --eval-prompts 4   # a smoke run on a tiny random model
    python train.py --stage sft --data sft.jsonl --epochs 2   # SFT; `python train.py --help` lists all flags
    python -m pytest tests/test_train.py -q

One GRPO step (DeepSeekMath Algorithm 1, with mu = --num-iterations):
  1. take P prompts of the task (--prompts-per-step), render them with the template (reward.py)
  2. sample G completions per prompt from the current policy (sample.py; a bf16 copy on CPU/CUDA)
  3. score them with the rule rewards (reward.py; --overlong-buffer adds DAPO's soft length penalty) ->
     advantages: reward minus its group's mean, over the batch's std (grpo.py; --scale-rewards group is
     DeepSeekMath's per-group std); --dynamic-sampling first replaces the groups whose G rewards are all
     equal with those of further prompts (DAPO §3.2)
  4. reference log-probs from the frozen reference model (the initial policy, or the policy at the
     last --ref-reset-every step, as R1 resets it; with --lora-rank the policy with its adapters off)
  5. mu times: micro-batched GRPO loss + backward over the whole batch, clip, AdamW step

What the loss value means: on-policy (mu = 1) the ratio is 1 and advantages are centred per group, so
the GRPO loss is ~0 whatever the model learns; it is not a progress signal. Watch reward, accuracy,
held-out pass@1, completion length, KL, the policy's token entropy (falling towards 0: entropy collapse)
and the share of groups with zero reward variance.

Reading order: the GRPO step (Run, grpo_step, collect_rollouts, policy_update); train() and its setup;
the step's helpers (learning rate, seeds, dtypes); SFT; the kernel-cache cap. What a reader of the
algorithm can skip has files of its own: config.py (every flag with its help, and its checks),
checkpoint.py (atomic, checksummed, resumable checkpoints), distributed.py (torchrun, FSDP2, the
sampler's weight copy) and metrics.py (the reader of OUT/metrics.jsonl).

Choices that differ from the paper's scale, each a flag: a small model, short completions, few prompts
per step, 20 steps at a learning rate of 5e-5 falling linearly to 0 (R1: constant; a 135M model at 2e-5
learned in some seeds and not others, and at a constant 5e-5 fell back after converging: README), advantages
over the batch's std rather than each group's (Lite PPO; a group where only a small reward part varies
otherwise gets full-size advantages: README), and bf16 autocast on the CPU too (fp32 master weights;
log-softmax and loss in fp32). The reward adds two parts to R1's accuracy + format: tags (partial credit per
tag) and answer (the answer right wherever it is written), both reward.py's, weights in --reward-weights.
"""

import contextlib
import copy
import dataclasses
import importlib
import json
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from config import InputError, TrainConfig, one_line_errors, parse_config, parse_weights, reading_input
from checkpoint import (check_resumed_config, list_checkpoints, locked_folder, restore_trainer_state, resume_state,
                        save_checkpoint, stop_after, writing)
from distributed import (Dist, StopSignals, clip_grad_norm, close_distributed, fsdp_shard, init_distributed,
                         sync_weights)
from grpo import (group_advantages, group_token_logprobs, grpo_loss, loss_normalizer, token_logprobs,
                  zero_std_fraction, zero_std_groups)
from metrics import read_metrics
from model import (add_adapters, adapters_off, base_identity, empty_model, load_adapters, load_pretrained,
                   merge_into, resolve_model_path)
from reward import jsonl_lines, load_task, overlong_penalty, render_prompt
from sample import Rollouts, default_dtype, evaluate, sample

# -----------------------------------------------------------------------------
# The GRPO step (steps 1-5 of the header)


@dataclass
class Run:
    """What every step uses, set up once by train() (setup_run): the config, the task and its reward
    weights, the tokenizer and the models.
      policy     float32 master weights: trained, saved, the source of every copy below (with LoRA: float32
                 adapters beside a frozen base in the compute dtype)
      forward    what the update calls for log-probs: torch.compile(policy) with --compile, else policy
      sampler    the policy's weights in the compute dtype for sampling, refreshed from policy before every
                 sampling pass (refresh_sampler); the policy itself when that dtype is float32
      reference  the frozen reference model of the KL term (beta > 0), else None; with LoRA the policy itself,
                 scored with its adapters off (reference_logprobs)
    Tests build one with only the fields they need."""
    cfg: TrainConfig
    tok: object
    policy: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None
    task: object = None
    weights: dict = field(default_factory=dict)               # reward part -> weight (--reward-weights)
    sampler: torch.nn.Module | None = None
    reference: torch.nn.Module | None = None
    forward: object = None
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    out_dir: Path | None = None
    dist: Dist = field(default_factory=lambda: Dist())
    ref_is_initial: bool = True                                # the reference is still the initial model

    def __post_init__(self):
        self.sampler = self.policy if self.sampler is None else self.sampler
        self.forward = self.policy if self.forward is None else self.forward


def refresh_sampler(run: Run):
    """Before a sampling pass: the sampler's weights := the policy's (sync_weights), with LoRA the base weights with
    the adapters merged in (model.merge_into), so the sampler is full fine-tuning's plain model. In bf16 that is 20%
    faster than sampling with the adapters as a low-rank update, for 0.1 s of merging; in float32 the policy itself
    samples, adapters and all, 5% slower than merged weights would and without a float32 copy of the base
    (benchmarks/README.md, "LoRA"). Every rank calls it (under FSDP it all-gathers)."""
    if run.sampler is not run.policy:
        (merge_into if run.policy.adapters else sync_weights)(run.sampler, run.policy)


def grpo_step(run: Run, step: int) -> dict:
    """One GRPO step: rollouts and their advantages, then the update. Returns the step's metrics,
    averaged over ranks."""
    refresh_sampler(run)
    batch = collect_rollouts(run, step)
    update = policy_update(run, batch)
    if run.cfg.rollouts_every and step % run.cfg.rollouts_every == 0 and run.dist.rank == 0:
        dump_rollouts(run, step, batch)
    B = len(batch.texts)
    parts = {k: sum(p[k] for _, p in batch.scored) / B for k in batch.scored[0][1]}
    return run.dist.mean_metrics({
        "reward": batch.rewards.mean().item(), **parts, "reward_std": batch.rewards.std(correction=0).item(),
        "len_mean": sum(batch.lengths) / B, "len_max": max(batch.lengths),
        "truncated": 1.0 - batch.stopped.float().mean().item(),
        "zero_std_groups": batch.zero_std_groups, **batch.sampling, **update,
        "sample_tok_s": batch.sampled_tokens / max(batch.sample_s, 1e-9) * run.dist.world,
    })


@dataclass
class RolloutBatch:
    """One step's rollouts, ready for the update. P prompts, B = P * G rows, groups contiguous. Under
    --dynamic-sampling these are the groups kept; zero_std_groups and sampled_tokens count every group sampled."""
    examples: list               # P reward.Example
    texts: list                  # B decoded completions
    scored: list                 # B (total, parts) from task.reward
    rewards: torch.Tensor        # (B,) float32
    advantages: torch.Tensor     # (B,) float32
    prompt_ids: torch.Tensor     # (P, L) int64, left-padded
    prompt_mask: torch.Tensor    # (P, L) bool
    completion_ids: torch.Tensor  # (B, N) int64, padded after each row's end
    completion_mask: torch.Tensor  # (B, N) bool: each row's tokens, stop token included
    loss_mask: torch.Tensor      # (B, N) bool: the tokens that enter the loss (--mask-truncated drops rows)
    lengths: list                # B completion lengths
    stopped: torch.Tensor        # (B,) bool: ended on a stop token
    sample_s: float              # seconds spent sampling
    sampled_tokens: int = 0      # completion tokens sampled (every round of dynamic sampling)
    zero_std_groups: float = 0.0  # share of groups whose G rewards were all equal, in the step's first round
    sampling: dict = field(default_factory=dict)   # dynamic sampling's sampling_rounds and zero_std_filled


@dataclass
class Sampled:
    """One round of sampling: n prompts x G completions (Rollouts' row layout) and their rule rewards."""
    ro: Rollouts
    examples: list               # n reward.Example
    texts: list                  # n * G decoded completions
    scored: list                 # n * G (total, parts), the overlong penalty included
    sample_s: float              # seconds in sample()
    sampled_tokens: int          # completion tokens sampled (also those of groups dynamic sampling dropped)

    def rewards(self) -> torch.Tensor:
        return torch.tensor([total for total, _ in self.scored], dtype=torch.float32)    # (n * G,)


def collect_rollouts(run: Run, step: int) -> RolloutBatch:
    """Steps 1-3 of the header: this rank's prompts of this step -> G completions each -> rewards ->
    advantages (with --dynamic-sampling, of the groups kept). The data position is the step (prompt_indices)."""
    cfg, dist = run.cfg, run.dist
    P, G = cfg.prompts_per_step // dist.world, cfg.group_size
    s = sample_round(run, step, 0, P)
    zero_std, sampling = zero_std_fraction(s.rewards(), G), {}
    if cfg.dynamic_sampling:
        s, sampling = dynamic_sampling(run, step, s)
    ro, rewards = s.ro, s.rewards()
    advantages = group_advantages(rewards, G, scale=cfg.scale_rewards)
    prompt_ids, prompt_mask = ro.prompt_batch()                               # (P, L), left-padded
    completion_mask = ro.completion_mask()                                    # (B, N), from lengths
    loss_mask = completion_mask & ro.stopped[:, None] if cfg.mask_truncated else completion_mask
    dev = run.device
    return RolloutBatch(s.examples, s.texts, s.scored, rewards, advantages.to(dev), prompt_ids.to(dev),
                        prompt_mask.to(dev), ro.tokens.to(dev), completion_mask.to(dev), loss_mask.to(dev),
                        ro.lengths.tolist(), ro.stopped.cpu(), s.sample_s, sampled_tokens=s.sampled_tokens,
                        zero_std_groups=zero_std, sampling=sampling)


EXTRA_ROUND_OFFSET = 1_000_000_007    # dynamic sampling: round r takes round 0's prompt indices + r * this (a prime)


def prompt_indices(cfg: TrainConfig, step: int, rnd: int, dist: Dist) -> range:
    """Train-split indices of this rank's prompts in sampling round rnd of a step: a function of (step, round,
    rank) only, so a resumed run takes the prompts the uninterrupted one took. Round 0: step*P .. step*P+P-1,
    split over the ranks (the data position is the step). Round r > 0 (dynamic sampling): the same range
    shifted by r * EXTRA_ROUND_OFFSET, far past any step's, so no two (step, round) pairs share a generated
    problem (file tasks wrap modulo their size)."""
    P = cfg.prompts_per_step // dist.world
    first = rnd * EXTRA_ROUND_OFFSET + step * cfg.prompts_per_step + dist.rank * P
    return range(first, first + P)


def sample_round(run: Run, step: int, rnd: int, n: int) -> Sampled:
    """The first n prompts of round rnd (prompt_indices), G completions each from the sampler with the seed
    step_seed(cfg, step, rnd), scored by the task's rule reward, plus DAPO's soft overlong penalty
    (reward.overlong_penalty, part "overlong") with --overlong-buffer."""
    cfg, tok, G = run.cfg, run.tok, run.cfg.group_size
    examples = [run.task.example("train", i) for i in prompt_indices(cfg, step, rnd, run.dist)[:n]]
    prompts = [tok.encode(render_prompt(ex, cfg.template, tok, cfg.think_prefill)) for ex in examples]
    t0 = time.time()
    ro = sample(run.sampler, prompts, group_size=G, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                top_p=cfg.top_p, stop_token_ids=tok.stop_ids, pad_id=tok.pad_id, seed=step_seed(cfg, step, rnd),
                compile=cfg.cuda_graphs and run.device.type == "cuda")
    sample_s = time.time() - t0
    texts = ro.texts(tok)
    scored = [run.task.reward(examples[i // G], text, cfg.think_prefill, weights=run.weights)
              for i, text in enumerate(texts)]
    lengths = ro.lengths.tolist()
    if cfg.overlong_buffer:                       # part of the reward, so it enters the advantages
        pens = [overlong_penalty(n, cfg.max_new_tokens, cfg.overlong_buffer, cfg.overlong_penalty) for n in lengths]
        scored = [(total + pen, {**parts, "overlong": pen}) for (total, parts), pen in zip(scored, pens)]
    return Sampled(ro, examples, texts, scored, sample_s, sum(lengths))


def dynamic_sampling(run: Run, step: int, first: Sampled) -> tuple[Sampled, dict]:
    """DAPO's dynamic sampling (Yu et al. 2025, arXiv 2503.14476, §3.2; verl's algorithm.filter_groups): a
    group whose G rewards are all equal has advantage 0 and no policy gradient, so it is dropped, and further
    rounds sample the next prompts (prompt_indices) until the step has P groups whose rewards vary. Each extra
    round samples as many prompts as the share of varying groups so far says are missing (all P while there
    is none), and there are at most --max-sampling-rounds of them. If they do not reach P, the step is filled
    up with equal groups in the order sampled (verl raises an error instead): they add only the KL term.
    Everything is a function of (seed, step) and the policy, so a resumed run samples the same.
    first: round 0's P groups. Returns the step's P groups (varying ones first, in the order sampled) and
    {"sampling_rounds": rounds sampled, 1 + the extra ones; "zero_std_filled": share of equal groups kept}."""
    P, G = len(first.examples), run.cfg.group_size
    varying, equal, n_groups, rnd, s, rounds = [], [], 0, 0, first, [first]
    while True:
        for g, is_equal in enumerate(zero_std_groups(s.rewards(), G).tolist()):
            (equal if is_equal else varying).append((s, g))
        n_groups += len(s.examples)
        missing = P - len(varying)
        if missing <= 0 or rnd == run.cfg.max_sampling_rounds:
            break
        rnd += 1
        s = sample_round(run, step, rnd, min(P, math.ceil(missing * n_groups / len(varying))) if varying else P)
        rounds.append(s)
    filled = max(0, missing)
    kept = merge_groups(varying[:P] + equal[:filled], G)
    kept.sample_s, kept.sampled_tokens = sum(r.sample_s for r in rounds), sum(r.sampled_tokens for r in rounds)
    return kept, {"sampling_rounds": rnd + 1, "zero_std_filled": filled / P}


def merge_groups(picks: list[tuple[Sampled, int]], G: int) -> Sampled:
    """The groups picks = [(round, group index), ...] as one Sampled, in that order: completions cut or
    right-padded (pad_id, log-prob 0) to the longest one kept. sample_s and sampled_tokens are left 0."""
    rows = [(s, slice(g * G, (g + 1) * G)) for s, g in picks]
    N = max(int(s.ro.lengths[r].max()) for s, r in rows)

    def cat(name: str, fill=None) -> torch.Tensor:          # (len(picks) * G, ...) from each round's rows
        parts = [getattr(s.ro, name)[r] for s, r in rows]
        if fill is not None:                                # (G, N_round) -> (G, N)
            parts = [torch.nn.functional.pad(t[:, :N], (0, N - min(N, t.size(1))), value=fill) for t in parts]
        return torch.cat(parts)
    pad_id = picks[0][0].ro.pad_id
    ro = Rollouts([s.ro.prompts[g] for s, g in picks], G, cat("tokens", pad_id), cat("logprobs", 0.0),
                  cat("lengths"), cat("stopped"), pad_id)
    return Sampled(ro, [s.examples[g] for s, g in picks], [t for s, r in rows for t in s.texts[r]],
                   [x for s, r in rows for x in s.scored[r]], 0.0, 0)


def group_micro_batches(cfg, P: int) -> list[tuple[slice, slice]]:
    """(prompt rows, completion rows) per micro-batch of P prompts' groups: whole groups, about
    --micro-batch-size rows each."""
    G = cfg.group_size
    per = max(1, cfg.micro_batch_size // G)
    return [(slice(p, min(p + per, P)), slice(p * G, min(p + per, P) * G)) for p in range(0, P, per)]


def micro_batch_width(batch: RolloutBatch, b: slice) -> int:
    """The longest completion among rows b: columns past it are padding in every row of the micro-batch,
    so its forward and backward run on (rows, width) instead of (rows, N)."""
    return max(batch.lengths[b])


def batch_logprobs(run: Run, model, batch: RolloutBatch) -> torch.Tensor:
    """Step 4: (B, N) float32 log-probs of the completions under `model` (reference or old policy), no grad."""
    out = torch.zeros(batch.completion_ids.shape, dtype=torch.float32, device=run.device)
    with torch.no_grad(), autocast(run.device, run.dtype):
        for p, b in group_micro_batches(run.cfg, batch.prompt_ids.size(0)):
            w = micro_batch_width(batch, b)
            out[b, :w] = group_token_logprobs(model, batch.prompt_ids[p], batch.prompt_mask[p],
                                              batch.completion_ids[b, :w], batch.completion_mask[b, :w],
                                              run.cfg.temperature)
    return out


def reference_logprobs(run: Run, batch: RolloutBatch) -> torch.Tensor | None:
    """Step 4's reference log-probs (batch_logprobs), None without a reference model (beta 0). With LoRA the
    reference is the policy with its adapters off (model.adapters_off): the base model, as TRL with peft and verl
    score it, so no second copy of the weights exists; elsewhere adapters_off is a no-op."""
    if run.reference is None:
        return None
    with adapters_off(run.reference):
        return batch_logprobs(run, run.reference, batch)


def policy_update(run: Run, batch: RolloutBatch) -> dict:
    """Steps 4-5 of the header: reference (and, for mu > 1, old-policy) log-probs, then mu optimiser
    steps, each over all rows in micro-batches whose losses sum to the step's loss (grpo.py), on every
    rank: the normaliser and the gradients are sums over ranks. The first update also returns "entropy", the
    policy's mean token entropy over the sampled completion tokens of the micro-batches that enter the loss
    (nats, at the sampling temperature: the first sign of entropy collapse), from the LM head's chunks."""
    cfg, dist, mask = run.cfg, run.dist, batch.loss_mask
    ref_logp = reference_logprobs(run, batch)
    old_logp = batch_logprobs(run, run.forward, batch) if cfg.num_iterations > 1 else None  # mu = 1: detached current
    norm = dist.sum(loss_normalizer(mask, cfg.loss_agg, max_len=cfg.max_new_tokens))
    stats, grad_norm, loss_sum, tokens, entropy_sum, entropy_tokens, skipped = {}, 0.0, 0.0, 0.0, 0.0, 0.0, 0
    for iteration in range(cfg.num_iterations):
        for p, b in group_micro_batches(cfg, batch.prompt_ids.size(0)):
            if not mask[b].any() and not dist.fsdp:                          # (FSDP: every rank runs every pass)
                continue                                                     # e.g. all rows truncated and masked
            w, first = micro_batch_width(batch, b), iteration == 0
            with autocast(run.device, run.dtype):
                scored = group_token_logprobs(run.forward, batch.prompt_ids[p], batch.prompt_mask[p],
                                              batch.completion_ids[b, :w], batch.completion_mask[b, :w],
                                              cfg.temperature, with_entropy=first)
            logp, entropy = scored if first else (scored, None)
            if first:
                entropy_sum += entropy.sum().item()                          # 0 outside the completions
                entropy_tokens += batch.completion_mask[b, :w].sum().item()
            loss, m = grpo_loss(logp, None if old_logp is None else old_logp[b, :w],
                                None if ref_logp is None else ref_logp[b, :w], batch.advantages[b], mask[b, :w],
                                normalizer=norm, loss_agg=cfg.loss_agg, clip_eps_low=cfg.clip_eps,
                                clip_eps_high=cfg.clip_eps_high or None, beta=cfg.beta,
                                importance_sampling=cfg.importance_sampling_level, clip_delta=cfg.clip_delta)
            loss.backward()
            loss_sum += loss.item()
            n = m.pop("completion_tokens")
            tokens += n
            for k, v in m.items():                                           # token-weighted means over micro-batches
                stats[k] = stats.get(k, 0.0) + v * n
        dist.sum_grads(run.policy)
        grad_norm = clip_grad_norm(run.policy, cfg.grad_clip)
        skipped += optimizer_step(run, grad_norm)
        run.optimizer.zero_grad()              # no gradients held while the next step samples
    return {"loss": loss_sum / cfg.num_iterations, **{k: v / max(tokens, 1.0) for k, v in stats.items()},
            "entropy": entropy_sum / max(entropy_tokens, 1.0), "grad_norm": grad_norm,
            **({"nonfinite_skipped": skipped} if cfg.skip_nonfinite else {})}


def dump_rollouts(run: Run, step: int, batch: RolloutBatch):
    """OUT/rollouts/step_N.jsonl: this rank's rows of the step, to read what RL is doing: the prompt, its "gold"
    answer, the completion, its reward and each reward part by name (one of them is "answer")."""
    path = run.out_dir / "rollouts" / f"step_{step + 1:06d}.jsonl"
    with writing(path):                                  # a failed write stops the run, naming the file
        path.parent.mkdir(exist_ok=True)
        with open(path, "w") as f:
            for i, text in enumerate(batch.texts):
                ex = batch.examples[i // run.cfg.group_size]
                f.write(json.dumps({"prompt": ex.prompt, "gold": ex.answer, "completion": text,
                                    "reward": batch.scored[i][0], **batch.scored[i][1],
                                    "advantage": batch.advantages[i].item(), "length": batch.lengths[i],
                                    "truncated": not bool(batch.stopped[i])}) + "\n")


# -----------------------------------------------------------------------------
# The run: setup, then steps, evaluations and checkpoints


def train(cfg: TrainConfig, task=None) -> dict:
    """Runs the configured stage to completion (resuming if asked). Returns the last metrics dict,
    with the final evaluation under "eval" when one ran. `task` overrides --task with any object that
    has reward.Task's example/reward/extract methods (pipeline.py's mixed all-scenario task).
    Holds --out-dir's lock throughout: raises SystemExit if another run holds it (checkpoint.locked_folder).
    SIGTERM or SIGINT stops the run after its current step with a checkpoint: SystemExit(128 + the signal's
    number); one received during the last step skips the final evaluation, one received during it ends the run
    after it. Raises FloatingPointError naming the step when the loss, the gradient norm or the sampler's
    logits are not finite, WriteFailed naming the path when a checkpoint, metrics or rollouts cannot be written,
    InputError for bad input, before the model loads (SFT examples longer than the model's context: once it
    has loaded)."""
    check_writable(Path(cfg.out_dir))
    with locked_folder(Path(cfg.out_dir), take=int(os.environ.get("RANK", "0")) == 0), StopSignals() as stop:
        return train_steps(cfg, task, stop)


def train_steps(cfg: TrainConfig, task, stop: StopSignals) -> dict:
    """train()'s body, under the folder's lock, stopping at a step boundary when `stop` says so."""
    records = read_sft_data(cfg.data) if cfg.stage == "sft" else None     # bad input fails before the model loads
    run, start_step, state = setup_run(cfg, task)
    dist = run.dist
    if cfg.stage == "sft":
        pairs = sft_pairs(cfg, records, run.tok, context=run.policy.cfg.max_seq_len)
        steps_per_epoch = math.ceil(len(pairs) / cfg.prompts_per_step)
        total_steps = steps_per_epoch * cfg.epochs
    else:
        total_steps = cfg.steps
    start_logs(run, start_step, resumed=state is not None, total_steps=total_steps)
    if start_step >= total_steps and dist.rank == 0:
        print(f"nothing to do: {run.out_dir} holds step {start_step}, and the run has {total_steps} steps")

    last = {}
    if start_step == 0:
        last["eval"] = run_eval(run, 0, "start")
    dist.wait_for_rank0()                               # for rank 0's evaluation, however long it takes
    bar = tqdm(range(start_step, total_steps), initial=start_step, total=total_steps, desc=cfg.stage,
               dynamic_ncols=True, disable=None if dist.rank == 0 else True)
    for step in bar:
        t0 = time.time()
        for g in run.optimizer.param_groups:
            g["lr"] = lr_at(step, total_steps, cfg)
        if cfg.stage == "grpo":
            if cfg.ref_reset_every and step and step % cfg.ref_reset_every == 0:
                sync_weights(run.reference, run.policy)     # R1: the reference follows the policy periodically
                run.ref_is_initial = False
            with diverged_at(step + 1):
                m = grpo_step(run, step)
            bar.set_postfix(reward=f"{m['reward']:.3f}", acc=f"{m['accuracy']:.3f}")
        else:
            with diverged_at(step + 1):
                m = sft_step(run, step, pairs, steps_per_epoch)
            bar.set_postfix(loss=f"{m['loss']:.4f}")
        if not math.isfinite(m["loss"]) and not cfg.skip_nonfinite:
            raise FloatingPointError(f"step {step + 1}: the loss is {m['loss']}: the run has diverged (lower --lr, "
                                     "or pass --skip-nonfinite)")
        m = {"step": step + 1, **m, "lr": lr_at(step, total_steps, cfg), "step_s": time.time() - t0}
        last = m
        done = step + 1 == total_steps
        if dist.rank == 0:
            tqdm.write(f"step={step + 1}/{total_steps} " + " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items() if k != "step"))
            log_metrics(run, m)
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and not done:
            with diverged_at(step + 1):
                run_eval(run, step + 1, "")             # on every rank: refreshing the sampler may all-gather
        saved = done or (cfg.save_every and (step + 1) % cfg.save_every == 0)
        if saved:
            save_checkpoint(run, step + 1)
        dist.wait_for_rank0()                           # for rank 0's evaluation and checkpoint write
        if stop.requested(dist):                        # the last step's too: no final evaluation then
            stop_after(run, step + 1, saved, stop.received)      # a checkpoint, a line, SystemExit
        dist.barrier()
    if start_step < total_steps or not list_checkpoints(run.out_dir):
        last["eval"] = run_eval(run, total_steps, "end")
    dist.wait_for_rank0()
    if stop.requested(dist):                            # received during the final evaluation
        stop_after(run, total_steps, True, stop.received)
    return last


def setup_run(cfg: TrainConfig, task=None) -> tuple[Run, int, dict | None]:
    """Everything before the first step: processes and device, input checks (all before the model
    loads), the checkpoint to resume from, the models and the optimizer. Returns the Run, the step to
    start from and the resumed trainer state (None for a fresh run)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    with reading_input():          # everything that can fail on bad input fails here, before the model is loaded
        dist, device = init_distributed(cfg)
        dist.fsdp = cfg.fsdp and dist.world > 1
        dtype = compute_dtype(cfg.dtype, device)
        if device.type == "cpu":
            cap_kernel_caches()
        if task is None and (cfg.stage == "grpo" or cfg.eval_prompts):
            task = load_task(cfg.task, seed=cfg.seed)
        weights = parse_weights(cfg.reward_weights)
        if cfg.stage == "grpo":                   # the task knows its reward parts: unknown names fail here
            task.reward(task.example("train", 0), "", cfg.think_prefill, weights=weights)
        if cfg.eval_prompts and task is not None:
            task.example("test", 0)               # an empty test split fails here, not after the model loads
        check_writable(out_dir)
        resolve_model_path(cfg.model)
        state, ckpt = resume_state(out_dir, cfg.resume, dist.rank)
        if state:
            check_resumed_config(cfg, state["config"], ckpt)
            if dist.rank == 0:
                print(f"resuming from {ckpt} (step {state['step']})")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    with reading_input():          # the model's files: a malformed one is named
        policy, tok = load_pretrained(ckpt if state and not cfg.lora_rank else cfg.model, device=device,
                                      dtype=torch.float32)
    policy.requires_grad_(True).train()
    policy.checkpoint_blocks = cfg.activation_checkpointing
    if cfg.lora_rank:
        with reading_input():
            add_lora(cfg, policy, dtype, ckpt if state else None)
    # the sampler: a plain model of the policy's config in the compute dtype, filled from the policy before
    # every sampling pass (refresh_sampler; under FSDP a full copy on every rank, refilled by all-gathers:
    # sync_weights; with LoRA it holds the merged weights). Allocated empty, not copied from the policy: a copy
    # of the float32 policy, cast after, would double the policy's memory for a moment
    sampler = (policy if dtype == torch.float32 and not dist.fsdp else
               empty_model(policy.cfg, device, dtype).requires_grad_(False))
    reference = None
    if cfg.stage == "grpo" and cfg.beta > 0:
        reference = policy if cfg.lora_rank else load_reference(cfg, policy, state, device, dtype, dist)
    if dist.fsdp:
        fsdp_shard(policy, device, dist.world)
    # fused: one kernel per tensor and no temporaries (with the LM head's vocabulary slices, 4% of the CPU
    # benchmark's peak memory: benchmarks/README.md); with LoRA only the adapters are trained
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay, betas=(0.9, 0.99),
                                  fused=device.type in ("cpu", "cuda") and not dist.fsdp)
    if state:
        restore_trainer_state(state, policy, optimizer, dist)
    run = Run(cfg, tok, policy, optimizer, task=task, weights=weights, sampler=sampler, reference=reference,
              forward=torch.compile(policy) if cfg.compile else None, device=device, dtype=dtype, out_dir=out_dir,
              dist=dist, ref_is_initial=not (state and state.get("reference") is not None))
    return run, state["step"] if state else 0, state


def add_lora(cfg: TrainConfig, policy, dtype: torch.dtype, ckpt: Path | None):
    """--lora-rank: adapters on the policy (model.add_adapters; A seeded by --seed), with the values of the
    checkpoint resumed from (ckpt), which must have been trained on the same base model (model.load_adapters). The
    frozen base weights of the blocks' Linears are kept in the compute dtype, as the reference model's are
    (load_reference): autocast rounds them to it anyway, so the numbers are the same, in half the memory (peak RSS
    of a bf16 GRPO run on a 0.5B model: 4.7 GiB, against 5.4 with them in float32; benchmarks/README.md, "LoRA").
    Raises ValueError for a checkpoint of another base model or adapters."""
    add_adapters(policy, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets.split(","), base=base_identity(cfg.model),
                 seed=cfg.seed, base_dtype=dtype)
    if ckpt is not None:
        load_adapters(policy, ckpt)


def load_reference(cfg: TrainConfig, policy, state: dict | None, device, dtype, dist: Dist):
    """The frozen reference model: the initial model, or the one saved in the checkpoint after a
    --ref-reset-every reset. It runs under the same autocast as the policy, so that at step 0 both compute
    the very same numbers and the KL is exactly 0. Its blocks' Linear weights are stored in the compute
    dtype (half the memory, no cast per forward): autocast would round them to it anyway. Embeddings and
    norms stay float32 (a bf16 model would also round the residual stream, which autocast does not)."""
    if state and state.get("reference") is not None:
        reference = copy.deepcopy(policy)
        reference.load_state_dict(state["reference"])
    else:
        reference, _ = load_pretrained(cfg.model, device=device, dtype=torch.float32)
    reference = reference.requires_grad_(False).eval()
    for module in reference.layers.modules():
        if isinstance(module, torch.nn.Linear) and not dist.fsdp:    # FSDP2 wants one dtype per unit
            module.to(dtype)
    if dist.fsdp:
        fsdp_shard(reference, device, dist.world)
    return reference


def start_logs(run: Run, start_step: int, resumed: bool, total_steps: int):
    """Rank 0: OUT/config.json, metrics.jsonl cut back to the step resumed from, the config and run lines."""
    cfg, metrics_path = run.cfg, run.out_dir / "metrics.jsonl"
    if run.dist.rank != 0:
        return
    with writing(run.out_dir / "config.json"):
        run.out_dir.mkdir(parents=True, exist_ok=True)
        (run.out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    # a fresh run starts a fresh log (a run killed before its first checkpoint left lines behind); a resumed
    # one drops the lines logged after the checkpoint it resumes from
    kept = [r for r in read_metrics(metrics_path) if r.get("step", 0) <= start_step] if resumed else []
    with writing(metrics_path):
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    print("config: " + json.dumps(dataclasses.asdict(cfg)))
    params = sum(p.numel() for p in run.policy.parameters()) / 1e6
    trained = sum(p.numel() for p in run.policy.parameters() if p.requires_grad) / 1e6
    print(f"device={run.device} compute_dtype={str(run.dtype).removeprefix('torch.')} "
          f"threads={torch.get_num_threads()} ranks={run.dist.world} params={params:.1f}M "
          + (f"trained={trained:.2f}M " if run.policy.adapters else "") + f"steps={total_steps}")


def optimizer_step(run: Run, grad_norm: float) -> int:
    """optimizer.step() when the gradient norm (clip_grad_norm's, the same on every rank) is finite; returns 1
    for a step skipped instead (--skip-nonfinite), else 0. Raises FloatingPointError otherwise."""
    if math.isfinite(grad_norm):
        run.optimizer.step()
        return 0
    if run.cfg.skip_nonfinite:
        return 1
    raise FloatingPointError(f"the gradient norm is {grad_norm}: the run has diverged (lower --lr, or pass "
                             "--skip-nonfinite)")


@contextlib.contextmanager
def diverged_at(step: int):
    """Prefixes a FloatingPointError (a non-finite loss, gradient norm or logits) with the step it happened in."""
    try:
        yield
    except FloatingPointError as e:
        raise FloatingPointError(f"step {step}: {e}") from None


def check_writable(out_dir: Path):
    """Raises InputError unless out_dir is (or can be made) a directory this process can write in."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise InputError(f"--out-dir {out_dir}: not a writable directory ({e.strerror or e})") from None


def log_metrics(run: Run, record: dict):
    """Appends one record to OUT/metrics.jsonl (closed at once: a stopped run has nothing left to flush).
    Raises WriteFailed naming the file when it cannot be written."""
    with writing(run.out_dir / "metrics.jsonl"), open(run.out_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def run_eval(run: Run, step: int, tag: str) -> dict | None:
    """Held-out pass@1 / cons@k of the current policy (sample.evaluate), printed and logged by rank 0."""
    cfg = run.cfg
    if not cfg.eval_prompts or run.task is None:
        return None
    refresh_sampler(run)                               # on every rank: under FSDP it all-gathers
    if run.dist.rank != 0:
        return None
    t0 = time.time()
    r = evaluate(run.sampler, run.tok, run.task, n_prompts=cfg.eval_prompts, k=cfg.eval_k, template=cfg.template,
                 think_prefilled=cfg.think_prefill, max_new_tokens=cfg.max_new_tokens,
                 temperature=cfg.eval_temperature, top_p=0.95, seed=cfg.seed)
    tqdm.write(eval_line(tag, step, r) + f" seconds={time.time() - t0:.1f}")
    rec = {"step": step, "eval": {k: v for k, v in r.items() if isinstance(v, (int, float))}}
    log_metrics(run, rec)
    return rec["eval"]


# -----------------------------------------------------------------------------
# Helpers of the step: learning rate, seeds, micro-batches, dtypes


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """The learning rate of step (0-based) of total_steps: a linear warmup over --warmup-steps, then constant
    (R1 trains at a constant lr) or, with --lr-schedule linear, lr * (total_steps - step) / (total_steps -
    warmup_steps): 1/(total - warmup) of it at the last step (transformers' get_linear_schedule_with_warmup)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "linear":
        return cfg.lr * (total_steps - step) / max(1, total_steps - cfg.warmup_steps)
    return cfg.lr


def step_seed(cfg: TrainConfig, step: int, rnd: int = 0) -> int:
    """Sampling seed of a step's sampling round rnd (dynamic sampling's rounds; 0 otherwise): a function of
    (seed, step, round) only, so a resumed run samples what the uninterrupted one did without restoring any
    generator state."""
    return (cfg.seed * 1_000_003 + step + rnd * EXTRA_ROUND_OFFSET) % 2**31


def micro_batches(B: int, size: int):
    return [slice(i, min(i + size, B)) for i in range(0, B, size)]


def compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto -> sample.default_dtype: bfloat16 on CUDA, and on CPUs with native bf16 matmuls (faster than
    float32 there: benchmarks/sample_vs_hf.py), else float32. Master weights and optimiser state stay
    float32."""
    if name == "auto":
        return default_dtype(device)
    return getattr(torch, name)


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16/fp16 autocast for the training forward; a no-op for float32 (exact, used by the tests).
    Without autocast's cache of weight casts: a weight used twice in one forward (the shared prompt
    pass and the completions, grpo.group_token_logprobs) then gets two casts, and its two gradients
    are summed in float32 by AccumulateGrad rather than in bf16 through one shared cast."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def eval_line(tag: str, step: int, r: dict) -> str:
    return (f"eval step={step} {tag} pass@1={r['pass@1']:.3f}±{r['pass@1_se']:.3f} "
            f"cons@{r['k']}={r['cons@k']:.3f} answer_acc={r['answer_acc']:.3f} mean_len={r['mean_len']:.1f} n={r['n']}")


# -----------------------------------------------------------------------------
# SFT (R1's cold start and rejection-sampling stages)


@reading_input()
def read_sft_data(path: str) -> list[dict]:
    """Reads a jsonl of {"prompt": str, "completion": str} or {"messages": [{"role", "content"}, ...]}
    (the last message the assistant's). Raises InputError naming the file and line of a bad record or one that
    is not UTF-8, OSError for a file that cannot be read."""
    records = []
    for n, line in jsonl_lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
        msgs = rec.get("messages") if isinstance(rec, dict) else None
        if isinstance(msgs, list) and msgs:
            roles = ("system", "user", "assistant")
            if not all(isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in roles
                       for m in msgs) or msgs[-1].get("role") != "assistant":
                raise ValueError(f"{path}:{n}: 'messages' must be role/content objects ending with the assistant's")
        elif not (isinstance(rec, dict) and isinstance(rec.get("prompt"), str)
                  and isinstance(rec.get("completion"), str)):
            raise ValueError(f"{path}:{n}: expected {{'prompt': str, 'completion': str}} or {{'messages': [...]}}")
        records.append(rec)
    if not records:
        raise ValueError(f"{path}: no examples")
    return records


def line_of(path: str, k: int) -> int:
    """The line number of the k-th (0-based) non-blank line of a jsonl file, as read_sft_data counts records."""
    return [n for n, _ in jsonl_lines(path)][k]


def tokenize_sft(records: list[dict], tok, template: str, think_prefill: bool) -> list[tuple[list[int], list[int]]]:
    """(prompt_ids, completion_ids) per record. A "prompt" goes through --template ("raw" keeps it as
    is), "messages" through the chat format. completion_ids end with the stop token, so the model
    learns to stop."""
    from reward import Example
    pairs = []
    for rec in records:
        if "messages" in rec:
            prompt, completion = tok.render_chat(rec["messages"][:-1]), rec["messages"][-1]["content"]
        else:
            completion = rec["completion"]
            prompt = rec["prompt"] if template == "raw" else render_prompt(
                Example(prompt=rec["prompt"], answer=""), template, tok, think_prefill)
        pairs.append((tok.encode(prompt), tok.encode(completion) + tok.stop_ids[:1]))
    return pairs


def sft_pairs(cfg: TrainConfig, records: list[dict], tok, context: int) -> list[tuple[list[int], list[int]]]:
    """tokenize_sft's pairs, checked against the model: raises InputError naming the file and line of the first
    example whose prompt is empty under --template, else of the first one longer than the model's context."""
    pairs = tokenize_sft(records, tok, cfg.template, cfg.think_prefill)
    too_long = [i for i, (p, c) in enumerate(pairs) if len(p) + len(c) > context]
    empty = [i for i, (p, _) in enumerate(pairs) if not p]
    if empty:
        raise InputError(f"{cfg.data}:{line_of(cfg.data, empty[0])}: the prompt is empty under --template "
                         f"{cfg.template}: the first completion token has nothing to be predicted from")
    if too_long:
        p, c = pairs[too_long[0]]
        raise InputError(f"{cfg.data}:{line_of(cfg.data, too_long[0])}: prompt + completion are {len(p) + len(c)} "
                         f"tokens, longer than the model's context of {context} tokens; too long: {len(too_long)} of "
                         f"{len(pairs)} examples")
    return pairs


def sft_batch(pairs, pad_id: int, device):
    """Right-padded [prompt | completion | pad] rows. Returns ids (B, T) int64, attention_mask and
    completion_mask (B, T) bool (completion tokens, stop token included), built from lengths."""
    T = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    attn = torch.zeros(len(pairs), T, dtype=torch.bool)
    comp = torch.zeros_like(attn)
    for i, (p, c) in enumerate(pairs):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        attn[i, :len(p) + len(c)] = True
        comp[i, len(p):len(p) + len(c)] = True
    return ids.to(device), attn.to(device), comp.to(device)


def sft_step(run: Run, step: int, pairs: list, steps_per_epoch: int) -> dict:
    """One SFT step: cross-entropy on completion tokens only, averaged over the step's completion tokens
    (so micro-batching does not change the gradient). The example order is a seeded permutation per
    epoch, so the data position is a function of the step (exact resume)."""
    cfg, dist = run.cfg, run.dist
    epoch, i = divmod(step, steps_per_epoch)
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
    batch = [pairs[j] for j in order[i * cfg.prompts_per_step:(i + 1) * cfg.prompts_per_step]]
    batch = batch[dist.rank::dist.world]                   # this rank's share (ranks beyond it get none)
    ids, attn, comp = sft_batch(batch, run.tok.pad_id, run.device) if batch else (None, None, None)
    n_tokens = dist.sum(comp.sum().item() if batch else 0)
    loss_sum = 0.0
    for mb in micro_batches(ids.size(0) if batch else 0, cfg.micro_batch_size):
        with autocast(run.device, run.dtype):
            logp = token_logprobs(run.forward, ids[mb], attn[mb], comp[mb], temperature=1.0)
        loss = -logp.sum() / n_tokens          # padding positions are 0 in logp
        loss.backward()
        loss_sum += loss.item()
    dist.sum_grads(run.policy)
    loss_sum = dist.sum(loss_sum)
    grad_norm = clip_grad_norm(run.policy, cfg.grad_clip)
    skipped = optimizer_step(run, grad_norm)
    run.optimizer.zero_grad()
    return {"loss": loss_sum, "tokens": n_tokens, "epoch": epoch, "grad_norm": grad_norm,
            **({"nonfinite_skipped": skipped} if cfg.skip_nonfinite else {})}


# =============================================================================
# Runtime machinery: nothing below changes a number (benchmarks/README.md has what it buys). The rest of it,
# torchrun/FSDP and the sampler's weight copies, is distributed.py's


def cap_kernel_caches(capacity: int = 128):
    """Caps how many compiled CPU matmul kernels the process keeps: oneDNN's primitive cache and
    PyTorch's ideep cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY, LRU_CACHE_CAPACITY; 1024 each by default).
    A bf16 kernel is compiled for one shape and both caches hold it. Decoding (a longer key length
    every token) and micro-batches of varying width make new shapes every step, so with the defaults
    the process grows step after step until the caches are full. A step's shapes repeat over the
    layers, so a small cache keeps nearly all its hits. Works only before
    the process's first bf16 matmul (both caches read the setting once); values already in the
    environment are kept. Measured by `benchmarks/grpo_vs_trl.py --only ours [--default-kernel-caches]`
    (benchmarks/README.md: 3.62 against 4.24 GiB peak on the benchmark's GRPO step)."""
    for var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(var, str(capacity))


# Names that moved out of train.py resolve here still: `train.X` and `from train import X` keep working.
MOVED = {"config": ("flag", "validate", "DESCRIPTION"),
         "checkpoint": ("MANIFEST", "RUN_DEFINING", "checkpoint_damage", "file_digest", "full_state_dicts",
                        "load_newest_intact", "load_optimizer_state", "rekey_optimizer_state")}


def __getattr__(name: str):
    """PEP 562: a moved name is fetched from its new module. Raises AttributeError for any other name."""
    for module, names in MOVED.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")


if __name__ == "__main__":
    with one_line_errors():
        train(parse_config())
    close_distributed()
