"""
benchmarks/curve.py: the learning curve of a train.py run, as a markdown table (for README) and as a plot.

    python benchmarks/curve.py out/metrics.jsonl                       # every eval, with the train metrics around it
    python benchmarks/curve.py out/metrics.jsonl --every 5             # also a row every 5 steps
    python benchmarks/curve.py out/metrics.jsonl --plot curve.png      # and a figure: reward, accuracy, format,
                                                                       # held-out pass@1, length, KL against step

Each row: step, elapsed minutes (sum of step_s; evaluation seconds are not in it), train reward and its parts
averaged over the steps since the previous row, mean completion length, KL, the policy's token entropy (nats), and
the held-out pass@1 ± s.e., cons@k and format-independent answer accuracy when an evaluation ran at that step.
--plot needs matplotlib (benchmarks/requirements.txt; not needed to train). The reading and the plot are
metrics.py's (read_metrics, by_step, plot); this script adds the table and the command line.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from metrics import by_step, plot, read_metrics  # noqa: E402


def table(steps: dict, evals: dict, every: int = 0) -> str:
    """The markdown table of the header: a row at each evaluation's step and, with every, every N steps."""
    rows = sorted(set(evals) | ({s for s in steps if every and s % every == 0}))
    out = ["| step | train minutes | reward | accuracy | format | len | KL | entropy | held-out pass@1 | cons@k "
           "| answer_acc |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    prev, minutes = 0, 0.0
    for s in rows:
        window = [steps[i] for i in range(prev + 1, s + 1) if i in steps]
        minutes += sum(w["step_s"] for w in window) / 60
        mean = (lambda k: f"{sum(w[k] for w in window) / len(window):.3f}" if window and k in window[0] else "")
        e = evals.get(s)
        held = f"{e['pass@1']:.3f} ± {e['pass@1_se']:.3f}" if e else ""
        cons = f"{e['cons@k']:.3f}" if e else ""
        lenient = f"{e['answer_acc']:.3f}" if e and "answer_acc" in e else ""
        out.append(f"| {s} | {minutes:.1f} | {mean('reward')} | {mean('accuracy')} | {mean('format')} | "
                   f"{mean('len_mean')} | {mean('kl_token_mean')} | {mean('entropy')} | {held} | {cons} | {lenient} |")
        prev = s
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description="markdown learning curve (and a plot) from metrics.jsonl files")
    ap.add_argument("metrics", nargs="+", help="OUT/metrics.jsonl written by train.py (several: one plot line each)")
    ap.add_argument("--every", type=int, default=0, help="also a row every N steps (0 = eval steps only)")
    ap.add_argument("--plot", default="", help="write a PNG with the curves here (needs matplotlib)")
    ap.add_argument("--labels", default="", help="comma-separated plot labels, one per metrics file")
    args = ap.parse_args()
    for path in args.metrics:
        if not Path(path).is_file():
            ap.error(f"{path}: no such file")
    runs = [(path, *by_step(read_metrics(path))) for path in args.metrics]
    if args.labels:
        runs = [(label, s, e) for label, (_, s, e) in zip(args.labels.split(","), runs)]
    for label, steps, evals in runs:
        if len(runs) > 1:
            print(f"\n{label}\n")
        print(table(steps, evals, args.every))
    if args.plot:
        plot(runs, args.plot)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
