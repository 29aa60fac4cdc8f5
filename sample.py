"""
sample.py: G completions for each of P prompts with a KV cache (GRPO's rollouts), and evaluation as
the DeepSeek-R1 paper reports it (pass@1 over k samples, cons@k by majority vote).

    python sample.py --prompt "What is 12 * 7?" --chat -G 4 --max-new-tokens 64   # print 4 samples
    python sample.py --task arith --n-prompts 50 -k 4                             # pass@1=...±... cons@4=...
    python -m pytest tests/test_sample.py -q                                      # oracle, parity, stopping
    python benchmarks/sample_vs_hf.py                                             # tokens/s vs transformers

How a batch is sampled:
  1. The P prompts are left-padded into one (P, L) batch and prefilled once. Their cache rows are then
     repeated G times (KVCache.select_rows), so a prompt's keys/values are computed once, not G times.
  2. Decoding runs B = P*G rows one token per step over a cache preallocated for L + max_new_tokens
     slots. A row that emits a stop token is finished: its later positions hold pad_id with log-prob 0.
     Every CHECK_EVERY steps (one host sync; on CUDA a sync per step would stall the queue) the loop
     ends if every row has finished, and drops finished rows from the batch (compaction) once at least
     a quarter of it has finished. Not under compile=True, which replays the decode step from CUDA graphs
     (CUDAGraphStep) and needs a fixed batch size. A float32 model on the CPU decodes with its weights packed
     for MKL's GEMM (packed_linears), the same numbers up to rounding.
  3. Randomness: each row draws its max_new_tokens uniforms u up front from its own torch.Generator,
     seeded from (seed, the prompt's token ids, which occurrence of that prompt in the batch it is,
     the row's index within its group). A token is drawn by inverse CDF, the first token whose
     cumulative probability exceeds u. So a row's completion does not depend on which other prompts
     share the batch, nor on compaction (up to floating-point differences between batch shapes), and
     the G rows of a group use different draws.
  4. Log-probs are those of the sampled token under softmax(logits / temperature) over the FULL
     vocabulary, in float32: the distribution GRPO scores (grpo.token_logprobs). With top_k / top_p the
     token is drawn from the truncated, renormalised distribution, but the log-prob reported is still
     the untruncated one. temperature 0 is greedy (argmax), with log-probs at temperature 1.

Left out: continuous batching (rows that finish leave the batch, but no new prompt takes their place),
speculative decoding, paged attention, repetition penalties, beam search.
"""
import argparse
import collections
import contextlib
import hashlib
import math
from dataclasses import dataclass

import torch

CHECK_EVERY = 8        # decode steps between checks for finished rows (each check is a host sync)
COMPACT_AT = 0.75      # compact the batch when live rows <= this fraction of the rows in it
PACKED_WEIGHTS = True  # float32 on a CPU with MKL: decode matmuls from packed weights (packed_linears)


@dataclass
class Rollouts:
    """P prompts x G completions; rows g*G .. g*G+G-1 belong to prompt g. N = longest completion.
    tokens:   (B, N) int64 completion ids, pad_id after each row's end
    logprobs: (B, N) float32 log-prob of each sampled token under softmax(logits / temperature)
              (full vocabulary, see the header), 0 at padding
    lengths:  (B,) int64 completion lengths, the stop token included
    stopped:  (B,) bool, True = ended on a stop token, False = ran to max_new_tokens
    Ordinary tensors on the model's device (made outside inference mode, so autograd may save them).
    Every mask below comes from lengths, never from token values: a stop token equal to pad_id is
    still a completion token (the policy must learn to stop)."""
    prompts: list[list[int]]
    group_size: int
    tokens: torch.Tensor
    logprobs: torch.Tensor
    lengths: torch.Tensor
    stopped: torch.Tensor
    pad_id: int

    def prompt_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The P prompts left-padded: prompt_ids (P, L) int64 (pad_id at padding) and prompt_mask (P, L)
        bool. With completion_mask(), the layout of grpo.group_token_logprobs."""
        L, dev = max(map(len, self.prompts)), self.tokens.device
        ids = torch.tensor([[self.pad_id] * (L - len(p)) + p for p in self.prompts], device=dev)
        mask = torch.tensor([[False] * (L - len(p)) + [True] * len(p) for p in self.prompts], device=dev)
        return ids, mask

    def completion_mask(self) -> torch.Tensor:
        """(B, N) bool, True at the first lengths[i] positions of row i."""
        return torch.arange(self.tokens.size(1), device=self.tokens.device)[None, :] < self.lengths[:, None]

    def training_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row as one sequence [left padding | prompt | completion | right padding], the layout of
        grpo.token_logprobs: input_ids (B, L + N) int64 (pad_id at padding), attention_mask and
        completion_mask (B, L + N) bool."""
        ids, mask = (t.repeat_interleave(self.group_size, 0) for t in self.prompt_batch())   # (B, L)
        comp = self.completion_mask()                                                        # (B, N)
        return (torch.cat((ids, self.tokens), 1), torch.cat((mask, comp), 1),
                torch.cat((torch.zeros_like(mask), comp), 1))

    def old_logprobs(self) -> torch.Tensor:
        """(B, L + N) float32 aligned with training_batch()'s input_ids, as grpo.token_logprobs returns
        them: position t holds log p(ids[t] | ids[:t]) for completion tokens, 0 elsewhere."""
        L = max(map(len, self.prompts))
        return torch.cat((self.logprobs.new_zeros(self.tokens.size(0), L), self.logprobs), 1)

    def texts(self, tokenizer) -> list[str]:
        """Each row's completion as text, without its stop token or other special tokens."""
        ends = (self.lengths - self.stopped.long()).tolist()
        return [tokenizer.decode(row[:n], skip_special_tokens=True) for row, n in zip(self.tokens.tolist(), ends)]


def row_generators(prompts: list[list[int]], group_size: int, seed: int) -> list[torch.Generator]:
    """One CPU generator per row, seeded from (seed, prompt ids, occurrence of the prompt so far, row
    index within the group) by BLAKE2b, never from the row's position in the batch (header point 3)."""
    seen, gens = collections.Counter(), []
    for p in prompts:
        key = tuple(p)
        for j in range(group_size):
            text = f"{seed}|{seen[key]}|{j}|{','.join(map(str, p))}".encode()
            row_seed = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
            gens.append(torch.Generator().manual_seed(row_seed))
        seen[key] += 1
    return gens


def sample_token(logits, u, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
    """logits: (B, V) any float dtype; u: (B,) float32 uniforms in [0, 1).
    Returns tokens (B,) int64 and their log-probs (B,) float32 under softmax(logits / temperature) over
    all V tokens, top_k / top_p notwithstanding (temperature 1 when temperature == 0, which takes the
    argmax and ignores u). Inverse CDF: the first token whose cumulative probability exceeds u."""
    z = logits.float()                                                         # (B, V)
    if temperature == 0:
        tok = z.argmax(-1)
        return tok, z.gather(1, tok[:, None])[:, 0] - z.logsumexp(-1)
    z = z / temperature if temperature != 1 else z
    m = z.amax(-1, keepdim=True)                                               # (B, 1)
    probs = (z - m).exp_()                                                     # unnormalised, in (0, 1]
    total = probs.sum(-1, keepdim=True)                                        # (B, 1)
    ids = None
    if top_k > 0:
        probs, ids = probs.topk(min(top_k, probs.size(-1)), dim=-1)            # sorted, most likely first
    if top_p < 1.0:
        mass = top_p * probs.sum(-1, keepdim=True)                             # top_p of what top-k kept
        if ids is None:
            # On CPU, sort only the most likely tokens, widening until every row's nucleus fits: a full
            # sort of V = 49k probabilities costs ~45 ms at B = 32 on 2 cores, more than a decode step.
            # Elsewhere sort all V at once (each widening check would be a host sync).
            V = probs.size(-1)
            k = 64 if probs.is_cpu else V
            while True:
                top, ids = probs.topk(min(k, V), dim=-1)
                if k >= V or (top.sum(-1, keepdim=True) >= mass).all():
                    break
                k *= 8
            probs = top
        # keep the smallest most-likely-first prefix reaching the mass (as transformers and vLLM do:
        # top-k, renormalise, then top-p); the most likely token always stays
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= mass, 0.0)
    cdf = probs.cumsum_(-1)                                                    # in place: probs is a temporary
    end = cdf[:, -1:]
    # x < end strictly, so the first cdf entry above x always belongs to a token of nonzero probability
    x = torch.minimum(u[:, None].to(cdf.device) * end, end.nextafter(torch.zeros_like(end)))
    # non-finite logits make the cdf NaN and j = V (out of range): clamped, that row's log-prob is NaN, which
    # sample() reports once at the end (a host sync per step here would cost more than the check)
    j = torch.searchsorted(cdf, x, right=True).clamp_(max=cdf.size(-1) - 1)   # (B, 1)
    tok = (j if ids is None else ids.gather(1, j))[:, 0]
    return tok, (z.gather(1, tok[:, None]) - m - total.log())[:, 0]


class PackedLinear:
    """An nn.Linear's forward through MKL's packed sgemm (cblas_sgemm_pack / _compute, torch.ops.mkl._mkl_linear,
    the kernel torch.compile's CPU backend uses for frozen float32 linears). x: (..., in_features) float32 ->
    (..., out_features) float32. The weight is packed for one number of rows M = x's leading dims multiplied,
    and packed again when M changes (the batch was compacted). The numbers are F.linear's up to rounding
    (tests/test_sample.py::test_packed_linear_is_the_linear_map)."""

    def __init__(self, linear: torch.nn.Linear):
        self.linear, self.rows, self.packed = linear, None, None

    def __call__(self, x):
        w = self.linear.weight
        x2 = x.reshape(-1, x.size(-1))
        M = x2.size(0)
        if M != self.rows:
            self.rows, self.packed = M, torch.ops.mkl._mkl_reorder_linear_weight(w, M)
        return torch.ops.mkl._mkl_linear(x2, self.packed, w, self.linear.bias, M).view(*x.shape[:-1], w.size(0))


@contextlib.contextmanager
def packed_linears(model):
    """A speed measure, apart from the algorithm: inside the block, every nn.Linear of a float32 model on a
    CPU with MKL runs as PackedLinear; elsewhere (bf16, CUDA, no MKL, PACKED_WEIGHTS False) a no-op. The packed
    copies (as many bytes as the weights) live only inside the block, so weights changed by an optimiser step
    in between are packed afresh. Measured: benchmarks/README.md, "CPU: the sampler's decode step"."""
    w = model.embed_tokens.weight
    on = PACKED_WEIGHTS and w.is_cpu and w.dtype == torch.float32 and torch.backends.mkl.is_available()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)] if on else []
    for m in linears:
        m.forward = PackedLinear(m)
    try:
        yield
    finally:
        for m in linears:
            del m.forward


@torch.inference_mode()
def sample(model, prompts: list[list[int]], group_size: int, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, top_k: int = 0, stop_token_ids=(), pad_id: int = 0, seed: int = 0,
           compile: bool = False) -> Rollouts:
    """prompts: P lists of token ids (lengths may differ, none empty). Returns Rollouts with B = P *
    group_size rows, completions at most max_new_tokens long; stop_token_ids=() samples every row to
    full length. Device and dtype are the model's. compile=True replays each decode step (forward and
    sampling) from a CUDA graph (CUDAGraphStep): the same kernels as without it, so the same tokens and
    log-probs, minus the per-kernel launch cost; compaction is off so the batch keeps its shape.
    Raises ValueError for an empty prompt list or prompt, a bad temperature / top_p / top_k, or compile=True
    with a model that is not on CUDA; config.InputError (a ValueError) for a prompt that leaves no room for
    max_new_tokens in the model's context; FloatingPointError when the model's logits are not finite (diverged
    weights)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("sample needs at least one prompt, and no empty prompt")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or group_size < 1 or max_new_tokens < 1:
        raise ValueError(f"temperature={temperature} (>= 0), top_p={top_p} (in (0, 1]), top_k={top_k} (>= 0), "
                         f"group_size={group_size} and max_new_tokens={max_new_tokens} (>= 1)")
    device = model.embed_tokens.weight.device
    if compile and device.type != "cuda":
        raise ValueError(f"compile=True captures the decode step in CUDA graphs; the model is on {device}, "
                         "where it runs eagerly (drop --compile)")
    P, G, N, L = len(prompts), group_size, max_new_tokens, max(map(len, prompts))
    context = getattr(getattr(model, "cfg", None), "max_seq_len", None)
    if context is not None and L + N > context:
        from config import InputError
        raise InputError(f"a prompt of {L} tokens + max_new_tokens={N} exceeds the model's context of {context} "
                         "positions (max_position_embeddings)")
    B = P * G
    u = torch.stack([torch.rand(N, generator=g) for g in row_generators(prompts, G, seed)]).to(device)   # (B, N)
    stop_ids = torch.tensor(sorted(set(stop_token_ids)), dtype=torch.long, device=device)

    # 1. prefill the P prompts once (left-padded), then share each prompt's cache with its G rows
    ids = torch.tensor([[pad_id] * (L - len(p)) + list(p) for p in prompts], device=device)        # (P, L)
    real = torch.tensor([[False] * (L - len(p)) + [True] * len(p) for p in prompts], device=device)
    cache = model.new_kv_cache(P, L + N)
    hidden = model(ids, attention_mask=real, kv_cache=cache, return_hidden=True)                  # (P, L, C)
    logits = model.lm_head(hidden[:, -1]).repeat_interleave(G, 0)                                 # (B, V)
    cache.select_rows(torch.arange(P, device=device).repeat_interleave(G))

    def step(tok, u_t):     # one decode step: (b,) last tokens and (b,) uniforms -> next tokens, log-probs
        logits = model(tok[:, None], kv_cache=cache)[:, -1]                                      # (b, V)
        return sample_token(logits, u_t, temperature, top_p, top_k)
    if compile:
        step = CUDAGraphStep(step, cache, B)

    # 2. decode; `live` maps batch rows to output rows, and shrinks when the batch is compacted
    tokens = torch.full((B, N), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, N, dtype=torch.float32, device=device)
    lengths = torch.full((B,), N, dtype=torch.long, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)
    live, done = torch.arange(B, device=device), torch.zeros(B, dtype=torch.bool, device=device)
    tok, lp = sample_token(logits, u[:, 0], temperature, top_p, top_k)
    with packed_linears(model):                                                  # float32 CPU: MKL-packed weights
        for t in range(N):
            if t > 0:
                tok, lp = step(tok, u[live, t])
            tokens[live, t] = tok.masked_fill(done, pad_id)
            logprobs[live, t] = lp.masked_fill(done, 0.0)
            ends = ~done & torch.isin(tok, stop_ids)                                # (b,) rows ending now
            lengths[live] = torch.where(ends, t + 1, lengths[live])
            stopped[live] |= ends
            done = done | ends
            if len(stop_ids) and (t + 1) % CHECK_EVERY == 0 and t < N - 1:
                n_live = int((~done).sum())                                         # host sync
                if n_live == 0:
                    break
                if not compile and n_live <= COMPACT_AT * len(live):
                    keep = (~done).nonzero()[:, 0]
                    cache.select_rows(keep)
                    live, done, tok = live[keep], done[keep], tok[keep]
    if not bool(logprobs.isfinite().all()):
        raise FloatingPointError("sample: the logits are not finite (NaN or inf): the weights may have diverged")
    n = int(lengths.max())
    with torch.inference_mode(False):   # ordinary tensors out: autograd refuses to save inference tensors
        out = [t.clone() for t in (tokens[:, :n], logprobs[:, :n], lengths, stopped)]
    return Rollouts([list(p) for p in prompts], G, *out, pad_id)


class CUDAGraphStep:
    """A decode step step(tok, u_t) -> (tok, logprob), each (B,), replayed from CUDA graphs. On CUDA a
    decode step of a small model is hundreds of short kernels, and launching them from Python costs more
    than running them; a graph launches them all at once (gpt-fast and nanochat do the same with
    torch.compile's "reduce-overhead"). A graph replays fixed kernels on fixed addresses, so:
      - inputs are copied into static buffers, and the outputs are static buffers overwritten by the next
        call (sample() copies them out at once);
      - the step may not depend on Python state that changes: the KV cache writes at its device-side
        `slot` and reads the first cache.width(1) slots, which changes every cache.bucket positions, so
        there is one graph per width, captured the first time that width is reached (capture records
        the kernels without running them; the Python side of the step, e.g. cache.pos += 1, runs once
        then, and is undone here).
    The kernels are the ones the eager step launches for the same width, so tokens and log-probs equal
    the eager ones exactly (benchmarks/cuda_check.py checks it). The graphs share one memory pool; what
    they allocate lives as long as this object."""

    def __init__(self, step, cache, B: int):
        self.step, self.cache = step, cache
        device = cache.slot.device
        self.tok = torch.zeros(B, dtype=torch.long, device=device)
        self.u = torch.zeros(B, dtype=torch.float32, device=device)
        self.graphs, self.pool = {}, torch.cuda.graph_pool_handle()

    def __call__(self, tok, u_t):
        cache = self.cache
        self.tok.copy_(tok)
        self.u.copy_(u_t)
        S = cache.width(1)
        if S not in self.graphs:
            self.graphs[S] = self.capture()
        graph, out = self.graphs[S]
        graph.replay()
        cache.pos += 1               # what the step's Python did at capture; its device state moved in the graph
        return out

    def capture(self):
        """Warm-up run on a side stream (lazy initialisations may not happen during capture), state
        restored, then capture; returns (graph, static outputs)."""
        cache = self.cache
        pos, slot, lengths = cache.pos, cache.slot.clone(), cache.lengths.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.step(self.tok, self.u)        # writes slot `pos` of the cache, which the real step rewrites
        torch.cuda.current_stream().wait_stream(stream)
        cache.slot.copy_(slot)                 # undo the warm-up's advance
        cache.lengths.copy_(lengths)
        cache.pos = pos
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.step(self.tok, self.u)
        cache.pos = pos                        # the capture ran the step's Python once, its kernels not at all
        return graph, out


@torch.inference_mode()
def sample_naive(model, prompts: list[list[int]], group_size: int, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, stop_token_ids=(), pad_id: int = 0, seed: int = 0) -> Rollouts:
    """The test oracle for sample(): same arguments, same Rollouts, computed one row at a time by re-running
    the full forward pass over prompt + completion so far for every token (no cache, padding, batching
    or compaction). Takes the same uniforms, so it returns the same tokens. O(N^2) forwards: tests only."""
    device, G, N = model.embed_tokens.weight.device, group_size, max_new_tokens
    B = len(prompts) * G
    tokens, logprobs = torch.full((B, N), pad_id, dtype=torch.long), torch.zeros(B, N)
    lengths, stopped = torch.full((B,), N, dtype=torch.long), torch.zeros(B, dtype=torch.bool)
    for b, gen in enumerate(row_generators(prompts, G, seed)):
        u, seq = torch.rand(N, generator=gen), list(prompts[b // G])
        for t in range(N):
            logits = model(torch.tensor([seq], device=device))[:, -1]                 # (1, V)
            tok, lp = sample_token(logits, u[t:t + 1], temperature, top_p, top_k)
            tokens[b, t], logprobs[b, t] = tok.item(), lp.item()
            seq.append(tok.item())
            if tok.item() in stop_token_ids:
                lengths[b], stopped[b] = t + 1, True
                break
    n = int(lengths.max())
    return Rollouts([list(p) for p in prompts], G, tokens[:, :n], logprobs[:, :n], lengths, stopped, pad_id)


# -----------------------------------------------------------------------------
# Evaluation (DeepSeek-R1 §3: pass@1 from k samples at temperature 0.6, top-p 0.95; cons@k by majority vote)


def majority_vote(answers: list[str | None]) -> int | None:
    """Index of the first completion carrying the most common non-None answer; ties go to the answer
    that appears first in sample order. None when no completion has an answer."""
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)


def evaluate(model, tokenizer, task, n_prompts: int, k: int, template: str = "r1zero", think_prefilled: bool = False,
             max_new_tokens: int = 512, temperature: float = 0.6, top_p: float = 0.95, seed: int = 0,
             batch_prompts: int = 8, first: int = 0) -> dict:
    """Samples k completions for each of the held-out prompts task.example("test", i),
    first <= i < first + n_prompts (first > 0: a long evaluation run in chunks), and scores them with
    task.reward (its parts["accuracy"] in [0, 1]). Returns summarize(records, temperature), the numbers below, with
    "records": one dict per prompt (index i, prompt text, gold, completions, answers, accuracy, correct, answer_correct,
    voted answer, cons_correct, and lengths, stopped and surprisal for the numbers) for dumping.
      pass@1     mean over prompts of the per-prompt mean accuracy of the k samples
      pass@1_se  its standard error: std over prompts (n-1 denominator) of the per-prompt means / sqrt(n);
                 0 when n = 1. (It does not include the sampling noise within a prompt separately.)
      cons@k     share of prompts whose majority answer (task.extract over the k completions, majority_vote)
                 is correct: the first completion that carries it scores accuracy 1. For tasks whose accuracy
                 is a function of the extracted answer (all but code) that is the same as scoring the answer.
      answer_acc format-independent pass@1: the same mean of task.answer_accuracy (the answer read wherever
                 it is, e.g. the last number for arithmetic), so a run shows what the model knows apart from
                 the tags; a task without answer_accuracy reports its accuracy here
      mean_len   mean completion length in tokens (stop token included); truncated: share of completions
                 that hit max_new_tokens; n, k.
      entropy    the model's token entropy over its completions, nats per token, estimated at no cost by the mean
                 surprisal -log p of the sampled tokens under softmax(logits / temperature) of the full vocabulary
                 (unbiased at top_p = 1; top-p sampling keeps to the likelier tokens, so it reads lower there).
                 Near 0: a collapsed policy that samples one completion per prompt. NaN at temperature 0.
    Rows are seeded per prompt (see sample), so batch_prompts changes speed and memory, not results."""
    from reward import render_prompt
    if n_prompts < 1 or k < 1:
        raise ValueError(f"n_prompts={n_prompts} and k={k} must be >= 1")
    examples = [task.example("test", i) for i in range(first, first + n_prompts)]
    texts = [render_prompt(ex, template, tokenizer, think_prefilled) for ex in examples]
    records = []
    for s in range(0, n_prompts, batch_prompts):
        ro = sample(model, [tokenizer.encode(t) for t in texts[s:s + batch_prompts]], k, max_new_tokens,
                    temperature=temperature, top_p=top_p, stop_token_ids=tokenizer.stop_ids,
                    pad_id=tokenizer.pad_id, seed=seed)
        surprisal = (-ro.logprobs * ro.completion_mask()).sum(1).view(-1, k).sum(1).tolist()     # (prompts,)
        completions = ro.texts(tokenizer)
        for j, ex in enumerate(examples[s:s + batch_prompts]):
            comps, rows = completions[j * k:(j + 1) * k], slice(j * k, (j + 1) * k)
            acc = [task.reward(ex, c, think_prefilled)[1]["accuracy"] for c in comps]
            lenient = [task.answer_accuracy(ex, c) for c in comps] if hasattr(task, "answer_accuracy") else acc
            answers = [task.extract(c) for c in comps]
            vote = majority_vote(answers)
            records.append(dict(index=first + s + j, prompt=texts[s + j], gold=ex.answer, completions=comps,
                                answers=answers, accuracy=acc, correct=sum(acc) / k, answer_correct=sum(lenient) / k,
                                voted=None if vote is None else answers[vote],
                                cons_correct=vote is not None and acc[vote] == 1.0,
                                lengths=ro.lengths[rows].tolist(), stopped=ro.stopped[rows].tolist(),
                                surprisal=surprisal[j]))
    return {**summarize(records, temperature), "records": records}


def summarize(records: list[dict], temperature: float) -> dict:
    """evaluate's numbers (pass@1, pass@1_se, cons@k, answer_acc, mean_len, truncated, entropy, n, k: see there) from
    its per-prompt records, so the records of an evaluation run in chunks, put together, give the numbers one run over
    all their prompts would. Raises ValueError for no records."""
    if not records:
        raise ValueError("summarize needs at least one record")
    n, k = len(records), len(records[0]["completions"])
    per_prompt = [r["correct"] for r in records]
    mean = sum(per_prompt) / n
    var = sum((c - mean) ** 2 for c in per_prompt) / (n - 1) if n > 1 else 0.0
    lens, stopped = [x for r in records for x in r["lengths"]], [x for r in records for x in r["stopped"]]
    return {"pass@1": mean, "pass@1_se": math.sqrt(var / n),
            "cons@k": sum(r["cons_correct"] for r in records) / n,
            "answer_acc": sum(r["answer_correct"] for r in records) / n,
            "mean_len": sum(lens) / len(lens), "truncated": 1 - sum(stopped) / len(stopped),
            "entropy": sum(r["surprisal"] for r in records) / sum(lens) if temperature > 0 else math.nan,
            "n": n, "k": k}


# -----------------------------------------------------------------------------
# CLI


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA, and on CPUs with native bf16 matmuls (AVX512-BF16 / AMX: several times faster than
    float32 there, see benchmarks/sample_vs_hf.py); float32 on other CPUs, where bf16 is emulated and slow."""
    if device.type == "cuda":
        return torch.bfloat16
    bf16_ok = (device.type == "cpu" and torch.backends.mkldnn.is_available()
               and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return torch.bfloat16 if bf16_ok else torch.float32


def build_parser() -> argparse.ArgumentParser:
    """sample.py's flags; each number's range is in its help and checked as the flag is parsed."""
    from config import Ranged
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="SmolLM2-135M-Instruct",
                    help="HF directory, LoRA checkpoint (merged on load), .gguf file, preset (tiny) or the default "
                         "model's name")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="weights and activations; auto = bfloat16 on CUDA and on CPUs with native bf16, else float32")
    ap.add_argument("--prompt", default=None, help="sample completions of this text (ignored with --task)")
    ap.add_argument("--chat", action="store_true", help="render --prompt as a user message in the model's chat format")
    ap.add_argument("-G", "--group-size", type=Ranged(int, ">= 1"), default=4, help="completions per --prompt [>= 1]")
    ap.add_argument("--task", default=None,
                    help="evaluate on a reward.py task instead, e.g. arith, countdown, gsm8k:PATH")
    ap.add_argument("--n-prompts", type=Ranged(int, ">= 1"), default=50,
                    help="held-out prompts to evaluate (task.example('test', i), i < N) [>= 1]")
    ap.add_argument("-k", type=Ranged(int, ">= 1"), default=4,
                    help="samples per evaluation prompt (pass@1 is their mean, cons@k their vote) [>= 1]")
    ap.add_argument("--first-prompt", type=Ranged(int, ">= 0"), default=0,
                    help="evaluate held-out prompts first .. first + N - 1 (a long run in chunks) [>= 0]")
    ap.add_argument("--dump", default=None,
                    help="write each evaluated prompt's record (completions, answers, scores) to this jsonl file")
    ap.add_argument("--template", default="r1zero", choices=["r1zero", "chat", "boxed"],
                    help="evaluation prompt template (reward.py); boxed: a chat model asked as benchmarks ask")
    ap.add_argument("--think-prefilled", action="store_true", help="evaluation prompts end in <think>")
    ap.add_argument("--task-seed", type=Ranged(int, ">= 0"), default=0,
                    help="seed of the task's example generator [>= 0]")
    ap.add_argument("--batch-prompts", type=Ranged(int, ">= 1"), default=8,
                    help="evaluation prompts sampled together (k rows each) [>= 1]")
    ap.add_argument("--max-new-tokens", type=Ranged(int, ">= 1"), default=256,
                    help="completion length limit in tokens [>= 1]")
    ap.add_argument("--temperature", type=Ranged(float, ">= 0"), default=None,
                    help="0 = greedy; default 1.0 for --prompt, 0.6 for --task (R1 paper) [>= 0]")
    ap.add_argument("--top-p", type=Ranged(float, "(0, 1]"), default=None,
                    help="nucleus sampling; default 1.0 for --prompt, 0.95 for --task [(0, 1]]")
    ap.add_argument("--top-k", type=Ranged(int, ">= 0"), default=0,
                    help="sample among the k most likely tokens; 0 = all [>= 0]")
    ap.add_argument("--seed", type=Ranged(int, ">= 0"), default=0,
                    help="sampling seed (rows are seeded from it and their prompt) [>= 0]")
    ap.add_argument("--compile", action="store_true",
                    help="replay the decode step from CUDA graphs (CUDA only; same tokens)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    from config import reading_input
    from model import load_pretrained, pick_device
    from reward import load_task
    with reading_input():                 # a bad task file or model fails here (the task before the model loads)
        task = load_task(args.task, seed=args.task_seed) if args.task else None
        device = pick_device(args.device)
        dtype = default_dtype(device) if args.dtype == "auto" else getattr(torch, args.dtype)
        model, tok = load_pretrained(args.model, device=device, dtype=dtype)
    if task is not None:
        r = evaluate(model, tok, task, args.n_prompts, args.k, template=args.template,
                     think_prefilled=args.think_prefilled, max_new_tokens=args.max_new_tokens,
                     temperature=0.6 if args.temperature is None else args.temperature,
                     top_p=0.95 if args.top_p is None else args.top_p, seed=args.seed, batch_prompts=args.batch_prompts,
                     first=args.first_prompt)
        if args.dump:
            import json
            with open(args.dump, "w") as f:
                f.writelines(json.dumps(rec) + "\n" for rec in r["records"])
        for rec in r["records"][:3]:
            print(f"--- gold {rec['gold']!r}, answers {rec['answers']}\n{rec['completions'][0]}")
        print(f"device={device} dtype={dtype} n={r['n']} mean_len={r['mean_len']:.1f} truncated={r['truncated']:.3f}")
        print(f"pass@1={r['pass@1']:.3f}±{r['pass@1_se']:.3f} cons@{args.k}={r['cons@k']:.3f} "
              f"answer_acc={r['answer_acc']:.3f}")
        return
    text = args.prompt if args.prompt is not None else "What is the capital of France?"
    text = tok.render_chat([{"role": "user", "content": text}]) if args.chat else tok.render_raw(text)
    ro = sample(model, [tok.encode(text)], args.group_size, args.max_new_tokens,
                temperature=1.0 if args.temperature is None else args.temperature,
                top_p=1.0 if args.top_p is None else args.top_p, top_k=args.top_k, stop_token_ids=tok.stop_ids,
                pad_id=tok.pad_id, seed=args.seed, compile=args.compile)
    for i, completion in enumerate(ro.texts(tok)):
        print(f"--- {i} ({ro.lengths[i]} tokens, {'stopped' if ro.stopped[i] else 'truncated'})\n{completion}")


if __name__ == "__main__":
    from config import one_line_errors
    with one_line_errors():
        main()
