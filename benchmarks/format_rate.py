"""
benchmarks/format_rate.py: how often does the base model answer inside the tags, per chat system prompt?
32 train prompts of the default task x G = 8 samples, temperature 1, 48 new tokens, float32 (README, It learns).

    python benchmarks/format_rate.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import reward  # noqa: E402
from model import load_pretrained
from sample import sample
from grader import extract_answer, is_number
from reward import load_task, render_prompt
torch.manual_seed(0)
model, tok = load_pretrained("SmolLM2-135M-Instruct", device=torch.device("cpu"), dtype=torch.float32)
task = load_task("arith", seed=0)
exs = [task.example("train", i) for i in range(32)]
base = ("You are a helpful assistant. You first think about the reasoning process in the mind and then "
        "provide the user with the answer. The reasoning process and answer are enclosed within "
        "<think> </think> and <answer> </answer> tags, respectively")
V = {
 "current": reward.CHAT_SYSTEM,
 "no_placeholder": base + ".",
 "final_number": base + ", i.e., <think> reasoning process here </think> <answer> final answer here </answer>. "
                 "The answer is only the final result.",
 "after_think": base + ". After </think>, always write the answer as <answer> number </answer>.",
}
for name, sysmsg in V.items():
    reward.CHAT_SYSTEM = sysmsg
    prompts = [tok.encode(render_prompt(ex, "chat", tok, True)) for ex in exs]
    ro = sample(model, prompts, 8, 48, temperature=1.0, stop_token_ids=tok.stop_ids, pad_id=tok.pad_id, seed=0)
    texts = ro.texts(tok)
    fmt = acc = formed = tags = informative = 0
    for g, ex in enumerate(exs):
        rs = []
        for c in texts[g*8:(g+1)*8]:
            total, p = task.reward(ex, c, True, {"accuracy": 1, "format": 1, "tags": 0.5})
            fmt += p["format"]; acc += p["accuracy"]; tags += p["tags"]
            a = extract_answer(c, strict=True); formed += a is not None and is_number(a)
            rs.append(total)
        informative += len(set(rs)) > 1
    n = len(texts)
    answer_acc = sum(task.answer_accuracy(exs[i//8], c) for i, c in enumerate(texts)) / n
    print(f"{name:15s} format={fmt/n:.3f} accuracy={acc/n:.3f} answer_in_tags={formed/n:.3f} tags={tags/n:.3f} "
          f"informative_groups={informative}/32 answer_acc={answer_acc:.3f}", flush=True)
