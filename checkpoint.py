"""
checkpoint.py: train.py's checkpoints. OUT/checkpoints/step_N/ holds the policy as Hugging Face files
(config.json, model.safetensors, the tokenizer: loadable by model.load_pretrained and by transformers) or, with
--lora-rank, as an adapter directory (the adapters and the base model's identity: model.save_pretrained),
trainer_state.pt (step, config, optimizer state, RNG states, the reference model after a reset) and
manifest.json (each file's size and SHA-256).

    python -m pytest tests/test_checkpoint.py -q

What it guarantees:
  1. a save is atomic: written into a temporary directory renamed to step_N only when complete, so a
     crash at any moment leaves the previous checkpoints whole (a leftover step_N.tmp-* is removed at start)
  2. a damaged checkpoint (a file missing, of another size or checksum than its manifest says) is
     reported by path and the one before it resumed from
  3. the optimizer state is keyed by parameter name, so any number of ranks, sharded (FSDP) or not,
     resume from any checkpoint; format-1 checkpoints (numbered by position) still load
  4. a resume whose run-defining flags differ from the checkpoint's is refused, naming the flags
  5. one run per output folder: a run holds OUT/.lock (flock, released by the OS however the process
     ends) and a second run on the folder is refused, naming the holder's PID (locked_folder)
  6. a write that fails (no space, a read-only or vanished folder) stops the run naming the path, the
     previous checkpoint intact (WriteFailed); weights that are not finite are never saved
Exact resume (the resumed run logs what the uninterrupted one does) is tested in tests/test_train.py.
"""
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError

from model import save_pretrained

if TYPE_CHECKING:                     # type names only: train imports this module
    from distributed import Dist
    from config import TrainConfig
    from train import Run

MANIFEST = "manifest.json"       # each file of a checkpoint: its size and SHA-256, checked before resuming
LOCK = ".lock"                   # OUT/.lock: held (flock) by the run writing into OUT, holds its PID


class WriteFailed(OSError):
    """A file of the run could not be written (no space left, a read-only or vanished folder, a file where a
    folder must be); the message names the path. The run stops: what it wrote before stays whole."""


@contextlib.contextmanager
def writing(path: Path):
    """Turns a failed write of path (OSError) into WriteFailed naming the path."""
    try:
        yield
    except OSError as e:
        if isinstance(e, WriteFailed):
            raise
        raise WriteFailed(f"cannot write {path}: {e.strerror or e}") from e


@contextlib.contextmanager
def locked_folder(out_dir: Path, take: bool = True):
    """Holds an exclusive lock on out_dir (flock on OUT/.lock) for the with-block: one run per output folder.
    The OS drops the lock when the process ends, however it ends, so a killed run leaves none behind. Under
    torchrun only rank 0 takes it (take=False elsewhere): rank 0 does all the writing. Locks on different
    files do not interact, so pipeline.py (OUT/.lock) runs its stages (OUT/NN_name/.lock) in one process.
    Raises SystemExit naming the folder and the holder's PID when another process holds it, WriteFailed when
    the folder cannot be made or written."""
    if not take:
        yield
        return
    path = out_dir / LOCK
    with writing(path):
        out_dir.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise SystemExit(f"{out_dir} is in use by another run (PID {holder}); wait for it to end, stop it, "
                             "or choose another output folder") from None
        with writing(path):
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
        yield
    finally:
        f.close()                # releases the lock


def save_checkpoint(run: "Run", step: int):
    """Writes OUT/checkpoints/step_N atomically (the header's point 1), then removes all but the newest
    --keep-checkpoints. The reference model is saved only when it is no longer the initial model (after a
    --ref-reset-every reset). Every rank calls this (under FSDP the full tensors are gathered from all of
    them); rank 0 writes."""
    cfg, dist = run.cfg, run.dist
    if dist.rank != 0 and not dist.fsdp:
        return
    weights, opt_state = full_state_dicts(run.policy, run.optimizer, dist)
    reference = None if run.ref_is_initial else run.reference
    ref_weights = full_state_dicts(reference, None, dist)[0] if reference is not None else None
    if dist.rank != 0:
        return
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:                      # a diverged model is never saved over the last good one
        raise FloatingPointError(f"step {step}: not saving a checkpoint, the weights are not finite ({bad[0]}, "
                                 f"{len(bad)} tensors): the run has diverged; {run.out_dir} keeps the last good one")
    ckpt_root = run.out_dir / "checkpoints"
    final, tmp = ckpt_root / f"step_{step}", None
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"step_{step}.tmp-", dir=ckpt_root))
        save_pretrained(run.policy, run.tok, tmp / "hf", state_dict=weights)   # its own temp+rename inside ours
        for f in (tmp / "hf").iterdir():
            os.replace(f, tmp / f.name)
        (tmp / "hf").rmdir()
        state = {"format": 2, "step": step, "config": dataclasses.asdict(cfg), "optimizer": opt_state,
                 "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}, "reference": ref_weights}
        torch.save(state, tmp / "trainer_state.pt")
        (tmp / MANIFEST).write_text(json.dumps({f.name: file_digest(f) for f in sorted(tmp.iterdir())}, indent=1))
        shutil.rmtree(final, ignore_errors=True)          # only when re-saving the same step
        os.replace(tmp, final)
    except (OSError, RuntimeError, SafetensorError) as e:   # torch.save reports a failed write as RuntimeError
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        last = list_checkpoints(run.out_dir)
        raise WriteFailed(f"cannot write the checkpoint {final} ({e}); "
                          f"{'the last one, ' + str(last[-1]) + ', is intact' if last else 'no previous one exists'}"
                          ) from e
    if cfg.keep_checkpoints:
        for old in list_checkpoints(run.out_dir)[:-cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)


def stop_after(run: "Run", step: int, saved: bool, signum: int | None):
    """Ends a run that received SIGTERM/SIGINT at step's boundary: a checkpoint of step unless the loop just
    wrote one, then one line, then SystemExit(128 + signum), as a shell reports a process the signal killed.
    Under torchrun no rank exits before rank 0 has written it (torchrun stops the others when one exits).
    Metrics lines are written (closed) as they are logged, so nothing is left to flush."""
    if not saved:
        save_checkpoint(run, step)
        run.dist.wait_for_rank0()
    signum = signum or signal.SIGTERM                 # a rank that did not receive it stops with the one that did
    if run.dist.rank == 0:
        print(f"stopped by {signal.Signals(signum).name} after step {step}: checkpoint "
              f"{run.out_dir / 'checkpoints' / f'step_{step}'}; run again with --resume to continue", flush=True)
    raise SystemExit(128 + signum)


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints (step_N with a trainer_state.pt), oldest first."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith("step_") and p.name[5:].isdigit()
            and (p / "trainer_state.pt").exists()]
    return sorted(done, key=lambda p: int(p.name[5:]))


def resume_state(out_dir: Path, resume: bool, rank: int) -> tuple[dict | None, Path | None]:
    """The trainer state and path of the checkpoint a run starts from: (None, None) for a fresh run. Rank 0
    first removes the temporary directories a kill during a save left behind. Raises SystemExit when out_dir
    holds checkpoints and resume is False (they would be overwritten), or when none of them is whole."""
    if rank == 0:
        for stale in (out_dir / "checkpoints").glob("step_*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    ckpts = list_checkpoints(out_dir)
    if ckpts and not resume:
        raise SystemExit(f"{out_dir} already holds checkpoints ({ckpts[-1].name}); pass --resume to continue "
                         "or choose another --out-dir")
    return load_newest_intact(ckpts) if ckpts else (None, None)


def restore_trainer_state(state: dict, model, optimizer, dist: "Dist"):
    """Puts a resumed trainer state's optimizer state into optimizer and its RNG states into torch and
    random: what save_checkpoint wrote besides the weights (the model loads from the checkpoint's files)."""
    load_optimizer_state(model, optimizer, state["optimizer"], dist)
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])


def file_digest(path: Path) -> dict:
    """{"size": bytes, "sha256": hex digest} of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def checkpoint_damage(ckpt: Path) -> str | None:
    """Why a checkpoint cannot be trusted (a file missing, of another size or checksum than its manifest
    says), or None. Checkpoints written before manifests existed are taken as they are."""
    manifest = ckpt / MANIFEST
    if not manifest.exists():
        return None
    try:
        expected = json.loads(manifest.read_text())
    except (OSError, ValueError) as e:
        return f"{manifest} unreadable ({e})"
    for name, want in expected.items():
        f = ckpt / name
        if not f.exists():
            return f"{f} missing"
        if f.stat().st_size != want["size"]:
            return f"{f} is {f.stat().st_size} bytes, the manifest says {want['size']}"
        if file_digest(f)["sha256"] != want["sha256"]:
            return f"{f} does not match its checksum"
    return None


def load_newest_intact(ckpts: list[Path]) -> tuple[dict, Path]:
    """The trainer state of the newest checkpoint that is whole, and its path: a damaged one is reported
    by path and the one before it tried. Raises SystemExit when none is whole."""
    for ckpt in reversed(ckpts):
        why = checkpoint_damage(ckpt)
        if why is None:
            try:
                return torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False), ckpt
            except Exception as e:       # torch raises several types for truncated or garbage files
                why = f"{ckpt / 'trainer_state.pt'} unreadable ({type(e).__name__}: {e})"
        print(f"warning: not resuming from {ckpt}: {why}")
    raise SystemExit(f"no intact checkpoint among {[c.name for c in ckpts]} to resume from (see the warnings); "
                     "remove them to start over, or choose another --out-dir")


# the flags whose change turns a resumed run into another run (the data, the objective, the sampling)
RUN_DEFINING = ("stage", "model", "task", "data", "template", "think_prefill", "group_size", "prompts_per_step",
                "max_new_tokens", "temperature", "top_p", "beta", "clip_eps", "clip_eps_high", "num_iterations",
                "loss_agg", "scale_rewards", "reward_weights", "mask_truncated", "seed", "clip_delta",
                "importance_sampling_level", "overlong_buffer", "overlong_penalty", "dynamic_sampling",
                "max_sampling_rounds", "lora_rank", "lora_alpha", "lora_targets")


def check_resumed_config(cfg: "TrainConfig", saved: dict, ckpt: Path):
    """Refuses (ValueError naming the fields) to resume a checkpoint whose run-defining flags differ from
    these, unless --allow-config-change, which prints the changes instead."""
    changed = [f"--{k.replace('_', '-')} {saved[k]!r} -> {getattr(cfg, k)!r}" for k in RUN_DEFINING
               if k in saved and saved[k] != getattr(cfg, k)]
    if changed and not cfg.allow_config_change:
        raise ValueError(f"{ckpt} was trained with other flags: {'; '.join(changed)}. Resume with the "
                         "checkpoint's flags, choose another --out-dir, or pass --allow-config-change")
    for change in changed:
        print(f"config change on resume: {change}")


def full_state_dicts(model, optimizer, dist: "Dist") -> tuple[dict, dict | None]:
    """The model's full float tensors on the CPU, and the optimizer state keyed by parameter name
    ({"state": {name: {...}}, "param_groups": [{..., "params": [names]}]}). Under FSDP both are
    gathered from the shards (a collective: every rank calls it; rank 0 receives them)."""
    if dist.fsdp:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(model, options=full),
                get_optimizer_state_dict(model, optimizer, options=full) if optimizer is not None else None)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if optimizer is None:
        return weights, None
    return weights, rekey_optimizer_state(optimizer.state_dict(), trained_names(model))


def trained_names(model) -> list[str]:
    """The names of the parameters the optimizer holds (all of them; with LoRA, the adapters), in the order
    optimizer.state_dict() numbers them."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def rekey_optimizer_state(state: dict, keys: dict | list) -> dict:
    """An optimizer state dict with every parameter key k (in "state" and in each group's "params")
    replaced by keys[k]: numbers -> names with keys = the parameter names in order, names -> numbers
    with keys = {name: number}."""
    return {"state": {keys[k]: s for k, s in state["state"].items()},
            "param_groups": [{**g, "params": [keys[k] for k in g["params"]]} for g in state["param_groups"]]}


def load_optimizer_state(model, optimizer, state: dict, dist: "Dist"):
    """Inverse of full_state_dicts' optimizer part (also takes format-1 checkpoints, numbered by position)."""
    names = trained_names(model)
    if all(isinstance(k, int) for k in state["state"]):     # format 1: numbered like optimizer.state_dict()
        state = rekey_optimizer_state(state, names)
    if dist.fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(rekey_optimizer_state(state, {n: i for i, n in enumerate(names)}))
