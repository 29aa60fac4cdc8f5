"""
recipe_table.py: one table over seeds from the output folders of `python pipeline.py --seed S --out OUT_S`,
or from any folders holding such a run's report.md (benchmarks/results/recipe_zen4/seed*).

    python benchmarks/recipe_table.py out/recipe_seed0 out/recipe_seed1 out/recipe_seed2
    python benchmarks/recipe_table.py benchmarks/results/recipe_zen4/seed*

Prints, in markdown: held-out pass@1 per seed and stage (base, R1-Zero, stages 1-4), with the minutes of the
whole command; then per stage the mean ± standard error over seeds of pass@1, its change from the model the
stage starts from (pipeline.PREVIOUS), answer_acc, mean completion length, token entropy and zero-std
groups; then the recipe (stage 4) minus R1-Zero. pass@1, its changes and the recipe's lead carry the s.e.
of pooled_se, which counts both the prompts and the seeds; the other columns the spread over seeds.
Last, for sums of three or more numbers (only where the folders hold NN_name/eval_records.jsonl): per stage
from the cold start on, the share of held-out completions that state the sum in one line ("78 + 4 + 81 =
163") rather than in steps, and each form's accuracy.
No torch: reads report.md (and eval_records.jsonl for the last table).
"""
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline import PREVIOUS, STAGES  # noqa: E402


def spread_se(xs: list[float]) -> float:
    """Standard error of the mean of xs from their spread (std with n-1 / sqrt(n)); 0 for one value."""
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else 0.0


def pooled_se(means: list[float], ses: list[float]) -> float:
    """Standard error of the mean over S seeds of per-seed estimates `means`, each with its own s.e. over its
    held-out prompts (`ses`; paired over prompts for a change). A seed's estimate varies with its seed
    (training) and with its prompts: Var = (sigma_seed^2 + sigma_prompts^2) / S. The seeds' spread estimates
    that sum unbiasedly but with S - 1 degrees of freedom (3 seeds: 2, often far too small); the mean of the
    squared per-seed s.e.s estimates the prompts' part alone with hundreds. Since sigma_seed^2 >= 0 the
    variance is at least the prompts' part, so: sqrt(max(spread variance, mean of ses^2) / S)."""
    s = len(means)
    spread = spread_se(means) ** 2 * s
    within = sum(e * e for e in ses) / s
    return math.sqrt(max(spread, within) / s)


def fmt(m: float, se: float, digits: int = 3, signed: bool = False) -> str:
    return f"{m:{'+' if signed else ''}.{digits}f} ± {se:.{digits}f}"


def mean_se(xs: list[float], digits: int = 3) -> str:
    return fmt(sum(xs) / len(xs), spread_se(xs), digits)


def pooled(pairs: list[tuple[float, float]], signed: bool = False) -> str:
    """(estimate, s.e.) per seed -> "mean ± pooled_se"."""
    means, ses = zip(*pairs)
    return fmt(sum(means) / len(means), pooled_se(list(means), list(ses)), signed=signed)


def number(cell: str) -> float:
    return math.nan if cell.strip() == "-" else float(cell)


def read_report(path: Path) -> dict:
    """{row key ("base", 0, .. 5): {pass1, pass1_se, delta, delta_se, answer_acc, mean_len, entropy, zero_std,
    seconds}} and "recipe": (difference, s.e.) from a pipeline report.md, its main table read by its header's
    column names (older reports have wall s and eval s, newer ones minutes of data, training and evaluation).
    Raises ValueError naming the file for a table it cannot read."""
    rows, columns = {}, None
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("Recipe (stages"):
            diff, _, rest = line.partition("(difference ")[2].partition(" ± ")
            rows["recipe"] = (float(diff), float(rest.split(",")[0]))
        if cells[:2] == ["stage", "steps"]:
            columns = cells
        if not line.startswith("|"):
            columns = None                           # the main table has ended
        if columns is None or len(cells) != len(columns) or cells[0] in ("stage", "---") or not (
                cells[0] == "base" or cells[0][:1].isdigit()):
            continue
        c = dict(zip(columns, cells))
        try:
            key = "base" if c["stage"] == "base" else int(c["stage"].split()[0])
            p1, p1_se = (float(x) for x in c["pass@1 ± se"].split(" ± "))
            delta = c["Δ pass@1 ± se (vs)"]
            d, d_se = (math.nan, math.nan) if delta == "-" else (float(x) for x in delta.split(" (")[0].split(" ± "))
            seconds = (sum(0.0 if c[x] == "-" else 60 * float(c[x]) for x in ("data min", "train min", "eval min"))
                       if "eval min" in c else (0.0 if c["wall s"] == "-" else float(c["wall s"])) + float(c["eval s"]))
            rows[key] = dict(pass1=p1, pass1_se=p1_se, delta=d, delta_se=d_se, answer_acc=number(c["answer_acc"]),
                             mean_len=number(c["mean len"]), entropy=number(c["entropy"]),
                             zero_std=number(c["zero-std groups"]), seconds=seconds)
        except (ValueError, KeyError) as e:
            raise ValueError(f"{path}: cannot read the row {line!r}: {e}") from None
    return rows


def main(outs: list[str]):
    for out in outs:
        if not (Path(out) / "report.md").exists():
            sys.exit(f"{out}: no report.md there; expected the --out folder of a pipeline.py run")
    runs = {out: read_report(Path(out) / "report.md") for out in outs}
    keys = ["base", 0, 1, 2, 3, 4]
    label = {"base": "base", 0: "R1-Zero", 1: "1 cold start", 2: "2 reasoning RL", 3: "3 rejection SFT",
             4: "4 all-scenario RL"}
    print("| run | " + " | ".join(label[k] for k in keys) + " | minutes |")
    print("|---|" + "---:|" * (len(keys) + 1))
    for out, rows in runs.items():
        minutes = sum(rows[k]["seconds"] for k in keys if k in rows) / 60
        cells = [f"{rows[k]['pass1']:.3f}" if k in rows else "-" for k in keys]
        print(f"| {out} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    done = [k for k in keys if all(k in rows for rows in runs.values())]
    print("\n| stage | pass@1 | change ± s.e. (from) | answer_acc | mean len | entropy | zero-std groups |")
    print("|---|---|---|---|---|---|---|")
    for k in done:
        col = lambda name: [rows[k][name] for rows in runs.values()]                # noqa: E731
        prev = None if k == "base" else PREVIOUS[k]
        delta = "-" if prev not in done else \
            pooled(list(zip(col("delta"), col("delta_se"))), signed=True) + f" ({label[prev]})"
        zero = "-" if k in ("base", 1, 3) else mean_se(col("zero_std"))
        print(f"| {label[k]} | {pooled(list(zip(col('pass1'), col('pass1_se'))))} | {delta} | "
              f"{mean_se(col('answer_acc'))} | {mean_se(col('mean_len'), 1)} | {mean_se(col('entropy'))} | {zero} |")
    if all("recipe" in rows for rows in runs.values()):
        d = [rows["recipe"] for rows in runs.values()]
        print(f"\nRecipe (stage 4) minus R1-Zero, pass@1: {pooled(d, signed=True)} over {len(d)} seeds.")
    forms_table([Path(out) for out in outs], [k for k in done if k in (1, 2, 3, 4)], label)


def one_line(completion: str) -> bool:
    """A completion that states a sum of three or more numbers in one line: a line of its reasoning with two
    or more '+' and an '=' that is not the problem's restatement ("We need to compute ...")."""
    lines = completion.split("</think>")[0].split("\n")
    return any(x.count("+") >= 2 and "=" in x and not x.startswith("We need") for x in lines)


def forms_table(outs: list[Path], stages: list[int], label: dict):
    """Per stage, mean ± s.e. over seeds (their spread) of the one-line share and of each form's accuracy."""
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
