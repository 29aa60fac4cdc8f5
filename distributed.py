"""
distributed.py: train.py under torchrun, replicated or sharded (FSDP2). Under one process none of this
touches torch.distributed, and every function here is the identity or its plain equivalent.

    torchrun --nproc-per-node 2 train.py --device cpu ...          # gloo on CPU, NCCL on CUDA
    torchrun --nproc-per-node 2 train.py --fsdp ...                 # weights, gradients, AdamW state sharded
    python -m pytest tests/test_distributed.py -q

What it guarantees: each rank samples and scores its share of the step's prompts (whole groups, so
advantages stay group-local); the loss normaliser and the gradients are summed over ranks, so the update
equals the one-process update of the whole batch (tests/test_distributed.py checks 2 ranks x half the
batch against 1 rank x all of it, replicated and under FSDP, to 1e-6). Rank 0 logs, evaluates and saves,
and the other ranks wait for that without a time limit while rank 0 shows signs of life (Rank0Progress); a rank
that dies, or hangs for --dist-timeout seconds, ends the job.
"""
import gc
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import torch

from model import pick_device

if TYPE_CHECKING:                     # a type name only: train imports this module
    from config import TrainConfig


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    fsdp: bool = False           # weights sharded with FSDP2: gradients are reduce-scattered in backward
    device: torch.device = torch.device("cpu")   # where collectives' tensors live: NCCL takes CUDA tensors only
    progress: "Rank0Progress | None" = None      # set by init_distributed; without it wait_for_rank0 is a barrier

    def sum(self, x: float) -> float:
        """All-reduce SUM of a Python number (a count: the loss normaliser, or a metric's sum), as a float64
        tensor on the rank's device."""
        if self.world == 1:
            return x
        import torch.distributed as dist
        t = torch.tensor([float(x)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item()

    def sum_grads(self, model):
        """Sums every parameter's gradient over ranks, in one flat buffer. This is DDP's all-reduce done
        by hand: the DDP wrapper cannot serve here, because GRPO's scorer runs the model twice per
        backward (prompt pass, completion pass) and calls lm_head outside forward, which its hooks do
        not follow. It sums rather than averages: each rank's loss is already divided by the global
        normaliser."""
        if self.world == 1 or self.fsdp:
            return
        import torch.distributed as dist
        params = [p for p in model.parameters() if p.requires_grad]       # with LoRA, the adapters
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for p, chunk in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = chunk.view_as(p).clone()

    def mean_metrics(self, m: dict) -> dict:
        """Each metric averaged over ranks (every rank holds the same number of rows); *_max are maxed."""
        if self.world == 1:
            return m
        import torch.distributed as dist
        every = [None] * self.world
        dist.all_gather_object(every, m)
        return {k: max(e[k] for e in every) if k.endswith("_max") else sum(e[k] for e in every) / self.world
                for k in m}

    def barrier(self):
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def wait_for_rank0(self):
        """Where rank 0 may have worked alone (evaluated, written a checkpoint): every rank calls it, and the others
        return once rank 0 has called it too, however long that takes (Rank0Progress.wait)."""
        if self.world == 1:
            return
        if self.progress is None:
            self.barrier()
        else:
            self.progress.wait()


class Rank0Progress:
    """How the other ranks wait for rank 0's work alone. A held-out evaluation or a checkpoint of a large model can
    take longer than --dist-timeout (GSM8K evaluation of a 1.5B model on 2 cores: ~300 s per 25 prompts), so the
    wait cannot be a collective, which fails after that timeout. Instead rank 0 counts the wait points it has
    reached in the process group's key-value store, and a thread of rank 0 raises a heartbeat counter there every
    HEARTBEAT_S seconds while the process lives; the other ranks poll both. They wait as long as the heartbeat
    moves, and raise RuntimeError when it has stood still for --dist-timeout seconds (rank 0 hangs, or is stopped).
    A rank that dies ends the job anyway: torchrun stops the others. This keeps every number of the run as one
    process computes it; sharing the evaluation out over the ranks would not cover checkpoint writes."""
    HEARTBEAT_S = 1.0

    def __init__(self, store, rank: int, timeout_s: float):
        self.store, self.rank, self.timeout_s, self.reached = store, rank, timeout_s, 0
        self.stopped = threading.Event()
        if rank == 0:
            beat_store = store.clone()                 # a store object is not to be shared between threads
            threading.Thread(target=self.beat, args=(beat_store,), name="r1-rank0-heartbeat", daemon=True).start()

    def beat(self, store):
        while not self.stopped.wait(self.HEARTBEAT_S):
            try:
                store.add("heartbeat", 1)
            except Exception:                          # the store is gone: the job is ending
                return

    def wait(self):
        self.reached += 1
        if self.rank == 0:
            self.store.add("reached", 1)
            return
        beat, since, pause = None, time.monotonic(), 0.001
        while self.store.add("reached", 0) < self.reached:
            now, seen = time.monotonic(), self.store.add("heartbeat", 0)
            if seen != beat:
                beat, since = seen, now
            elif now - since > self.timeout_s:
                raise RuntimeError(f"rank 0 has shown no sign of life for {self.timeout_s:g} s (--dist-timeout): "
                                   "it died or hangs")
            time.sleep(pause)
            pause = min(2 * pause, 0.1)                # quick when rank 0 is about to arrive, cheap when it is not


_progress: Rank0Progress | None = None     # this process's, made with its process group (pipeline.py trains repeatedly)


def init_distributed(cfg: "TrainConfig") -> tuple[Dist, torch.device]:
    """Under torchrun (WORLD_SIZE > 1): a process group (NCCL on CUDA, gloo on CPU) and this rank's
    device. Otherwise rank 0 of 1 and no torch.distributed at all. Raises ValueError when the step's
    prompts do not split evenly over the ranks, or a rank's LOCAL_RANK names a CUDA device the node lacks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), pick_device(cfg.device)
    import torch.distributed as dist
    if cfg.prompts_per_step % world:
        raise ValueError(f"--prompts-per-step {cfg.prompts_per_step} does not split over {world} ranks")
    device = pick_device(cfg.device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local}: this node has {torch.cuda.device_count()} CUDA device(s); run "
                             "torchrun with --nproc-per-node at most that, or pass --device cpu (gloo)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    global _progress
    if not dist.is_initialized():
        # a rank that died or hangs fails the others' next collective after --dist-timeout (torch's default: 30 min)
        timeout = timedelta(seconds=cfg.dist_timeout)
        store, rank, _ = next(dist.rendezvous("env://", timeout=timeout))     # what init_process_group would make
        store.set_timeout(timeout)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank, world_size=world,
                                timeout=timeout)
        _progress = Rank0Progress(dist.PrefixStore("r1_rank0", store), rank, cfg.dist_timeout)
    return Dist(dist.get_rank(), world, device=device, progress=_progress), device


class StopSignals:
    """SIGTERM (what a scheduler sends before preempting) and SIGINT (Ctrl-C), caught for a with-block: the
    first one only sets `received`, and the training loop stops at its next step boundary (requested), saves
    and exits; a second one ends the process at once (the signal's default action). Outside the main thread
    (where Python cannot install handlers) nothing is caught."""
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received, self.previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def handle(self, signum, frame):
        if self.received is not None:                   # the second signal: die of it now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self.received = signum                          # no print here: a handler may interrupt a print

    def requested(self, dist: "Dist") -> bool:
        """Whether any rank received a signal: ranks must agree, since the checkpoint save is collective under
        FSDP. One all-reduce of a float per step when world > 1 (nothing next to the step's gradients)."""
        stop = self.received is not None
        return dist.sum(float(stop)) > 0 if dist.world > 1 else stop


def close_distributed():
    """Destroys the process group, if one was made, on a run's successful end (every rank has passed the
    last barrier). A process that exits with it alive lets gloo's worker threads outlive the interpreter:
    an occasional "terminate called without an active exception" (SIGABRT) after the run had finished
    (pytorch/pytorch#190489). FSDP-wrapped modules hold the group in reference cycles, so a collection first
    frees them while the group is still alive, and destroying it then drops its last reference here, not in
    the teardown. Not called on an error: a rank still inside a collective would hang it."""
    import torch.distributed as dist
    global _progress
    if _progress is not None:
        _progress.stopped.set()
        _progress = None
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def clip_grad_norm(model, max_norm: float) -> float:
    """Scales the gradients so their global L2 norm is at most max_norm (0 = no clipping); returns the
    norm before clipping. Under FSDP the norm is over all ranks' shards."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm or float("inf"))
    return (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()


def sync_weights(dst, src):
    """Copies the policy's float32 weights into the sampler's (bf16) copy, in place. Under FSDP src's
    parameters are shards: each is all-gathered in turn (a collective: every rank calls this)."""
    with torch.no_grad():
        for d, s in zip(dst.parameters(), src.parameters()):
            d.copy_(s.full_tensor() if hasattr(s, "full_tensor") and not hasattr(d, "full_tensor") else s)


def fsdp_shard(model, device: torch.device, world: int):
    """FSDP2 (torch.distributed.fsdp.fully_shard): each Block, then the rest (embeddings, final norm, LM
    head), becomes one unit whose parameters are split over the ranks along dim 0. A unit's full weights
    exist only while it runs: all-gathered before its forward (and again for its backward), freed after;
    its gradients are reduce-scattered, so each rank keeps 1/world of the weights, gradients and AdamW
    state. Gradients are summed over ranks, not averaged: each rank's loss is already divided by the
    global normaliser. The weights stay float32 and run under the same autocast as without FSDP."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard
    mesh = init_device_mesh(device.type, (world,))
    for block in model.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)         # a plain SUM (gloo has no pre-multiplied sum)
    return model
