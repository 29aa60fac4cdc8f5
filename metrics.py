"""
metrics.py: the one reader of the OUT/metrics.jsonl that train.py writes (one JSON record per line: a
step's metrics, {"step": N, ...}, or an evaluation, {"step": N, "eval": {...}}), and the plot of a run's
curves. train.py reads it to resume, pipeline.py for its report, benchmarks/curve.py and benchmarks/seeds.py
for their tables.

    python benchmarks/curve.py OUT/metrics.jsonl --plot curve.png     # the table and the plot of a run
    python -m pytest tests/test_metrics.py -q

Imports neither torch nor matplotlib: plot() imports matplotlib (benchmarks/requirements.txt, not needed
to train) only when called.
"""
import json
from pathlib import Path


def read_metrics(path: Path | str) -> list[dict]:
    """The records of a metrics.jsonl, in order ([] when there is no file); a last line cut off by a kill
    mid-write is dropped with a warning naming the file. Raises ValueError naming file:line for any other
    line that is not JSON."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):
                raise ValueError(f"{path}:{n}: not a JSON record") from None
            print(f"warning: {path}:{n}: the last line is cut off (a kill mid-write?); dropped")
    return records


def by_step(records: list[dict]) -> tuple[dict, dict]:
    """({step: train record}, {step: eval record, the dict under "eval"}) of read_metrics' records; a step
    logged twice keeps its last record."""
    steps, evals = {}, {}
    for rec in records:
        (evals if "eval" in rec else steps)[rec["step"]] = rec.get("eval", rec)
    return steps, evals


def plot(runs: list[tuple[str, dict, dict]], path: str):
    """Eight panels against step, one line per run (label, *by_step(records)): reward, accuracy and format
    (train), held-out pass@1 ± s.e. (and answer_acc, dashed), completion length, the policy's token entropy, KL, the
    share of groups whose rewards were all equal. Writes a PNG to path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("reward", "train reward"), ("accuracy", "train accuracy"), ("format", "train format"),
              ("pass@1", "held-out pass@1 (dashed: answer_acc)"), ("len_mean", "completion length, tokens"),
              ("entropy", "token entropy, nats"), ("kl_token_mean", "KL to the reference, per token"),
              ("zero_std_groups", "groups with equal rewards")]
    fig, axes = plt.subplots(2, 4, figsize=(17, 6.5))
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
