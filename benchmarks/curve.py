"""
benchmarks/curve.py: the learning curve of a train.py run as a markdown table (for README).

    python benchmarks/curve.py out/metrics.jsonl            # every eval, with the train metrics around it
    python benchmarks/curve.py out/metrics.jsonl --every 5  # also a row every 5 steps

Each row: step, elapsed minutes (sum of step_s and eval seconds are not logged, so: sum of step_s),
train reward and its parts averaged over the steps since the previous row, mean completion length,
KL, and the held-out pass@1 ± s.e. and cons@k when an evaluation ran at that step.
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser(description="markdown learning curve from a metrics.jsonl")
    ap.add_argument("metrics", help="OUT/metrics.jsonl written by train.py")
    ap.add_argument("--every", type=int, default=0, help="also a row every N steps (0 = eval steps only)")
    args = ap.parse_args()
    steps, evals = {}, {}
    for line in open(args.metrics):
        rec = json.loads(line)
        (evals if "eval" in rec else steps)[rec["step"]] = rec.get("eval", rec)
    rows = sorted(set(evals) | ({s for s in steps if args.every and s % args.every == 0}))
    print("| step | train minutes | reward | accuracy | format | len | KL | held-out pass@1 | cons@k |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    prev, minutes = 0, 0.0
    for s in rows:
        window = [steps[i] for i in range(prev + 1, s + 1) if i in steps]
        minutes += sum(w["step_s"] for w in window) / 60
        mean = (lambda k: f"{sum(w[k] for w in window) / len(window):.3f}" if window and k in window[0] else "")
        e = evals.get(s)
        held = f"{e['pass@1']:.3f} ± {e['pass@1_se']:.3f}" if e else ""
        cons = f"{e['cons@k']:.3f}" if e else ""
        print(f"| {s} | {minutes:.1f} | {mean('reward')} | {mean('accuracy')} | {mean('format')} | "
              f"{mean('len_mean')} | {mean('kl_token_mean')} | {held} | {cons} |")
        prev = s


if __name__ == "__main__":
    main()
