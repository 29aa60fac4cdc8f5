"""
benchmarks/eval_summary.py: one table from the --dump files of an evaluation run in chunks (sample.py
--first-prompt / --dump), every completion scored again with today's grader.

    python benchmarks/eval_summary.py --task gsm8k:TRAIN,test=TEST greedy_*_0.jsonl greedy_*_50.jsonl ...
    python benchmarks/eval_summary.py --task gsm8k:TRAIN,test=TEST out/gsm8k/base/eval_records.jsonl  # pipeline.py's

Either kind of file may be gzip-compressed (.gz: benchmarks/results/gsm8k_arms_zen4/).

Per file and in total: prompts, completions per prompt (k), pass@1 (R1's accuracy reward: \\boxed{}, ####,
<answer>), answer_acc (format-independent: the answer read wherever it is, Task.answer_accuracy), and the
share of prompts whose scores changed from the ones in the file (a grader that changed since the run).
Needs no torch: the completions are in the files.
"""
import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reward import load_task  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help="the task spec the run used (its test split is scored)")
    ap.add_argument("dumps", nargs="+", help="jsonl files written by sample.py --dump")
    args = ap.parse_args()
    task = load_task(args.task)
    total = {"n": 0, "acc": 0.0, "answer": 0.0, "changed": 0}
    indices = set()
    for path in args.dumps:
        n, acc, answer, changed, ks = 0, 0.0, 0.0, 0, set()
        text = gzip.open(path, "rt").read() if path.endswith(".gz") else Path(path).read_text()
        for line in text.splitlines():
            rec = json.loads(line)
            ex = task.example("test", rec["index"])
            if ex.prompt not in rec["prompt"] or ex.answer != rec["gold"]:
                raise ValueError(f"{path}: record {rec['index']} is not test example {rec['index']} of {args.task}")
            if rec["index"] in indices:
                raise ValueError(f"{path}: prompt {rec['index']} was already counted")
            indices.add(rec["index"])
            a = [task.reward(ex, c)[1]["accuracy"] for c in rec["completions"]]
            b = [task.answer_accuracy(ex, c) for c in rec["completions"]]
            k = len(a)
            ks.add(k)
            n, acc, answer = n + 1, acc + sum(a) / k, answer + sum(b) / k
            changed += a != rec["accuracy"] or sum(b) / k != rec["answer_correct"]
        print(f"{path}: n={n} k={sorted(ks)} pass@1={acc / n:.3f} answer_acc={answer / n:.3f} rescored={changed}")
        total = {"n": total["n"] + n, "acc": total["acc"] + acc, "answer": total["answer"] + answer,
                 "changed": total["changed"] + changed}
    n = total["n"]
    print(f"total: n={n} pass@1={total['acc'] / n:.3f} answer_acc={total['answer'] / n:.3f} "
          f"(prompts {min(indices)}..{max(indices)}; {total['changed']} rescored by today's grader)")


if __name__ == "__main__":
    main()
