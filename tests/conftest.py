"""Shared fixtures. `device`: tests that take it run on the CPU and, where one is present, on CUDA
(benchmarks/cuda_check.py runs the suite on a GPU; CI has none). They cover the model (forward, cache,
attention kernels, casts to bf16), the sampler (stop tokens, top-p) and GRPO (the loss, the LM head's
log-probs), each against a reference on the CPU, float64 where rounding matters."""
import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)
