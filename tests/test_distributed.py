"""distributed.py: train.py under torch.distributed on CPU (gloo; --device cpu, also where CUDA is present): 2
ranks x half the batch give the same update as 1 rank x the whole batch, replicated or sharded (FSDP2), and a
2-process torchrun run completes, checkpoints once and resumes, also with --fsdp and from a sharded run into a
single process; the sampler's weight copy (sync_weights) is the policy's, rounded; rank 0 evaluating alone for
longer than --dist-timeout does not end the job, a dead or hung rank does."""
import contextlib
import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import distributed as D
import train as T
from checkpoint import full_state_dicts, list_checkpoints
from grpo import LOSS_AGGS
from model import load_pretrained
from test_train import LetterTask, config

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def update(cfg, batch, dist=D.Dist()):
    """One policy_update with plain SGD at lr 1, no clipping: the weights move by exactly the gradient
    (Adam's first step is ~lr*sign(g), which would amplify rounding-level differences). Returns the
    full weights (gathered from the shards under FSDP)."""
    policy, _ = load_pretrained("tiny", device="cpu")
    policy.requires_grad_(True)
    reference, _ = load_pretrained("tiny", device="cpu")
    with torch.no_grad():                       # move the reference away, so the KL term has a gradient
        for p in reference.parameters():
            p.mul_(0.9)
    if dist.fsdp:
        D.fsdp_shard(policy, torch.device("cpu"), dist.world)
        D.fsdp_shard(reference.requires_grad_(False), torch.device("cpu"), dist.world)
    opt = torch.optim.SGD(policy.parameters(), lr=1.0)
    T.policy_update(T.Run(cfg, None, policy, opt, reference=reference, dist=dist), batch)
    return {k: v.clone() for k, v in full_state_dicts(policy, None, dist)[0].items()}


def half(batch, rank: int, P: int, G: int):
    p, b = slice(rank * P // 2, (rank + 1) * P // 2), slice(rank * P * G // 2, (rank + 1) * P * G // 2)
    return T.RolloutBatch(batch.examples[p], batch.texts[b], batch.scored[b], batch.rewards[b], batch.advantages[b],
                          batch.prompt_ids[p], batch.prompt_mask[p], batch.completion_ids[b], batch.completion_mask[b],
                          batch.loss_mask[b], batch.lengths[b], batch.stopped[b], 0.0)


def worker(rank, port, cfg, batch, out, fsdp):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        weights = update(cfg, half(batch, rank, cfg.prompts_per_step, cfg.group_size), D.Dist(rank, 2, fsdp))
        if rank == 0:
            torch.save(weights, out)
        dist.barrier()      # no rank tears gloo down while the other still runs (an occasional SIGABRT)
    finally:
        D.close_distributed()
    os._exit(0)             # skip the interpreter's teardown, where gloo's threads can still abort (SIGABRT)


@pytest.mark.parametrize("loss_agg, fsdp", [(agg, False) for agg in LOSS_AGGS] + [("seq_mean_token_mean", True),
                                                                                 ("token_mean", True)])
def test_two_ranks_update_like_one(tmp_path, loss_agg, fsdp):
    cfg = config(tmp_path, prompts_per_step=4, group_size=4, max_new_tokens=6, beta=0.1, micro_batch_size=4,
                 loss_agg=loss_agg, grad_clip=0.0)
    policy, tok = load_pretrained("tiny", device="cpu")
    batch = T.collect_rollouts(T.Run(cfg, tok, policy, task=LetterTask()), 0)
    # rows of different lengths, so that per-rank and global normalisers differ
    batch.completion_mask[::3, 4:] = False
    batch.loss_mask = batch.completion_mask.clone()
    one = update(cfg, batch)
    mp.spawn(worker, args=(free_port(), cfg, batch, tmp_path / "two.pt", fsdp), nprocs=2, join=True)
    two = torch.load(tmp_path / "two.pt")
    start, _ = load_pretrained("tiny", device="cpu")
    moved = max((one[k] - v).abs().max().item() for k, v in start.state_dict().items())
    assert moved > 1e-3                                       # the update did something
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_torchrun_run_checkpoints_once_and_resumes(tmp_path):
    out = tmp_path / "run"

    def torchrun(*flags, nproc=2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(free_port()), str(REPO / "train.py"), "--model", "tiny", "--out-dir", str(out), "--dtype", "float32",
               "--device", "cpu", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4",
               "--eval-prompts", "2", "--eval-k", "2", "--save-every", "1", "--threads", "1", *flags]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout
    first = torchrun("--steps", "2")
    assert "ranks=2" in first and first.count("config:") == 1            # only rank 0 prints
    assert [p.name for p in list_checkpoints(out)] == ["step_1", "step_2"]
    torchrun("--steps", "3", "--resume")
    assert [p.name for p in list_checkpoints(out)] == ["step_2", "step_3"]
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if "eval" not in l]
    assert steps == [1, 2, 3]                                             # one line per step, rank 0's


@pytest.mark.slow
def test_torchrun_fsdp_run_checkpoints_and_resumes_on_one_process(tmp_path):
    """--fsdp: a 2-rank sharded run writes full checkpoints (loadable as a plain model) and a single
    process resumes from them, parameter-name-keyed optimizer state included."""
    out = tmp_path / "run"

    def run(*flags, nproc):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(free_port()), str(REPO / "train.py"), "--model", "tiny", "--out-dir", str(out), "--dtype",
               "bfloat16",
               "--device", "cpu", "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "16", "--threads",
               "1", "--eval-prompts", "2", "--eval-k", "2", "--eval-every", "1", "--save-every", "1", *flags]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout
    # the language-consistency share varies over random byte soup, so every group has a gradient
    first = run("--steps", "2", "--fsdp", "--ref-reset-every", "1", "--reward-weights", "language=1", nproc=2)
    assert "ranks=2" in first and first.count("eval step=") == 3          # start, after step 1, end
    assert [p.name for p in list_checkpoints(out)] == ["step_1", "step_2"]
    model, _ = load_pretrained(out / "checkpoints" / "step_2", device="cpu")
    start, _ = load_pretrained("tiny", device="cpu")
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters()))   # it trained
    state = torch.load(out / "checkpoints" / "step_2" / "trainer_state.pt", weights_only=False)
    assert state["reference"] is not None and "embed_tokens.weight" in state["optimizer"]["state"]
    run("--steps", "3", "--resume", "--ref-reset-every", "1", "--reward-weights", "language=1", nproc=1)
    assert [p.name for p in list_checkpoints(out)] == ["step_2", "step_3"]


def test_close_distributed_destroys_the_process_group(tmp_path):
    """train.py and pipeline.py end by destroying the process group: a process that exits with its gloo
    group alive can abort after its run had finished (the torchrun runs above then fail now and then)."""
    import torch.distributed as dist
    D.close_distributed()                                   # without a group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    D.close_distributed()
    assert not dist.is_initialized()


def test_torchrun_with_more_ranks_than_gpus_is_refused(monkeypatch):
    """A rank whose LOCAL_RANK names a GPU the node lacks gets a message, not CUDA's 'invalid device ordinal'."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(D, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="LOCAL_RANK 1: this node has 1 CUDA device"):
        D.init_distributed(T.TrainConfig(prompts_per_step=2))


def test_sync_weights_refills_the_sampler_with_the_current_policy():
    """sync_weights fills the bf16 sampler (train.py's: an empty_model of the policy's config) with the policy's
    current weights rounded to bf16, in place, the tied LM head still tied."""
    from model import empty_model
    policy, _ = load_pretrained("tiny", device="cpu")
    sampler = empty_model(policy.cfg, "cpu", torch.bfloat16).requires_grad_(False)
    D.sync_weights(sampler, policy)
    assert all(torch.equal(s, p.to(torch.bfloat16)) for s, p in zip(sampler.parameters(), policy.parameters()))
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)                                             # an update happened meanwhile
    D.sync_weights(sampler, policy)
    for (n, s), p in zip(sampler.named_parameters(), policy.parameters()):
        assert s.dtype == torch.bfloat16 and torch.equal(s, p.to(torch.bfloat16)), n
    assert sampler.lm_head.weight is sampler.embed_tokens.weight


def test_collectives_take_tensors_on_the_ranks_device(device, monkeypatch):
    """NCCL, the CUDA ranks' backend, refuses CPU tensors: every tensor Dist hands to a collective lives on
    the rank's device (recorded through a stand-in all_reduce that sums over one rank)."""
    import torch.distributed as dist
    seen = []
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: seen.append(t.device))
    d = D.Dist(rank=0, world=2, device=device)
    assert d.sum(3.0) == 3.0
    model = torch.nn.Linear(2, 2).to(device)
    model(torch.ones(1, 2, device=device)).sum().backward()
    d.sum_grads(model)
    assert len(seen) == 2 and all(s.type == device.type for s in seen), seen


def test_rope_frequencies_stay_float32_under_fsdp(tmp_path):
    """A model sharded by fsdp_shard and then cast to bf16 keeps RoPE's inv_freq float32 (model.Transformer._apply),
    as the unsharded sampler does: rounded to bf16, positions far into a completion rotate by wrong angles."""
    import torch.distributed as dist
    from model import rope_inv_freq
    def check():                                # its FSDP module is garbage once it returns (close_distributed)
        sharded = D.fsdp_shard(load_pretrained("tiny", device="cpu")[0], torch.device("cpu"), 1).to(torch.bfloat16)
        assert sharded.inv_freq.dtype == torch.float32
        assert torch.equal(sharded.inv_freq, rope_inv_freq(sharded.cfg))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        check()
    finally:
        D.close_distributed()


def rank_pid(tag: str, rank: int) -> int | None:
    """The PID of the torchrun worker of this rank whose environment carries R1_TEST_TAG=tag."""
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"R1_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env and proc.name.isdigit():
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_dead_or_hung_rank_ends_the_job_and_it_resumes(tmp_path, how):
    """A rank killed (SIGKILL) or hung (SIGSTOP) mid-run: the job ends with an error within a minute
    (--dist-timeout 10 for the hung one, instead of torch's 30-minute default), and a rerun with --resume
    continues from the last checkpoint."""
    import signal
    import time
    out, tag = tmp_path / "run", f"{tmp_path}-{how}"

    def torchrun(*flags):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(REPO / "train.py"), "--model", "tiny", "--out-dir", str(out), "--dtype",
               "float32", "--device", "cpu", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4",
               "--eval-prompts", "0", "--save-every", "1", "--threads", "1", "--dist-timeout", "10", *flags]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "R1_TEST_TAG": tag}
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)

    job = torchrun("--steps", "1000")
    deadline = time.time() + 120
    while len(list_checkpoints(out)) < 2:
        assert job.poll() is None and time.time() < deadline, job.communicate()[1][-3000:]
        time.sleep(0.1)
    victim = rank_pid(tag, 1)
    assert victim is not None
    os.kill(victim, getattr(signal, how))
    start = time.time()
    try:
        _, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    assert job.returncode != 0 and time.time() - start < 60, stderr[-3000:]
    last = int(list_checkpoints(out)[-1].name.split("_")[1])
    resumed = torchrun("--steps", str(last + 1), "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert list_checkpoints(out)[-1].name == f"step_{last + 1}"


SLOW_FIRST_EVALUATION = """\
import os, runpy, sys, time
sys.path.insert(0, sys.argv.pop(1))
import sample
evaluate, calls = sample.evaluate, []


def slow_evaluate(*args, **kwargs):        # rank 0's first held-out evaluation outlasts --dist-timeout
    if not calls and os.environ["RANK"] == "0":
        time.sleep(float(os.environ["R1_TEST_EVAL_SLEEP_S"]))
    calls.append(1)
    return evaluate(*args, **kwargs)


sample.evaluate = slow_evaluate            # train.py imports it from sample as it starts
sys.argv[0] = os.path.join(sys.path[0], "train.py")
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_rank0_evaluating_longer_than_the_dist_timeout_does_not_end_the_job(tmp_path):
    """2 ranks, --dist-timeout 5, rank 0's start evaluation taking 8 s (train.py run with sample.evaluate wrapped
    to sleep first on rank 0): rank 1 waits for it however long it takes, and the job ends with status 0."""
    (tmp_path / "slow_eval.py").write_text(SLOW_FIRST_EVALUATION)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(tmp_path / "slow_eval.py"), str(REPO), "--model", "tiny", "--out-dir", str(out), "--dtype", "float32",
           "--device", "cpu", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4",
           "--eval-prompts", "2", "--eval-k", "2", "--steps", "1", "--threads", "1", "--dist-timeout", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "R1_TEST_EVAL_SLEEP_S": "8"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "eval step=0 start" in r.stdout and "eval step=1 end" in r.stdout
    assert [p.name for p in list_checkpoints(out)] == ["step_1"]
