"""pipeline.py's GSM8K arms, on tiny random models and tiny GSM8K-format files: the teacher's chains are exactly the
grader-correct, stopped, readable, distinct ones (at most --keep-per-prompt a problem), written once and reused, and
resumed after a stop at the next chunk; --stages 0,5 runs just R1-Zero and distillation, with a teacher row and greedy
columns; a chunked evaluation resumed equals an uninterrupted one; the gsm8k preset's flags parse and validate.
The teacher's sampler is a stub (StubTeacher) whose completions are written by hand, so what must be kept is known."""
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import pipeline as P
import train
from config import InputError, parse_weights
from model import load_pretrained
from reward import load_task
from sample import Rollouts

REPO = Path(__file__).resolve().parents[1]


def write_gsm8k(path, numbers):
    """A GSM8K-format file: problem n's answer is n + n % 3 + 1."""
    P.write_jsonl(path, [{"question": f"Problem {n}: Tom has {n} apples and buys {n % 3 + 1} more. How many now?",
                          "answer": f"{n} + {n % 3 + 1} = {n + n % 3 + 1}\n#### {n + n % 3 + 1}"} for n in numbers])
    return path


@pytest.fixture
def gsm8k(tmp_path):
    """The task spec of a GSM8K-format train file of 8 problems and a test file of 6."""
    train_file, test_file = write_gsm8k(tmp_path / "train.jsonl", range(8)), write_gsm8k(tmp_path / "test.jsonl",
                                                                                        range(100, 106))
    return f"gsm8k:{train_file},test={test_file}"


def config(out, task, **kw):
    """The tiny preset on a GSM8K-format task, the boxed template, a tiny teacher, 8 samples per problem."""
    return P.make_config("tiny", **{**dict(out=str(out), task=task, template="boxed", think_prefill=False,
                                           teacher="tiny", samples_per_prompt=8, keep_per_prompt=2, distill_prompts=6,
                                           chunk_prompts=2), **kw})


def number(question: str) -> int:
    """n of "Problem n: ..."."""
    return int(question.split(":")[0].removeprefix("Problem "))


def candidates(question: str) -> list[tuple[str, bool]]:
    """The 8 (completion, stopped) the stub teacher samples for a problem, in order. Problems n with n % 4 == 3 get
    8 wrong answers. Otherwise 0 and 5 are the ones to keep: 1 repeats 0 but for whitespace, 2 is wrong, 3 was cut at
    the length limit, 4 holds a code block (not readable), 6 has no \\boxed{} answer, 7 is a third correct one (over
    --keep-per-prompt 2)."""
    n = number(question)
    a, b, gold = n, n % 3 + 1, n + n % 3 + 1
    if n % 4 == 3:
        return [(f"Tom has {a} + {b} = {gold + g + 1}. \\boxed{{{gold + g + 1}}}", True) for g in range(8)]
    return [(f"Tom has {a}. Adding {b} gives {gold}.\n\\boxed{{{gold}}}", True),
            (f"Tom has  {a}.  Adding {b} gives {gold}.\n\n\\boxed{{{gold}}}", True),
            (f"Tom has {a}. Adding {b} gives {gold + 1}.\n\\boxed{{{gold + 1}}}", True),
            (f"Tom has {a}. Adding {b} gives {gold}.\n\\boxed{{{gold}}}", False),
            (f"```python\nprint({a} + {b})\n```\nSo \\boxed{{{gold}}}", True),
            (f"{a} plus {b} is {gold}, so the answer is \\boxed{{{gold}}}.", True),
            (f"The answer is {gold}.", True),
            (f"We get {gold}: \\boxed{{{gold}}}", True)]


class StubTeacher:
    """Stands in for pipeline.sample: each prompt's rows are candidates(its question), as Rollouts of byte tokens.
    Records the problems it was asked for (their numbers) in .problems; raises Stop on call number stop_at."""

    class Stop(Exception):
        pass

    def __init__(self, monkeypatch, stop_at=0):
        self.tok, self.problems, self.calls, self.stop_at = load_pretrained("tiny", device="cpu")[1], [], 0, stop_at
        monkeypatch.setattr(P, "sample", self)

    def __call__(self, model, prompts, group_size, max_new_tokens, stop_token_ids=(), pad_id=0, **kw):
        self.calls += 1
        if self.calls == self.stop_at:
            raise self.Stop(f"call {self.calls}")
        rows, stopped = [], []
        for p in prompts:
            text = self.tok.decode(p)
            question = text[text.index("Problem "):]
            self.problems.append(number(question))
            for text, stop in candidates(question)[:group_size]:
                rows.append(self.tok.encode(text) + ([stop_token_ids[0]] if stop else []))
                stopped.append(stop)
        N = max(map(len, rows))
        return Rollouts([list(p) for p in prompts], group_size,
                          torch.tensor([r + [pad_id] * (N - len(r)) for r in rows]), torch.zeros(len(rows), N),
                          torch.tensor([len(r) for r in rows]), torch.tensor(stopped), pad_id)


def expected_chains(cfg) -> list[dict]:
    """By hand (candidates' docstring): candidates 0 and 5 of every train problem n with n % 4 != 3."""
    task, tok = load_task(cfg.task, seed=cfg.seed), load_pretrained("tiny", device="cpu")[1]
    out = []
    for i in range(cfg.distill_prompts):
        ex = task.example("train", i)
        if number(ex.prompt) % 4 != 3:
            out += [dict(index=i, question=ex.prompt, completion=text, gold=ex.answer, tokens=len(tok.encode(text)) + 1,
                         teacher="tiny", temperature=cfg.data_temperature, samples=8, seed=cfg.seed)
                    for text, _ in (candidates(ex.prompt)[0], candidates(ex.prompt)[5])]
    return out


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def build_chains(cfg, d, monkeypatch) -> dict:
    """The stub teacher's chains in d/chains.jsonl and the SFT data in d/data.jsonl; returns the data's stats."""
    StubTeacher(monkeypatch)
    d.mkdir(exist_ok=True)
    return P.build_data(d, lambda: P.teacher_data(cfg, d))


def fail(*args, **kwargs):
    raise AssertionError("called again, where the saved result should have been read")


def test_teacher_chains_are_the_correct_distinct_readable_ones(gsm8k, tmp_path, monkeypatch):
    cfg, d = config(tmp_path / "out", gsm8k), tmp_path / "d"
    stats = build_chains(cfg, d, monkeypatch)
    chains = expected_chains(cfg)
    assert read_jsonl(d / "chains.jsonl") == chains
    assert read_jsonl(d / "data.jsonl") == [{"prompt": c["question"], "completion": c["completion"]} for c in chains]
    good = len(chains) // 2                           # problems with a right answer: 6 correct, 4 readable samples
    assert {k: stats[k] for k in ("problems", "sampled", "correct", "readable", "kept", "examples")} == dict(
        problems=6, sampled=48, correct=6 * good, readable=4 * good, kept=2 * good, examples=2 * good)
    assert stats["mean_tokens"] == pytest.approx(sum(c["tokens"] for c in chains) / len(chains)) and stats["data_s"] > 0


def test_chains_are_sampled_once_and_reused(gsm8k, tmp_path, monkeypatch):
    """A second build of the data samples nothing, with data.jsonl there or not: chains.jsonl is read, not written."""
    cfg, d = config(tmp_path / "out", gsm8k), tmp_path / "d"
    first = build_chains(cfg, d, monkeypatch)
    chains, data = (d / "chains.jsonl").read_bytes(), (d / "data.jsonl").read_bytes()
    mtime = (d / "chains.jsonl").stat().st_mtime_ns
    monkeypatch.setattr(P, "sample", fail)
    monkeypatch.setattr(P, "load_for_sampling", fail)
    assert P.build_data(d, lambda: P.teacher_data(cfg, d)) == first
    (d / "data.jsonl").unlink()
    P.build_data(d, lambda: P.teacher_data(cfg, d))
    assert (d / "data.jsonl").read_bytes() == data and (d / "chains.jsonl").read_bytes() == chains
    assert (d / "chains.jsonl").stat().st_mtime_ns == mtime


def test_stopped_teacher_sampling_resumes_at_the_next_chunk(gsm8k, tmp_path, monkeypatch):
    """Chunks of 2 problems; a stop during the second: the first chunk is kept, and so is nothing of the second, even
    chains of it written before the stop (its progress was not). The rerun samples problems 2-5 once each and ends
    with the chains and counts of an uninterrupted run."""
    cfg, whole = config(tmp_path / "out", gsm8k), tmp_path / "whole"
    build_chains(cfg, whole, monkeypatch)

    d = tmp_path / "d"
    d.mkdir()
    StubTeacher(monkeypatch, stop_at=2)                # one call a chunk: stopped in the second
    with pytest.raises(StubTeacher.Stop):
        P.teacher_data(cfg, d)
    assert json.loads((d / "chains_progress.json").read_text())["problems"] == 2
    assert {c["index"] for c in read_jsonl(d / "chains.jsonl")} <= {0, 1}
    task = load_task(cfg.task, seed=cfg.seed)
    stray = dict(expected_chains(cfg)[0], index=2, question=task.example("train", 2).prompt)
    with open(d / "chains.jsonl", "a") as f:          # chunk 2's chains written, its progress not: a stop in between
        f.write(json.dumps(stray) + "\n")
    stub = StubTeacher(monkeypatch)
    P.teacher_data(cfg, d)
    assert stub.problems == [number(task.example("train", i).prompt) for i in range(2, 6)]
    assert read_jsonl(d / "chains.jsonl") == read_jsonl(whole / "chains.jsonl") == expected_chains(cfg)
    drop = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k != "data_s"}
    assert drop(d / "chains_progress.json") == drop(whole / "chains_progress.json")


def test_chains_of_other_settings_are_refused(gsm8k, tmp_path, monkeypatch):
    cfg, d = config(tmp_path / "out", gsm8k), tmp_path / "d"
    build_chains(cfg, d, monkeypatch)
    with pytest.raises(InputError, match=r"chains.jsonl was sampled with temperature 0.7 \(this run: 0.6\)"):
        P.teacher_data(config(tmp_path / "out", gsm8k, data_temperature=0.6), d)
    with pytest.raises(InputError, match="--distill-prompts 9: .* has 8 train problems"):
        P.teacher_data(config(tmp_path / "out", gsm8k, distill_prompts=9), tmp_path)


def test_stages_0_and_5_with_a_teacher_row_and_greedy_columns(gsm8k, tmp_path, monkeypatch):
    """--stages 0,5 --teacher tiny: the base model, R1-Zero (with its own evaluations at every step), distillation of
    the teacher's chains into the base model itself, and the teacher, every row greedy too, each compared with the
    base row; nothing of stages 1-4. A rerun trains, samples and evaluates nothing."""
    cfg = config(tmp_path / "out", gsm8k, stages="0,5", distill_prompts=4, eval_prompts=3, eval_greedy=True,
                 eval_teacher=True, r1zero_steps=2, r1zero_eval_every=1, r1zero_eval_prompts=2,
                 r1zero_weights="accuracy=1,format=0", max_new_tokens=12)
    StubTeacher(monkeypatch)
    results = P.run(cfg)
    assert list(results) == ["base", "0 r1zero", "5 distill", "teacher"]
    assert not any(P.stage_dir(cfg, n).exists() for n in (1, 2, 3, 4))
    d0, d5 = P.stage_dir(cfg, 0), P.stage_dir(cfg, 5)
    assert json.loads((d0 / "config.json").read_text())["reward_weights"] == "accuracy=1,format=0"
    evals = [r for r in read_jsonl(d0 / "metrics.jsonl") if "eval" in r]
    assert [(r["step"], r["eval"]["n"], r["eval"]["k"]) for r in evals] == [(0, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert json.loads((d5 / "config.json").read_text())["model"] == "tiny" and not (d5 / "student_init").exists()
    assert read_jsonl(d5 / "chains.jsonl") == expected_chains(cfg)
    assert len(read_jsonl(d5 / "data.jsonl")) == json.loads((d5 / "data_stats.json").read_text())["kept"] > 0
    task = load_task(cfg.task, seed=cfg.seed)
    for name, r in results.items():
        for file, k in ((P.RECORDS, 2), (P.GREEDY_RECORDS, 1)):
            records = read_jsonl(P.eval_dir(cfg, name) / file)
            assert [(rec["index"], rec["gold"], len(rec["completions"]), len(rec["answers"])) for rec in records] == [
                (i, task.example("test", i).answer, k, k) for i in range(3)], (name, file)
        g = r["eval"]["greedy"]
        assert (g["n"], g["k"]) == (3, 1) and g["pass@1"] == pytest.approx(sum(
            rec["correct"] for rec in read_jsonl(P.eval_dir(cfg, name) / P.GREEDY_RECORDS)) / 3)
    report = (Path(cfg.out) / "report.md").read_text()
    table = lambda head: {line.split(" | ")[0][2:]: line.split(" | ") for line in report.split(head)[1].split(
        "\n\n")[0].splitlines()[2:]}
    main, greedy = table("| stage | steps |"), table("| stage | greedy ± se |")
    assert list(main) == list(greedy) == list(results)
    for name in ("0 r1zero", "5 distill", "teacher"):
        assert main[name][4].endswith("(base)") and greedy[name][2].endswith("(base)")    # Δ against the base row
    assert main["5 distill"][-3] != "-" and main["0 r1zero"][-3] == "-"                  # data minutes: the teacher's
    spec = importlib.util.spec_from_file_location("recipe_table", REPO / "benchmarks" / "recipe_table.py")
    recipe_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe_table)                                                 # reads the new columns
    rows = recipe_table.read_report(Path(cfg.out) / "report.md")
    assert {k: r["pass1"] for k, r in rows.items()} == pytest.approx(
        {"base": results["base"]["eval"]["pass@1"], 0: results["0 r1zero"]["eval"]["pass@1"],
         5: results["5 distill"]["eval"]["pass@1"]}, abs=5e-4)
    for mod, name in ((train, "train"), (P, "evaluate"), (P, "sample"), (P, "load_pretrained")):
        monkeypatch.setattr(mod, name, fail)
    assert P.run(cfg) == json.loads(json.dumps(results))


class Crash(Exception):
    pass


def test_stopped_evaluation_resumes_at_the_next_chunk(gsm8k, tmp_path, monkeypatch):
    """5 prompts in chunks of 2, sampled (k = 2) then greedy: stopped in the second chunk, the rerun evaluates
    prompts 2-4 and then the greedy ones, and writes what an uninterrupted evaluation wrote; a rerun over 7 prompts
    evaluates only the 2 new ones, and one with nothing left loads no model."""
    cfg = config(tmp_path / "out", gsm8k, eval_prompts=5, eval_k=2, eval_greedy=True, chunk_prompts=2, eval_batch=2)
    whole = P.run_eval(cfg, "tiny", tmp_path / "whole")
    calls, evaluate = [], P.evaluate

    def counted(*a, **kw):
        calls.append((kw["first"], kw["n_prompts"], kw["k"]))
        if len(calls) == stop_at:
            raise Crash
        return evaluate(*a, **kw)
    monkeypatch.setattr(P, "evaluate", counted)
    stop_at, d = 2, tmp_path / "d"
    with pytest.raises(Crash):
        P.run_eval(cfg, "tiny", d)
    calls.clear()
    stop_at = 0
    resumed = P.run_eval(cfg, "tiny", d)
    assert calls == [(2, 2, 2), (4, 1, 2), (0, 2, 1), (2, 2, 1), (4, 1, 1)]
    drop = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    for file in (P.RECORDS, P.GREEDY_RECORDS):
        assert drop(read_jsonl(d / file)) == drop(read_jsonl(tmp_path / "whole" / file))
    assert {k: v for k, v in resumed.items() if k != "eval_s"} == {k: v for k, v in whole.items() if k != "eval_s"}
    records = read_jsonl(d / P.RECORDS)                # the numbers, by hand from the records
    assert resumed["pass@1"] == pytest.approx(sum(r["correct"] for r in records) / 5)
    assert resumed["answer_acc"] == pytest.approx(sum(r["answer_correct"] for r in records) / 5)
    assert resumed["mean_len"] == pytest.approx(sum(sum(r["lengths"]) for r in records) / 10)

    calls.clear()
    more = P.make_config(**{**dataclasses.asdict(cfg), "eval_prompts": 7})
    assert P.run_eval(more, "tiny", d)["n"] == 7 and calls == [(5, 2, 2), (5, 2, 1)]
    assert [r["index"] for r in read_jsonl(d / P.GREEDY_RECORDS)] == list(range(7))
    monkeypatch.setattr(P, "load_for_sampling", fail)
    assert P.run_eval(cfg, "tiny", d)["n"] == 5 and len(read_jsonl(d / P.RECORDS)) == 5


def test_eval_batch_is_whole_batches_and_a_setting(gsm8k, tmp_path, monkeypatch, capsys):
    """--eval-batch 4 with --chunk-prompts 2: chunks of whole batches (4 prompts), sampled 4 prompts together. An
    evaluation that recorded no batch (made before it was recorded: 8) stands for --eval-batch 8, records and eval.json
    alike, and is evaluated again, on its own records' key, for --eval-batch 4."""
    calls, evaluate = [], P.evaluate

    def counted(*a, **kw):
        calls.append((kw["first"], kw["n_prompts"], kw["k"], kw["batch_prompts"]))
        return evaluate(*a, **kw)
    monkeypatch.setattr(P, "evaluate", counted)
    four = config(tmp_path / "out", gsm8k, eval_prompts=5, eval_k=2, eval_batch=4, chunk_prompts=2)
    eight = P.make_config(**{**dataclasses.asdict(four), "eval_batch": 8})
    d = tmp_path / "d"
    P.run_eval(eight, "tiny", d)
    assert calls == [(0, 5, 2, 8)]
    for key in d.glob("*.key.json"):                            # as written before the batch was recorded
        key.write_text(json.dumps({k: v for k, v in json.loads(key.read_text()).items() if k != "batch_prompts"}))
    old = json.loads((d / "eval.json").read_text())
    del old["settings"]["eval_batch"]
    calls.clear()
    assert P.run_eval(eight, "tiny", d)["n"] == 5 and calls == []                    # its records were read
    assert P.up_to_date_eval(eight, "base", old, "tiny", d) is old and calls == []
    P.up_to_date_eval(four, "base", old, "tiny", d)
    assert "--eval-batch 8 (this run: 4)" in capsys.readouterr().out
    assert calls == [(0, 4, 2, 4), (4, 1, 2, 4)]
    assert [r["index"] for r in read_jsonl(d / P.RECORDS)] == list(range(5))


def test_gsm8k_preset_parses_and_validates(tmp_path, monkeypatch):
    """--preset gsm8k from a checkout with ../shared/data beside it (small GSM8K-format files here): the 0.5B student,
    the 1.5B teacher, stages 0 and 5, the boxed template with an accuracy-only R1-Zero reward, every row on the first
    300+ test problems, greedy and k >= 2; no model is loaded."""
    data = tmp_path / "shared" / "data"
    data.mkdir(parents=True)
    write_gsm8k(data / "gsm8k_train.jsonl", range(10))
    write_gsm8k(data / "gsm8k_test.jsonl", range(50, 60))
    (tmp_path / "r1").mkdir()
    monkeypatch.chdir(tmp_path / "r1")
    cfg = P.parse_config(["--preset", "gsm8k"])
    assert (cfg.model, cfg.teacher) == ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
    assert (cfg.template, cfg.think_prefill, P.selected_stages(cfg), cfg.dtype) == ("boxed", False, [0, 5], "auto")
    assert 1e-6 <= cfg.r1zero_lr <= 1e-5 and (cfg.group_size, cfg.prompts_per_step) == (8, 2)
    assert 256 <= cfg.max_new_tokens <= 512 and cfg.eval_prompts >= 300 and cfg.eval_k >= 2 and cfg.eval_greedy
    task = load_task(cfg.task, seed=cfg.seed)
    assert [number(task.example("test", i).prompt) for i in range(3)] == [50, 51, 52]     # the test file's order
    ex, weights = task.example("train", 0), parse_weights(cfg.r1zero_weights)
    assert task.reward(ex, f"So \\boxed{{{ex.answer}}}", weights=weights)[0] == 1.0
    assert task.reward(ex, f"So \\boxed{{{int(ex.answer) + 1}}}", weights=weights)[0] == 0.0
    assert task.reward(ex, f"The answer is {ex.answer}", weights=weights)[0] == 0.0     # no \boxed{}: no answer
    assert P.parse_config(["--preset", "gsm8k", "--stages", "5", "--eval-teacher"]).eval_teacher
    with pytest.raises(ValueError, match="--stages 0,x: expected stage numbers 0-5"):
        P.make_config(stages="0,x")
    with pytest.raises(ValueError, match="--stages 6"):
        P.make_config(stages="6")
    with pytest.raises(ValueError, match="--eval-teacher: no --teacher"):
        P.make_config(eval_teacher=True)
