"""
config.py: train.py's flags. TrainConfig holds every flag with its default and --help text; parse_config
makes the argparse parser from it (one source of truth for help, defaults and the config saved with each
checkpoint), and validate() refuses contradictory or impossible settings before any work starts. Bad input
found later, while loading, is an InputError, which the commands print as one line (one_line_errors).

    python train.py --help
    python -m pytest tests/test_train.py -q
"""
import argparse
import contextlib
import dataclasses
import math
from dataclasses import dataclass, field

from grpo import LOSS_AGGS
from model import DEFAULT_MODEL, LORA_TARGETS, pick_device
from reward import TEMPLATES

DESCRIPTION = ("train.py: GRPO straight on a model against rule rewards (DeepSeek-R1-Zero), or SFT on a "
               "jsonl of completions (R1's cold start and rejection-sampling stages), with resumable checkpoints.")


def flag(default, help: str, range: str | None = None):
    """A TrainConfig (or pipeline.PipelineConfig) field: its default, its --help text and, for a number, the
    range of values that can be meant (in_range's syntax), appended to the help as "[>= 0]" and checked by
    check_ranges before any work starts. Raises TypeError for a numeric flag without a range."""
    if isinstance(default, (int, float)) and not isinstance(default, bool) and range is None:
        raise TypeError(f"flag({default!r}, {help!r}): a numeric flag needs a range")
    return field(default=default, metadata={"help": help + (f" [{range}]" if range else ""), "range": range})


def in_range(value, spec: str) -> bool:
    """Whether a finite number lies in spec: ">= a", "> a", or an interval "[a, b]", "(a, b]", "[a, b)", "(a, b)".
    NaN and infinities are never in range."""
    if not math.isfinite(value):
        return False
    if spec.startswith(">"):
        bound = float(spec.lstrip(">="))
        return value >= bound if spec.startswith(">=") else value > bound
    lo, hi = (float(x) for x in spec[1:-1].split(","))
    return (lo <= value if spec[0] == "[" else lo < value) and (value <= hi if spec[-1] == "]" else value < hi)


def must_be(spec: str) -> str:
    """'>= 0' -> 'must be >= 0', '(0, 1]' -> 'must be in (0, 1]'."""
    return "must be " + (spec if spec.startswith(">") else "in " + spec)


def range_error(name: str, value, spec: str) -> str:
    """'--top-p 1.5: must be in (0, 1]', the message of an out-of-range flag."""
    return f"--{name.replace('_', '-')} {value}: {must_be(spec)}"


def check_ranges(cfg):
    """Every numeric field of a flag dataclass (TrainConfig, pipeline.PipelineConfig) against its declared
    range. Raises ValueError naming the first flag out of range."""
    for f in dataclasses.fields(cfg):
        spec, value = f.metadata.get("range"), getattr(cfg, f.name)
        if spec and not in_range(value, spec):
            raise ValueError(range_error(f.name, value, spec))


class Ranged:
    """An argparse type= for a number in a range: Ranged(int, ">= 1")("0") raises argparse.ArgumentTypeError
    (argparse then exits with "argument --x: must be >= 1, got 0"). sample.py's flags use it."""

    def __init__(self, kind: type, spec: str):
        self.kind, self.spec, self.__name__ = kind, spec, kind.__name__     # argparse names the type by __name__

    def __call__(self, text: str):
        value = self.kind(text)
        if not in_range(value, self.spec):
            raise argparse.ArgumentTypeError(f"{must_be(self.spec)}, got {text}")
        return value


@dataclass
class TrainConfig:
    # what to train
    stage: str = flag("grpo", "grpo (RL against rule rewards) or sft (supervised on --data)")
    model: str = flag(DEFAULT_MODEL, "HF directory, .gguf file, 'tiny', or the default model")
    task: str = flag("arith", "reward.py task: arith[:opts], countdown, gsm8k:PATH, math:PATH, jsonl:PATH, code:PATH")
    template: str = flag("chat", "prompt template: r1zero (the paper's raw text) or chat; SFT also takes raw")
    think_prefill: bool = flag(True, "end the prompt with '<think>' so the model starts reasoning at once")
    data: str = flag("", "SFT jsonl: {'prompt','completion'} or {'messages':[...]} per line")
    # GRPO
    group_size: int = flag(8, "G: completions sampled per prompt", range=">= 1")
    prompts_per_step: int = flag(8, "P: prompts per step (SFT: examples per step)", range=">= 1")
    max_new_tokens: int = flag(48, "completion length limit, tokens", range=">= 1")
    temperature: float = flag(1.0, "sampling temperature (the loss scores at the same one)", range="> 0")
    top_p: float = flag(1.0, "nucleus sampling; < 1 makes the scored policy differ from the sampled one",
                        range="(0, 1]")
    beta: float = flag(0.04, "KL coefficient (DeepSeekMath eq. 3); 0 = no reference model", range=">= 0")
    clip_eps: float = flag(0.2, "PPO clip epsilon (lower side, and upper unless --clip-eps-high)", range="(0, 1)")
    clip_eps_high: float = flag(0.0, "upper clip epsilon (DAPO clip-higher, Yu et al. 2025, arXiv 2503.14476 "
                                     "§3.1: 0.28); 0 = same as --clip-eps", range=">= 0")
    clip_delta: float = flag(0.0, "two-sided clipping (INTELLECT-2, arXiv 2505.07291 §4.1: 4): for A < 0 the ratio "
                                  "is also capped at delta, so a token whose probability grew far past the sampling "
                                  "policy's cannot push the loss up without bound; > 1 + the upper clip; 0 = off",
                             range=">= 0")
    importance_sampling_level: str = flag("token", "token (GRPO) or sequence: GSPO (Zheng et al. 2025, arXiv "
                                                   "2507.18071), one ratio per completion, exp(mean of its tokens' "
                                                   "log-ratios), clipped per completion; the paper clips at "
                                                   "--clip-eps 3e-4 --clip-eps-high 4e-4. Equal to token when "
                                                   "--num-iterations 1 (the ratio is then 1)")
    num_iterations: int = flag(1, "mu: policy updates per batch of rollouts (1 = on-policy, as R1)", range=">= 1")
    loss_agg: str = flag("seq_mean_token_mean", "loss aggregation: " + ", ".join(LOSS_AGGS))
    scale_rewards: str = flag("batch", "advantage scale: group (GRPO: each group's std), batch (group mean, batch "
                                       "std: Lite PPO, arXiv 2508.08221; README: why the default), none (Dr. GRPO)")
    ref_reset_every: int = flag(0, "copy the policy into the reference model every N steps (0 = never)", range=">= 0")
    reward_weights: str = flag("accuracy=1,format=1,tags=0.5,answer=0.1",
                               "reward = sum of weight*part; parts: accuracy, format, tags, language, answer "
                               "(reward.Task.reward); README: why these")
    mask_truncated: bool = flag(False, "exclude completions that hit --max-new-tokens from the loss (DAPO §3.4, "
                                       "overlong filtering)")
    overlong_buffer: int = flag(0, "DAPO soft overlong punishment (arXiv 2503.14476 §3.4, eq. 13): over the last N "
                                   "tokens before --max-new-tokens the reward falls linearly to -(--overlong-penalty); "
                                   "logged as overlong; 0 = off", range=">= 0")
    overlong_penalty: float = flag(1.0, "the largest soft overlong penalty, reached at --max-new-tokens (DAPO: 1)",
                                   range=">= 0")
    dynamic_sampling: bool = flag(False, "DAPO dynamic sampling (arXiv 2503.14476 §3.2): drop groups whose G rewards "
                                         "are all equal (no gradient) and sample further prompts until the step has P "
                                         "groups that vary, in at most --max-sampling-rounds extra rounds (then filled "
                                         "with equal ones); logs sampling_rounds")
    max_sampling_rounds: int = flag(3, "dynamic sampling: extra generation rounds per step at most (verl's "
                                       "max_num_gen_batches counts the first one too)", range=">= 0")
    # LoRA (Hu et al. 2021, arXiv 2106.09685; model.py section 6)
    lora_rank: int = flag(0, "LoRA rank r: train a low-rank update beside each --lora-targets Linear, the base "
                             "weights frozen, the reference model the base (adapters off); 0 = full fine-tuning. verl "
                             "finds r >= 32 on a 0.5B model near full fine-tuning at about 10x its --lr", range=">= 0")
    lora_alpha: float = flag(16.0, "LoRA alpha: the update is scaled by alpha / r", range="> 0")
    lora_targets: str = flag(",".join(LORA_TARGETS), "the blocks' Linears that get adapters, comma-separated")
    # optimisation
    lr: float = flag(5e-5, "AdamW peak learning rate (reached after the warmup; then --lr-schedule)", range="> 0")
    warmup_steps: int = flag(0, "linear learning-rate warmup, optimiser steps", range=">= 0")
    lr_schedule: str = flag("linear", "learning rate after the warmup: constant (R1) or linear (falls to 0 at the last "
                                        "step, as transformers' Trainer, hence TRL, does by default)")
    weight_decay: float = flag(0.0, "AdamW weight decay", range=">= 0")
    grad_clip: float = flag(1.0, "max global grad norm (0 = off)", range=">= 0")
    skip_nonfinite: bool = flag(False, "skip an optimiser step whose loss or gradient norm is not finite (counted as "
                                       "nonfinite_skipped in the metrics) instead of stopping the run there")
    activation_checkpointing: bool = flag(True, "keep only each block's input for backward and recompute the block "
                                                "there (much less memory for a little more compute)")
    micro_batch_size: int = flag(8, "rows per forward/backward, rounded down to whole groups (memory knob; the result "
                                    "does not depend on it)", range=">= 1")
    steps: int = flag(20, "GRPO steps (SFT runs for --epochs instead)", range=">= 1")
    epochs: int = flag(1, "SFT: passes over --data", range=">= 1")
    # runtime
    dtype: str = flag("auto", "compute dtype for sampling and autocast: auto (bfloat16), bfloat16, float32 "
                              "(float16 is refused: no loss scaling)")
    device: str = flag("auto", "auto, cpu, cuda, cuda:1, mps")
    compile: bool = flag(False, "torch.compile the training forward (CUDA; slow to start)")
    cuda_graphs: bool = flag(True, "on CUDA, replay the sampler's decode steps from CUDA graphs (same tokens as eager,"
                                   " fewer kernel launches: sample.CUDAGraphStep)")
    seed: int = flag(0, "seeds task data, sampling and init: a run is a function of its flags", range=">= 0")
    threads: int = flag(0, "CPU threads for torch (0 = torch's default)", range=">= 0")
    allow_config_change: bool = flag(False, "--resume even if flags that change the run's meaning differ from the "
                                            "checkpoint's (the differences are printed)")
    fsdp: bool = flag(False, "under torchrun: shard weights, gradients and AdamW state over the ranks (FSDP2) instead "
                             "of replicating them; GRPO stage")
    dist_timeout: int = flag(300, "under torchrun: seconds a rank waits in a collective (a rank that died or hangs) "
                                  "before the job ends with an error", range=">= 1")
    # outputs
    out_dir: str = flag("out", "where checkpoints, metrics.jsonl and rollouts go")
    resume: bool = flag(False, "continue from the newest complete checkpoint in --out-dir")
    save_every: int = flag(20, "checkpoint every N steps (and at the end)", range=">= 0")
    keep_checkpoints: int = flag(2, "how many newest checkpoints to keep (0 = all)", range=">= 0")
    eval_every: int = flag(5, "held-out evaluation every N steps (and at start and end; 0 = start/end only)",
                           range=">= 0")
    eval_prompts: int = flag(32, "held-out prompts per evaluation (0 = no evaluation)", range=">= 0")
    eval_k: int = flag(4, "samples per held-out prompt: pass@1 is their mean, cons@k their majority vote", range=">= 1")
    eval_temperature: float = flag(0.6, "evaluation sampling temperature (R1 paper: 0.6, top-p 0.95)", range=">= 0")
    rollouts_every: int = flag(10, "write the step's rollouts to OUT/rollouts/ every N steps (0 = never)", range=">= 0")


def add_flags(ap: argparse.ArgumentParser, cls):
    """One flag per field of a flag dataclass (TrainConfig, pipeline.PipelineConfig), with its help."""
    for f in dataclasses.fields(cls):
        name = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            ap.add_argument(name, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        else:
            ap.add_argument(name, type=type(f.default), default=f.default, help=f.metadata["help"])


def build_parser() -> argparse.ArgumentParser:
    """train.py's flags, generated from TrainConfig (one source of truth for help, defaults and the saved config)."""
    ap = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flags(ap, TrainConfig)
    ap.add_argument("-G", dest="group_size", type=int, help=argparse.SUPPRESS)
    return ap


def parse_config(argv=None) -> TrainConfig:
    """The TrainConfig of a command line, validated (argparse's exit with the message on a bad one)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    try:
        validate(cfg)
    except ValueError as e:
        ap.error(str(e))
    return cfg


def validate(cfg: TrainConfig):
    """Contradictory or impossible settings, caught before any work starts. Raises ValueError."""
    check_ranges(cfg)
    if cfg.stage not in ("grpo", "sft"):
        raise ValueError(f"--stage {cfg.stage}: expected grpo or sft")
    if cfg.stage == "sft" and not cfg.data:
        raise ValueError("--stage sft needs --data (a jsonl of prompt/completion or messages)")
    if cfg.stage == "grpo" and cfg.data:
        raise ValueError("--data is the SFT dataset; GRPO takes its prompts from --task")
    if cfg.template not in TEMPLATES + (("raw",) if cfg.stage == "sft" else ()):
        raise ValueError(f"--template {cfg.template}: expected one of {TEMPLATES}")
    if cfg.stage == "grpo" and cfg.group_size < 2:
        raise ValueError(f"--group-size {cfg.group_size}: GRPO's advantage needs at least 2 completions per prompt")
    if cfg.clip_eps_high and cfg.clip_eps_high < cfg.clip_eps:
        raise ValueError(f"--clip-eps-high {cfg.clip_eps_high} < --clip-eps {cfg.clip_eps}")
    upper = 1 + (cfg.clip_eps_high or cfg.clip_eps)
    if cfg.clip_delta and cfg.clip_delta <= upper:
        raise ValueError(f"--clip-delta {cfg.clip_delta}: must be > 1 + the upper clip epsilon = {upper:g} "
                         "(else it clips positive advantages too), or 0 for off")
    if cfg.importance_sampling_level not in ("token", "sequence"):
        raise ValueError(f"--importance-sampling-level {cfg.importance_sampling_level}: expected token or sequence")
    if cfg.overlong_buffer > cfg.max_new_tokens:
        raise ValueError(f"--overlong-buffer {cfg.overlong_buffer}: must be <= --max-new-tokens {cfg.max_new_tokens}")
    if cfg.loss_agg not in LOSS_AGGS:
        raise ValueError(f"--loss-agg {cfg.loss_agg}: expected one of {LOSS_AGGS}")
    if cfg.lr_schedule not in ("constant", "linear"):
        raise ValueError(f"--lr-schedule {cfg.lr_schedule}: expected constant or linear")
    if cfg.scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"--scale-rewards {cfg.scale_rewards}: expected group, batch or none")
    if cfg.dtype == "float16":
        raise ValueError("--dtype float16: training needs loss scaling in float16 (the LM head's gradient, "
                         "probability x upstream gradient over the vocabulary, underflows to zero), which r1 "
                         "does not do; use bfloat16 (same speed where float16 is fast) or float32")
    if cfg.dtype not in ("auto", "bfloat16", "float32"):
        raise ValueError(f"--dtype {cfg.dtype}: expected auto, bfloat16 or float32")
    if cfg.compile and cfg.fsdp:
        raise ValueError("--compile with --fsdp: the compiled wrapper hides the sharded model from "
                         "grpo.group_token_logprobs, whose reentrant prompt checkpoint would then bypass FSDP's "
                         "hooks; use one of the two")
    if cfg.compile and pick_device(cfg.device).type != "cuda":
        raise ValueError(f"--compile compiles for CUDA; --device {cfg.device} is "
                         f"{pick_device(cfg.device).type} here (drop --compile)")
    if cfg.fsdp and cfg.stage != "grpo":
        raise ValueError("--fsdp shards the GRPO stage; run SFT replicated (plain torchrun) or on one process")
    if cfg.ref_reset_every and cfg.beta == 0:
        raise ValueError("--ref-reset-every needs a reference model, but --beta 0 has none")
    targets = cfg.lora_targets.split(",")
    if set(targets) - set(LORA_TARGETS) or len(set(targets)) != len(targets):
        raise ValueError(f"--lora-targets {cfg.lora_targets}: expected distinct comma-separated names from "
                         f"{','.join(LORA_TARGETS)}")
    if cfg.lora_rank and cfg.ref_reset_every:
        raise ValueError("--ref-reset-every with --lora-rank: a LoRA run's reference model is its base model (the "
                         "adapters off), which never moves; use one of the two")
    if cfg.lora_rank and cfg.fsdp:
        raise ValueError("--fsdp with --lora-rank: not implemented (the adapters are small; run replicated)")
    parse_weights(cfg.reward_weights)


def parse_weights(text: str, flag: str = "--reward-weights") -> dict[str, float]:
    """'accuracy=1,format=0.5' -> {'accuracy': 1.0, 'format': 0.5}: each weight a finite number (a negative one
    penalises its part). Raises ValueError naming flag for bad syntax, or a weight that is nan or infinite."""
    out = {}
    for item in filter(None, text.split(",")):
        name, eq, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not eq or not math.isfinite(weight):
            raise ValueError(f"{flag}: {item!r} is not name=number (a finite number)")
        out[name.strip()] = weight
    return out


# -----------------------------------------------------------------------------
# Errors a command reports in one line


class InputError(ValueError):
    """The command's input is wrong: a data file (its message names file:line and what was expected there), a
    model, a flag combination found wrong while loading. Raised by reading_input and by the checks of train.py and
    sample.py; one_line_errors prints it without a traceback."""


@contextlib.contextmanager
def reading_input():
    """Marks the code that loads and checks a command's input (tasks, data files, the model, the checkpoint to
    resume): a ValueError raised inside (reward.py and model.py name the file and line) becomes InputError.
    Also a decorator."""
    try:
        yield
    except InputError:
        raise
    except ValueError as e:
        raise InputError(str(e)) from e


@contextlib.contextmanager
def one_line_errors():
    """The entry of train.py, sample.py and pipeline.py: bad input (InputError), a file the OS cannot read or
    write (OSError: its message, or WriteFailed's, names the path) and a diverged run (FloatingPointError) end
    the command with one line "error: <message>" on stderr and exit status 1, the status an uncaught exception
    gives (argparse's usage errors exit 2). Only these types are caught, so every other exception keeps its
    traceback: a ValueError raised outside reading_input is a bug, not input."""
    try:
        yield
    except (InputError, OSError, FloatingPointError) as e:
        raise SystemExit(f"error: {e}") from None
