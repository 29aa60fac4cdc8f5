"""
How far train.py's bf16 sampler was from the model it samples for, before RoPE's frequencies stayed float32
(model.Transformer._apply): the sampler as train.py makes it (copy.deepcopy(policy).to(bf16)), against the
same sampler with inv_freq rounded to bf16 as the cast used to leave it. Teacher-forced next-token
distributions over texts of --tokens tokens on the default model: KL(new || old) in nats per token, and the
share of positions whose greedy token differs (each also against the float32 policy).

    python benchmarks/bf16_rope.py                  # ~1 min on 2 cores
"""
import argparse
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import DEFAULT_MODEL, load_pretrained  # noqa: E402
from sample import sample  # noqa: E402

GSM8K = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gsm8k_test.jsonl")


def texts(tok, policy, n_tokens: int) -> dict[str, list[int]]:
    """Two token sequences of n_tokens: GSM8K test problems and solutions back to back, and a chat prompt with
    the float32 policy's greedy continuation."""
    with open(GSM8K) as f:
        rows = [json.loads(line) for line, _ in zip(f, range(20))]
    gsm8k = tok.encode("\n\n".join(r["question"] + "\n" + r["answer"] for r in rows))[:n_tokens]
    prompt = tok.encode(tok.render_chat([{"role": "user", "content": "Explain step by step how to compute 23 * 47, "
                                                                      "then write a short story about a lighthouse."}]))
    ro = sample(policy, [prompt], group_size=1, max_new_tokens=n_tokens - len(prompt), temperature=0, seed=0)
    return {"gsm8k": gsm8k, "chat_greedy": prompt + ro.tokens[0, :ro.lengths[0]].tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=400, help="length of each text, tokens")
    args = ap.parse_args()
    policy, tok = load_pretrained(DEFAULT_MODEL, device="cpu", dtype=torch.float32)
    new = copy.deepcopy(policy).to(torch.bfloat16).requires_grad_(False)           # train.py's setup_run
    old = copy.deepcopy(new)
    old.inv_freq = old.inv_freq.bfloat16().float()                                 # what .to(bf16) used to do
    print(f"torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"inv_freq: new {new.inv_freq.dtype}, old rounded to bf16")
    with torch.no_grad():
        for name, ids in texts(tok, policy, args.tokens).items():
            x = torch.tensor([ids])
            lo, ln, lf = (m(x)[0].float().log_softmax(-1) for m in (old, new, policy))     # (T, V) each
            kl = lambda p, q: (p.exp() * (p - q)).sum(-1).mean().item()                    # nats per token
            go, gn, gf = lo.argmax(-1), ln.argmax(-1), lf.argmax(-1)
            print(f"{name} T={len(ids)}: KL(new||old) {kl(ln, lo):.4f}, KL(f32||old) {kl(lf, lo):.4f}, "
                  f"KL(f32||new) {kl(lf, ln):.4f} nats/token; greedy token differs old vs new "
                  f"{(go != gn).float().mean():.3f}, vs float32: old {(go != gf).float().mean():.3f}, "
                  f"new {(gn != gf).float().mean():.3f}")


if __name__ == "__main__":
    main()
