"""metrics.py, the one reader of OUT/metrics.jsonl: a torn last line is dropped with a warning, any other
bad line names file:line; records split by step into train and eval; the plot is a PNG; benchmarks/curve.py's
table over it, against numbers worked out by hand."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import metrics as M
import train

REPO = Path(__file__).resolve().parents[1]


def test_metrics_with_a_torn_last_line_are_read_without_it(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert M.read_metrics(path) == [{"step": 1}, {"step": 2}]
    assert "metrics.jsonl:3: the last line is cut off" in capsys.readouterr().out
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        M.read_metrics(path)
    assert M.read_metrics(tmp_path / "none.jsonl") == []
    assert train.read_metrics is M.read_metrics             # train.py resumes through the same reader


def test_by_step_splits_train_and_eval_records():
    records = [{"step": 0, "eval": {"pass@1": 0.1}}, {"step": 1, "reward": 0.5},
               {"step": 2, "reward": 0.7}, {"step": 2, "eval": {"pass@1": 0.4}}]
    steps, evals = M.by_step(records)
    assert steps == {1: {"step": 1, "reward": 0.5}, 2: {"step": 2, "reward": 0.7}}
    assert evals == {0: {"pass@1": 0.1}, 2: {"pass@1": 0.4}}


def write_run(path: Path):
    """Four steps of 30 s each and evaluations at steps 0 and 4."""
    recs = [{"step": 0, "eval": {"pass@1": 0.25, "pass@1_se": 0.05, "cons@k": 0.5, "answer_acc": 0.3}}]
    for s, r in zip(range(1, 5), (0.1, 0.2, 0.3, 0.6)):
        recs.append({"step": s, "reward": r, "accuracy": r / 2, "format": 1.0, "len_mean": 10.0 * s,
                     "kl_token_mean": 0.01 * s, "entropy": 1.0 / s, "step_s": 30.0})
    recs.append({"step": 4, "eval": {"pass@1": 0.75, "pass@1_se": 0.1, "cons@k": 1.0, "answer_acc": 0.8}})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_curve_table_and_plot(tmp_path):
    """benchmarks/curve.py over metrics.py, --every 2: rows at the evaluations (steps 0 and 4) and at step 2;
    each row averages the steps since the row before (step 2: steps 1-2, reward (0.1 + 0.2) / 2; step 4:
    steps 3-4, reward (0.3 + 0.6) / 2; entropy (1 + 1/2) / 2 and (1/3 + 1/4) / 2), minutes add up 30 s per step."""
    write_run(tmp_path / "metrics.jsonl")
    plot = ["--plot", str(tmp_path / "curve.png")] if _has_matplotlib() else []
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "curve.py"), str(tmp_path / "metrics.jsonl"),
                          "--every", "2", *plot], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == ["| 0 | 0.0 |  |  |  |  |  |  | 0.250 ± 0.050 | 0.500 | 0.300 |",
                    "| 2 | 1.0 | 0.150 | 0.075 | 1.000 | 15.000 | 0.015 | 0.750 |  |  |  |",
                    "| 4 | 2.0 | 0.450 | 0.225 | 1.000 | 35.000 | 0.035 | 0.292 | 0.750 ± 0.100 | 1.000 | 0.800 |"]
    if plot:
        assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "curve.py"), str(tmp_path / "none.jsonl")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "none.jsonl: no such file" in bad.stderr


def _has_matplotlib() -> bool:
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


def test_recipe_table_pools_prompts_and_seeds(tmp_path):
    """benchmarks/recipe_table.py over two hand-written report.md files. Seed pass@1 0.40 and 0.42 with s.e.
    0.05 each over their prompts: the seeds' spread gives variance 0.0002 (s.e. 0.010, what the table printed
    before), the prompts' mean squared s.e. 0.0025; the larger over 2 seeds: sqrt(0.0025 / 2) = 0.035. The
    change, 0.30 and 0.10 with paired s.e. 0.01 each: spread variance 0.02 beats 0.0001: sqrt(0.02 / 2) = 0.100."""
    head = ("| stage | steps | zero-std groups | pass@1 ± se | Δ pass@1 ± se (vs) | answer_acc | cons@k | language "
            "| format | mean len | entropy | wall s | eval s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for seed, (p, d) in enumerate([(0.40, 0.30), (0.42, 0.10)]):
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "report.md").write_text(
            "# r1 pipeline report\n\n" + head +
            f"| base | - | - | {p - d:.3f} ± 0.040 | - | 0.1 | 0.1 | 1.000 | 0.000 | 40.0 | 0.400 | - | 60 |\n"
            f"| 1 cold_start | 16 | - | {p:.3f} ± 0.050 | {d:+.3f} ± 0.010 (base) | 0.4 | 0.4 | 1.000 | 1.000 | 70.0 "
            "| 0.040 | 60 | 60 |\n")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "recipe_table.py"), "s0", "s1"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    row = next(line for line in out.splitlines() if line.startswith("| 1 cold start"))
    assert row.split(" | ")[1:3] == ["0.410 ± 0.035", "+0.200 ± 0.100 (base)"]
    assert "| s0 | 0.100 | - | 0.400 | - | - | - | 3.0 |" in out                     # 60 + 60 + 60 s
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "recipe_table.py"), "nowhere"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "nowhere: no report.md" in bad.stderr
