"""
benchmarks/grpo_vs_trl.py: one GRPO step of train.py against TRL's GRPOTrainer, same workload, side by side.

    pip install trl                                   # dev-only: the benchmark's other side, not a runtime dependency
    python -c "import torch; print(torch.__version__)"   # check that installing trl left torch as it was
    python benchmarks/grpo_vs_trl.py 2>&1 | tee grpo_vs_trl.log   # 2 processes per side, alternating (TRL is most of the time)
    python benchmarks/grpo_vs_trl.py --max-new-tokens 8 --steps 1  # a quick check that both sides run
    python benchmarks/grpo_vs_trl.py --only ours      # just train.py, to iterate on speed
    python benchmarks/grpo_vs_trl.py --only ours --default-kernel-caches   # without train.cap_kernel_caches
    python benchmarks/grpo_vs_trl.py --only ours --without unpadded_blocks # without a measure (MEASURES below)
    python benchmarks/grpo_vs_trl.py --model qwen2.5-coder-0.5b-instruct --prompts 2 -G 4 --max-new-tokens 256 \
        --lora-rank 32                 # LoRA on both sides: ours --lora-rank, TRL with peft's LoraConfig

Workload (README, "Speed"): the default model (SmolLM2-135M-Instruct, the Hugging Face directory that
model.resolve_model_path gives, which transformers loads as is), task `arith` (reward.load_task), chat
template with train.py's default --think-prefill (prompts end with "<think>"; --no-think-prefill for
plain ones), 4 prompts x G=8 completions per step, at most 128 new tokens (rows stop at the chat stop
token on both sides), temperature 1.0, top-p 1, beta 0.04, lr 1e-6 (constant), mu = 1, clip 0.2, grad
clip 1.0, AdamW betas (0.9, 0.99), the paper's loss (each completion's token mean, then the mean over
completions; advantages scaled by the group's std): ours `--loss-agg seq_mean_token_mean --scale-rewards
group`, TRL `loss_type="grpo", scale_rewards="group"`. The reward is reward.py's Task.reward with
train.py's default --reward-weights, for TRL wrapped as a reward function of the completions (told about
the prefill too). Both sides get the same prompt token ids, and step k uses the same 4 prompts (the
task's train examples 4k..4k+3) on both sides. One optimiser step per step on both sides, in
micro-batches of 8 rows (ours: --micro-batch-size 8, whole groups; TRL: per_device_train_batch_size 8
with 4 gradient-accumulation steps, so one generation of 32 completions feeds one optimiser step).
torch.set_num_threads(2), CPU.

LoRA (--lora-rank R > 0): ours is train.py --lora-rank R --lora-alpha A --lora-targets T (the reference model
is the policy with its adapters off); TRL gets peft_config=LoraConfig(r=R, lora_alpha=A, target_modules=T,
lora_dropout=0), with which GRPOTrainer also scores the reference with the adapters disabled. Same lr on both.

Dtypes, both sides by the hardware (--dtype auto: sample.default_dtype, bfloat16 on a CPU with native bf16
matmuls, float32 where bf16 is emulated; --dtype float32|bfloat16 pins both): ours is train.py's --dtype
(bf16: bf16 autocast and a bf16 sampling copy over fp32 master weights, log-softmax and loss in fp32). TRL
runs with bf16=True (accelerate's bf16 autocast over fp32 weights) when the dtype is bfloat16 and its
trainer accepts that on the CPU, else float32; the log says which. Activation checkpointing (TRL's gradient_checkpointing, ours
--activation-checkpointing; on by default in both) trades speed for memory: on on both sides by
default, off on both sides with --no-activation-checkpointing.

How it measures: each side runs in its own process (the script re-invokes itself with --side ours|trl),
so peak RSS (VmHWM of /proc/self/status, read at the end of the run: model loading, the reference model,
all steps and, for ours, the final checkpoint save that train() always writes, included; the log also gives
ours before that save) is that side's alone. The sides alternate, --rounds processes each (ours, trl, ours, trl, ...), so that
drift of the machine falls on both; each process runs --warmup + --steps steps, the warm-up steps are
dropped and the figure is the median of the rest over all rounds. A step
is a full GRPO step: sampling, rewards, reference log-probs, loss, backward, optimiser step. Ours is
train.train(TrainConfig(...)) with evaluation off, its `step_s` read from metrics.jsonl (start-up and
model loading excluded); TRL's is the wall-clock time between the trainer's on_step_end callbacks (the
first measured from on_train_begin, after the trainer and both models are built). Completion lengths
(stop token included, as both count them) are reported per side, since rows stop early on both.

Output: per-step lines from each side, each process's figures, a roofline line (step_bound: a lower bound
on a GRPO step's seconds from its FLOPs and bytes at this machine's measured rates, and each side's fraction
of it), then
    ours_mean_completion_len=... trl_mean_completion_len=...
    ours_peak_rss_gib=... trl_peak_rss_gib=...
    ours_s_per_step=... trl_s_per_step=... ratio=...          (ratio = trl / ours; > 1: ours is faster)
Other work on the machine makes both figures meaningless: run it on an otherwise idle machine.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULT = "RESULT "        # a child's last line: RESULT {json}
from train import TrainConfig  # noqa: E402
TRAIN = TrainConfig()     # train.py's defaults: the benchmark's prompt prefill and reward weights


def peak_rss_gib() -> float:
    """The process's peak resident set size (VmHWM), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20                       # kB -> GiB
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def task_examples(args, n_steps: int):
    """The task, and each step's P examples in order (train.collect_rollouts' data position)."""
    from reward import load_task
    task = load_task(args.task, seed=args.seed)
    return task, [task.example("train", i) for i in range(n_steps * args.prompts)]


# -----------------------------------------------------------------------------
# ours: train.py as a user runs it, optionally without some of its speed/memory measures

MEASURES = {   # name -> what running without it means (--without NAME,NAME; benchmarks/README.md has the effects)
    "cap_kernel_caches": "oneDNN's and ideep's kernel caches at their default 1024 shapes",
    "lm_head_slices": "LMHeadLogprobs forms the LM head's weight gradient for the whole vocabulary at once",
    "fused_adamw": "torch's default (foreach) AdamW instead of the fused one",
    "unpadded_blocks": "the per-token layers run on the padded (B, T) batch (model.UNPADDED_BLOCKS off)",
    "shared_prompt_pass": "each row scored as prompt + completion (grpo.token_logprobs), the prompt G times",
    "packed_weights": "float32 sampling decodes through F.linear, not MKL-packed weights (sample.PACKED_WEIGHTS off)",
}


def disable_measure(name: str, T):
    """Replaces one measure of train.py's GRPO step by its plain equivalent, in this (child) process."""
    import torch
    import grpo
    import model
    if name == "cap_kernel_caches":
        T.cap_kernel_caches = lambda *a, **k: None
    elif name == "lm_head_slices":
        grpo.VOCAB_SLICE = 2**62
    elif name == "fused_adamw":
        adamw = torch.optim.AdamW

        class AdamW(adamw):
            def __init__(self, *a, fused=None, **k):
                super().__init__(*a, fused=False, **k)
        T.torch.optim.AdamW = AdamW
    elif name == "unpadded_blocks":
        model.UNPADDED_BLOCKS = False
    elif name == "packed_weights":
        import sample
        sample.PACKED_WEIGHTS = False
    elif name == "shared_prompt_pass":
        def concatenated(policy, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=1.0):
            G, L = completion_ids.size(0) // prompt_ids.size(0), prompt_ids.size(1)
            ids, mask = prompt_ids.repeat_interleave(G, 0), prompt_mask.repeat_interleave(G, 0)
            comp = torch.cat((torch.zeros_like(mask), completion_mask), 1)
            out = grpo.token_logprobs(policy, torch.cat((ids, completion_ids), 1), torch.cat((mask, completion_mask), 1),
                                      comp, temperature)
            return out[:, L:]
        T.group_token_logprobs = concatenated


def run_ours(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    import train as T
    without = set(filter(None, args.without.split(",")))
    if args.default_kernel_caches:
        without.add("cap_kernel_caches")
    if without - set(MEASURES):
        raise SystemExit(f"--without {sorted(without - set(MEASURES))}: expected names from {list(MEASURES)}")
    for name in without:                       # each measure's plain equivalent (MEASURES says which)
        disable_measure(name, T)
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl_ours_") as out:
        cfg = T.TrainConfig(model=args.model, task=args.task, template="chat", group_size=args.G,
                            prompts_per_step=args.prompts, max_new_tokens=args.max_new_tokens, temperature=1.0,
                            think_prefill=args.think_prefill, top_p=1.0, beta=0.04, clip_eps=0.2, num_iterations=1,
                            loss_agg="seq_mean_token_mean", scale_rewards="group", reward_weights=args.reward_weights,
                            lr=1e-6, warmup_steps=0, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                            lora_targets=args.lora_targets,
                            weight_decay=0.0, grad_clip=1.0, micro_batch_size=args.micro_batch,
                            steps=args.warmup + args.steps, dtype=args.dtype, device="cpu", seed=args.seed,
                            activation_checkpointing=args.activation_checkpointing,
                            threads=args.threads, out_dir=out, eval_prompts=0, rollouts_every=0, save_every=0)
        T.validate(cfg)
        save, before_save = T.save_checkpoint, []

        def save_checkpoint(*a, **k):          # the peak before the final checkpoint save, for the log
            before_save.append(peak_rss_gib())
            return save(*a, **k)
        T.save_checkpoint = save_checkpoint
        T.train(cfg)
        rows = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step_s" in r]
    dtype = side_dtype(args)
    return {"side": "ours", "dtype": (f"{dtype} autocast, fp32 master weights" if dtype != "float32" else "float32") + (
                ", activation checkpointing" if args.activation_checkpointing else "") + (
                "".join(f", without {n}" for n in sorted(without))) + lora_label(args),
            "threads": torch.get_num_threads(),
            "step_s": [r["step_s"] for r in rows], "len_mean": [r["len_mean"] for r in rows],
            "reward": [r["reward"] for r in rows], "peak_rss_gib": peak_rss_gib(),
            "peak_rss_gib_before_save": before_save[0] if before_save else None}


# -----------------------------------------------------------------------------
# TRL's GRPOTrainer on the same workload


def lora_label(args) -> str:
    return f", LoRA r={args.lora_rank} alpha={args.lora_alpha:g} on {args.lora_targets}" if args.lora_rank else ""


def side_dtype(args) -> str:
    """Both sides' compute dtype: --dtype, or with auto what train.py picks on this CPU."""
    if args.dtype != "auto":
        return args.dtype
    import torch
    from sample import default_dtype
    return str(default_dtype(torch.device("cpu"))).removeprefix("torch.")


def trl_bf16_ok() -> tuple[bool, str]:
    """Whether TRL's trainer accepts bf16=True on the CPU (checked by building its config)."""
    from trl import GRPOConfig
    try:
        with tempfile.TemporaryDirectory() as d:
            GRPOConfig(output_dir=d, bf16=True, use_cpu=True, report_to="none", per_device_train_batch_size=8)
        return True, ""
    except (ValueError, RuntimeError, NotImplementedError) as e:
        return False, f"{type(e).__name__}: {e}"


def run_trl(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from model import Tokenizer, resolve_model_path
    from reward import Example, render_prompt
    from train import parse_weights

    path = str(resolve_model_path(args.model))
    n_steps = args.warmup + args.steps
    task, examples = task_examples(args, n_steps)
    ours_tok = Tokenizer(Path(path))
    prompts = [render_prompt(ex, "chat", ours_tok, think_prefilled=args.think_prefill) for ex in examples]
    hf_tok = AutoTokenizer.from_pretrained(path)
    for p in prompts:        # the same prompt token ids as ours, or the comparison is off
        assert hf_tok(p, add_special_tokens=False)["input_ids"] == ours_tok.encode(p) == hf_tok(p)["input_ids"], p
    dataset = Dataset.from_dict({"prompt": prompts, "question": [ex.prompt for ex in examples],
                                 "answer": [ex.answer for ex in examples]})
    weights = parse_weights(args.reward_weights)

    def r1_reward(prompts, completions, question, answer, **_):
        """reward.py's Task.reward of each completion text, weighted as ours."""
        return [task.reward(Example(q, a), c, args.think_prefill, weights=weights)[0]
                for q, a, c in zip(question, answer, completions)]

    bf16, why = trl_bf16_ok() if side_dtype(args) == "bfloat16" else (False, f"--dtype {args.dtype}: float32")
    if not bf16:
        print(f"TRL: bf16=True refused on the CPU ({why}); running float32", flush=True)
    rows = args.prompts * args.G
    if rows % args.micro_batch:
        raise SystemExit(f"--micro-batch {args.micro_batch} must divide {rows} rows")

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks, self.threads = [], None

        def on_train_begin(self, *a, **k):
            self.marks.append(time.time())

        def on_step_end(self, a, state, *_, **__):
            self.marks.append(time.time())
            self.threads = torch.get_num_threads()
            print(f"trl step {state.global_step}: {self.marks[-1] - self.marks[-2]:.2f} s", flush=True)

    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl_trl_") as out:
        config = GRPOConfig(
            output_dir=out, use_cpu=True, bf16=bf16, gradient_checkpointing=args.activation_checkpointing, seed=args.seed,
            per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=rows // args.micro_batch,
            num_generations=args.G, max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0,
            top_k=0, beta=0.04, num_iterations=1, epsilon=0.2, loss_type="grpo", scale_rewards="group",
            learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            adam_beta1=0.9, adam_beta2=0.99, max_grad_norm=1.0, max_steps=n_steps, shuffle_dataset=False,
            disable_dropout=True, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
            dataloader_num_workers=0, log_completions=False)
        peft_config = None
        if args.lora_rank:
            from peft import LoraConfig
            peft_config = LoraConfig(r=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                                     target_modules=args.lora_targets.split(","), task_type="CAUSAL_LM")
        trainer = GRPOTrainer(model=path, reward_funcs=r1_reward, args=config, train_dataset=dataset,
                              processing_class=hf_tok, callbacks=[timer], peft_config=peft_config)
        print(f"TRL {trl.__version__}, transformers {transformers.__version__}, bf16={bf16}, "
              f"gradient_checkpointing={args.activation_checkpointing}, micro-batch {args.micro_batch} x "
              f"{rows // args.micro_batch} accumulation steps, model dtype {trainer.model.dtype}", flush=True)
        trainer.train()
        logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    return {"side": "trl", "dtype": ("bfloat16 autocast (bf16=True), fp32 master weights" if bf16 else "float32")
            + lora_label(args),
            "threads": timer.threads,
            "step_s": [b - a for a, b in zip(timer.marks, timer.marks[1:])],
            "len_mean": [h["completions/mean_length"] for h in logs], "reward": [h.get("reward") for h in logs],
            "peak_rss_gib": peak_rss_gib()}


# -----------------------------------------------------------------------------
# the parent: one child process per side, then the summary


def run_side(side: str, argv: list[str]) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, __file__, "--side", side, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT))
    result = None
    for line in proc.stdout:
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
        else:
            print(f"[{side}] {line}", end="", flush=True)
    if proc.wait() != 0 or result is None:
        raise SystemExit(f"--side {side} failed (exit code {proc.returncode})")
    print(f"[{side}] process wall-clock {time.time() - t0:.0f} s", flush=True)
    return result


def step_bound(args, completion_len: float) -> tuple[str, float]:
    """A lower bound on one GRPO step's seconds at this machine's measured copy bandwidth and matmul rate
    (sample_vs_hf.machine_rates), from the step's work at the measured mean completion length n:
      sampling, n decode steps: each reads the weights once (bytes) and does 2 x params FLOPs per row,
        whichever takes longer at the machine's rates;
      update, per token (each prompt once, each completion): 2 x params FLOPs for the reference model's
        forward, 6 x params for the policy's forward and backward, 2 x params more with activation
        checkpointing (the recomputed forward).
    Attention's FLOPs (small at these lengths) and the optimiser's are left out: a bound, not an estimate."""
    import torch
    from model import Tokenizer, resolve_model_path
    from reward import render_prompt
    from sample_vs_hf import machine_rates
    from safetensors import safe_open
    dtype = getattr(torch, side_dtype(args))
    path = resolve_model_path(args.model)
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())   # a tied LM head counted once
    tok = Tokenizer(path)
    _, examples = task_examples(args, 1)
    prompt_len = sum(len(tok.encode(render_prompt(ex, "chat", tok, think_prefilled=args.think_prefill)))
                     for ex in examples) / len(examples)
    rows, size = args.prompts * args.G, torch.finfo(dtype).bits // 8
    bandwidth, rate = machine_rates(dtype)
    decode = completion_len * max(params * size / bandwidth, 2 * params * rows / rate)
    tokens = args.prompts * prompt_len + rows * completion_len
    update = tokens * params * (2 + 6 + (2 if args.activation_checkpointing else 0)) / rate
    return (f"roofline ({dtype}, {args.threads} threads): {params / 1e6:.0f}M parameters, {rows} rows x "
            f"{completion_len:.1f} tokens after prompts of {prompt_len:.1f}; copy {bandwidth / 1e9:.1f} GB/s, "
            f"matmul {rate / 1e9:.0f} GFLOP/s; bound {decode:.2f} s sampling + {update:.2f} s update = "
            f"{decode + update:.2f} s per step"), decode + update


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per side and round (the median over all rounds "
                    "is reported)")
    ap.add_argument("--rounds", type=int, default=2, help="processes per side, alternating: ours, trl, ours, trl, ...")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per side before the timed ones")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="completion length limit, tokens")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("-G", type=int, default=8, help="completions per prompt")
    ap.add_argument("--micro-batch", type=int, default=8, help="rows per forward/backward, both sides")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads, both sides")
    ap.add_argument("--model", default="SmolLM2-135M-Instruct", help="model (the default model, or an HF directory)")
    ap.add_argument("--task", default="arith", help="reward.py task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--think-prefill", action=argparse.BooleanOptionalAction, default=TRAIN.think_prefill,
                    help="prompts end with '<think>' (both sides; train.py's default)")
    ap.add_argument("--reward-weights", default=TRAIN.reward_weights, help="reward parts' weights (train.py's default)")
    ap.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                    help="both sides recompute activations in backward (both sides' default)")
    ap.add_argument("--only", choices=["ours", "trl"], default=None, help="run one side only")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="both sides' compute dtype; auto = what train.py picks on this CPU (sample.default_dtype)")
    ap.add_argument("--default-kernel-caches", action="store_true",
                    help="ours without train.cap_kernel_caches (oneDNN's and ideep's kernel caches at 1024 shapes)")
    ap.add_argument("--without", default="", help="ours without these measures, comma-separated: " + ", ".join(MEASURES))
    ap.add_argument("--lora-rank", type=int, default=0, help="LoRA rank on both sides (0: full fine-tuning)")
    ap.add_argument("--lora-alpha", type=float, default=TRAIN.lora_alpha, help="LoRA alpha, both sides")
    ap.add_argument("--lora-targets", default=TRAIN.lora_targets, help="the Linears with adapters, both sides")
    ap.add_argument("--side", choices=["ours", "trl"], default=None, help=argparse.SUPPRESS)   # the child
    args = ap.parse_args()
    if args.side:
        result = (run_ours if args.side == "ours" else run_trl)(args)
        print(RESULT + json.dumps(result), flush=True)
        return

    argv = [a for a in sys.argv[1:]]
    if "--only" in argv:
        i = argv.index("--only")
        del argv[i:i + 2]
    argv = [a for a in argv if not a.startswith("--only=")]
    import torch
    print(f"torch {torch.__version__}, {args.threads} threads, {args.model}, task {args.task}, dtype {side_dtype(args)} "
          f"(--dtype {args.dtype}), "
          f"think_prefill={args.think_prefill}, reward {args.reward_weights}, "
          f"{args.prompts} prompts x G={args.G}, max {args.max_new_tokens} new tokens, "
          f"{args.warmup} warm-up + {args.steps} timed steps per side" + lora_label(args), flush=True)
    sides = [args.only] if args.only else ["ours", "trl"]
    res = {side: [] for side in sides}
    for r in range(args.rounds):                  # ours, trl, ours, trl, ...: drift of the machine cancels
        for side in sides:
            res[side].append(run_side(side, argv))

    med, length, rss = {}, {}, {}
    for side, runs in res.items():
        timed = [s for r in runs for s in r["step_s"][args.warmup:]]
        med[side] = statistics.median(timed)
        lens = [x for r in runs for x in (r["len_mean"][args.warmup:] or r["len_mean"])]
        length[side] = sum(lens) / len(lens) if lens else float("nan")
        rss[side] = max(r["peak_rss_gib"] for r in runs)
        for i, r in enumerate(runs):
            print(f"{side} run {i}: dtype {r['dtype']}, threads {r['threads']}, step seconds "
                  f"{' '.join(f'{s:.2f}' for s in r['step_s'])} (first {args.warmup} = warm-up), "
                  f"mean completion length per step {' '.join(f'{x:.1f}' for x in r['len_mean'])}, peak RSS "
                  f"{r['peak_rss_gib']:.2f} GiB" + (f" ({r['peak_rss_gib_before_save']:.2f} GiB before the final "
                                                   "checkpoint save)" if r.get("peak_rss_gib_before_save") else ""),
                  flush=True)
    nan = float("nan")
    o, t = med.get("ours", nan), med.get("trl", nan)
    line, bound = step_bound(args, length.get("ours", length.get("trl", nan)))
    print(line + f"; ours {bound / o:.1%}, TRL {bound / t:.1%} of it")
    print(f"ours_mean_completion_len={length.get('ours', nan):.1f} trl_mean_completion_len={length.get('trl', nan):.1f}")
    print(f"ours_peak_rss_gib={rss.get('ours', nan):.2f} trl_peak_rss_gib={rss.get('trl', nan):.2f}")
    print(f"ours_s_per_step={o:.2f} trl_s_per_step={t:.2f} ratio={t / o:.2f}")


if __name__ == "__main__":
    main()
