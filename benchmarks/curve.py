"""
benchmarks/curve.py: the learning curve of a train.py run, as a markdown table (for README) and as a plot.

    python benchmarks/curve.py out/metrics.jsonl                       # every eval, with the train metrics around it
    python benchmarks/curve.py out/metrics.jsonl --every 5             # also a row every 5 steps
    python benchmarks/curve.py out/metrics.jsonl --plot curve.png      # and a figure: reward, accuracy, format,
                                                                       # held-out pass@1, length, KL against step

Each row: step, elapsed minutes (sum of step_s; evaluation seconds are not in it), train reward and its parts
averaged over the steps since the previous row, mean completion length, KL, and the held-out pass@1 ± s.e.,
cons@k and format-independent answer accuracy when an evaluation ran at that step.
--plot needs matplotlib (benchmarks/requirements.txt; not needed to train).
"""
import argparse
import json


def read_metrics(path: str) -> tuple[dict, dict]:
    """({step: train record}, {step: eval record}) of a metrics.jsonl; a line cut off by a kill is skipped."""
    steps, evals = {}, {}
    for line in open(path):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        (evals if "eval" in rec else steps)[rec["step"]] = rec.get("eval", rec)
    return steps, evals


def table(steps: dict, evals: dict, every: int = 0) -> str:
    rows = sorted(set(evals) | ({s for s in steps if every and s % every == 0}))
    out = ["| step | train minutes | reward | accuracy | format | len | KL | held-out pass@1 | cons@k | answer_acc |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
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
                   f"{mean('len_mean')} | {mean('kl_token_mean')} | {held} | {cons} | {lenient} |")
        prev = s
    return "\n".join(out)


def plot(runs: list[tuple[str, dict, dict]], path: str):
    """Six panels against step: reward, accuracy and format (train), held-out pass@1 (and answer_acc, dashed),
    completion length, KL. One line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("reward", "train reward"), ("accuracy", "train accuracy"), ("format", "train format"),
              ("pass@1", "held-out pass@1 (dashed: answer_acc)"), ("len_mean", "completion length, tokens"),
              ("kl_token_mean", "KL to the reference, per token")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (key, title) in zip(axes.flat, panels):
        for i, (label, steps, evals) in enumerate(runs):
            color = f"C{i}"
            if key == "pass@1":
                xs = sorted(evals)
                ax.errorbar(xs, [evals[s]["pass@1"] for s in xs], [evals[s]["pass@1_se"] for s in xs], color=color,
                            marker="o", ms=3, capsize=2, label=label)
                if all("answer_acc" in evals[s] for s in xs):
                    ax.plot(xs, [evals[s]["answer_acc"] for s in xs], color=color, ls="--", lw=1)
                ax.set_ylim(-0.02, 1.02)
            else:
                xs = sorted(s for s in steps if key in steps[s])
                ax.plot(xs, [steps[s][key] for s in xs], color=color, lw=1.2, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if len(runs) > 1:
        axes.flat[3].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description="markdown learning curve (and a plot) from metrics.jsonl files")
    ap.add_argument("metrics", nargs="+", help="OUT/metrics.jsonl written by train.py (several: one plot line each)")
    ap.add_argument("--every", type=int, default=0, help="also a row every N steps (0 = eval steps only)")
    ap.add_argument("--plot", default="", help="write a PNG with the curves here (needs matplotlib)")
    ap.add_argument("--labels", default="", help="comma-separated plot labels, one per metrics file")
    args = ap.parse_args()
    runs = [(path, *read_metrics(path)) for path in args.metrics]
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
