"""
benchmarks/seeds.py: does a train.py command learn every time? Runs it over seeds x dtypes, one run at a
time (never two torch jobs on the same cores), and prints a markdown table: held-out pass@1 at each
evaluation, the format-independent answer accuracy, and wall-clock minutes, one row per run.

    python benchmarks/seeds.py --out seeds                       # default run, seeds 0-4, float32 and bfloat16
    python benchmarks/seeds.py --out hard --seeds 0,1,2 --dtypes float32 --min-gain 0.3 -- --task arith:digits=2 \
        --max-new-tokens 96 --steps 50 --eval-every 10 --eval-prompts 96 --temperature 0.7 \
        --reward-weights accuracy=1,format=0.1,tags=0.05,answer=0.5
                                          # the harder task (README, "Beyond the trivial task")
    python benchmarks/seeds.py --out seeds --report              # only the table, from the runs already there

Everything after "--" goes to train.py as is. A run whose metrics.jsonl already has its last evaluation is
not run again, so an interrupted sweep continues where it stopped (an interrupted run resumes: --resume).
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from metrics import by_step, read_metrics  # noqa: E402


def read_run(d: Path) -> dict:
    """{'evals': {step: eval record}, 'steps': n train steps, 'wall_min': minutes or None} of one run dir."""
    steps, evals = by_step(read_metrics(d / "metrics.jsonl"))
    wall = d / "wall_seconds"
    return dict(evals=evals, steps=max(steps, default=0),
                wall_min=float(wall.read_text()) / 60 if wall.exists() else None)


def finished(d: Path, steps: int) -> bool:
    return steps in read_run(d)["evals"]


def table(runs: list[tuple[int, str, Path]], threshold: float, min_gain: float | None = None) -> str:
    """Markdown: seed, dtype, pass@1 at each eval step, answer_acc at the first and last eval, minutes. Then per
    dtype: the runs whose last pass@1 >= threshold and, with min_gain, those whose answer_acc rose by >= min_gain
    from the first evaluation (step 0: the base model) to the last."""
    data = [(seed, dtype, read_run(d)) for seed, dtype, d in runs]
    eval_steps = sorted({s for _, _, r in data for s in r["evals"]})
    head = ["seed", "dtype"] + [f"pass@1 step {s}" for s in eval_steps] + ["answer_acc first -> last", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for seed, dtype, r in data:
        ev = r["evals"]
        cells = [f"{ev[s]['pass@1']:.3f}" if s in ev else "" for s in eval_steps]
        firsts = [ev[s] for s in eval_steps if s in ev and "answer_acc" in ev[s]]
        acc = f"{firsts[0]['answer_acc']:.3f} -> {firsts[-1]['answer_acc']:.3f}" if firsts else ""
        wall = f"{r['wall_min']:.1f}" if r["wall_min"] is not None else ""
        lines.append("| " + " | ".join([str(seed), dtype] + cells + [acc, wall]) + " |")
    last = eval_steps[-1] if eval_steps else None
    for dtype in sorted({d for _, d, _ in data}):
        finals = [r["evals"][last]["pass@1"] for _, d, r in data if d == dtype and last in r["evals"]]
        ok = sum(f >= threshold for f in finals)
        lines.append(f"\n{dtype}: final pass@1 >= {threshold} in {ok} of {len(finals)} runs"
                     + (f", mean {sum(finals) / len(finals):.3f}" if finals else ""))
        if min_gain is not None:
            gains = [r["evals"][last]["answer_acc"] - r["evals"][min(r["evals"])]["answer_acc"]
                     for _, d, r in data if d == dtype and last in r["evals"] and "answer_acc" in r["evals"][last]]
            lines.append(f"{dtype}: answer_acc gain >= {min_gain} in {sum(g >= min_gain - 1e-9 for g in gains)} of "
                         f"{len(gains)} runs" + (f", gains {', '.join(f'{g:+.3f}' for g in gains)}" if gains else ""))
    return "\n".join(lines)


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description="train.py over seeds x dtypes, and the table of held-out pass@1")
    ap.add_argument("--out", required=True, help="runs go to OUT/seed{S}_{dtype}/")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--steps", type=int, default=None, help="train.py --steps (default: train.py's)")
    ap.add_argument("--threshold", type=float, default=0.8, help="the pass@1 a run must reach to count as learned")
    ap.add_argument("--min-gain", type=float, default=None,
                    help="also count the runs whose answer_acc rose by at least this from step 0 to the end")
    ap.add_argument("--report", action="store_true", help="print the table of the runs already in OUT, run nothing")
    args = ap.parse_args(argv)
    from train import TrainConfig
    given = int(extra[extra.index("--steps") + 1]) if "--steps" in extra[:-1] else None   # after "--"
    steps = args.steps or given or TrainConfig.steps
    extra += ["--steps", str(steps)] if args.steps else []
    runs = [(int(s), dt, Path(args.out) / f"seed{s}_{dt}")
            for dt in args.dtypes.split(",") for s in args.seeds.split(",")]
    for seed, dtype, d in runs:
        if args.report or finished(d, steps):
            continue
        cmd = [sys.executable, str(ROOT / "train.py"), "--seed", str(seed), "--dtype", dtype, "--out-dir", str(d),
               *(["--resume"] if (d / "checkpoints").exists() else []), *extra]
        print("$", " ".join(cmd), flush=True)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with open(d / "log.txt", "a") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if rc != 0:
            print(f"run {d} failed (exit {rc}); its log: {d / 'log.txt'}", flush=True)
            continue
        if not (d / "wall_seconds").exists():  # a run that was interrupted records only its resumed part
            (d / "wall_seconds").write_text(f"{time.time() - t0:.1f}\n")
        print(table([(seed, dtype, d)], args.threshold).split("\n")[2], flush=True)
    print(table(runs, args.threshold, args.min_gain))


if __name__ == "__main__":
    main()
