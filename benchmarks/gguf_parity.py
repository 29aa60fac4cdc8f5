"""
benchmarks/gguf_parity.py: our loading of a GGUF model against transformers' loading of the same file.

    python benchmarks/gguf_parity.py --model qwen2.5-coder-0.5b-instruct \
        --gsm8k /work/shared/data/gsm8k_test.jsonl -n 4          # ~2 minutes on 2 cores, ~5 GB

For each of the first n GSM8K questions, rendered with the model's chat template (with transformers'
apply_chat_template on its side, jinja), it prints: whether the prompt texts are equal, whether the token ids
are equal, and the max abs difference of the float32 logits over every prompt position, with the share
of positions whose argmax agrees. Both sides dequantise with gguf.quants, so the figure measures the
network and the conversion, not quantisation. Last line: max_abs_diff=... over all prompts.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model import GGUF_WHEELS, join_gguf_wheels, load_pretrained  # noqa: E402
from reward import jsonl_lines  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="a GGUF_WHEELS name or a .gguf file")
    ap.add_argument("--gsm8k", default="/work/shared/data/gsm8k_test.jsonl", help="GSM8K jsonl (question field)")
    ap.add_argument("-n", type=int, default=4, help="questions to compare")
    args = ap.parse_args()
    torch.set_num_threads(2)
    gguf = join_gguf_wheels(args.model) if args.model in GGUF_WHEELS else Path(args.model)
    t0 = time.time()
    ours, tok = load_pretrained(args.model, device="cpu", dtype=torch.float32)
    print(f"ours: {args.model} loaded in {time.time() - t0:.1f}s")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    t0 = time.time()
    hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    print(f"transformers: {gguf} loaded in {time.time() - t0:.1f}s")
    worst = 0.0
    for i, (_, line) in enumerate(jsonl_lines(args.gsm8k)):
        if i == args.n:
            break
        row = json.loads(line)
        messages = [{"role": "user", "content": row["question"]}]
        text = tok.render_chat(messages)
        hf_text = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids, hf_ids = tok.encode(text), hf_tok(hf_text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            a = ours(torch.tensor([ids]))[0].float()
            b = hf(torch.tensor([ids])).logits[0].float()
        diff = (a - b).abs().max().item()
        agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
        worst = max(worst, diff)
        print(f"prompt {i}: {len(ids)} tokens, text equal {text == hf_text}, ids equal {ids == hf_ids}, "
              f"max |logit diff| {diff:.3g} (logits up to {b.abs().max().item():.1f}), argmax agrees {agree:.3f}")
    print(f"max_abs_diff={worst:.3g}")


if __name__ == "__main__":
    main()
