"""
recipe_table.py: one table over seeds from the output folders of `python pipeline.py --seed S --out OUT_S`.

    python benchmarks/recipe_table.py out/recipe_seed0 out/recipe_seed1 out/recipe_seed2

Prints, in markdown: held-out pass@1 per seed and stage (base, R1-Zero, stages 1-4), with the minutes of the
whole command; then per stage the mean ± standard error over seeds of pass@1, its change from the model the
stage starts from (pipeline.PREVIOUS), answer_acc, mean completion length, token entropy and zero-std
groups; then the recipe (stage 4) minus R1-Zero. The s.e. of a change is over the seeds' paired changes
(std with n-1 / sqrt(n)), the seed-to-seed spread; each report.md also has it paired over prompts.
Last, for sums of three or more numbers: per stage from the cold start on, the share of held-out completions
that state the sum in one line ("78 + 4 + 81 = 163") rather than in steps, and each form's accuracy.
No torch: reads base/eval.json, NN_name/done.json, NN_name/metrics.jsonl and NN_name/eval_records.jsonl.
"""
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from metrics import read_metrics  # noqa: E402
from pipeline import PREVIOUS, STAGES  # noqa: E402


def mean_se(xs: list[float], digits: int = 3, signed: bool = False) -> str:
    m = sum(xs) / len(xs)
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else 0.0
    return f"{m:{'+' if signed else ''}.{digits}f} ± {se:.{digits}f}"


def load(out: Path) -> dict:
    """{row: {"eval", "wall_s", "zero_std"}} for the base model and each finished stage 0-4."""
    rows = {"base": {"eval": json.loads((out / "base" / "eval.json").read_text()), "wall_s": 0.0}}
    for n, name in enumerate(STAGES[:5]):
        d = out / f"{n:02d}_{name}"
        if (d / "done.json").exists():
            rows[n] = json.loads((d / "done.json").read_text())
            shares = [m["zero_std_groups"] for m in read_metrics(d / "metrics.jsonl") if "zero_std_groups" in m]
            rows[n]["zero_std"] = sum(shares) / len(shares) if shares else math.nan
    return rows


def main(outs: list[str]):
    for out in outs:
        if not (Path(out) / "base" / "eval.json").exists():
            sys.exit(f"{out}: no base/eval.json there; expected the --out folder of a pipeline.py run")
    runs = {out: load(Path(out)) for out in outs}
    keys = ["base", 0, 1, 2, 3, 4]
    label = {"base": "base", 0: "R1-Zero", 1: "1 cold start", 2: "2 reasoning RL", 3: "3 rejection SFT",
             4: "4 all-scenario RL"}
    print("| run | " + " | ".join(label[k] for k in keys) + " | minutes |")
    print("|---|" + "---:|" * (len(keys) + 1))
    for out, rows in runs.items():
        minutes = sum(r.get("wall_s", 0) + r["eval"]["eval_s"] for r in rows.values()) / 60
        cells = [f"{rows[k]['eval']['pass@1']:.3f}" if k in rows else "-" for k in keys]
        print(f"| {out} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    done = [k for k in keys if all(k in rows for rows in runs.values())]
    print("\n| stage | pass@1 | change ± s.e. (from) | answer_acc | mean len | entropy | zero-std groups |")
    print("|---|---|---|---|---|---|---|")
    for k in done:
        col = lambda f: [f(rows) for rows in runs.values()]                      # noqa: E731
        prev = None if k == "base" else PREVIOUS[k]
        ev = lambda name: col(lambda r: r[k]["eval"].get(name, math.nan))           # noqa: E731
        delta = "-" if prev not in done else mean_se(
            col(lambda r: r[k]["eval"]["pass@1"] - r[prev]["eval"]["pass@1"]), signed=True) + f" ({label[prev]})"
        zero = "-" if k in ("base", 1, 3) else mean_se(col(lambda r: r[k]["zero_std"]))
        print(f"| {label[k]} | {mean_se(ev('pass@1'))} | {delta} | {mean_se(ev('answer_acc'))} | "
              f"{mean_se(ev('mean_len'), 1)} | {mean_se(ev('entropy'))} | {zero} |")
    if 0 in done and 4 in done:
        d = [rows[4]["eval"]["pass@1"] - rows[0]["eval"]["pass@1"] for rows in runs.values()]
        print(f"\nRecipe (stage 4) minus R1-Zero, pass@1: {mean_se(d, signed=True)} over {len(d)} seeds.")
    forms_table([Path(out) for out in outs], [k for k in done if k in (1, 2, 3, 4)], label)


def one_line(completion: str) -> bool:
    """A completion that states a sum of three or more numbers in one line: a line of its reasoning with two
    or more '+' and an '=' that is not the problem's restatement ("We need to compute ...")."""
    lines = completion.split("</think>")[0].split("\n")
    return any(x.count("+") >= 2 and "=" in x and not x.startswith("We need") for x in lines)


def forms_table(outs: list[Path], stages: list[int], label: dict):
    """Per stage, mean ± s.e. over seeds of the one-line share and of each form's accuracy."""
    if not all((o / f"{n:02d}_{STAGES[n]}" / "eval_records.jsonl").exists() for o in outs for n in stages):
        return
    print("\n| stage | completions in one line | accuracy, one line | accuracy, in steps |\n|---|---|---|---|")
    for n in stages:
        share, acc_one, acc_steps = [], [], []
        for o in outs:
            pairs = [(one_line(c), a) for line in (o / f"{n:02d}_{STAGES[n]}" / "eval_records.jsonl").open()
                     for r in [json.loads(line)] for c, a in zip(r["completions"], r["accuracy"])]
            ones, steps = [a for f, a in pairs if f], [a for f, a in pairs if not f]
            share.append(len(ones) / len(pairs))
            acc_one.append(sum(ones) / len(ones) if ones else math.nan)
            acc_steps.append(sum(steps) / len(steps) if steps else math.nan)
        fmt = lambda xs: mean_se(xs) if not any(math.isnan(x) for x in xs) else "-"   # noqa: E731
        print(f"| {label[n]} | {mean_se(share)} | {fmt(acc_one)} | {fmt(acc_steps)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
