"""checkpoint.py on the tiny random model (CPU, float32): a killed save loses nothing, a damaged checkpoint
is reported and the one before it used, a resume with other run-defining flags is refused, checkpoints
load in transformers, and the optimizer state goes through its by-name form (and the format-1 numbered
one) unchanged. That a resumed run logs what the uninterrupted one does is tested in test_train.py."""
import copy
import hashlib
import os

import pytest
import torch

import checkpoint as C
import train as T
from distributed import Dist
from model import load_pretrained
from test_train import LetterTask, config, metric_lines


@pytest.fixture
def letters(monkeypatch):
    monkeypatch.setattr(T, "load_task", lambda spec, seed=0: LetterTask())


def test_killed_save_leaves_the_previous_checkpoint(tmp_path, letters, monkeypatch):
    cfg = config(tmp_path, steps=4, save_every=2)
    real_save = torch.save

    def dies_on_step_4(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("step") == 4:
            raise KeyboardInterrupt("killed during the save")
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", dies_on_step_4)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in C.list_checkpoints(tmp_path / "out")] == ["step_2"]
    T.train(config(tmp_path, steps=4, save_every=2, resume=True))
    assert [p.name for p in C.list_checkpoints(tmp_path / "out")] == ["step_2", "step_4"]


@pytest.mark.parametrize("damage", ["flip a byte of the weights", "truncate the trainer state"])
def test_damaged_newest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, letters, capsys, damage):
    T.train(config(tmp_path, steps=2, save_every=1))
    step_2 = tmp_path / "out" / "checkpoints" / "step_2"
    if damage.startswith("flip"):
        f = step_2 / "model.safetensors"
        data = bytearray(f.read_bytes())
        data[-5] ^= 0xFF
        f.write_bytes(bytes(data))
    else:
        (step_2 / "trainer_state.pt").write_bytes(b"garbage")
        (step_2 / C.MANIFEST).unlink()                 # as a checkpoint from before manifests
    T.train(config(tmp_path, steps=2, save_every=1, resume=True))
    out = capsys.readouterr().out
    assert f"not resuming from {step_2}" in out and "resuming from" in out and "step_1 (step 1)" in out
    assert [r["step"] for r in metric_lines(tmp_path / "out" / "metrics.jsonl")] == [1, 2]
    for ckpt in C.list_checkpoints(tmp_path / "out"):
        assert C.checkpoint_damage(ckpt) is None     # step 2 was written again, whole


def test_resume_refuses_other_run_defining_flags(tmp_path, letters, capsys):
    """--resume with another --group-size is another run: refused, naming the flag, before any work, unless
    --allow-config-change. Stale temporary checkpoint directories (a kill during a save) are removed; a
    finished run says so."""
    T.train(config(tmp_path, steps=1, save_every=1))
    stale = tmp_path / "out" / "checkpoints" / "step_2.tmp-x"
    stale.mkdir()
    with pytest.raises(ValueError, match="--group-size 4 -> 2"):
        T.train(config(tmp_path, steps=2, save_every=1, resume=True, group_size=2))
    assert not stale.exists()
    T.train(config(tmp_path, steps=2, save_every=1, resume=True, group_size=2, allow_config_change=True))
    assert "config change on resume: --group-size 4 -> 2" in capsys.readouterr().out
    T.train(config(tmp_path, steps=1, save_every=1, resume=True, group_size=2))
    assert "nothing to do" in capsys.readouterr().out


def test_checkpoints_without_resume_are_refused(tmp_path, letters):
    T.train(config(tmp_path, steps=1, save_every=1))
    with pytest.raises(SystemExit, match="already holds checkpoints \\(step_1\\); pass --resume"):
        C.resume_state(tmp_path / "out", resume=False, rank=0)
    assert C.resume_state(tmp_path / "elsewhere", resume=True, rank=0) == (None, None)


def test_checkpoint_loads_in_transformers(tmp_path, letters):
    transformers = pytest.importorskip("transformers")
    T.train(config(tmp_path, steps=1))
    ckpt = tmp_path / "out" / "checkpoints" / "step_1"
    ours, _ = load_pretrained(ckpt, device="cpu")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, rtol=1e-4, atol=1e-4)
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    assert state["step"] == 1 and state["config"]["group_size"] == 4


def test_file_digest_over_several_blocks(tmp_path):
    """file_digest reads 1 MiB blocks: a file of 2 MiB + 3 bytes gives hashlib's digest of its whole bytes."""
    data = os.urandom(2 * 2**20 + 3)
    (tmp_path / "f").write_bytes(data)
    assert C.file_digest(tmp_path / "f") == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("saved_as", ["names (format 2)", "numbers (format 1)"])
def test_optimizer_state_round_trips(saved_as):
    """AdamW's state after two steps, saved keyed by parameter name (full_state_dicts) or numbered as
    optimizer.state_dict() does (format 1), loads into a fresh optimizer over a copy of the model: each
    parameter gets its own exp_avg, exp_avg_sq and step back, matched by name."""
    model, _ = load_pretrained("tiny", device="cpu")
    model.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    weights, by_name = C.full_state_dicts(model, opt, Dist())
    assert set(by_name["state"]) == {n for n, _ in model.named_parameters()}
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    saved = by_name if saved_as.startswith("names") else copy.deepcopy(opt.state_dict())
    fresh = copy.deepcopy(model)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    C.load_optimizer_state(fresh, fresh_opt, saved, Dist())
    params = dict(model.named_parameters())
    for name, p in fresh.named_parameters():
        want, got = opt.state[params[name]], fresh_opt.state[p]
        assert set(got) == set(want), name
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=name)
