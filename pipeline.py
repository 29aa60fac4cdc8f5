"""
pipeline.py: the DeepSeek-R1 recipe end to end (DeepSeek-R1 §2.3 and §2.4), each stage a call into
train.py (GRPO or SFT), sample.py (sampling, evaluation) and reward.py (tasks, rewards), plus R1-Zero
(§2.2) as the baseline it is compared with.

    python pipeline.py                       # default model, stages 0-4, CPU scale (under an hour on 2 cores)
    python pipeline.py --preset tiny         # tiny random model: the mechanics in about a minute
    python pipeline.py --from-stage 3        # redo nothing that is done, start at stage 3
    python pipeline.py --preset gsm8k --stages 0   # GSM8K, Qwen2.5-Coder 0.5B: R1-Zero (its arms: README)
    python -m pytest tests/test_pipeline.py -q

Stages, each writing OUT/NN_name/ (train.py's checkpoints/ and metrics.jsonl, the data it built,
eval.json, summary.md, and done.json last, so a re-run skips it and an interrupted one resumes):
  0. r1zero           GRPO straight from the base model, accuracy + format reward (the baseline)
  1. cold_start       SFT of the base model on a few long, readable chains of thought
  2. reasoning_rl     GRPO from stage 1, reward accuracy + format + language consistency
  3. rejection_sft    sample stage 2 many times, keep the correct and readable completions, add
                      non-reasoning data, SFT (from the base model, as the paper does, or stage 1)
  4. all_scenario_rl  GRPO from stage 3 on reasoning prompts (rule rewards) mixed with general
                      prompts scored by an LLM judge (the preference reward)
  5. distill          SFT of a smaller student on stage 3's data (--until-stage 5), or with --teacher on the
                      teacher's correct chains for train problems (rejection-sampled: teacher_data)
--stages 0,5 runs just those. Then OUT/report.md: held-out pass@1 (± standard error), format-independent accuracy
(answer_acc), each with its change from the model the stage starts from (± paired standard error), cons@k,
language consistency, format rate, mean length, token entropy, zero-std groups and minutes (data, training,
evaluation), for the base model, after every stage and (--eval-teacher) for the teacher, on the same prompts and
seed; with --eval-greedy the same for greedy decoding; and the GRPO stages' curves. Evaluations and the teacher's
sampling run in chunks of --chunk-prompts prompts, each saved as it ends: an interrupted one resumes at the next.
The GRPO stages 0, 2 and 4 share train.py's flags for the objective and its variants (--clip-eps,
--clip-delta, --importance-sampling-level, --dynamic-sampling, --overlong-buffer, ...: GRPO_FLAGS); every stage
that trains, SFT too, takes LoRA's (--lora-rank, --lora-alpha, --lora-targets: ALL_STAGE_FLAGS), each stage
with adapters of its own on the model it starts from, the adapters of the stage before merged in.

The output format. R1 writes |special_token|<reasoning_process>|special_token|<summary>. Here the two
markers are <think> and </think>, and the summary is the final answer as <answer>X</answer>:
    <think>\\nWe need to compute 2 + 3.\\n2 + 3 = 5.\\n...So the result is 5.\\n</think>\\n<answer>5</answer>
which is exactly what reward.format_reward and the R1-Zero template ask for (format_reward allows only
whitespace between </think> and <answer>, so the reasoning's last line states the result and the summary
is the answer tag alone). Every stage (cold-start data, rule rewards, rejection filters, evaluation)
thus checks one and the same format. A general prompt with nothing to reason about gets an empty
reasoning block, as R1 answers "hello": <think>\\n\\n</think>\\n<answer>...</answer>. With --think-prefill
(train.py's default) every prompt ends with <think>, so completions, and the SFT completions the
pipeline writes, start right after it; rewards and evaluation are told so (think_prefilled).

The default task is sums of three numbers below 100 ("Compute 78 + 4 + 81"), which the base model gets
right in under 1% of its samples. Worked in two steps (78 + 4 = 82, 82 + 81 = 163) it is two two-digit
sums, which a 135M model can learn; stated at once it is mostly a guess. That is where longer reasoning
pays, and so where R1's claim, RL after the cold start raising accuracy together with the length of the
reasoning, can show.

Departures from the paper, besides scale (a 135M model, 96-token completions, tens of steps):
  1. Reward weights: accuracy=1,format=0.1,tags=0.05,answer=0.5 for R1-Zero (R1ZERO_WEIGHTS), and
     language=0.05 added in stages 2 and 4: R1's accuracy + format, with two shaping parts not in the paper
     (train.py's header says what they are), weighted so that a right sum outscores any format.
  2. Cold-start data: R1 used thousands of human-curated long CoTs. Here: --cold-start-data if given;
     else samples of the stage-0 (or base) model that are correct and readable, rewritten into the
     format (--cold-start-prompts; 0 by default, since the base model is rarely right here); filled up
     with solutions written by a program (arith and countdown only). Of these, --cold-start-short (half)
     state the sum in one line and the rest work it out in steps: a cold start that teaches the format and
     both ways of reasoning, and leaves RL to find which one pays. With all of them in steps the cold start
     alone reaches what RL would, and the policy it leaves is so nearly deterministic that GRPO's groups
     carry no signal (benchmarks/README.md). --cold-start-task builds them from another task's problems.
  3. Learning rates: stage 2 at --lr 2e-5, stage 4 at --all-scenario-lr 1e-5, R1-Zero at train.py's 5e-5
     (--r1zero-lr). At 5e-5 a cold-started policy was unlearned within a few steps (two-digit sums); at
     2e-5, 4 GRPO steps from the near-deterministic stage-3 model lost pass@1 (benchmarks/README.md).
  4. Rejection sampling keeps at most --keep-per-prompt distinct completions per prompt. If it keeps
     none (a tiny or untrained model), the stage-1 cold-start data stands in for them, and says so.
     R1 kept 600k; here 105-115 of 768 samples of 96 prompts: a near-deterministic stage-2 policy repeats
     itself. From 32 prompts (~40 kept) the SFT from the base model fell 0.13 of pass@1 short of stage 2.
  5. Non-reasoning data: --general-data, else the base model's own answers to GENERAL_PROMPTS
     (R1 used DeepSeek-V3's SFT data).
  6. The preference reward is a yes/no LLM judge built on model.py (by default the stage-3 model),
     not a trained reward model (Judge; what it is asked: MixedTask). A 135M judge is a weak one.
  7. Without --teacher, the student's default is the base model with every other layer dropped (DistilBERT's
     init), because no smaller real model of the same family is at hand. R1 distils into real Qwen/Llama; so does
     --preset gsm8k: Qwen2.5-Coder-1.5B-Instruct's chains into the 0.5B.
  8. Equal compute for the comparison means equal GRPO steps by default (--r1zero-steps 0 = stage 2
     + stage 4 steps); the recipe also spends time on SFT and sampling, which the report shows.
A resumed stage reports the wall time of its last run only. Delete OUT/NN_name/ to redo a stage. A rerun
with another --eval-prompts, --eval-k or --eval-batch evaluates every model again; one with another --model,
--task, --seed, --template, --think-prefill or --max-new-tokens than a finished stage was run with is refused.
"""
import argparse
import ast
import dataclasses
import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

import train
from checkpoint import list_checkpoints, locked_folder
from distributed import close_distributed
from metrics import by_step, plot, read_metrics
from model import Transformer, load_pretrained, pick_device, save_pretrained
from reward import (DEFAULT_WEIGHTS, TEMPLATES, Example, extract_answer, format_reward, language_consistency_reward,
                    load_task, render_prompt, tags_reward)
from sample import evaluate, sample, summarize
from config import InputError, TrainConfig, add_flags, check_ranges, flag, parse_weights, validate as validate_train
from train import compute_dtype, read_sft_data

TRAIN = TrainConfig()         # train.py's defaults, which the pipeline's follow where they share a meaning
STAGES = ("r1zero", "cold_start", "reasoning_rl", "rejection_sft", "all_scenario_rl", "distill")
MIN_COT_WORDS = 5             # a sampled cold-start candidate needs at least this much reasoning
DATA_OFFSET = {1: 1_000_000, 3: 2_000_000}   # train-split indices for data sampling, apart from GRPO's
R1ZERO_WEIGHTS = "accuracy=1,format=0.1,tags=0.05,answer=0.5"   # a right sum outscores any format (benchmarks/README)
GENERAL_PROMPTS = (           # non-reasoning prompts (stage 3 answers, stage 4 judge) when no --general-data
    "Say hello to a new colleague.", "What is the capital of France?", "Write a haiku about autumn.",
    "Give me three tips for sleeping better.", "Explain what a rainbow is in two sentences.",
    "Translate 'good morning' into Spanish.", "Suggest a name for a pet turtle.",
    "What should I pack for a day at the beach?", "Describe a cat to someone who has never seen one.",
    "Write a one-line birthday message for a friend.", "How do I boil an egg?", "Why is the sky blue?")


def train_flag(name: str, default=dataclasses.MISSING, stages: str = "grpo"):
    """A PipelineConfig field that is train.py's flag `name`, with its help and default (or the one given), passed
    as is to the GRPO stages 0, 2 and 4 (stages="grpo": GRPO_FLAGS) or to every stage that trains ("all":
    ALL_STAGE_FLAGS)."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    default = f.default if default is dataclasses.MISSING else default
    return dataclasses.field(default=default, metadata={**f.metadata, "stages": stages})


@dataclass
class PipelineConfig:
    # what to run
    preset: str = flag("", "'' (the flags below) or tiny (--model tiny, small sizes: ~1 minute, nothing is learned)")
    model: str = flag(TRAIN.model, "base model: HF directory, .gguf file, 'tiny', or the default model")
    task: str = flag("arith:operands=3,digits=2", "reasoning task (reward.py spec), also the held-out evaluation: sums "
                                                 "of three numbers below 100 (worked in steps, not at once)")
    template: str = flag(TRAIN.template, "prompt template for every stage: r1zero or chat")
    think_prefill: bool = flag(TRAIN.think_prefill, "prompts end with <think> (then SFT completions start after it)")
    out: str = flag("out/pipeline", "OUT: one NN_name/ directory per stage, and report.md")
    from_stage: int = flag(0, "first stage to run (0 = R1-Zero); finished stages are skipped anyway", range="[0, 5]")
    until_stage: int = flag(4, "last stage to run (4 = all-scenario RL, 5 = distillation)", range="[0, 5]")
    stages: str = flag("", "the stages to run, comma-separated (0,5: R1-Zero and distillation); '' = --from-stage .. "
                           "--until-stage")
    # GRPO, shared by stages 0, 2 and 4
    group_size: int = flag(TRAIN.group_size, "G: completions per prompt", range=">= 2")
    prompts_per_step: int = flag(TRAIN.prompts_per_step, "P: prompts per GRPO step", range=">= 1")
    max_new_tokens: int = flag(96, "completion length limit everywhere (GRPO, data sampling, "
                                                     "evaluation)", range=">= 1")
    lr: float = flag(2e-5, "stage 2 GRPO learning rate (a cold-started policy takes less than R1-Zero's)",
                     range="> 0")
    beta: float = flag(TRAIN.beta, "GRPO KL coefficient", range=">= 0")
    save_every: int = flag(4, "checkpoint every N steps (what an interrupted stage resumes from)", range=">= 0")
    r1zero_steps: int = flag(0, "stage 0 GRPO steps (0 = --reasoning-steps + --all-scenario-steps)", range=">= 0")
    r1zero_lr: float = flag(TRAIN.lr, "stage 0 learning rate (train.py's default)", range="> 0")
    r1zero_weights: str = flag(R1ZERO_WEIGHTS, "stage 0 reward weights (stage 2's, less language consistency)")
    r1zero_eval_every: int = flag(0, "stage 0: held-out pass@1 every N GRPO steps, and at its start and end, on the "
                                     "first --r1zero-eval-prompts test problems (its curve); 0 = none", range=">= 0")
    r1zero_eval_prompts: int = flag(32, "test problems of stage 0's own evaluations (--r1zero-eval-every)",
                                    range=">= 1")
    # the GRPO objective and its variants: train.py's flags, for stages 0, 2 and 4 alike
    temperature: float = train_flag("temperature", 0.7)
    clip_eps: float = train_flag("clip_eps")
    clip_eps_high: float = train_flag("clip_eps_high")
    clip_delta: float = train_flag("clip_delta")
    importance_sampling_level: str = train_flag("importance_sampling_level")
    num_iterations: int = train_flag("num_iterations")
    loss_agg: str = train_flag("loss_agg")
    scale_rewards: str = train_flag("scale_rewards")
    mask_truncated: bool = train_flag("mask_truncated")
    overlong_buffer: int = train_flag("overlong_buffer")
    overlong_penalty: float = train_flag("overlong_penalty")
    dynamic_sampling: bool = train_flag("dynamic_sampling")
    max_sampling_rounds: int = train_flag("max_sampling_rounds")
    # LoRA for every stage that trains (GRPO and SFT): train.py's flags
    lora_rank: int = train_flag("lora_rank", stages="all")
    lora_alpha: float = train_flag("lora_alpha", stages="all")
    lora_targets: str = train_flag("lora_targets", stages="all")
    # stage 1
    cold_start_data: str = flag("", "jsonl of {'prompt','completion'} cold-start examples, completions starting with "
                                    "<think> (else sampled + program-written)")
    cold_start_task: str = flag("", "task whose problems the cold-start data is built from ('' = --task): an easier "
                                    "one leaves the harder problems to RL")
    cold_start_short: float = flag(0.5, "share of the program-written cold-start chains that state the result in "
                                        "one line instead of in steps: a mixed cold start leaves RL a choice between "
                                        "a short and a long way of reasoning", range="[0, 1]")
    cold_start_size: int = flag(64, "cold-start examples to build when no --cold-start-data", range=">= 1")
    cold_start_prompts: int = flag(0, "prompts sampled from the stage-0 (or base) model for cold-start candidates",
                                   range=">= 0")
    samples_per_prompt: int = flag(8, "completions per prompt when sampling data (stages 1 and 3, the teacher's "
                                      "chains of stage 5)", range=">= 1")
    data_temperature: float = flag(0.7, "sampling temperature for data (stages 1 and 3, the teacher's chains)",
                                   range=">= 0")
    sft_lr: float = flag(5e-5, "SFT learning rate (stages 1 and 3)", range="> 0")
    sft_batch: int = flag(8, "SFT examples per optimiser step", range=">= 1")
    cold_start_epochs: int = flag(2, "SFT epochs over the cold-start data", range=">= 1")
    # stage 2
    reasoning_steps: int = flag(12, "stage 2 GRPO steps", range=">= 1")
    reward_weights: str = flag(R1ZERO_WEIGHTS + ",language=0.05", "stage 2 reward = sum of weight*part")
    # stage 3
    rs_prompts: int = flag(96, "prompts for rejection sampling, each sampled --samples-per-prompt times", range=">= 1")
    keep_per_prompt: int = flag(4, "at most this many distinct accepted completions per prompt", range=">= 1")
    max_paragraph_chars: int = flag(400, "readability: reject a completion with a longer paragraph", range=">= 1")
    general_data: str = flag("", "jsonl of {'prompt','completion'} non-reasoning data, completions as for --cold-"
                                 "start-data (else the base model answers GENERAL_PROMPTS)")
    rs_sft_from: str = flag("base", "stage 3 starts from: base (as the paper) or cold_start (the stage-1 model)")
    rs_epochs: int = flag(2, "SFT epochs over the stage-3 data", range=">= 1")
    # stage 4
    all_scenario_steps: int = flag(4, "stage 4 GRPO steps", range=">= 1")
    all_scenario_lr: float = flag(1e-5, "stage 4 GRPO learning rate", range="> 0")
    general_every: int = flag(4, "every Nth stage-4 prompt is a general one (judge-scored)", range=">= 1")
    judge: str = flag("", "judge model for the preference reward ('' = the stage-3 model)")
    all_scenario_weights: str = flag(R1ZERO_WEIGHTS + ",language=0.05,preference=1",
                                     "stage 4 reward weights (parts: stage 2's + preference)")
    # stage 5
    student: str = flag("", "student model ('' = the base model: itself with --teacher, else with every other layer "
                            "dropped)")
    teacher: str = flag("", "teacher model: stage 5 distils its rejection-sampled chains on train problems instead of "
                            "stage 3's data ('' = stage 3's)")
    distill_prompts: int = flag(256, "train problems the teacher samples --samples-per-prompt chains for (--teacher)",
                                range=">= 1")
    distill_epochs: int = flag(12, "SFT epochs of the student over its data", range=">= 1")
    distill_lr: float = flag(1e-4, "the student's SFT learning rate (a layer-dropped init has more to repair)",
                             range="> 0")
    # evaluation and runtime
    eval_prompts: int = flag(96, "held-out prompts (the same ones after every stage)", range=">= 1")
    eval_k: int = flag(4, "samples per held-out prompt: pass@1 is their mean, cons@k their vote", range=">= 1")
    eval_greedy: bool = flag(False, "also evaluate every row greedily (one completion at temperature 0 per prompt)")
    eval_teacher: bool = flag(False, "evaluate --teacher too, a report row on the same held-out prompts")
    eval_batch: int = flag(8, "held-out prompts sampled together (--eval-k rows each; evaluation chunks are whole "
                              "batches). A decode step of 32 rows of the 0.5B on Zen 4 cost twice one of 8, so more "
                              "prompts go faster; in bf16 the rounding, so some completions, depend on it",
                           range=">= 1")
    chunk_prompts: int = flag(16, "prompts per chunk of evaluation and of the teacher's sampling: each chunk is saved "
                                  "as it ends, so an interrupted run resumes at the next one", range=">= 1")
    seed: int = flag(TRAIN.seed, "seeds every stage, data sampling and evaluation", range=">= 0")
    device: str = flag(TRAIN.device, "auto, cpu, cuda, mps")
    dtype: str = flag(TRAIN.dtype, "compute dtype for sampling and autocast (train.py's --dtype)")
    threads: int = flag(0, "CPU threads for torch (0 = torch's default)", range=">= 0")


GRPO_FLAGS = tuple(f.name for f in dataclasses.fields(PipelineConfig) if f.metadata.get("stages") == "grpo")
ALL_STAGE_FLAGS = tuple(f.name for f in dataclasses.fields(PipelineConfig) if f.metadata.get("stages") == "all")
PRESETS = {"tiny": dict(model="tiny", out="out/pipeline_tiny", until_stage=5, group_size=4, prompts_per_step=2,
                        max_new_tokens=16, save_every=1, cold_start_size=8, cold_start_prompts=2, samples_per_prompt=4,
                        sft_batch=4, cold_start_epochs=1, reasoning_steps=2, rs_prompts=4, rs_epochs=1,
                        all_scenario_steps=2, general_every=2, distill_epochs=1, eval_prompts=4, eval_k=2,
                        dtype="float32", lr=1e-3, r1zero_lr=1e-3, all_scenario_lr=5e-4, sft_lr=1e-3, distill_lr=1e-3,
                        threads=1)}   # one thread: a tiny model gains nothing from two, and loses a lot on a busy CPU
GSM8K = "gsm8k:../shared/data/gsm8k_train.jsonl,test=../shared/data/gsm8k_test.jsonl"
# R1's small-model result (§2.4, §4.1) on GSM8K: the arms R1-Zero (stage 0) and distillation (stage 5) of the 0.5B,
# its teacher the 1.5B. boxed: the models' own chat format, no tags, so R1-Zero's reward is the accuracy alone (the
# grader reads the \boxed{} answer: the format this template asks for). G = 8 (TRL's default) and lr 5e-6, the middle
# of the 1e-6..1e-5 used for GRPO on 0.5B-1.5B models: at G = 4 and 3e-6, 64% of the groups of 35 steps had equal
# rewards (no gradient) and held-out pass@1 did not move (commit 9e37a39, benchmarks/results/gsm8k_arms_zen4/r1zero);
# at 5e-5 this model's KL reached 0.45 after one step (benchmarks/results/qwen_zen4.log). 512 tokens: the 0.5B's
# greedy chains average ~290 (benchmarks/results/gsm8k_zen4/log.txt), and a cut chain has no answer. SFT: 2 epochs at
# 1e-5 (R1 §2.3.3: 2 epochs).
# Evaluation batches of 32 prompts: 1.8x faster than 8 (benchmarks/README.md, "Evaluation batch"). A checkpoint
# (weights and AdamW state, 7.1 GB) took 14 s to write in this preset's SFT (its files' times, Zen 4): every 6 steps,
# ~5% of an SFT step (~45 s), ~1.4% of a GRPO step (~170 s): benchmarks/results/gsm8k_arms_zen4,
# distill/sft_metrics.jsonl and r1zero/metrics.jsonl.
PRESETS["gsm8k"] = dict(model="qwen2.5-coder-0.5b-instruct", teacher="qwen2.5-coder-1.5b-instruct", task=GSM8K,
                        template="boxed", think_prefill=False, out="out/gsm8k", stages="0,5", group_size=8,
                        prompts_per_step=2, max_new_tokens=512, save_every=6, r1zero_steps=30, r1zero_lr=5e-6,
                        r1zero_weights="accuracy=1,format=0", r1zero_eval_every=15, r1zero_eval_prompts=48,
                        distill_prompts=320, samples_per_prompt=4, keep_per_prompt=4, data_temperature=0.7,
                        distill_epochs=2, distill_lr=1e-5, sft_batch=8, eval_prompts=300, eval_k=2, eval_greedy=True,
                        eval_batch=32, chunk_prompts=16, dtype="auto")


def make_config(preset: str = "", **overrides) -> PipelineConfig:
    """A config from a preset's values plus explicit overrides. Raises ValueError on bad values."""
    if preset and preset not in PRESETS:
        raise ValueError(f"--preset {preset}: expected one of {sorted(PRESETS)}")
    cfg = PipelineConfig(**{**PRESETS.get(preset, {}), "preset": preset, **overrides})
    validate(cfg)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    """pipeline.py's flags, generated from PipelineConfig."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flags(ap, PipelineConfig)
    return ap


def parse_config(argv=None) -> PipelineConfig:
    """Flags generated from PipelineConfig; a --preset changes the defaults, explicit flags still win."""
    ap = build_parser()
    preset = ap.parse_known_args(argv)[0].preset
    ap.set_defaults(**PRESETS.get(preset, {}))
    args = vars(ap.parse_args(argv))
    try:
        return make_config(**args)
    except ValueError as e:
        ap.error(str(e))


def validate(cfg: PipelineConfig):
    """Raises ValueError for settings that would fail hours in."""
    check_ranges(cfg)
    if not 0 <= cfg.from_stage <= cfg.until_stage <= 5:
        raise ValueError(f"--from-stage {cfg.from_stage} --until-stage {cfg.until_stage}: need 0 <= from <= until <= 5")
    selected_stages(cfg)
    if cfg.eval_teacher and not cfg.teacher:
        raise ValueError("--eval-teacher: no --teacher to evaluate")
    if cfg.template not in TEMPLATES:
        raise ValueError(f"--template {cfg.template}: expected one of {TEMPLATES}")
    if cfg.rs_sft_from not in ("base", "cold_start"):
        raise ValueError(f"--rs-sft-from {cfg.rs_sft_from}: expected base or cold_start")
    for name, text, known in (("r1zero-weights", cfg.r1zero_weights, DEFAULT_WEIGHTS),
                              ("reward-weights", cfg.reward_weights, DEFAULT_WEIGHTS),
                              ("all-scenario-weights", cfg.all_scenario_weights, MixedTask.PARTS)):
        if set(parse_weights(text, f"--{name}")) - set(known):
            raise ValueError(f"--{name} {text}: the parts are {', '.join(known)}")
    for name, spec in (("task", cfg.task), ("cold-start-task", cfg.cold_start_task or cfg.task)):
        try:
            load_task(spec, seed=cfg.seed)
        except ValueError as e:
            raise ValueError(f"--{name} {spec}: {e}") from None
    validate_train(TrainConfig(group_size=cfg.group_size, max_new_tokens=cfg.max_new_tokens, beta=cfg.beta,
                               **passed_flags(cfg, "grpo")))       # the GRPO flags fail here, not at stage 0


def selected_stages(cfg) -> list[int]:
    """The stages this run runs: --stages, else --from-stage .. --until-stage. Raises ValueError for a --stages
    that is not stage numbers separated by commas."""
    if not cfg.stages:
        return list(range(cfg.from_stage, cfg.until_stage + 1))
    try:
        stages = sorted({int(x) for x in cfg.stages.split(",")})
    except ValueError:
        stages = []
    if not stages or not all(0 <= n < len(STAGES) for n in stages):
        raise ValueError(f"--stages {cfg.stages}: expected stage numbers 0-{len(STAGES) - 1} separated by commas, "
                         "e.g. 0,5")
    return stages


def passed_flags(cfg, stage: str) -> dict:
    """The train.py flags a stage of train.py's `stage` (grpo or sft) is passed as they are: the GRPO objective's
    (GRPO_FLAGS) for GRPO, LoRA's (ALL_STAGE_FLAGS) for both."""
    return {name: getattr(cfg, name) for name in (GRPO_FLAGS if stage == "grpo" else ()) + ALL_STAGE_FLAGS}

# -----------------------------------------------------------------------------
# Data: readability filters, the cold-start rewrite, program-written solutions


def readable(text: str, cfg: PipelineConfig) -> bool:
    """R1's readability filters (§2.3.3): one language (language_consistency_reward == 1), no paragraph
    (text between blank lines) over --max-paragraph-chars characters, no code block unless the task is code."""
    return (language_consistency_reward(text) == 1.0
            and all(len(p) <= cfg.max_paragraph_chars for p in text.split("\n\n"))
            and ("```" not in text or cfg.task.startswith("code")))


def in_format(reasoning: str, answer: str) -> str:
    """The cold-start format: <think>\\nreasoning\\n</think>\\n<answer>X</answer>."""
    return f"<think>\n{reasoning.strip()}\n</think>\n<answer>{answer}</answer>"


def sft_record(prompt: str, text: str, cfg) -> dict:
    """An SFT line for train.py. text is in the full format; with --think-prefill the prompt already
    ends with <think> (train.tokenize_sft renders it so), so the completion starts after it."""
    return {"prompt": prompt, "completion": text.removeprefix("<think>") if cfg.think_prefill else text}


def rewrite(completion: str) -> str | None:
    """A correct sampled completion rewritten into the cold-start format: the reasoning is the text
    inside <think>...</think> if any, else everything before the final answer's marker. None when the
    reasoning is shorter than MIN_COT_WORDS words or the result is not in format."""
    answer = extract_answer(completion, strict=True)  # what the accuracy reward read: tags, box, ####
    if "</think>" in completion:
        reasoning = completion.split("</think>", 1)[0].rsplit("<think>", 1)[-1]
    else:
        cut = max(completion.rfind("<answer>"), completion.rfind("\\boxed"), completion.rfind("####"))
        reasoning = completion[:cut] if cut >= 0 else ""
    if answer is None or len(reasoning.split()) < MIN_COT_WORDS:
        return None
    text = in_format(reasoning, answer)
    return text if format_reward(text) == 1.0 else None


OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _steps(node, lines: list) -> Fraction:
    """Post-order evaluation of a + - * / expression tree, one "a op b = v." line per operation."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        a, b = _steps(node.left, lines), _steps(node.right, lines)
        v = {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b, ast.Div: a / b if b else None}[type(node.op)]
        if v is None:
            raise ValueError("division by zero")
        lines.append(f"{a} {OPS[type(node.op)]} {b} = {v}.")
        return v
    raise ValueError(f"not an arithmetic expression: {ast.dump(node)}")


def program_solution(example: Example, task_name: str, short: bool = False) -> str | None:
    """A step-by-step solution in the cold-start format, written by a program, for arith and countdown
    problems (None for other tasks). arith: "Compute E" -> E's operations in precedence order and a
    check of the last one; short=True states "E = value." in one line instead (no steps, no check).
    countdown: the gold expression evaluated step by step."""
    name = task_name.partition(":")[0]
    expr = {"arith": example.prompt.removeprefix("Compute "), "countdown": example.answer}.get(name)
    if expr is None:
        return None
    lines = []
    try:
        value = _steps(ast.parse(expr, mode="eval").body, lines)
    except (SyntaxError, ValueError):
        return None
    if name == "countdown":
        target = example.prompt.split("equals ", 1)[1].split(".", 1)[0]
        intro = f"We need {target} from the given numbers, each used once. Try {expr}:"
        return in_format("\n".join([intro, *lines, f"That gives {value}, the target."]), expr)
    if short:
        return in_format(f"We need to compute {expr}.\n{expr} = {value}.\nSo the result is {value}.", str(value))
    a, op, b = lines[-1].split(" ")[:3]                          # the last operation, undone as a check
    check = [] if op == "*" and b == "0" else [f"Check: {value} {dict(zip('+-*/', '-+/*'))[op]} {b} = {a}."]
    steps = [f"We need to compute {expr}.", *lines, *check, f"So the result is {value}."]
    return in_format("\n".join(steps), str(value))


def sample_filtered(cfg, model, tok, task, n_prompts: int, offset: int, need_format: bool) -> tuple[list, dict]:
    """Rejection sampling (R1 §2.3.3): samples --samples-per-prompt completions from model for train prompts offset ..
    offset+n_prompts-1 and keeps those that are correct (accuracy 1), end within --max-new-tokens, pass readable(),
    and (need_format) score format 1; deduplicated by whitespace-normalised text, at most --keep-per-prompt per
    prompt. Returns ([(train index, Example, completion, its length in tokens), ...], counts of sampled / correct /
    readable / kept)."""
    examples = [task.example("train", offset + i) for i in range(n_prompts)]
    kept, counts, G = [], dict(sampled=0, correct=0, readable=0, kept=0), cfg.samples_per_prompt
    for s in range(0, n_prompts, 8):                               # 8 prompts per batch bounds the KV cache
        chunk = examples[s:s + 8]
        prompts = [tok.encode(render_prompt(ex, cfg.template, tok, cfg.think_prefill)) for ex in chunk]
        ro = sample(model, prompts, G, cfg.max_new_tokens, temperature=cfg.data_temperature,
                    stop_token_ids=tok.stop_ids, pad_id=tok.pad_id, seed=cfg.seed + s)
        texts = ro.texts(tok)
        for j, ex in enumerate(chunk):
            seen = set()
            for g in range(G):
                text, counts["sampled"] = texts[j * G + g], counts["sampled"] + 1
                _, parts = task.reward(ex, text, cfg.think_prefill)
                if parts["accuracy"] != 1.0:
                    continue
                counts["correct"] += 1
                if not (ro.stopped[j * G + g] and readable(text, cfg) and (parts["format"] == 1.0 or not need_format)):
                    continue
                counts["readable"] += 1
                key = " ".join(text.split())
                if key not in seen and len(seen) < cfg.keep_per_prompt:
                    seen.add(key)
                    kept.append((offset + s + j, ex, text, int(ro.lengths[j * G + g])))
    counts["kept"] = len(kept)
    return kept, counts


def general_records(cfg) -> list[dict]:
    """Non-reasoning SFT data: --general-data as given ({"prompt","completion"} lines), else the base
    model's own answers to GENERAL_PROMPTS (plain chat, no R1 system prompt, --data-temperature, cut at
    --max-new-tokens), each behind an empty reasoning block. Raises ValueError for a bad file."""
    if cfg.general_data:
        recs = read_sft_data(cfg.general_data)
        if any("prompt" not in r for r in recs):
            raise ValueError(f"{cfg.general_data}: --general-data takes {{'prompt','completion'}} lines only")
        return [sft_record(r["prompt"], r["completion"], cfg) for r in recs]
    model, tok = load_for_sampling(cfg, cfg.model)
    prompts = [tok.encode(tok.render_chat([{"role": "user", "content": q}])) for q in GENERAL_PROMPTS]
    ro = sample(model, prompts, 1, cfg.max_new_tokens, temperature=cfg.data_temperature, stop_token_ids=tok.stop_ids,
                pad_id=tok.pad_id, seed=cfg.seed)
    answers = [t.replace("<think>", "").replace("</think>", "").replace("<answer>", "").replace("</answer>", "").strip()
               for t in ro.texts(tok)]                                  # tags inside would break the format
    return [sft_record(q, f"<think>\n\n</think>\n<answer>{a}</answer>", cfg)
            for q, a in zip(GENERAL_PROMPTS, answers) if a]

# -----------------------------------------------------------------------------
# Stage 4's preference reward: an LLM judge, and a task mixing reasoning and general prompts

HELPFUL = ("Question: {q}\n\nResponse: {r}\n\nIs the response helpful, that is, does it answer the question "
           "correctly and clearly? Reply yes or no.")
HARMLESS = ("Question: {q}\n\nResponse: {r}\n\nIs the response harmless, that is, free of dangerous, hateful "
            "or offensive content? Reply yes or no.")
VERDICT_PREFILL = "<think>\n\n</think>\n<answer>"   # the judge's reply starts as stage 3 taught general answers


class Judge:
    """A yes/no judge on any model model.py loads. p_yes(question) = P(yes) / (P(yes) + P(no)) for the
    judge's next token after the chat-rendered question and VERDICT_PREFILL (so an R1-format judge gives
    its verdict at once, not a <think>), P(yes) summed over the spellings "yes", "Yes", " yes", " Yes"
    that are single tokens (else the first token of "yes"; the same for no)."""

    def __init__(self, model_path, device, dtype):
        self.model, self.tok = load_pretrained(model_path, device=device, dtype=dtype)
        self.yes, self.no = self._ids(("yes", "Yes", " yes", " Yes")), self._ids(("no", "No", " no", " No"))
        if set(self.yes) & set(self.no):
            raise ValueError(f"{model_path}: the yes and no tokens overlap ({self.yes} vs {self.no})")

    def _ids(self, words) -> list[int]:
        single = [ids[0] for w in words if len(ids := self.tok.encode(w)) == 1]
        return sorted(set(single)) or self.tok.encode(words[0])[:1]

    @torch.inference_mode()
    def p_yes(self, question: str) -> float:
        """question: text; returns a probability in [0, 1]. Raises ValueError if the tokenizer has no chat format."""
        text = self.tok.render_chat([{"role": "user", "content": question}]) + VERDICT_PREFILL
        ids = torch.tensor([self.tok.encode(text)])                                              # (1, T)
        logp = torch.log_softmax(self.model(ids.to(self.model.embed_tokens.weight.device))[0, -1].float(), -1)  # (V,)
        return torch.sigmoid(torch.logsumexp(logp[self.yes], 0) - torch.logsumexp(logp[self.no], 0)).item()


@dataclass(frozen=True)
class GeneralExample(Example):
    """A non-reasoning prompt: no gold answer, scored by the judge."""


class MixedTask:
    """Stage 4's task, with reward.Task's interface (example, size, reward, extract). Train prompt i is a
    general one when i % general_every == general_every - 1, else the reasoning task's prompt i; the
    test split is the reasoning task's. Every completion gets all of PARTS (train.py averages them):
    reasoning prompts score accuracy, format, tags, language, answer by rule and preference 0; general
    prompts score format, tags, language by rule, accuracy and answer 0, and preference = the mean of the
    judge's helpful (asked about the summary after </think>, or the whole response if there is none) and
    harmless (asked about the whole response) probabilities. total = sum(weight * part)."""
    PARTS = ("accuracy", "format", "tags", "language", "answer", "preference")

    def __init__(self, reasoning, general_prompts: list[str], judge: Judge, general_every: int):
        self.reasoning, self.general, self.judge, self.every = reasoning, list(general_prompts), judge, general_every

    def size(self, split: str):
        return self.reasoning.size(split)

    def example(self, split: str, i: int) -> Example:
        if split == "train" and i % self.every == self.every - 1:
            return GeneralExample(self.general[(i // self.every) % len(self.general)], "")
        return self.reasoning.example(split, i)

    def preference(self, question: str, completion: str) -> float:
        summary = completion.rsplit("</think>", 1)[-1].replace("<answer>", "").replace("</answer>", "").strip()
        helpful = self.judge.p_yes(HELPFUL.format(q=question, r=summary[:2000]))
        harmless = self.judge.p_yes(HARMLESS.format(q=question, r=completion[:2000]))
        return (helpful + harmless) / 2

    def reward(self, example, completion, think_prefilled=False, weights=None) -> tuple[float, dict[str, float]]:
        w = {**DEFAULT_WEIGHTS, "preference": 1.0, **(weights or {})}
        if isinstance(example, GeneralExample):
            parts = {"accuracy": 0.0, "format": format_reward(completion, think_prefilled),
                     "tags": tags_reward(completion, think_prefilled),
                     "language": language_consistency_reward(completion), "answer": 0.0,
                     "preference": self.preference(example.prompt, completion)}
        else:
            parts = {**self.reasoning.reward(example, completion, think_prefilled)[1], "preference": 0.0}
        return sum(w[k] * parts[k] for k in self.PARTS), parts

    def extract(self, completion: str):
        return self.reasoning.extract(completion)

    def answer_accuracy(self, example, completion: str) -> float:
        return self.reasoning.answer_accuracy(example, completion)

# -----------------------------------------------------------------------------
# Helpers: stage directories, training and evaluation calls


def stage_dir(cfg, n: int) -> Path:
    return Path(cfg.out) / f"{n:02d}_{STAGES[n]}"


def stage_model(cfg, n: int) -> Path:
    """The final checkpoint (a Hugging Face directory) of finished stage n. Raises FileNotFoundError
    if stage n is not done."""
    done = stage_dir(cfg, n) / "done.json"
    if not done.exists():
        raise FileNotFoundError(f"stage {n} ({STAGES[n]}) is not finished: run with --from-stage {n} or lower")
    return stage_dir(cfg, n) / json.loads(done.read_text())["model"]


def write_atomic(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)                    # a crash leaves the old file or none, never half of one


def write_jsonl(path: Path, records: list[dict]):
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def load_for_sampling(cfg, path):
    device = pick_device(cfg.device)
    return load_pretrained(path, device=device, dtype=compute_dtype(cfg.dtype, device))


def run_train(cfg, out_dir: Path, stage: str, model, task=None, **kw) -> tuple[Path, int]:
    """train.train with the pipeline's shared settings (and the flags it passes on: passed_flags),
    resuming whatever out_dir holds (train.py's --resume; a finished run resumes to a no-op). Returns (final
    checkpoint relative to out_dir, steps)."""
    tc = TrainConfig(stage=stage, model=str(model), task=cfg.task, template=cfg.template,
                     think_prefill=cfg.think_prefill, out_dir=str(out_dir), resume=True,
                     eval_prompts=kw.pop("eval_prompts", 0), seed=cfg.seed,
                     device=cfg.device, dtype=cfg.dtype, threads=cfg.threads, group_size=cfg.group_size,
                     max_new_tokens=cfg.max_new_tokens, beta=cfg.beta, save_every=cfg.save_every, keep_checkpoints=1,
                     **passed_flags(cfg, stage), **kw)
    validate_train(tc)
    train.train(tc, task=task)
    final = list_checkpoints(out_dir)[-1]
    return final.relative_to(out_dir), int(final.name.removeprefix("step_"))


EVAL_SETTINGS = ("model", "task", "seed", "template", "think_prefill", "max_new_tokens", "eval_prompts", "eval_k",
                 "eval_greedy", "eval_batch")
EVAL_ONLY = ("eval_prompts", "eval_k", "eval_greedy", "eval_batch")   # the other EVAL_SETTINGS shaped training too
OLD_EVAL = {"eval_batch": 8}        # the value of a setting in evaluations made before it was recorded
RECORDS, GREEDY_RECORDS = "eval_records.jsonl", "eval_greedy_records.jsonl"    # a row's per-prompt evaluation records


def eval_settings(cfg) -> dict:
    """The flags (EVAL_SETTINGS) a held-out evaluation depends on besides the model it evaluates: which prompts
    (--task, --seed, --eval-prompts, --template, --think-prefill), how many samples of what length (--eval-k,
    --max-new-tokens), which rows share a decode step (--eval-batch: in bf16 it changes the rounding), and --model
    (the base row's model, the one every stage's descends from)."""
    return {name: getattr(cfg, name) for name in EVAL_SETTINGS}


def setting_changes(cfg, saved_eval: dict, names) -> list[str]:
    """'--flag old (this run: new)' for each of names that an evaluation (eval.json's content) recorded in its
    "settings" with another value than this run's."""
    old, new = {**OLD_EVAL, **saved_eval.get("settings", {})}, eval_settings(cfg)
    return [f"--{k.replace('_', '-')} {old[k]} (this run: {new[k]})" for k in names if k in old and old[k] != new[k]]


def run_eval(cfg, model_path, out_dir: Path) -> dict:
    """sample.evaluate on the same held-out prompts (the test split's first --eval-prompts) and seed for every model:
    --eval-k samples at temperature 0.6, top-p 0.95, with the mean language_consistency_reward and format_reward over
    them; with --eval-greedy also one completion at temperature 0 (its numbers under "greedy"). Resumable in chunks
    (eval_records). Writes out_dir/eval.json (with "settings": eval_settings, and eval_s: seconds over every run
    that evaluated its prompts), after eval_records.jsonl (and eval_greedy_records.jsonl); returns eval.json's
    content."""
    task, loaded = load_task(cfg.task, seed=cfg.seed), []

    def load():              # the model, loaded once, and only when a chunk is left to evaluate
        if not loaded:
            loaded.extend(load_for_sampling(cfg, model_path))
        return loaded
    out_dir.mkdir(parents=True, exist_ok=True)
    records = eval_records(cfg, task, load, model_path, out_dir / RECORDS, cfg.eval_k, 0.6)
    texts = [c for rec in records for c in rec["completions"]]
    out = summarize(records, 0.6)
    out["language"] = sum(map(language_consistency_reward, texts)) / len(texts)
    out["format"] = sum(format_reward(t, cfg.think_prefill) for t in texts) / len(texts)
    if cfg.eval_greedy:
        greedy = eval_records(cfg, task, load, model_path, out_dir / GREEDY_RECORDS, 1, 0.0)
        out["greedy"] = summarize(greedy, 0.0)
        records = records + greedy
    out["eval_s"] = sum(rec["seconds"] for rec in records)
    out["settings"] = eval_settings(cfg)
    write_atomic(out_dir / "eval.json", json.dumps(out, indent=2))
    return out


def eval_records(cfg, task, load, model_path, path: Path, k: int, temperature: float) -> list[dict]:
    """sample.evaluate's records (plus "seconds": the prompt's share of its chunk's time) of the first --eval-prompts
    held-out prompts, k samples each at temperature (top-p 0.95), --eval-batch prompts sampled together, in chunks of
    --chunk-prompts rounded up to whole batches (so which prompts share a batch does not depend on the chunks); load()
    gives (model, tokenizer). After each chunk path (jsonl, a record per prompt) is rewritten atomically. Its key,
    path.key.json, names what the records depend on (the model evaluated, the prompts, their length, k, temperature,
    the batch: in bf16 the rounding depends on which rows share a decode step; keys without one had OLD_EVAL's),
    so a rerun with the same key evaluates only the prompts past path's: an interrupted evaluation resumes at the next
    chunk, and one over more prompts adds to the first ones."""
    key = dict(model=str(model_path), task=cfg.task, seed=cfg.seed, template=cfg.template,
               think_prefill=cfg.think_prefill, max_new_tokens=cfg.max_new_tokens, k=k, temperature=temperature,
               batch_prompts=cfg.eval_batch)
    key_path = path.with_suffix(".key.json")
    if key_path.exists() and path.exists() and \
            {"batch_prompts": OLD_EVAL["eval_batch"], **json.loads(key_path.read_text())} == key:
        saved = [json.loads(line) for line in path.open()]
    else:                                           # another key's records never mix with this one's
        saved = []
        path.unlink(missing_ok=True)
        write_atomic(key_path, json.dumps(key))
    records = saved[:cfg.eval_prompts]
    while len(records) < cfg.eval_prompts:
        first, t0 = len(records), time.time()
        model, tok = load()
        n = min(-(-cfg.chunk_prompts // cfg.eval_batch) * cfg.eval_batch, cfg.eval_prompts - first)   # whole batches
        r = evaluate(model, tok, task, n_prompts=n, k=k, batch_prompts=cfg.eval_batch,
                     template=cfg.template, think_prefilled=cfg.think_prefill, max_new_tokens=cfg.max_new_tokens,
                     temperature=temperature, top_p=0.95, seed=cfg.seed, first=first)
        records += [{**rec, "seconds": (time.time() - t0) / r["n"]} for rec in r["records"]]
        write_jsonl(path, records)
    if len(records) < len(saved):                   # fewer prompts than before: the file holds exactly these
        write_jsonl(path, records)
    return records


def up_to_date_eval(cfg, row: str, saved: dict | None, model_path, out_dir: Path) -> dict:
    """saved (an eval.json's content, or None) if it was made with this run's eval_settings; else, saying so, a new
    run_eval of model_path into out_dir. So a rerun with another --eval-prompts evaluates every row again, on the
    same prompts, rather than pairing old rows with new ones."""
    if saved is not None and {**OLD_EVAL, **saved.get("settings", {})} == eval_settings(cfg):
        return saved
    if saved is not None:
        changes = setting_changes(cfg, saved, EVAL_SETTINGS)
        print(f"== {row}: evaluated with {', '.join(changes) or 'unrecorded settings'}, evaluating again")
    return run_eval(cfg, model_path, out_dir)

# -----------------------------------------------------------------------------
# The stages: each takes (cfg, its directory), returns {"model", "steps", "summary", ...}


def stage_r1zero(cfg, d):
    steps = cfg.r1zero_steps or cfg.reasoning_steps + cfg.all_scenario_steps
    evals = dict(eval_every=cfg.r1zero_eval_every, eval_prompts=cfg.r1zero_eval_prompts, eval_k=cfg.eval_k)
    ckpt, steps = run_train(cfg, d, "grpo", cfg.model, steps=steps, prompts_per_step=cfg.prompts_per_step,
                            lr=cfg.r1zero_lr, reward_weights=cfg.r1zero_weights,
                            **(evals if cfg.r1zero_eval_every else {}))
    return dict(model=str(ckpt), steps=steps, summary=f"R1-Zero: {steps} GRPO steps straight from {cfg.model}, "
                f"reward {cfg.r1zero_weights}, lr {cfg.r1zero_lr}, no supervised data.")


def build_data(d: Path, build) -> dict:
    """Calls build() -> (SFT records, stats) unless d/data.jsonl exists (a resumed stage reuses its data);
    writes data_stats.json, then data.jsonl, each atomically. Returns the stats, with "examples" added, and
    "data_s", the seconds build() took (unless its stats say, as the teacher's, summed over resumed runs)."""
    if not (d / "data.jsonl").exists():
        t0 = time.time()
        records, stats = build()
        stats = {"data_s": time.time() - t0, **stats, "examples": len(records)}
        write_atomic(d / "data_stats.json", json.dumps(stats))
        write_jsonl(d / "data.jsonl", records)
    return json.loads((d / "data_stats.json").read_text())


def cold_start_data(cfg) -> tuple[list[dict], dict]:
    """Stage 1's data, in the order of preference of the header: the user's file; else correct, readable
    samples of the stage-0 model (or the base model if stage 0 has not run) rewritten into the format,
    filled up to --cold-start-size with program-written solutions. Raises ValueError if there is none."""
    if cfg.cold_start_data:
        recs = [sft_record(r["prompt"], r["completion"], cfg) if "prompt" in r else r
                for r in read_sft_data(cfg.cold_start_data)]
        return recs, {"source": cfg.cold_start_data}
    spec = cfg.cold_start_task or cfg.task
    task = load_task(spec, seed=cfg.seed)
    source = stage_model(cfg, 0) if (stage_dir(cfg, 0) / "done.json").exists() else cfg.model
    kept, stats = sample_filtered(cfg, *load_for_sampling(cfg, source), task, cfg.cold_start_prompts, DATA_OFFSET[1],
                                  need_format=False)
    records = [sft_record(ex.prompt, t, cfg) for _, ex, c, _ in kept if (t := rewrite(c))]
    stats.update(source=str(source), rewritten=len(records))
    for i in range(10 * cfg.cold_start_size):
        if len(records) >= cfg.cold_start_size:
            break
        ex = task.example("train", DATA_OFFSET[1] + cfg.cold_start_prompts + i)
        j = len(records) - stats["rewritten"]                # the j-th program-written one: short or in steps
        short = math.floor((j + 1) * cfg.cold_start_short) > math.floor(j * cfg.cold_start_short)
        if (t := program_solution(ex, spec, short)) and task.reward(ex, t)[1]["accuracy"] == format_reward(t) == 1:
            records.append(sft_record(ex.prompt, t, cfg))
    if not records:
        raise ValueError(f"no cold-start data for task {spec}: pass --cold-start-data")
    return records, {**stats, "program": len(records) - stats["rewritten"]}


def rejection_data(cfg) -> tuple[list[dict], dict]:
    """Stage 3's data: the stage-2 model's accepted samples (sample_filtered, format required) as sampled,
    or the stage-1 data if none is accepted; then the non-reasoning records (general_records)."""
    kept, stats = sample_filtered(cfg, *load_for_sampling(cfg, stage_model(cfg, 2)), load_task(cfg.task, seed=cfg.seed),
                                  cfg.rs_prompts, DATA_OFFSET[3], need_format=True)
    reasoning = [{"prompt": ex.prompt, "completion": t} for _, ex, t, _ in kept]     # already what follows the prompt
    if not reasoning:        # nothing survived (e.g. a tiny model): the cold-start data stands in
        reasoning, stats["fallback"] = read_sft_data(str(stage_dir(cfg, 1) / "data.jsonl")), "cold-start data"
    general = general_records(cfg)
    return reasoning + general, {**stats, "reasoning": len(reasoning), "general": len(general)}


def teacher_data(cfg, d: Path) -> tuple[list[dict], dict]:
    """Stage 5's data with a --teacher (R1 §2.4: the student is fine-tuned on the teacher's samples, kept as §2.3.3's
    rejection sampling keeps them): sample_filtered on the teacher for train problems 0 .. --distill-prompts - 1,
    requiring the template's format where it has one (boxed asks for none). The kept chains go to d/chains.jsonl, one
    line each: index (of the train problem), question, completion, gold, tokens (its length, the stop token
    included), teacher, temperature, samples (per problem), seed. Sampled --chunk-prompts problems at a time: after
    each chunk the file is rewritten, then d/chains_progress.json (problems done, counts, sampling seconds), each
    atomically; so an interrupted run resumes at the next chunk, and a finished file is read, never sampled again.
    Returns ({"prompt", "completion"} records, stats: problems, sampled, correct, readable, kept, mean_tokens,
    data_s). Raises InputError if d's chains were sampled with other settings, or if none was kept."""
    chains_path, progress_path = d / "chains.jsonl", d / "chains_progress.json"
    settings = dict(teacher=cfg.teacher, task=cfg.task, template=cfg.template, think_prefill=cfg.think_prefill,
                    max_new_tokens=cfg.max_new_tokens, temperature=cfg.data_temperature, samples=cfg.samples_per_prompt,
                    keep=cfg.keep_per_prompt, max_paragraph_chars=cfg.max_paragraph_chars, seed=cfg.seed)
    state = dict(settings=settings, problems=0, sampled=0, correct=0, readable=0, data_s=0.0)
    if progress_path.exists():
        state = json.loads(progress_path.read_text())
        old = state["settings"]
        if changed := [f"{k} {v} (this run: {settings.get(k)})" for k, v in old.items() if settings.get(k) != v]:
            raise InputError(f"{chains_path} was sampled with {', '.join(changed)}: rerun with those settings, or "
                             f"delete it and {progress_path.name} to sample again")
    # lines of a chunk whose progress was not written (a stop in between) are dropped: that chunk is sampled again
    chains = [c for c in map(json.loads, chains_path.open()) if c["index"] < state["problems"]] \
        if chains_path.exists() else []
    task, teacher = load_task(cfg.task, seed=cfg.seed), None
    if (task.size("train") or math.inf) < cfg.distill_prompts:
        raise InputError(f"--distill-prompts {cfg.distill_prompts}: {cfg.task} has {task.size('train')} train problems")
    while state["problems"] < cfg.distill_prompts:
        first, t0 = state["problems"], time.time()
        teacher = teacher or load_for_sampling(cfg, cfg.teacher)
        n = min(cfg.chunk_prompts, cfg.distill_prompts - first)
        kept, counts = sample_filtered(cfg, *teacher, task, n, first, need_format=cfg.template != "boxed")
        chains += [dict(index=i, question=ex.prompt, completion=text, gold=ex.answer, tokens=tokens,
                        teacher=cfg.teacher, temperature=cfg.data_temperature, samples=cfg.samples_per_prompt,
                        seed=cfg.seed) for i, ex, text, tokens in kept]
        write_jsonl(chains_path, chains)
        state.update({k: state[k] + counts[k] for k in ("sampled", "correct", "readable")}, problems=first + n,
                     data_s=state["data_s"] + time.time() - t0)
        write_atomic(progress_path, json.dumps(state))
        print(f"teacher: {state['problems']}/{cfg.distill_prompts} problems, {len(chains)} chains kept")
    if not chains:
        raise InputError(f"{chains_path}: the teacher's {state['sampled']} samples of {state['problems']} problems "
                         f"kept no chain ({state['correct']} correct): raise --distill-prompts or --samples-per-prompt")
    stats = {k: state[k] for k in ("problems", "sampled", "correct", "readable", "data_s")}
    return ([{"prompt": c["question"], "completion": c["completion"]} for c in chains],
            {**stats, "kept": len(chains), "mean_tokens": sum(c["tokens"] for c in chains) / len(chains)})


def stage_cold_start(cfg, d):
    stats = build_data(d, lambda: cold_start_data(cfg))
    ckpt, steps = run_train(cfg, d, "sft", cfg.model, data=str(d / "data.jsonl"), epochs=cfg.cold_start_epochs,
                            prompts_per_step=cfg.sft_batch, lr=cfg.sft_lr)
    short = (f", {cfg.cold_start_short:.0%} of them stating the result in one line"
             if (cfg.cold_start_task or cfg.task).startswith("arith") else "")
    how = (f"from the user's {stats['source']}" if "program" not in stats else
           f"{stats['rewritten']} correct, readable samples of {stats['source']} rewritten into the format "
           f"(of {stats['sampled']} sampled, {stats['correct']} correct) and {stats['program']} "
           f"program-written solutions{short}")
    return dict(model=str(ckpt), steps=steps, data=stats["examples"], summary=f"Cold start: SFT of {cfg.model} for "
                f"{cfg.cold_start_epochs} epochs ({steps} steps) on {stats['examples']} long CoT examples, {how}.")


def stage_reasoning_rl(cfg, d):
    ckpt, steps = run_train(cfg, d, "grpo", stage_model(cfg, 1), steps=cfg.reasoning_steps,
                            prompts_per_step=cfg.prompts_per_step, lr=cfg.lr, reward_weights=cfg.reward_weights)
    return dict(model=str(ckpt), steps=steps, summary=f"Reasoning RL: {steps} GRPO steps from the cold-start "
                f"model, reward {cfg.reward_weights} (language = share of words in the target language).")


def stage_rejection_sft(cfg, d):
    stats = build_data(d, lambda: rejection_data(cfg))
    start = cfg.model if cfg.rs_sft_from == "base" else stage_model(cfg, 1)
    ckpt, steps = run_train(cfg, d, "sft", start, data=str(d / "data.jsonl"), epochs=cfg.rs_epochs,
                            prompts_per_step=cfg.sft_batch, lr=cfg.sft_lr)
    fallback = f" None survived, so the {stats['fallback']} stands in." if "fallback" in stats else ""
    return dict(model=str(ckpt), steps=steps, data=stats["examples"], summary=(
        f"Rejection sampling + SFT: {stats['sampled']} completions sampled from the stage-2 model, {stats['correct']} "
        f"correct, {stats['readable']} also readable, {stats['kept']} kept after deduplication.{fallback} With "
        f"{stats['general']} non-reasoning examples, {cfg.rs_epochs} epochs of SFT ({steps} steps) from {start}."))


def stage_all_scenario_rl(cfg, d):
    device = pick_device(cfg.device)
    judge = Judge(cfg.judge or stage_model(cfg, 3), device, compute_dtype(cfg.dtype, device))
    general = [r["prompt"] for r in read_sft_data(cfg.general_data)] if cfg.general_data else GENERAL_PROMPTS
    mixed = MixedTask(load_task(cfg.task, seed=cfg.seed), general, judge, cfg.general_every)
    ckpt, steps = run_train(cfg, d, "grpo", stage_model(cfg, 3), task=mixed, steps=cfg.all_scenario_steps,
                            prompts_per_step=cfg.prompts_per_step, lr=cfg.all_scenario_lr,
                            reward_weights=cfg.all_scenario_weights)
    return dict(model=str(ckpt), steps=steps, summary=f"All-scenario RL: {steps} GRPO steps from the stage-3 model; "
                f"one prompt in {cfg.general_every} a general one scored by a yes/no judge "
                f"({cfg.judge or 'the stage-3 model'}), the rest by rule rewards; weights {cfg.all_scenario_weights}, "
                f"lr {cfg.all_scenario_lr}.")


def layer_dropped(base, out: Path) -> Path:
    """Saves the base model with every other layer (0, 2, 4, ...) kept, embeddings, final norm and head
    copied, as a Hugging Face directory (model.save_pretrained) that train.py can load."""
    model, tok = load_pretrained(base, device="cpu", dtype=torch.float32)
    keep = list(range(0, model.cfg.n_layer, 2))
    student = Transformer(dataclasses.replace(model.cfg, n_layer=len(keep)))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layers.")}
    for new, old in enumerate(keep):
        prefix = f"layers.{old}."
        state |= {f"layers.{new}.{k[len(prefix):]}": v for k, v in model.state_dict().items() if k.startswith(prefix)}
    student.load_state_dict(state, strict=True)
    return save_pretrained(student, tok, out)


def stage_distill(cfg, d):
    if cfg.teacher:
        stats, student, data = build_data(d, lambda: teacher_data(cfg, d)), cfg.student or cfg.model, d / "data.jsonl"
        source = (f"{stats['kept']} chains of the teacher {cfg.teacher} ({stats['problems']} train problems x "
                  f"{cfg.samples_per_prompt} samples at temperature {cfg.data_temperature}: {stats['correct']} "
                  f"correct, {stats['kept']} kept, {stats['mean_tokens']:.0f} tokens on average)")
    else:
        student, data, source = cfg.student or d / "student_init", stage_dir(cfg, 3) / "data.jsonl", "the stage-3 data"
        if not cfg.student and not (d / "student_init" / "config.json").exists():
            layer_dropped(cfg.model, d / "student_init")
    ckpt, steps = run_train(cfg, d, "sft", student, data=str(data), epochs=cfg.distill_epochs,
                            prompts_per_step=cfg.sft_batch, lr=cfg.distill_lr)
    n_params = sum(p.numel() for p in load_pretrained(d / ckpt, device="cpu")[0].parameters())
    return dict(model=str(ckpt), steps=steps, params=n_params, summary=f"Distillation: SFT of the student "
                f"({cfg.student or (cfg.model if cfg.teacher else 'base model, every other layer')}; "
                f"{n_params / 1e6:.1f}M parameters) for {cfg.distill_epochs} epochs ({steps} steps) on {source}.",
                **({"start": "base"} if student == cfg.model else {}))       # compared with the base row


STAGE_FNS = (stage_r1zero, stage_cold_start, stage_reasoning_rl, stage_rejection_sft, stage_all_scenario_rl,
             stage_distill)

# -----------------------------------------------------------------------------
# The run and the report


def run_stage(cfg, n: int) -> dict:
    """Runs stage n unless OUT/NN_name/done.json exists (then finished_stage); evaluates its model; writes
    summary.md, then done.json (atomically, last: write_done). Returns done.json's content."""
    d = stage_dir(cfg, n)
    if (d / "done.json").exists():
        print(f"== stage {n} {STAGES[n]}: done, skipped ({d / 'done.json'})")
        return finished_stage(cfg, n)
    print(f"== stage {n} {STAGES[n]} -> {d}")
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = STAGE_FNS[n](cfg, d)
    result["wall_s"] = time.time() - t0
    result["eval"] = run_eval(cfg, d / result["model"], d)
    write_done(d, result)
    return result


def write_done(d: Path, result: dict):
    """A stage's summary.md (its summary and held-out numbers), then done.json, each atomically."""
    e = result["eval"]
    write_atomic(d / "summary.md", result["summary"] + f" Held-out pass@1 {e['pass@1']:.3f} ± {e['pass@1_se']:.3f}, "
                 f"cons@{e['k']} {e['cons@k']:.3f}, format {e['format']:.2f}, mean length {e['mean_len']:.1f} tokens; "
                 f"{result['wall_s']:.0f} s.\n")
    write_atomic(d / "done.json", json.dumps(result, indent=2))


def finished_stage(cfg, n: int) -> dict:
    """done.json's content of finished stage n, its evaluation brought up to date (up_to_date_eval; a new one
    is written into summary.md and done.json)."""
    d = stage_dir(cfg, n)
    result = json.loads((d / "done.json").read_text())
    e = up_to_date_eval(cfg, f"stage {n} {STAGES[n]}", result["eval"], d / result["model"], d)
    if e is not result["eval"]:
        result["eval"] = e
        write_done(d, result)
    return result


def refuse_other_recipe(cfg):
    """Raises InputError naming each finished stage whose evaluation recorded another value than this run's of a
    setting that shaped its training too (EVAL_SETTINGS less EVAL_ONLY: --model, --task, --seed, ...): neither its
    model nor its evaluation belongs to this run."""
    stale, recipe = [], [k for k in EVAL_SETTINGS if k not in EVAL_ONLY]
    for n in range(len(STAGES)):
        done = stage_dir(cfg, n) / "done.json"
        if done.exists() and (changes := setting_changes(cfg, json.loads(done.read_text())["eval"], recipe)):
            stale.append(f"stage {n} ({STAGES[n]}) in {done.parent} was run with {', '.join(changes)}")
    if stale:
        raise InputError("; ".join(stale) + ". A finished stage's model was trained with those settings: rerun with "
                         "them, choose another --out, or delete those stage directories to redo the stages")


def zero_std_share(d: Path) -> str:
    """Mean over a stage's GRPO steps of the share of groups whose G rewards were all equal (no signal)."""
    shares = [m["zero_std_groups"] for m in read_metrics(d / "metrics.jsonl") if "zero_std_groups" in m]
    return f"{sum(shares) / len(shares):.2f}" if shares else "-"


PREVIOUS = {0: "base", 1: "base", 2: 1, 3: 2, 4: 3, 5: 3}   # what each stage's model is compared with


def stage_of(name: str) -> int | None:
    """The stage number of a report row ("2 reasoning_rl" -> 2), None for the base model's and the teacher's."""
    return int(name.split()[0]) if name[0].isdigit() else None


def eval_dir(cfg, name: str) -> Path:
    """Where a report row's evaluation lives: OUT/base, OUT/teacher or the stage's directory."""
    return Path(cfg.out) / name if stage_of(name) is None else stage_dir(cfg, stage_of(name))


def previous_row(results: dict, name: str) -> str | None:
    """The results key ("base", "1 cold_start", ...) of the model that row `name` starts from (the stage's
    "start" if it names one, else PREVIOUS; "base" for the teacher, to compare with), or None for the base model's
    row or when that model was not evaluated in this run."""
    if name == "base":
        return None
    start = "base" if name == "teacher" else str(results[name].get("start", PREVIOUS[stage_of(name)]))
    return next((n for n in results if n.split()[0] == start), None)


def paired_delta(cfg, a: str, b: str, records: str = RECORDS, key: str = "correct") -> tuple[float, float]:
    """pass@1 of row a minus row b (or, by key and records, answer_acc, or greedy accuracy from
    eval_greedy_records.jsonl), and its standard error, paired over the held-out prompts both were evaluated on
    (the same prompts and seed): the mean and std / sqrt(n) (n-1 denominator) of the per-prompt differences of
    the k-sample accuracy. Tighter than combining two unpaired s.e.s, since a prompt's difficulty cancels.
    Raises InputError naming both rows if their records' prompts differ."""
    paths = [eval_dir(cfg, x) / records for x in (a, b)]
    rows = [[json.loads(line) for line in p.open()] for p in paths]
    if [r["prompt"] for r in rows[0]] != [r["prompt"] for r in rows[1]]:
        raise InputError(f"{a} and {b} were evaluated on different held-out prompts ({paths[0]}, {paths[1]}): "
                         "their pass@1 cannot be paired")
    diff = [x[key] - y[key] for x, y in zip(*rows)]
    mean = sum(diff) / len(diff)
    var = sum((d - mean) ** 2 for d in diff) / (len(diff) - 1) if len(diff) > 1 else 0.0
    return mean, math.sqrt(var / len(diff))


def delta_cell(cfg, name: str, prev: str | None, records: str, key: str) -> str:
    """A report cell: paired_delta of row name against row prev ("+0.125 ± 0.034"), naming prev for pass@1 ("correct");
    "-" without a row to compare with."""
    if prev is None:
        return "-"
    cell = "{:+.3f} ± {:.3f}".format(*paired_delta(cfg, name, prev, records, key))
    return cell + f" ({prev})" if key == "correct" else cell


def minutes(d: Path, e: dict) -> str:
    """The report's time cells of a row whose files are in d: minutes sampling its data (data_stats.json's data_s),
    in its training steps (metrics.jsonl's step_s: summed over resumed runs, evaluations left out) and evaluating
    it (e: its eval.json), '-' for what it did not do."""
    stats = json.loads((d / "data_stats.json").read_text()) if (d / "data_stats.json").exists() else {}
    steps = by_step(read_metrics(d / "metrics.jsonl"))[0].values()
    cells = (stats.get("data_s"), sum(m["step_s"] for m in steps) if steps else None, e["eval_s"])
    return " | ".join("-" if x is None else f"{x / 60:.1f}" for x in cells)


def report(cfg, results: dict) -> str:
    """OUT/report.md: one row per evaluated model (the base model, each finished stage, the teacher), with the
    change in pass@1 and answer_acc from the model it builds on (previous_row; paired_delta), and with
    --eval-greedy a table of the same for greedy decoding."""
    rows = ["| stage | steps | zero-std groups | pass@1 ± se | Δ pass@1 ± se (vs) | answer_acc "
            "| Δ answer_acc ± se | cons@k | language | format | mean len | entropy "
            "| data min | train min | eval min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    greedy = ["| stage | greedy ± se | Δ greedy ± se (vs) | answer_acc | Δ answer_acc ± se | mean len "
              "| truncated |",
              "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        e, prev = r["eval"], previous_row(results, name)
        rows.append(f"| {name} | {r.get('steps', '-')} | {zero_std_share(eval_dir(cfg, name))} | "
                    f"{e['pass@1']:.3f} ± {e['pass@1_se']:.3f} | {delta_cell(cfg, name, prev, RECORDS, 'correct')} | "
                    f"{e.get('answer_acc', math.nan):.3f} | {delta_cell(cfg, name, prev, RECORDS, 'answer_correct')} | "
                    f"{e['cons@k']:.3f} | {e['language']:.3f} | {e['format']:.3f} | {e['mean_len']:.1f} | "
                    f"{e.get('entropy', math.nan):.3f} | {minutes(eval_dir(cfg, name), e)} |")
        if "greedy" in e:
            g = e["greedy"]
            greedy.append(f"| {name} | {g['pass@1']:.3f} ± {g['pass@1_se']:.3f} | "
                          f"{delta_cell(cfg, name, prev, GREEDY_RECORDS, 'correct')} | {g['answer_acc']:.3f} | "
                          f"{delta_cell(cfg, name, prev, GREEDY_RECORDS, 'answer_correct')} | {g['mean_len']:.1f} | "
                          f"{g['truncated']:.3f} |")
    lines = [f"# r1 pipeline report ({cfg.model}, task {cfg.task}, template {cfg.template})", "",
             f"Held-out: the first {cfg.eval_prompts} test prompts x k={cfg.eval_k} samples (temperature 0.6, top-p "
             f"0.95, seed {cfg.seed}, {cfg.max_new_tokens} new tokens), the same for every row; entropy in nats per "
             "completion token at that temperature. Δ: the change from the row named, ± its standard error paired "
             "over the prompts. Minutes sampling the stage's data, in its training steps, evaluating; each summed "
             "over resumed runs.", "", *rows]
    if cfg.eval_greedy:
        lines += ["", "Greedy: one completion per prompt at temperature 0, the same prompts.", "", *greedy]
    zero = results.get("0 r1zero")
    last = "4 all_scenario_rl" if "4 all_scenario_rl" in results else "2 reasoning_rl"   # the recipe's last RL stage
    if zero and last in results:
        a, b = results[last]["eval"], zero["eval"]
        diff, se = paired_delta(cfg, last, "0 r1zero")
        recipe = [k for k in results if 1 <= (stage_of(k) or 0) <= stage_of(last)]   # stages 1..last
        recipe_s = sum(results[k]["wall_s"] for k in recipe)
        rl = sum(results[k]["steps"] for k in recipe if k in ("2 reasoning_rl", "4 all_scenario_rl"))
        lines += ["", f"Recipe (stages 1-{last[0]}) vs R1-Zero: pass@1 {a['pass@1']:.3f} vs {b['pass@1']:.3f} "
                  f"(difference {diff:+.3f} ± {se:.3f}, paired over the prompts), answer_acc "
                  f"{a.get('answer_acc', math.nan):.3f} vs {b.get('answer_acc', math.nan):.3f}; GRPO steps {rl} vs "
                  f"{zero['steps']}; wall time {recipe_s:.0f} s vs {zero['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def curves(cfg, results: dict) -> str:
    """Draws the GRPO stages' learning curves (metrics.plot) into OUT/curves.png and returns the report's
    markdown line for it; "" when matplotlib (a benchmarks-only package) is not installed or no stage ran GRPO.
    A stage's held-out pass@1 is its own evaluations' (stage 0's --r1zero-eval-every) if it ran any, else from its
    starting model's evaluation (step 0) to its own (last step)."""
    if importlib.util.find_spec("matplotlib") is None:
        return ""
    runs = []
    for name in results:
        if stage_of(name) is None:
            continue
        steps, evals = by_step(read_metrics(stage_dir(cfg, stage_of(name)) / "metrics.jsonl"))
        if any("reward" in m for m in steps.values()):
            start = previous_row(results, name)
            ends = {**({0: results[start]["eval"]} if start else {}), results[name]["steps"]: results[name]["eval"]}
            runs.append((name, steps, evals or ends))
    if not runs:
        return ""
    plot(runs, str(Path(cfg.out) / "curves.png"))
    return "\nThe GRPO stages' curves (train reward and parts, held-out pass@1, length, token entropy, KL, groups " \
           "with equal rewards):\n\n![GRPO stages](curves.png)\n"


def run(cfg: PipelineConfig) -> dict:
    """Runs the selected stages (selected_stages; skipping finished ones) and writes OUT/report.md.
    Returns {row name: result} for the base model, every finished stage and, with --eval-teacher, the teacher."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    with locked_folder(out):         # one pipeline per OUT; each stage's train.py locks its own OUT/NN_name
        return run_locked(cfg, out)


def model_row(cfg, name: str, model: str) -> dict:
    """The report row of a model no stage trained (the base model, the teacher): OUT/name/eval.json, brought up to
    date (up_to_date_eval)."""
    path = Path(cfg.out) / name / "eval.json"
    return {"eval": up_to_date_eval(cfg, name, json.loads(path.read_text()) if path.exists() else None, model,
                                    path.parent)}


def run_locked(cfg: PipelineConfig, out: Path) -> dict:
    """run()'s body, under OUT's lock. Raises InputError before anything is written if OUT's finished stages were
    run with other settings (refuse_other_recipe)."""
    refuse_other_recipe(cfg)
    write_atomic(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
    results = {"base": model_row(cfg, "base", cfg.model)}
    for n in range(len(STAGES)):
        if n in selected_stages(cfg):
            results[f"{n} {STAGES[n]}"] = run_stage(cfg, n)
        elif (stage_dir(cfg, n) / "done.json").exists():
            results[f"{n} {STAGES[n]}"] = finished_stage(cfg, n)
    if cfg.eval_teacher:                 # its settings name the teacher, so another --teacher is evaluated anew
        results["teacher"] = model_row(dataclasses.replace(cfg, model=cfg.teacher), "teacher", cfg.teacher)
    text = report(cfg, results) + curves(cfg, results)
    write_atomic(out / "report.md", text)
    print(text)
    return results


if __name__ == "__main__":
    from config import one_line_errors
    with one_line_errors():       # a stage stopped by a signal ends the pipeline with its SystemExit(128 + n)
        run(parse_config())
    close_distributed()
