"""pipeline.py on the tiny preset (CPU, one thread): every stage writes its outputs and the report, a
re-run skips finished stages without training or sampling, a stage interrupted after its first
checkpoint resumes from it, a re-run with other evaluation settings evaluates again and one with another
task or seed is refused; stage 3 from a stage-2 model that answers right; the pieces (program-written
solutions, rewrite, filters, the judge, the mixed task, the layer-dropped student) checked on their own."""
import importlib.util
import json
import shutil

import pytest
import torch

import pipeline as P
import train
from config import InputError
from model import load_pretrained
from reward import Example, load_task, render_prompt


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = P.make_config("tiny", out=str(tmp_path_factory.mktemp("pipeline") / "out"))
    return cfg, P.run(cfg)


def test_every_stage_writes_its_outputs_and_the_report(tiny_run):
    cfg, results = tiny_run
    assert list(results) == ["base"] + [f"{n} {name}" for n, name in enumerate(P.STAGES)]
    for n, name in enumerate(P.STAGES):
        d = P.stage_dir(cfg, n)
        for f in ("done.json", "summary.md", "eval.json", "eval_records.jsonl", "metrics.jsonl", "config.json"):
            assert (d / f).is_file(), f"{d / f} missing"
        done = json.loads((d / "done.json").read_text())
        assert done["steps"] >= 1 and done["wall_s"] > 0 and 0 <= done["eval"]["pass@1"] <= 1
        assert len(train.list_checkpoints(d)) == 1                   # keep_checkpoints=1
        load_pretrained(P.stage_model(cfg, n), device="cpu")          # the final checkpoint loads
        assert name.split("_")[0].lower() in (d / "summary.md").read_text().lower().replace("-", "")
    assert {(r["eval"]["n"], r["eval"]["k"]) for r in results.values()} == {(cfg.eval_prompts, cfg.eval_k)}
    # the recipe's GRPO steps match R1-Zero's by default
    assert results["0 r1zero"]["steps"] == results["2 reasoning_rl"]["steps"] + results["4 all_scenario_rl"]["steps"]
    lrs = [json.loads((P.stage_dir(cfg, n) / "config.json").read_text())["lr"] for n in (0, 2, 4)]
    assert lrs == [cfg.r1zero_lr, cfg.lr, cfg.all_scenario_lr] and cfg.all_scenario_lr != cfg.lr  # each its own
    # stage 1 built program-written data; stage 3 kept nothing from a random model and fell back to it
    cold = [json.loads(l) for l in open(P.stage_dir(cfg, 1) / "data.jsonl")]
    assert len(cold) == cfg.cold_start_size
    assert all(P.format_reward(r["completion"], cfg.think_prefill) == 1 for r in cold)
    _, tok = load_pretrained("tiny", device="cpu")
    (prompt, completion), = train.tokenize_sft(cold[:1], tok, cfg.template, cfg.think_prefill)
    assert tok.decode(prompt).endswith("<think>") and "<think>" not in tok.decode(completion)   # one, in the prompt
    stats = json.loads((P.stage_dir(cfg, 3) / "data_stats.json").read_text())
    assert stats["fallback"] == "cold-start data" and stats["reasoning"] == len(cold) and stats["general"] > 0
    # stage 4 logged the preference part next to the rule parts; the student has half the layers
    m = [json.loads(l) for l in open(P.stage_dir(cfg, 4) / "metrics.jsonl")]
    assert all(0 < r["preference"] < 1 for r in m)
    assert json.loads((P.stage_dir(cfg, 5) / "student_init" / "config.json").read_text())["num_hidden_layers"] == 1
    report = (P.Path(cfg.out) / "report.md").read_text()
    assert all(f"| {n} {name} |" in report for n, name in enumerate(P.STAGES))
    assert "Recipe (stages 1-4) vs R1-Zero" in report and "| answer_acc |" in report and "| entropy |" in report
    row = next(line for line in report.splitlines() if line.startswith("| 2 reasoning_rl |"))
    assert row.split(" | ")[4].endswith("(1 cold_start)")            # stage 2's change is against stage 1
    assert all(0 <= r["eval"]["entropy"] for r in results.values())
    # the GRPO stages' curves, drawn when matplotlib is installed (tests/requirements.txt installs it)
    has_plt = importlib.util.find_spec("matplotlib") is not None
    assert ("![GRPO stages](curves.png)" in report) == has_plt
    assert (P.Path(cfg.out) / "curves.png").exists() == has_plt


def test_rerun_skips_finished_stages(tiny_run, monkeypatch):
    cfg, first = tiny_run

    def fail(*args, **kwargs):
        raise AssertionError("a finished pipeline trained or sampled again")
    for mod, name in ((train, "train"), (P, "evaluate"), (P, "sample"), (P, "load_pretrained")):
        monkeypatch.setattr(mod, name, fail)
    second = P.run(cfg)
    assert second == json.loads(json.dumps(first))                    # the same results, read back from done.json


def test_interrupted_stage_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    cfg = P.make_config("tiny", out=str(tmp_path / "out"), from_stage=1, until_stage=2, reasoning_steps=3)
    d = P.stage_dir(cfg, 2)
    save = train.save_checkpoint

    class Crash(Exception):
        pass

    def crash_after_first_save(run, step):
        save(run, step)
        if P.Path(run.out_dir) == d:
            raise Crash("after step 1's checkpoint")
    monkeypatch.setattr(train, "save_checkpoint", crash_after_first_save)
    with pytest.raises(Crash):
        P.run(cfg)
    assert (P.stage_dir(cfg, 1) / "done.json").exists() and not (d / "done.json").exists()
    assert [p.name for p in train.list_checkpoints(d)] == ["step_1"]

    monkeypatch.setattr(train, "save_checkpoint", save)
    steps_run = []
    grpo_step = train.grpo_step
    monkeypatch.setattr(train, "grpo_step", lambda run, step: steps_run.append(step) or grpo_step(run, step))
    results = P.run(cfg)
    assert steps_run == [1, 2]                                        # step 0 was not redone
    assert results["2 reasoning_rl"]["steps"] == 3 and (d / "done.json").exists()
    assert [json.loads(l)["step"] for l in open(d / "metrics.jsonl")] == [1, 2, 3]
    assert "0 r1zero" not in results                                  # outside --from-stage, never run


def count_evaluations(monkeypatch) -> list:
    """Wraps pipeline's evaluate so that each call (its n_prompts) is recorded in the returned list."""
    calls, evaluate = [], P.evaluate
    monkeypatch.setattr(P, "evaluate", lambda *a, **kw: calls.append(kw["n_prompts"]) or evaluate(*a, **kw))
    return calls


def test_rerun_with_other_eval_prompts_evaluates_every_row_again(tiny_run, tmp_path, monkeypatch):
    """A finished OUT rerun with --eval-prompts 5 --eval-k 3: the base model and every stage's model are evaluated
    again, on the first 5 held-out prompts, and the report pairs those; a rerun with the same settings reuses them."""
    shutil.copytree(tiny_run[0].out, tmp_path / "out")
    cfg = P.make_config("tiny", out=str(tmp_path / "out"), eval_prompts=5, eval_k=3)
    calls = count_evaluations(monkeypatch)
    results = P.run(cfg)
    assert calls == [5] * 7 and len(results) == 7
    task, (_, tok) = load_task(cfg.task, seed=cfg.seed), load_pretrained("tiny", device="cpu")
    held_out = [render_prompt(task.example("test", i), cfg.template, tok, cfg.think_prefill) for i in range(5)]
    for name, r in results.items():
        assert (r["eval"]["n"], r["eval"]["k"]) == (5, 3), name
        records = [json.loads(line) for line in open(P.eval_dir(cfg, name) / "eval_records.jsonl")]
        assert [rec["prompt"] for rec in records] == held_out, name
        if name != "base":
            done = json.loads((P.eval_dir(cfg, name) / "done.json").read_text())
            assert done["eval"]["n"] == 5 and f"pass@1 {done['eval']['pass@1']:.3f}" in (
                P.eval_dir(cfg, name) / "summary.md").read_text()
    calls.clear()
    assert P.run(cfg) == json.loads(json.dumps(results)) and calls == []


@pytest.mark.parametrize("flag, value", [("seed", 2), ("task", "arith:operands=2,digits=2")])
def test_rerun_with_another_task_or_seed_is_refused(tiny_run, tmp_path, monkeypatch, flag, value):
    """The finished stages were trained and evaluated for one --task and --seed: a rerun with another stops before
    any work, naming each such stage and the setting, and leaves OUT as it was."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run[0].out, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    calls = count_evaluations(monkeypatch)
    with pytest.raises(InputError) as e:                              # one line from the command
        P.run(P.make_config("tiny", out=str(out), **{flag: value}))
    assert calls == []
    assert all(f"stage {n} ({name})" in str(e.value) for n, name in enumerate(P.STAGES))
    assert f"--{flag} {getattr(tiny_run[0], flag)} (this run: {value})" in str(e.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_rejection_sampling_keeps_stage_2s_correct_completions(tmp_path, monkeypatch):
    """Stage 3 from a stage-2 model fine-tuned to answer "3 + 4" prompts (two ways) but not "4 + 4" ones: its SFT
    data holds exactly the sampled completions that the task's grader scores correct and in format, that stopped
    and are readable, each prompt's distinct ones (at most --keep-per-prompt) in sampling order, then the general
    records."""
    task_file = tmp_path / "sums.jsonl"
    P.write_jsonl(task_file, [{"prompt": f"Item {i}: what is {3 + i % 2} + 4?", "answer": str(7 + i % 2)}
                              for i in range(6)])
    task = load_task(f"jsonl:{task_file}", seed=P.TRAIN.seed)
    train_prompts = [task.example("train", i) for i in range(task.size("train"))]      # 3 of 3 + 4, 2 of 4 + 4
    cfg = P.make_config("tiny", out=str(tmp_path / "out"), task=f"jsonl:{task_file}", max_new_tokens=40,
                        rs_prompts=len(train_prompts), samples_per_prompt=8, keep_per_prompt=3, save_every=0)
    solved = [{"prompt": ex.prompt, "completion": f"\n{a} + {b} = 7.\n</think>\n<answer>7</answer>"}
              for ex in train_prompts if ex.answer == "7" for a, b in ((3, 4), (4, 3))]   # after the prefilled <think>
    P.write_jsonl(tmp_path / "solved.jsonl", solved)
    d2 = P.stage_dir(cfg, 2)
    ckpt, _ = P.run_train(cfg, d2, "sft", "tiny", data=str(tmp_path / "solved.jsonl"), epochs=80,
                          prompts_per_step=len(solved), lr=1e-2)
    (d2 / "done.json").write_text(json.dumps({"model": str(ckpt)}))
    rollouts, sample = [], P.sample
    monkeypatch.setattr(P, "sample", lambda *a, **kw: rollouts.append(sample(*a, **kw)) or rollouts[-1])
    P.stage_dir(cfg, 3).mkdir()
    P.stage_rejection_sft(cfg, P.stage_dir(cfg, 3))
    _, tok = load_pretrained("tiny", device="cpu")
    ro, G = rollouts[0], cfg.samples_per_prompt                       # the stage-2 samples (then the general ones)
    texts, expected = ro.texts(tok), []
    for j in range(cfg.rs_prompts):
        ex, kept = task.example("train", P.DATA_OFFSET[3] + j), []
        for text, stopped in zip(texts[j * G:(j + 1) * G], ro.stopped[j * G:(j + 1) * G].tolist()):
            parts = task.reward(ex, text, cfg.think_prefill)[1]
            if (stopped and parts["accuracy"] == parts["format"] == 1 and P.readable(text, cfg)
                    and " ".join(text.split()) not in kept and len(kept) < cfg.keep_per_prompt):
                kept.append(" ".join(text.split()))
                expected.append({"prompt": ex.prompt, "completion": text})
    assert {r["prompt"] for r in expected} == {ex.prompt for ex in train_prompts if ex.answer == "7"}
    data = [json.loads(line) for line in open(P.stage_dir(cfg, 3) / "data.jsonl")]
    stats = json.loads((P.stage_dir(cfg, 3) / "data_stats.json").read_text())
    assert data[:len(expected)] == expected and "fallback" not in stats
    assert stats["kept"] == stats["reasoning"] == len(expected) and len(data) == len(expected) + stats["general"]


@pytest.mark.parametrize("spec", ["arith", "arith:operands=3,digits=2,ops=+-*/", "countdown"])
def test_program_solutions_are_correct_and_in_format(spec):
    task = load_task(spec, seed=1)
    for i in range(40):
        ex = task.example("train", i)
        for short in (False, True):
            text = P.program_solution(ex, spec, short)
            parts = task.reward(ex, text)[1]
            assert parts["accuracy"] == parts["format"] == parts["language"] == 1.0, (ex, text)
            assert P.readable(text, P.make_config())
    assert P.program_solution(Example("What is 2 + 2?", "4"), "gsm8k:x.jsonl") is None


@pytest.mark.parametrize("completion, expected", [
    ("<think>three plus four makes seven here</think> <answer>7</answer>",
     "<think>\nthree plus four makes seven here\n</think>\n<answer>7</answer>"),
    ("Three plus four makes seven, so \\boxed{7}",
     "<think>\nThree plus four makes seven, so\n</think>\n<answer>7</answer>"),
    ("<think>3+4=7</think><answer>7</answer>", None),                 # too short to be a cold-start CoT
    ("I think it is seven or so really", None),                       # no final answer
    ("<think>a b c d e <answer>1</answer></think><answer>7</answer>", None),   # tags inside the reasoning
])
def test_rewrite_into_the_cold_start_format(completion, expected):
    assert P.rewrite(completion) == expected


def test_readability_filters():
    cfg = P.make_config(max_paragraph_chars=40)
    assert P.readable("<think>short</think><answer>1</answer>", cfg)
    assert not P.readable("<think>" + "a " * 25 + "</think>", cfg)            # an over-long paragraph
    assert P.readable("<think>" + "a b\n\n" * 10 + "</think>", cfg)             # many short ones are fine
    assert not P.readable("<think>x\n```py\nprint(1)\n```</think>", cfg)        # code block, not a code task
    assert not P.readable("<think>3 plus 4 是 7</think>", cfg)                   # mixed languages


class StubJudge:
    """Records what it is asked; 'helpful' questions get 0.8, 'harmless' ones 0.4."""
    def __init__(self):
        self.asked = []

    def p_yes(self, question):
        self.asked.append(question)
        return 0.8 if "helpful" in question else 0.4


def test_mixed_task_parts_and_what_the_judge_sees():
    judge = StubJudge()
    mixed = P.MixedTask(load_task("arith"), ["Say hi."], judge, general_every=4)
    kinds = [isinstance(mixed.example("train", i), P.GeneralExample) for i in range(8)]
    assert kinds == [False, False, False, True] * 2
    assert not any(isinstance(mixed.example("test", i), P.GeneralExample) for i in range(8))
    general = mixed.example("train", 3)
    w = dict(accuracy=1, format=1, language=0.5, preference=2)
    total, parts = mixed.reward(general, "<think>SECRET plan</think>\n<answer>Hi there!</answer>", weights=w)
    assert parts == {"accuracy": 0.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 0.0,
                     "preference": pytest.approx(0.6)}
    assert total == pytest.approx(1 + 0.5 + 2 * 0.6)
    helpful, harmless = judge.asked
    assert "Hi there!" in helpful and "SECRET" not in helpful and "<answer>" not in helpful   # the summary only
    assert "SECRET" in harmless                                                               # the whole response
    ex = mixed.example("train", 0)
    total, parts = mixed.reward(ex, f"<think>so {ex.answer}</think> <answer>{ex.answer}</answer>", weights=w)
    assert parts == {"accuracy": 1.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 1.0,
                     "preference": 0.0} and total == 2.5
    assert len(judge.asked) == 2                                      # rule-scored: the judge is not asked


def test_judge_is_yes_renormalised_over_yes_and_no():
    judge = P.Judge("tiny", torch.device("cpu"), torch.float32)
    assert judge.yes == judge.tok.encode("y") and judge.no == judge.tok.encode("n")   # byte tokenizer: first bytes
    q = "Is 2 + 2 = 4? Reply yes or no."
    ids = torch.tensor([judge.tok.encode(judge.tok.render_chat([{"role": "user", "content": q}]) + P.VERDICT_PREFILL)])
    logits = judge.model(ids)[0, -1]
    py, pn = logits.softmax(-1)[judge.yes[0]].item(), logits.softmax(-1)[judge.no[0]].item()
    assert judge.p_yes(q) == pytest.approx(py / (py + pn), rel=1e-5)


def test_layer_dropped_student_keeps_every_other_layer(tmp_path):
    out = P.layer_dropped("tiny", tmp_path / "student")
    base, _ = load_pretrained("tiny", device="cpu")
    student, _ = load_pretrained(out, device="cpu")
    assert student.cfg.n_layer == 1 and base.cfg.n_layer == 2
    torch.testing.assert_close(student.layers[0].state_dict(), base.layers[0].state_dict())
    torch.testing.assert_close(student.embed_tokens.weight, base.embed_tokens.weight)


def test_bad_flags_fail_before_any_work():
    with pytest.raises(ValueError, match="preference"):
        P.make_config(reward_weights="accuracy=1,preference=1")
    with pytest.raises(ValueError, match="from-stage"):
        P.make_config(from_stage=4, until_stage=2)
    with pytest.raises(ValueError, match="preset"):
        P.make_config("huge")
    with pytest.raises(ValueError, match="--group-size 1"):
        P.make_config(group_size=1)
    with pytest.raises(ValueError, match="--clip-delta 1.1"):
        P.make_config(clip_delta=1.1)
    assert P.parse_config(["--preset", "tiny", "--reasoning-steps", "5"]).reasoning_steps == 5
    assert P.parse_config(["--preset", "tiny"]).model == "tiny"


def record_training(monkeypatch) -> list:
    """Replaces train.train by a stub that records each TrainConfig it is given (in the returned list) and leaves a
    step_1 checkpoint for the pipeline to find."""
    seen = []

    def fake_train(tc, task=None):
        seen.append(tc)
        (P.Path(tc.out_dir) / "checkpoints" / "step_1").mkdir(parents=True)
        (P.Path(tc.out_dir) / "checkpoints" / "step_1" / "trainer_state.pt").write_bytes(b"")
    monkeypatch.setattr(train, "train", fake_train)
    return seen


def test_grpo_flags_reach_the_grpo_stages_only(tmp_path, monkeypatch):
    """The objective's flags (GRPO_FLAGS) go to every GRPO stage's train.py run, and not to the SFT stages."""
    cfg = P.parse_config(["--preset", "tiny", "--out", str(tmp_path), "--dynamic-sampling", "--max-sampling-rounds",
                          "2", "--importance-sampling-level", "sequence", "--clip-delta", "3", "--overlong-buffer", "4",
                          "--num-iterations", "2", "--loss-agg", "token_mean", "--temperature", "0.7"])
    seen = record_training(monkeypatch)
    P.run_train(cfg, tmp_path / "grpo", "grpo", "tiny")
    P.run_train(cfg, tmp_path / "sft", "sft", "tiny", data="sft.jsonl")
    grpo, sft = seen
    assert {k: getattr(grpo, k) for k in P.GRPO_FLAGS} == {k: getattr(cfg, k) for k in P.GRPO_FLAGS}
    assert (grpo.dynamic_sampling, grpo.max_sampling_rounds, grpo.importance_sampling_level, grpo.clip_delta,
            grpo.overlong_buffer, grpo.num_iterations, grpo.loss_agg, grpo.temperature) == (
        True, 2, "sequence", 3.0, 4, 2, "token_mean", 0.7)
    assert {k: getattr(sft, k) for k in P.GRPO_FLAGS} == {k: getattr(train.TrainConfig(), k) for k in P.GRPO_FLAGS}


def test_lora_flags_reach_every_training_stage(tmp_path, monkeypatch):
    """LoRA's flags (ALL_STAGE_FLAGS) go to the GRPO and the SFT stages' train.py runs alike."""
    cfg = P.parse_config(["--preset", "tiny", "--out", str(tmp_path), "--lora-rank", "8", "--lora-alpha", "4",
                          "--lora-targets", "q_proj,v_proj"])
    seen = record_training(monkeypatch)
    P.run_train(cfg, tmp_path / "grpo", "grpo", "tiny")
    P.run_train(cfg, tmp_path / "sft", "sft", "tiny", data="sft.jsonl")
    assert set(P.ALL_STAGE_FLAGS) == {"lora_rank", "lora_alpha", "lora_targets"}
    assert [(tc.stage, tc.lora_rank, tc.lora_alpha, tc.lora_targets) for tc in seen] == [
        ("grpo", 8, 4.0, "q_proj,v_proj"), ("sft", 8, 4.0, "q_proj,v_proj")]


def test_defaults_train_each_grpo_stage_as_the_header_states(tmp_path, monkeypatch):
    """With pipeline.py's defaults, train.py is asked for what the header's departures 1, 3 and 8 state: R1-Zero
    at 5e-5 for as many GRPO steps as stages 2 and 4 together, stage 2 at 2e-5, stage 4 at 1e-5, each on
    96-token completions, with R1-Zero's reward weights and language=0.05 added in stages 2 and 4."""
    cfg = P.make_config(out=str(tmp_path), judge="tiny")             # a tiny judge: stage 4 loads no real model
    for n in (1, 3):                                                  # what stages 2 and 4 start from
        P.stage_dir(cfg, n).mkdir(parents=True)
        (P.stage_dir(cfg, n) / "done.json").write_text(json.dumps({"model": "checkpoints/step_1"}))
    seen = record_training(monkeypatch)
    P.stage_r1zero(cfg, P.stage_dir(cfg, 0))
    P.stage_reasoning_rl(cfg, P.stage_dir(cfg, 2))
    P.stage_all_scenario_rl(cfg, P.stage_dir(cfg, 4))
    r1zero = "accuracy=1,format=0.1,tags=0.05,answer=0.5"
    assert [(tc.stage, tc.lr, tc.steps, tc.max_new_tokens, tc.reward_weights) for tc in seen] == [
        ("grpo", 5e-5, 12 + 4, 96, r1zero),
        ("grpo", 2e-5, 12, 96, r1zero + ",language=0.05"),
        ("grpo", 1e-5, 4, 96, r1zero + ",language=0.05,preference=1")]


def test_paired_delta_by_hand(tmp_path):
    """Per-prompt k-sample accuracies of two rows: differences +0.5, 0, +0.25, -0.25 -> mean 0.125, sample std
    sqrt(0.3125 / 3), s.e. that / sqrt(4). Rows evaluated on different prompts are not paired."""
    cfg = P.make_config("tiny", out=str(tmp_path))
    rows = (("base", [0.25, 0.5, 0.0, 1.0]), ("1 cold_start", [0.75, 0.5, 0.25, 0.75]), ("2 reasoning_rl", [0] * 4))
    for name, correct in rows:
        P.eval_dir(cfg, name).mkdir(parents=True)
        prompts = [f"Compute {i + (name == '2 reasoning_rl')}" for i in range(4)]     # stage 2's are shifted by one
        P.write_jsonl(P.eval_dir(cfg, name) / "eval_records.jsonl",
                      [{"prompt": p, "correct": c} for p, c in zip(prompts, correct)])
    mean, se = P.paired_delta(cfg, "1 cold_start", "base")
    assert mean == pytest.approx(0.125)
    assert se == pytest.approx((0.3125 / 3) ** 0.5 / 2)
    with pytest.raises(InputError, match="2 reasoning_rl and 1 cold_start were evaluated on different held-out"):
        P.paired_delta(cfg, "2 reasoning_rl", "1 cold_start")


def test_cold_start_task_builds_the_data_from_its_own_problems(tmp_path):
    """--cold-start-task: the cold start's program-written chains solve that task's problems (two operands
    here), while --task (three operands) is what RL trains on and evaluation measures."""
    cfg = P.make_config("tiny", out=str(tmp_path), task="arith:operands=3,digits=2", cold_start_task="arith:digits=2",
                        cold_start_prompts=0)
    records, stats = P.cold_start_data(cfg)
    assert stats["program"] == len(records) == cfg.cold_start_size
    assert all(r["prompt"].count("+") == 1 for r in records)
    with pytest.raises(ValueError, match="--cold-start-task sums: unknown task"):
        P.make_config("tiny", cold_start_task="sums")


def test_cold_start_short_share():
    """--cold-start-short 0.25: one program-written chain in four states the result in one line, the others
    work in steps (one line per operation and a check)."""
    cfg = P.make_config("tiny", task="arith:operands=3,digits=2", cold_start_prompts=0, cold_start_short=0.25,
                        cold_start_size=8)
    records, _ = P.cold_start_data(cfg)
    lines = [r["completion"].split("</think>")[0].strip().splitlines() for r in records]
    assert [len(x) for x in lines] == [5, 5, 5, 3] * 2
    assert all(x[1].count("+") == 2 and x[1].endswith(x[2].split()[-1]) for x in lines if len(x) == 3)
