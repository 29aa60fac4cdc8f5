"""What a run survives, each tried on real processes (tiny model, CPU): flags out of range are refused before
the model loads; a diverged run stops naming the step and the quantity, and never saves non-finite weights;
one run per output folder (a real flock, two real processes); SIGTERM/SIGINT stop at a step boundary with a
checkpoint that resumes exactly, also when the signal comes in the last step (pipeline.py then stops too); a
failed write (a file standing where a folder must be, RLIMIT_FSIZE) stops the run naming the path, the previous
checkpoint intact; a malformed input file ends train.py, sample.py and pipeline.py with one line naming file:line."""
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import config
import pipeline
import sample
import train as T
from checkpoint import checkpoint_damage, list_checkpoints
from metrics import read_metrics
from model import load_pretrained

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "tiny", "--dtype", "float32", "--device", "cpu", "--threads", "1", "--eval-prompts", "0",
        "--group-size", "4", "--prompts-per-step", "2", "--max-new-tokens", "8", "--lr-schedule", "constant",
        "--rollouts-every", "0"]


def train_cmd(out, *args) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *TINY, "--out-dir", str(out), *args]


def run(cmd, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


def wait_for(predicate, timeout=30.0):
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def logged_steps(out) -> int:
    return max([r["step"] for r in read_metrics(Path(out) / "metrics.jsonl") if "loss" in r], default=0)


def without_timings(records):
    return [{k: v for k, v in r.items() if k not in ("step_s", "sample_tok_s")} for r in records]


# --- every numeric flag has a range, documented and checked before the model loads -----------------------------

def out_of_range(spec: str, kind: type) -> list:
    """Values outside spec (">= a", "> a", "[a, b]", "(a, b]", ...), written here apart from config.in_range."""
    if spec.startswith(">"):
        a = float(spec.lstrip(">= "))
        bad = [a - 1] if spec.startswith(">=") else [a, a - 1]
    else:
        lo, hi = (float(x) for x in spec[1:-1].split(","))
        bad = [lo - 1, hi + 1] + ([lo] if spec[0] == "(" else []) + ([hi] if spec[-1] == ")" else [])
    bad = [kind(v) for v in bad if kind is float or v == int(v)]
    return bad + (["nan", "inf"] if kind is float else [])


PARSERS = {"train.py": lambda: (config.build_parser, T.parse_config),
           "pipeline.py": lambda: (pipeline.build_parser, pipeline.parse_config),
           "sample.py": lambda: (sample.build_parser, lambda argv: sample.build_parser().parse_args(argv))}


@pytest.mark.parametrize("script", PARSERS)
def test_every_numeric_flag_has_a_range_checked_before_the_model_loads(script, capsys, monkeypatch):
    """Each int/float flag's help ends with its range, and every value outside it ends the parse (argparse's
    exit, status 2) naming the flag. A new numeric flag without a range fails here."""
    monkeypatch.setattr(T, "load_pretrained", lambda *a, **k: pytest.fail("loaded a model"))
    build, parse = PARSERS[script]()
    actions = [a for a in build()._actions if a.option_strings and a.help != "==SUPPRESS=="
               and (a.type in (int, float) or isinstance(a.type, config.Ranged))]
    assert len(actions) >= 9
    for a in actions:
        assert a.help.rstrip().endswith("]"), f"{script} {a.option_strings}: no [range] at the end of its help"
        spec = a.help[a.help.rindex(" [") + 2:-1]
        kind = a.type.kind if isinstance(a.type, config.Ranged) else a.type
        for value in out_of_range(spec, kind):
            with pytest.raises(SystemExit) as e:
                parse([a.option_strings[-1], str(value)])
            assert e.value.code == 2, (script, a.option_strings, value)
            assert a.option_strings[-1] in capsys.readouterr().err, (script, a.option_strings, value)


def test_negative_clip_eps_and_grad_clip_are_refused_at_once(tmp_path):
    for flag in ("--clip-eps", "--grad-clip"):
        r = run(train_cmd(tmp_path / "out", flag, "-0.1"))
        assert r.returncode == 2 and f"{flag} -0.1: must be" in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()            # nothing started


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_reward_weights_that_are_not_finite_numbers_are_refused_naming_the_flag(value, capsys):
    """float() reads nan and inf, and nan passes every comparison: each reward-weights flag of train.py and
    pipeline.py refuses a weight that is not a finite number (argparse's exit, status 2), naming the flag."""
    for parse, flag in [(T.parse_config, "--reward-weights"), (pipeline.parse_config, "--reward-weights"),
                        (pipeline.parse_config, "--r1zero-weights"), (pipeline.parse_config, "--all-scenario-weights")]:
        with pytest.raises(SystemExit) as e:
            parse([flag, f"accuracy=1,format={value}"])
        assert e.value.code == 2, (flag, value)
        err = capsys.readouterr().err
        assert f"{flag}: 'format={value}' is not name=number (a finite number)" in err, (flag, value, err)


# --- divergence ------------------------------------------------------------------------------------------------

def test_sampler_refuses_non_finite_logits():
    model, tok = load_pretrained("tiny", device="cpu", dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    for top_p in (1.0, 0.9):
        with pytest.raises(FloatingPointError, match="logits are not finite.*the weights may have diverged"):
            sample.sample(model, [[1, 2, 3]], group_size=2, max_new_tokens=4, top_p=top_p)


def test_a_diverging_run_stops_naming_step_and_quantity_and_saves_no_nan(tmp_path):
    out = tmp_path / "out"
    r = run(train_cmd(out, "--lr", "1e30", "--steps", "6", "--save-every", "1", "--eval-prompts", "4"))
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step ") and ("not finite" in last or "is nan" in last or "is inf" in last), last
    assert "out of bounds" not in r.stderr
    for ckpt in list_checkpoints(out):                    # whatever was saved is finite
        model, _ = load_pretrained(ckpt, device="cpu", dtype=torch.float32)
        assert all(bool(p.isfinite().all()) for p in model.parameters()), ckpt


def test_skip_nonfinite_skips_the_update_and_counts_it():
    cfg = config.TrainConfig(skip_nonfinite=True)
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=1.0)
    p.grad = torch.ones(2)
    r = T.Run(cfg, None, torch.nn.Linear(1, 1), opt)
    assert T.optimizer_step(r, float("nan")) == 1 and p.tolist() == [1.0, 1.0]
    assert T.optimizer_step(r, 1.0) == 0 and p.tolist() == [0.0, 0.0]
    r.cfg = config.TrainConfig()
    with pytest.raises(FloatingPointError, match="gradient norm is inf"):
        T.optimizer_step(r, math.inf)


# --- one run per output folder ---------------------------------------------------------------------------------

def test_a_second_run_on_the_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(train_cmd(out, "--steps", "1000"), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: logged_steps(out) >= 1)
        for extra in ([], ["--resume"]):
            t0 = time.time()
            r = run(train_cmd(out, "--steps", "2", *extra))
            assert r.returncode != 0 and f"{out} is in use by another run (PID {first.pid})" in r.stderr, r.stderr
            assert time.time() - t0 < 20
        assert first.poll() is None                       # the first run goes on
    finally:
        first.kill()
        first.wait()
    r = run(train_cmd(out, "--steps", "1", "--resume"))   # killed: the OS dropped its lock
    assert r.returncode == 0, r.stderr[-2000:]


def test_pipeline_refuses_a_folder_in_use(tmp_path):
    """The holder is a plain flock on OUT/.lock with its PID in it, as train.py's run takes it."""
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\nf = open(sys.argv[1], 'w')\n"
                               "fcntl.flock(f, fcntl.LOCK_EX); f.write(f'{os.getpid()}\\n'); f.flush()\n"
                               "print('locked', flush=True); time.sleep(60)", str(tmp_path / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        r = run([sys.executable, str(ROOT / "pipeline.py"), "--preset", "tiny", "--out", str(tmp_path)], timeout=30)
        assert r.returncode != 0 and f"in use by another run (PID {holder.pid})" in r.stderr, r.stderr[-2000:]
    finally:
        holder.kill()
        holder.wait()
    from checkpoint import locked_folder
    with locked_folder(tmp_path / "a"), locked_folder(tmp_path / "a" / "stage"):    # nested folders: no deadlock
        pass


# --- preemption ------------------------------------------------------------------------------------------------

def test_sigterm_saves_the_last_step_and_resume_is_exact(tmp_path):
    args = ["--steps", "5", "--save-every", "100"]
    ref = run(train_cmd(tmp_path / "ref", *args))
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "out"
    p = subprocess.Popen(train_cmd(out, *args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: logged_steps(out) >= 1)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    k = int(stdout.split("stopped by SIGTERM after step ")[1].split(":")[0])
    assert 1 <= k < 5 and [c.name for c in list_checkpoints(out)] == [f"step_{k}"]
    assert logged_steps(out) == k
    r = run(train_cmd(out, *args, "--resume"))
    assert r.returncode == 0 and f"resuming from {out / 'checkpoints' / f'step_{k}'}" in r.stdout, r.stderr[-2000:]
    assert without_timings(read_metrics(out / "metrics.jsonl")) == \
        without_timings(read_metrics(tmp_path / "ref" / "metrics.jsonl"))


def test_a_second_sigint_stops_at_once(tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen(train_cmd(out, "--steps", "100", "--group-size", "8", "--prompts-per-step", "8",
                                   "--max-new-tokens", "64"), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for(lambda: logged_steps(out) >= 1)
    p.send_signal(signal.SIGINT)
    time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    stdout, _ = p.communicate(timeout=30)
    assert p.returncode == -signal.SIGINT and "stopped by" not in stdout



def test_sigterm_stops_the_pipeline_and_its_rerun_resumes_the_stage(tmp_path):
    """pipeline.py passes SIGTERM on: its GRPO stage stops at a step boundary with a checkpoint (exit 143), and
    the rerun resumes that stage from it instead of starting over."""
    out, stage = tmp_path / "pipe", tmp_path / "pipe" / "00_r1zero"

    def pipeline_cmd(steps: int) -> list[str]:
        return [sys.executable, str(ROOT / "pipeline.py"), "--preset", "tiny", "--out", str(out), "--until-stage",
                "0", "--r1zero-steps", str(steps), "--save-every", "100"]
    p = subprocess.Popen(pipeline_cmd(500), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: logged_steps(stage) >= 2, timeout=60)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    k = int(stdout.split("stopped by SIGTERM after step ")[1].split(":")[0])
    assert [c.name for c in list_checkpoints(stage)] == [f"step_{k}"]
    r = run(pipeline_cmd(k + 2), timeout=120)
    assert r.returncode == 0 and f"resuming from {stage / 'checkpoints' / f'step_{k}'}" in r.stdout, r.stderr[-2000:]
    assert [m["step"] for m in read_metrics(stage / "metrics.jsonl") if "loss" in m] == list(range(1, k + 3))

def started_until(p: subprocess.Popen, prefix: str) -> list[str]:
    """The stdout lines of p up to and including the first that starts with prefix (p runs unbuffered)."""
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    pytest.fail(f"{prefix!r} never printed; stderr: {p.stderr.read()[-2000:]}")


UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_sigterm_during_the_last_step_or_the_final_evaluation_stops_the_run(tmp_path):
    """SIGTERM sent as the last step's line is printed (the run then writes its last checkpoint, then evaluates):
    the run ends with 128 + SIGTERM and the stop line, the last step's checkpoint whole."""
    out = tmp_path / "out"
    p = subprocess.Popen(train_cmd(out, "--steps", "2", "--save-every", "100", "--eval-prompts", "32"), cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=UNBUFFERED)
    started_until(p, "step=2/2")
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert f"stopped by SIGTERM after step 2: checkpoint {out / 'checkpoints' / 'step_2'}" in stdout
    assert [c.name for c in list_checkpoints(out)] == ["step_2"] and logged_steps(out) == 2
    assert checkpoint_damage(out / "checkpoints" / "step_2") is None


def test_sigterm_during_a_stages_last_step_stops_the_pipeline_before_the_next_stage(tmp_path):
    """pipeline.py, SIGTERM sent as stage 0's last step is printed: it exits with 128 + SIGTERM, stage 0 not marked
    done and stage 1 not begun."""
    out = tmp_path / "pipe"
    p = subprocess.Popen([sys.executable, str(ROOT / "pipeline.py"), "--preset", "tiny", "--out", str(out),
                          "--until-stage", "1", "--r1zero-steps", "2", "--save-every", "100"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=UNBUFFERED)
    started_until(p, "step=2/2")
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM after step 2" in stdout and "== stage 1" not in stdout
    assert not (out / "00_r1zero" / "done.json").exists()


# --- write failures --------------------------------------------------------------------------------------------

def test_a_file_where_the_rollouts_folder_must_be_stops_the_run_naming_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rollouts").write_text("in the way")
    r = run(train_cmd(out, "--steps", "2", "--rollouts-every", "1"))
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: cannot write {out / 'rollouts'}"), r.stderr[-2000:]


def limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))   # metrics fit, the 380 kB weights do not


def test_a_failed_checkpoint_write_stops_the_run_and_keeps_the_previous_one(tmp_path):
    out = tmp_path / "out"
    assert run(train_cmd(out, "--steps", "2", "--save-every", "1")).returncode == 0
    r = run(train_cmd(out, "--steps", "4", "--save-every", "1", "--resume"), preexec_fn=limit_file_size)
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert f"cannot write the checkpoint {out / 'checkpoints' / 'step_3'}" in last, r.stderr[-2000:]
    assert f"{out / 'checkpoints' / 'step_2'}, is intact" in last
    assert sorted(c.name for c in (out / "checkpoints").iterdir()) == ["step_1", "step_2"]   # no half step_3
    assert checkpoint_damage(out / "checkpoints" / "step_2") is None
    r = run(train_cmd(out, "--steps", "4", "--save-every", "1", "--resume"))
    assert r.returncode == 0 and "resuming from" in r.stdout and "(step 2)" in r.stdout, r.stderr[-2000:]
    assert [c.name for c in list_checkpoints(out)] == ["step_3", "step_4"]
    assert checkpoint_damage(out / "checkpoints" / "step_4") is None
    tiny, _ = load_pretrained("tiny", device="cpu", dtype=torch.float32)
    assert json.loads((out / "checkpoints" / "step_4" / "config.json").read_text()) == tiny.cfg.to_hf()


# --- bad input: one line, no traceback -------------------------------------------------------------------------

def gsm8k_rows(n: int) -> list[str]:
    return [json.dumps({"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"})
            for i in range(n)]


def lines(*rows: str) -> bytes:
    return "".join(row + "\n" for row in rows).encode()


BAD_FILES = {   # name: (the file's bytes, the bad line, what the message says about it)
    "gsm8k_bad_json": (lines(*gsm8k_rows(6), '{"question": "What is 6 + 1?", "answer": "7'), 7, "JSONDecodeError"),
    "gsm8k_no_answer": (lines(*gsm8k_rows(2), json.dumps({"question": "What is 2 + 1?", "answer": "3"})), 3,
                        "answer must end in '#### <number>'"),
    "gsm8k_not_utf8": (lines(*gsm8k_rows(1)) + b'{"question": "\xff", "answer": "#### 1"}\n', 2, "not UTF-8 text"),
    "sft_no_completion": (lines('{"prompt": "a", "completion": "b"}', '{"prompt": "a"}'), 2,
                          "expected {'prompt': str, 'completion': str}"),
    "sft_too_long": (lines(json.dumps({"prompt": "a", "completion": "b"}), "",
                           json.dumps({"prompt": "x" * 2100, "completion": "b"})), 3,
                     "longer than the model's context of 2048 tokens"),
}


def bad_input_cmd(script: str, path: Path, tmp_path: Path) -> list[str]:
    if script == "sample.py":
        return [sys.executable, str(ROOT / "sample.py"), "--model", "tiny", "--device", "cpu", "--dtype", "float32",
                "--task", f"gsm8k:{path}", "--n-prompts", "1", "-k", "1", "--max-new-tokens", "4"]
    if script == "pipeline.py":
        return [sys.executable, str(ROOT / "pipeline.py"), "--preset", "tiny", "--out", str(tmp_path / "pipe"),
                "--from-stage", "1", "--until-stage", "1", "--cold-start-data", str(path)]
    if path.name.startswith("gsm8k"):
        return train_cmd(tmp_path / "out", "--task", f"gsm8k:{path}", "--steps", "1")
    return train_cmd(tmp_path / "out", "--stage", "sft", "--data", str(path), "--template", "raw")


@pytest.mark.parametrize("script, name", [("train.py", name) for name in BAD_FILES]
                         + [("sample.py", "gsm8k_bad_json"), ("pipeline.py", "sft_no_completion")])
def test_bad_input_file_ends_the_command_with_one_error_line(tmp_path, script, name):
    """A malformed data file ends train.py, sample.py and pipeline.py with status 1 and one line on stderr,
    'error: FILE:LINE: what is wrong there', no traceback."""
    content, line, what = BAD_FILES[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(content)
    r = run(bad_input_cmd(script, path, tmp_path), timeout=120)
    assert r.returncode == 1, r.stderr[-3000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]
    assert r.stderr.startswith(f"error: {path}:{line}: ") and what in r.stderr, r.stderr
