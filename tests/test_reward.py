"""
Tests for reward.py: tables of hard cases written from the rules (DeepSeek-R1 §2.2.2, TinyZero),
reward-hacking cases, a brute-force countdown solver, fuzzing for crashes and stalls, task determinism
and splits, and file loading. The grader and the sandbox have tests of their own (test_grader.py,
test_sandbox.py).

    python -m pytest tests/test_reward.py -q
"""
import itertools
import json
import math
from fractions import Fraction

import pytest

import reward as reward_mod

from reward import (TEMPLATES, Example, accuracy_reward, canonical_answer, countdown_reward, extract_answer,
                    extract_code, format_reward, language_consistency_reward, load_task, math_equal, overlong_penalty,
                    render_prompt, tags_reward)
from test_grader import ADVERSARIAL, HUGE, fuzz_strings, timed

# -----------------------------------------------------------------------------
# format_reward


@pytest.mark.parametrize("text, prefilled, expected", [
    ("<think>a</think><answer>3/4</answer>", False, 1.0),
    ("  <think>\nreason\n</think>\n<answer> 5 </answer>\n", False, 1.0),
    ("<think></think> <answer>5</answer>", False, 1.0),              # empty reasoning is still the format
    ("<answer>3/4</answer>", False, 0.0),                            # no reasoning block
    ("<think>a</think>", False, 0.0),                                # no answer
    ("<think>a</think><answer></answer>", False, 0.0),               # empty answer
    ("<think>a</think><answer>  </answer>", False, 0.0),
    ("<think>a</think><answer>1</answer><answer>2</answer>", False, 0.0),   # two answers
    ("<think>a</think><think>b</think><answer>1</answer>", False, 0.0),
    ("<answer>1</answer><think>a</think>", False, 0.0),              # tags in the wrong order
    ("</think><think>a<answer>1</answer>", False, 0.0),
    ("<think>a<answer>1</answer></think>", False, 0.0),              # answer inside the reasoning
    ("<think>a</think><answer>1</answer> and more", False, 0.0),     # text after </answer>
    ("<think>a</think>so<answer>1</answer>", False, 0.0),            # text between the blocks
    ("hello <think>a</think><answer>1</answer>", False, 0.0),        # text before <think>
    ("<think>a</think><answer>1</answer", False, 0.0),               # unclosed
    ("<THINK>a</THINK><ANSWER>1</ANSWER>", False, 0.0),              # tags are exact strings
    ("<think>a</think><answer>1</answer>", True, 0.0),               # prefilled: <think> must not repeat
    ("reasoning</think> <answer>1</answer>", True, 1.0),
    ("</think><answer>1</answer>", True, 1.0),
    ("reasoning <answer>1</answer>", True, 0.0),
    ("<answer>1</answer> r </think>", True, 0.0),                     # wrong order with a prefilled <think>
    ("", False, 0.0),
])
def test_format_reward(text, prefilled, expected):
    assert format_reward(text, think_prefilled=prefilled) == expected

@pytest.mark.parametrize("text, prefilled, expected", [
    ("<think>a</think> <answer>5</answer>", False, 1.0),
    ("<think>a</think> <answer>5", False, 0.75),
    ("<answer>5</answer>", False, 0.5),
    ("<answer>5</answer><answer>6</answer>", False, 0.0),        # two answers: neither answer tag counts
    ("a</think> <answer>5</answer>", True, 1.0),                  # <think> came with the prompt
    ("<think>a</think> <answer>5</answer>", True, 0.75),          # a second <think> after the prefill
    ("", False, 0.0),
])
def test_tags_reward(text, prefilled, expected):
    assert tags_reward(text, prefilled) == expected

# -----------------------------------------------------------------------------
# accuracy_reward: reward hacking


@pytest.mark.parametrize("completion, answer, number_only, expected", [
    ("<think>8</think><answer>8</answer>", "8", False, 1.0),
    ("<think>x</think><answer>\\boxed{8}</answer>", "8", False, 1.0),
    ("\\boxed{8}", "8", False, 1.0),                                 # accuracy does not need the format
    ("<answer></answer>", "8", False, 0.0),                          # empty answer
    ("<answer>8</answer><answer>9</answer>", "8", False, 0.0),       # several answers: the last counts
    ("<answer>8, 9</answer>", "8", False, 0.0),
    ("\\boxed{8} \\boxed{9}", "8", False, 0.0),                      # several boxes
    ("<answer>the answer is not 8</answer>", "8", False, 0.0),       # substring tricks
    ("I think 8 <answer>9</answer>", "8", False, 0.0),
    ("<answer>3 + 5</answer>", "8", True, 0.0),                      # echoed from the question
    ("<answer>3 + 5</answer>", "8", False, 1.0),                     # (fine where expressions are answers)
    ("<answer>x = 8</answer>", "8", True, 1.0),
    ("<answer>-8</answer>", "-8", True, 1.0),
    ("<answer>8</answer> ok", "8", False, 1.0),                      # trailing text costs format, not accuracy
    ("8", "8", False, 0.0),                                          # no answer marked at all
])
def test_accuracy_reward(completion, answer, number_only, expected):
    assert accuracy_reward(completion, answer, number_only=number_only) == expected

# -----------------------------------------------------------------------------
# language_consistency_reward


@pytest.mark.parametrize("text, lang, expected", [
    ("<think>we add the numbers</think><answer>5</answer>", "en", 1.0),
    ("<think>we add 数字 now too</think>", "en", 0.8),               # 4 of 5 words Latin
    ("<think>café naïve</think>", "en", 1.0),                        # accented Latin is Latin
    ("<think>3 + 5 = 8</think><answer>8</answer>", "en", 1.0),       # no words: nothing is mixed
    ("<think>数字 hello</think>", "zh", 0.5),
    ("<think>hello</think>", "zh", 0.0),
    ("<think>hello世界</think>", "en", 0.0),                          # a mixed-script word is not English
    ("the sum</think>ignored 数字", "en", 1.0),                       # prefilled: the CoT ends at </think>
    ("no tags at all 数字", "en", 0.8),
    ("привет мир", "ru", 1.0),
    ("", "en", 1.0),
])
def test_language_consistency(text, lang, expected):
    assert language_consistency_reward(text, lang) == pytest.approx(expected)


def test_language_consistency_unknown_language():
    with pytest.raises(ValueError, match="xx"):
        language_consistency_reward("hi", "xx")

# -----------------------------------------------------------------------------
# Countdown


@pytest.mark.parametrize("pred, expected", [
    ("(3 + 5) * 4", 1.0), ("4*(5+3)", 1.0), ("(5+3)*4 = 32", 1.0), ("4 * (3 + 5)", 1.0),
    ("-(-3-5)*4", 1.0),                                              # unary minus adds no number
    ("(3+5)*4 = 31", 0.0), ("(3+5)*4 = 32 = 32", 0.0),
    ("(3+5)*4*1", 0.0),                                              # an extra number
    ("(3+3)*4", 0.0), ("(3+5)+4", 0.0), ("8*4", 0.0), ("32", 0.0),    # wrong multiset or value
    ("(3+5)*4.0", 0.0), ("(3 + 5) × 4", 0.0), ("(3+5)**4", 0.0), ("(3+5)^4", 0.0), ("(3+5)4", 0.0),
    ("(3+5)*4/(5-5)", 0.0),                                          # division by zero
    ("[3, 5, 4]", 0.0), ("", 0.0),
])
def test_countdown_checker(pred, expected):
    assert countdown_reward(f"<think>t</think><answer>{pred}</answer>", "(3 + 5) * 4") == expected


def test_countdown_fractional_intermediate_allowed():
    gold = "6 / (1 - 3 / 4)"                                          # 24 from 1, 3, 4, 6
    assert countdown_reward("<answer>(6)/(1-(3/4))</answer>", gold) == 1.0
    assert countdown_reward("<answer>6/(1-0.75)</answer>", gold) == 0.0


def _countdown_puzzle(prompt: str) -> tuple[list[int], int]:
    head, _, tail = prompt.partition("], create an equation that equals ")
    return [int(x) for x in head.partition("[")[2].split(",")], int(tail.partition(".")[0])


def _solve(items: list[tuple[Fraction, str]], target: int) -> str | None:
    """Brute force over every order and operation: an independent check that a solution exists."""
    if len(items) == 1:
        return items[0][1] if items[0][0] == target else None
    for i, j in itertools.permutations(range(len(items)), 2):
        (a, ea), (b, eb) = items[i], items[j]
        rest = [items[k] for k in range(len(items)) if k not in (i, j)]
        options = [(a + b, "+"), (a - b, "-"), (a * b, "*")] + ([(a / b, "/")] if b else [])
        for value, op in options:
            found = _solve(rest + [(value, f"({ea} {op} {eb})")], target)
            if found:
                return found
    return None


@pytest.mark.parametrize("split", ["train", "test"])
def test_countdown_puzzles_are_solvable_and_checked(split):
    task = load_task("countdown", seed=3)
    sizes = set()
    for i in range(40):
        ex = task.example(split, i)
        nums, target = _countdown_puzzle(ex.prompt)
        sizes.add(len(nums))
        assert 1 <= target <= 99 and all(1 <= n <= 99 for n in nums)
        solution = _solve([(Fraction(n), str(n)) for n in nums], target)
        assert solution is not None, ex
        assert countdown_reward(f"<answer>{solution}</answer>", ex.answer) == 1.0
        assert countdown_reward(f"<answer>{solution} + {nums[0]} - {nums[0]}</answer>", ex.answer) == 0.0  # repeats
        assert countdown_reward(f"<answer>{solution.replace(str(nums[0]), str(nums[0] + 100), 1)}</answer>",
                                ex.answer) == 0.0   # a number that was not given
        assert countdown_reward(f"<answer>{' + '.join(map(str, nums[:-1]))}</answer>", ex.answer) == 0.0
        assert task.reward(ex, f"<think>t</think> <answer>{ex.answer}</answer>")[0] == 2.0
    assert sizes == {3, 4}

# -----------------------------------------------------------------------------
# Templates


R1ZERO_TEXT = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
               "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
               "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
               "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
               "User: Compute 2 + 3. Assistant:")


class FakeTokenizer:
    """Stands in for model.py's Tokenizer: records the messages and renders a ChatML-like string."""
    def render_chat(self, messages, add_generation_prompt=False):
        self.messages = messages
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def test_r1zero_template_is_the_paper_text():
    ex = Example("Compute 2 + 3", "5")
    assert render_prompt(ex, "r1zero") == R1ZERO_TEXT
    assert render_prompt(ex, "r1zero", think_prefilled=True) == R1ZERO_TEXT + " <think>"


def test_chat_template_uses_the_tokenizer():
    tok = FakeTokenizer()
    text = render_prompt(Example("Compute {x} 2 + 3", "5"), "chat", tokenizer=tok)
    assert [m["role"] for m in tok.messages] == ["system", "user"]
    assert tok.messages[1]["content"] == "Compute {x} 2 + 3"
    assert "<think> </think>" in tok.messages[0]["content"] and "<answer> </answer>" in tok.messages[0]["content"]
    assert text.endswith("<|im_start|>assistant\n")
    assert render_prompt(Example("q", "a"), "chat", tokenizer=tok, think_prefilled=True).endswith("assistant\n<think>")


def test_boxed_template_asks_as_benchmarks_ask():
    """DeepSeek-R1's recommended math prompt: the model's own system message (none given), no R1 tags."""
    tok = FakeTokenizer()
    text = render_prompt(Example("Compute 2 + 3", "5"), "boxed", tokenizer=tok)
    assert tok.messages == [{"role": "user", "content": "Compute 2 + 3\nPlease reason step by step, and put your "
                                                        "final answer within \\boxed{}."}]
    assert "<think>" not in text and "<answer>" not in text and text.endswith("<|im_start|>assistant\n")


def test_template_errors():
    assert TEMPLATES == ("r1zero", "chat", "boxed")
    for template in ("chat", "boxed"):
        with pytest.raises(ValueError, match="tokenizer"):
            render_prompt(Example("q", "a"), template)
    with pytest.raises(ValueError, match="r1zero"):
        render_prompt(Example("q", "a"), "alpaca")

# -----------------------------------------------------------------------------
# Generated tasks: determinism, splits, difficulty


@pytest.mark.parametrize("spec", ["arith", "arith:operands=3,digits=2,ops=+-*/", "countdown"])
def test_same_seed_same_examples(spec):
    a, b, c = load_task(spec, seed=0), load_task(spec, seed=0), load_task(spec, seed=1)
    for split in ("train", "test"):
        first = [a.example(split, i) for i in range(20)]
        assert first == [b.example(split, i) for i in range(20)]
        assert first != [c.example(split, i) for i in range(20)]
    assert a.size("train") is None


@pytest.mark.parametrize("spec, n", [("arith", 400), ("arith:operands=2,digits=1,ops=+-", 400), ("countdown", 150)])
def test_generated_train_and_test_never_overlap(spec, n):
    train = {load_task(spec, seed).example("train", i).prompt for seed in (0, 1) for i in range(n)}
    test = {load_task(spec, seed).example("test", i).prompt for seed in (0, 1) for i in range(n // 4)}
    assert test and train and not (train & test)


def test_arith_default_is_single_digit_addition():
    task = load_task("arith")
    for i in range(50):
        ex = task.example("train", i)
        a, op, b = ex.prompt.removeprefix("Compute ").split()
        assert op == "+" and 0 <= int(a) <= 9 and 0 <= int(b) <= 9 and int(ex.answer) == int(a) + int(b)


def test_arith_difficulty_options():
    ex = [load_task("arith:operands=4,digits=2,ops=*/-", seed=2).example("train", i) for i in range(50)]
    assert all(len(e.prompt.split()) == 8 for e in ex)                         # "Compute" + 4 numbers + 3 ops
    assert {"*", "/", "-"} == {t for e in ex for t in e.prompt.split() if t in "+-*/"}
    assert all(Fraction(e.answer).denominator == 1 for e in ex)             # integer answers even with /
    small = [load_task("arith:max=3").example("train", i) for i in range(50)]
    assert max(int(t) for e in small for t in e.prompt.split()[1::2]) == 3


@pytest.mark.parametrize("spec, message", [
    ("nope", "known tasks"), ("arith:digits=x", "digits"), ("arith:level=3", "level"), ("arith:ops=%", "ops"),
    ("arith:operands=1", "operands"), ("gsm8k", "known tasks"), ("countdown:numbers=9", "numbers"),
])
def test_load_task_errors_name_the_spec(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        load_task(spec)
    assert spec in str(err.value)


def test_task_reward_parts_and_weights():
    task = load_task("arith")
    ex = task.example("train", 0)
    good = f"<think>so {ex.answer}</think> <answer>{ex.answer}</answer>"
    assert task.reward(ex, good) == (2.0, {"accuracy": 1.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 1.0})
    # the reasoning does not end at the answer: no format
    assert task.reward(ex, f"<think>add them</think> <answer>{ex.answer}</answer>") == \
        (1.0, {"accuracy": 1.0, "format": 0.0, "tags": 1.0, "language": 1.0, "answer": 1.0})
    # an answer tag never closed: no answer in tags, but the last number is right
    assert task.reward(ex, f"<answer>{ex.answer}", weights={"tags": 1.0}) == \
        (0.0, {"accuracy": 0.0, "format": 0.0, "tags": 0.0, "language": 0.0, "answer": 1.0})
    assert task.reward(ex, f"so {ex.answer} <answer>", weights={"tags": 1.0}) == \
        (0.0, {"accuracy": 0.0, "format": 0.0, "tags": 0.0, "language": 0.0, "answer": 1.0})
    assert task.reward(ex, f"so {ex.answer} </think>", weights={"tags": 1.0}) == \
        (0.25, {"accuracy": 0.0, "format": 0.0, "tags": 0.25, "language": 1.0, "answer": 1.0})
    assert task.reward(ex, f"<answer>{ex.answer}</answer>")[0] == 1.0
    assert task.reward(ex, good, weights={"format": 0.5, "language": 1.0})[0] == 2.5
    assert task.reward(ex, f"so {ex.answer}</think><answer>{ex.answer}</answer>", think_prefilled=True)[0] == 2.0
    wrong = int(ex.answer) + 1
    assert task.reward(ex, f"<think>{wrong}</think><answer>{wrong}</answer>")[0] == 1.0
    with pytest.raises(ValueError, match="bogus"):
        task.reward(ex, good, weights={"bogus": 1.0})
    with pytest.raises(ValueError, match="split"):
        task.example("valid", 0)


# The completions of a collapsed float32 run (step 11, every group): the system prompt's
# placeholder copied back. Tags around a non-answer must earn nothing, or GRPO sees zero variance forever.
PLACEHOLDERS = ["computation here </think> <answer> answer here </answer>", "Compute</think> <answer>answer</answer>",
                " reasoning process here </think> <answer> answer here </answer>", "x </think> <answer> </answer>",
                "x </think> <answer>the sum</answer>"]


@pytest.mark.parametrize("completion", PLACEHOLDERS)
@pytest.mark.parametrize("spec", ["arith", "countdown", "arith:digits=2"])
def test_placeholder_answers_earn_nothing(spec, completion):
    task = load_task(spec)
    ex = task.example("train", 0)
    total, parts = task.reward(ex, completion, think_prefilled=True, weights={"tags": 0.5, "language": 1.0})
    assert total == 0.0 and set(parts.values()) == {0.0}, parts


def test_well_formed_wrong_answers_keep_format_credit():
    """Gating on a well-formed answer takes nothing from a real answer, right or wrong (hand-scored)."""
    task = load_task("arith")
    ex = Example("Compute 3 + 5", "8")
    assert task.reward(ex, "3+5=7 </think> <answer> 7 </answer>", True)[1] == \
        {"accuracy": 0.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 0.0}
    assert task.reward(ex, "3 plus 5 </think> <answer> 8", True)[1]["tags"] == 0.5   # cut off: the think tags only,
    assert task.reward(ex, "3 plus 5 </think>", True)[1]["tags"] == 0.5               # as when it stops before <answer>
    assert task.reward(ex, "3 plus 5 is 8 </think>", True)[1]["tags"] == 0.5           # no tag: the last number
    assert task.reward(ex, "three plus five is eight </think>", True)[1]["tags"] == 0.0
    cd = load_task("countdown")
    ex = Example("Using the numbers [1, 2, 3] ...", "(1 + 2) * 3")
    assert cd.reward(ex, "x </think> <answer> 3 * (2 + 1) </answer>", True)[1]["format"] == 1.0
    assert cd.reward(ex, "x </think> <answer> 3 * 2 + 1 </answer>", True)[1] == \
        {"accuracy": 0.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 0.0}


def test_arith_format_pays_when_the_reasoning_ends_at_the_answer():
    """Hand-scored at train.py's default weights (accuracy 1, format 1, tags 0.5, answer 0.1), the prompt ending in
    <think>: the format pays only when the last number before </think> is the tagged answer; the think tags pay
    when the reasoning holds a number, even around an answer tag that holds none."""
    task = load_task("arith")
    ex = Example("Compute 2 + 5", "7")
    w = {"accuracy": 1.0, "format": 1.0, "tags": 0.5, "answer": 0.1}
    table = [("2 + 5 = 7</think> <answer>7</answer>", 1 + 1 + 0.5 + 0.1),
             ("2 + 5 = 8</think> <answer>8</answer>", 1 + 0.5),                 # reasoned, wrong
             ("Compute 2 + 5</think> <answer>7</answer>", 1 + 0.5 + 0.1),       # right, not reasoned to: no format
             ("Compute 2 + 5</think> <answer>8</answer>", 0.5),                 # a guess in tags
             ("7 is 2 + 5</think> <answer>7</answer>", 1 + 0.5 + 0.1),          # the reasoning ends at 5
             ("2 + 5 = 7 </think>", 0.5 * 0.5 + 0.1),                           # no answer tags
             ("2 + 5 = 7</think> <answer> the sum </answer>", 0.5 * 0.5 + 0.1),  # the think tags only
             ("the sum</think> <answer> the sum </answer>", 0.0)]
    for completion, want in table:
        assert task.reward(ex, completion, True, weights=w)[0] == pytest.approx(want), completion


def test_answer_part_pays_a_right_answer_wherever_it_is():
    """The answer part (weight 0.1 in train.py's default) is answer_accuracy: the last number, tags or not."""
    task = load_task("arith")
    ex = Example("Compute 3 + 5", "8")
    w = {"accuracy": 1.0, "format": 1.0, "tags": 0.5, "answer": 0.1}
    assert task.reward(ex, "3 + 5 = 8</think>", True, weights=w) == \
        (pytest.approx(0.5 * 0.5 + 0.1), {"accuracy": 0.0, "format": 0.0, "tags": 0.5, "language": 1.0, "answer": 1.0})
    assert task.reward(ex, "3 + 5 = 9</think>", True, weights=w)[0] == 0.5 * 0.5
    assert task.reward(ex, "3+5=7 </think> <answer> 7 </answer>", True, weights=w)[0] == 1.0 + 0.5 * 1.0
    assert task.reward(ex, "3+5=8 </think> <answer>8</answer>", True, weights=w)[0] == pytest.approx(1 + 1 + 0.5 + 0.1)
    assert task.reward(ex, "the sum is eight", True, weights=w)[0] == 0.0


def test_math_file_task_well_formed(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"problem": "Who?", "answer": "\\text{Evelyn}"}) + "\n" +
                    json.dumps({"problem": "Half?", "answer": "\\frac12"}) + "\n")
    task = load_task(f"math:{path},test={path}")
    evelyn, half = sorted((task.example("test", i) for i in range(2)), key=lambda e: e.prompt, reverse=True)
    assert task.reward(evelyn, "x </think> <answer>Evelyn</answer>", True)[1]["format"] == 1.0  # prose gold
    assert task.reward(half, "x </think> <answer>one half</answer>", True)[1]["format"] == 0.0
    assert task.reward(half, "x </think> <answer>0.5</answer>", True)[1]["format"] == 1.0


@pytest.mark.parametrize("completion, lenient", [
    ("3 + 5 = 8", 1.0),                                        # no tags: accuracy 0, the number is right
    ("3 + 5 = 8 </think> <answer>answer</answer>", 1.0),        # it knew the sum; the tags hold a word
    ("<answer>7</answer> no wait, 8", 1.0),
    ("<answer>8</answer> from 3 and 5", 0.0),                  # the last number is 5
    ("eight", 0.0),
])
def test_arith_answer_accuracy_reads_the_last_number(completion, lenient):
    task = load_task("arith")
    assert task.answer_accuracy(Example("Compute 3 + 5", "8"), completion) == lenient


def test_task_extract_is_canonical():
    arith, cd = load_task("arith"), load_task("countdown")
    assert arith.extract("<answer>1,000</answer>") == arith.extract("<answer>1000.0</answer>") == "1000"
    assert arith.extract("<answer>3 + 5</answer>") != arith.extract("<answer>8</answer>")   # echoes do not vote as 8
    assert arith.extract("no answer") is None
    assert cd.extract("<answer>(3 + 5) * 4</answer>") == cd.extract("<answer>(3+5)*4</answer>")

# -----------------------------------------------------------------------------
# File tasks


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k_loading(tmp_path):
    rows = [{"question": f"Q{i}: how many?", "answer": f"Work {i}.\n#### {i * 1000 + 7:,}"} for i in range(60)]
    path = write_jsonl(tmp_path / "gsm8k.jsonl", rows + [""])   # a blank line is skipped
    task = load_task(f"gsm8k:{path}", seed=0)
    train, test = ([task.example(s, i) for i in range(task.size(s))] for s in ("train", "test"))
    assert len(train) + len(test) == 60 and test and train                     # a hash share of ~10% is held out
    assert {e.prompt for e in train}.isdisjoint(e.prompt for e in test)
    ex = train[0]
    i = int(ex.prompt[1:].split(":")[0])
    assert ex.answer == str(i * 1000 + 7)                                        # "1,007" -> "1007"
    assert task.reward(ex, f"<think>t</think><answer>{i * 1000 + 7:,}</answer>")[1]["accuracy"] == 1.0
    assert task.reward(ex, f"so\n#### {i * 1000 + 7}")[1]["accuracy"] == 1.0
    assert task.example("train", len(train)) == train[0]                          # i wraps
    assert [load_task(f"gsm8k:{path}", seed=0).example("train", k) for k in range(5)] == train[:5]
    assert [load_task(f"gsm8k:{path}", seed=1).example("train", k) for k in range(len(train))] != train


def test_file_splits_do_not_depend_on_how_the_path_is_spelled(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    rows = [{"question": f"Q{i}: how many?", "answer": f"#### {i}"} for i in range(80)]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    write_jsonl(tmp_path / "data" / "test.jsonl", rows[:30])
    monkeypatch.chdir(tmp_path)
    spellings = [str(tmp_path / "data"), "data", "./data", "data/../data", f"{tmp_path}/./data"]

    def splits(spec, seed=0):
        task = load_task(spec, seed=seed)
        return [[task.example(s, i).prompt for i in range(task.size(s))] for s in ("train", "test")]

    for template in ("gsm8k:{d}/train.jsonl", "gsm8k:{d}/train.jsonl,test={d}/test.jsonl"):
        each = [splits(template.format(d=d)) for d in spellings]
        assert all(s == each[0] for s in each[1:]), template                    # train and test, in order
    train, test = splits("gsm8k:data/train.jsonl,test=data/test.jsonl")
    assert test == [r["question"] for r in rows[:30]]                            # the test file in its own order
    assert train != [r["question"] for r in rows]                               # the train split is shuffled
    assert splits("gsm8k:data/train.jsonl", seed=1)[1] == splits("gsm8k:data/train.jsonl")[1]  # held out: any seed
    assert splits("gsm8k:data/train.jsonl", seed=1)[0] != splits("gsm8k:data/train.jsonl")[0]


def test_separate_test_file(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"p{i}", "answer": i} for i in range(5)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "q", "answer": "1/2"}])
    task = load_task(f"jsonl:{a},test={b}")
    assert (task.size("train"), task.size("test")) == (5, 1)
    assert task.example("test", 7) == Example("q", "1/2")
    assert task.reward(task.example("test", 0), "<answer>0.5</answer>")[1]["accuracy"] == 1.0


@pytest.mark.parametrize("kind, bad_row, message", [
    ("gsm8k", {"question": "q", "answer": "no final marker"}, "####"),
    ("gsm8k", {"question": "q", "answer": "#### twelve"}, "####"),
    ("gsm8k", {"question": "q"}, "answer"),
    ("gsm8k", "{not json", "JSON"),
    ("gsm8k", "[1, 2]", "object"),
    ("math", {"problem": "p", "solution": "no box here"}, "boxed"),
    ("math", {"problem": "p", "answer": ""}, "answer"),
    ("jsonl", {"prompt": "p", "answer": None}, "answer"),
    ("code", {"prompt": "p", "tests": ["assert f(1) ==="]}, "SyntaxError"),
    ("code", {"prompt": "p", "tests": []}, "tests"),
    ("math", {"problem": "p", "answer": "\\frac{1}{2"}, "braces"),              # a gold the grader cannot read
    ("math", {"problem": "p", "solution": "so \\boxed{\\frac{1}{2}"}, "boxed"),   # the box never closes
    ("jsonl", {"prompt": "p", "answer": "\\sqrt{2}}"}, "braces"),
])
def test_malformed_gold_names_file_and_line(tmp_path, kind, bad_row, message):
    good = {"gsm8k": {"question": "q", "answer": "#### 1"}, "math": {"problem": "p", "answer": "1"},
            "jsonl": {"prompt": "p", "answer": "1"}, "code": {"prompt": "p", "tests": ["assert True"]}}[kind]
    path = write_jsonl(tmp_path / "data.jsonl", [good, good, bad_row, good])
    with pytest.raises(ValueError, match=message) as err:
        load_task(f"{kind}:{path}")
    assert f"{path}:3" in str(err.value)


def test_math_and_code_files(tmp_path):
    m = write_jsonl(tmp_path / "m.jsonl", [{"problem": "half?", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
                                           {"problem": "two?", "answer": 2, "solution": "\\boxed{3}"}])
    task = load_task(f"math:{m},test={m}")
    golds = {task.example("train", i).prompt: task.example("train", i).answer for i in range(2)}
    assert golds == {"half?": "\\frac{1}{2}", "two?": "2"}                      # "answer" wins over "solution"
    c = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "write f", "tests": ["assert f(1) == 2", "assert f(2) == 3"]}])
    task = load_task(f"code:{c},test={c}")
    ex = task.example("train", 0)
    assert ex.tests == ("assert f(1) == 2", "assert f(2) == 3") and ex.answer == ""
    total, parts = task.reward(ex, "<think>t</think><answer>```python\ndef f(x):\n    return x + 1\n```</answer>")
    assert (total, parts["accuracy"]) == (2.0, 1.0)
    assert task.extract("<answer>```py\nx = 1\n```</answer>") == "x = 1"


def test_code_task_runs_the_tests_once_per_completion(tmp_path, monkeypatch):
    """The answer part of a code task is its accuracy: the sandbox runs each completion's program once."""
    c = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "write f", "tests": ["assert f(1) == 2"]}])
    task = load_task(f"code:{c},test={c}")
    calls = []
    monkeypatch.setattr(reward_mod, "code_reward", lambda completion, tests, **kw: calls.append(completion) or 1.0)
    total, parts = task.reward(task.example("train", 0), "<answer>```python\ndef f(x):\n    return x + 1\n```</answer>")
    assert len(calls) == 1 and parts["accuracy"] == parts["answer"] == 1.0


MATH500_ROW = {"problem": "Find all $x$ with $x^2 = 9$.", "solution": "So $x = \\pm 3$, i.e. $\\boxed{3, -3}$.",
               "answer": "3, -3", "subject": "Algebra", "level": 2, "unique_id": "test/algebra/1.json"}


def test_math500_lines_and_extraction_modes(tmp_path):
    # MATH-500's own fields; the second line has its gold only as the \boxed{} of its solution
    rows = [MATH500_ROW, {k: v for k, v in MATH500_ROW.items() if k != "answer"} | {"problem": "Again?"}]
    path = write_jsonl(tmp_path / "math500.jsonl", rows)
    strict, free = load_task(f"math:{path},test={path}"), load_task(f"math:{path},test={path},extract=free")
    assert {strict.example("test", i).answer for i in range(2)} == {"3, -3"}
    ex = strict.example("test", 0)
    chat = "We solve it.\n\nFinal Answer: The final answer is $\\pm 3$. I hope it is correct."
    assert strict.reward(ex, chat)[1]["accuracy"] == 0.0                        # R1's reward wants tags or a box
    assert free.reward(ex, chat)[1]["accuracy"] == 1.0
    assert free.reward(ex, chat)[1]["format"] == 0.0                            # the format reward is unchanged
    assert strict.reward(ex, "<think>t</think> <answer>-3 and 3</answer>")[0] == 2.0
    assert free.extract(chat) == free.extract("<answer>\\{-3, 3\\}</answer>") and strict.extract(chat) is None
    with pytest.raises(ValueError, match="extract must be"):
        load_task(f"math:{path},extract=lenient")


def test_gsm8k_free_form_answers(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "How many?", "answer": "3 + 4 = 7 boxes.\n#### 1,007"}])
    task = load_task(f"gsm8k:{path},extract=free,test={path}")
    ex = task.example("test", 0)
    assert ex.answer == "1007"
    for completion, accuracy in [("She packs 1,007 boxes in all.", 1.0), ("The answer is $1007$.", 1.0),
                                 ("So 1,007 - 7 = 1,000 remain.", 0.0), ("The answer is 1007.5.", 0.0)]:
        assert task.reward(ex, completion)[1]["accuracy"] == accuracy, completion


def test_gsm8k_accuracy_needs_a_number(tmp_path):
    # GSM8K's answer is a number: an expression worth 15 scores 0 as accuracy (as in the arithmetic task), in
    # every marker and extraction mode; answer_accuracy, the format-independent figure, still counts it
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "How many?", "answer": "20 - 5 = 15\n#### 15"}])
    numbers = ["15", "15.0", "15.00", "+15", "\\$15", "15 dollars"]   # is_number: a plain signed number, units
    expressions = ["20 - 5", "10 + 5", "3 \\cdot 5", "3 * 5", "30/2", "15 + 0", "\\frac{30}{2}", "\\sqrt{225}"]
    markers = ["\\boxed{{{}}}", "<think>t</think> <answer>{}</answer>", "Work.\n#### {}"]
    for mode in ("strict", "free"):
        task = load_task(f"gsm8k:{path},extract={mode},test={path}")
        ex = task.example("test", 0)
        for marker in markers:
            tried = expressions[:-2] if marker.startswith("Work") else expressions   # #### needs a number first
            for answer, accuracy, lenient in ([(a, 1.0, 1.0) for a in numbers] + [(a, 0.0, 1.0) for a in tried]
                                              + [("16", 0.0, 0.0), ("20 - 4", 0.0, 0.0)]):
                completion = marker.format(answer)
                assert task.reward(ex, completion)[1]["accuracy"] == accuracy, (mode, completion)
                assert task.answer_accuracy(ex, completion) == lenient, (mode, completion)

# -----------------------------------------------------------------------------
# Fuzzing: no model output crashes or stalls a reward (the inputs: test_grader.py)

def reward_calls():
    """Every reward (and extract_answer), called with the fuzz string in the positions a model controls."""
    arith, cd = load_task("arith"), load_task("countdown")
    a_ex, c_ex = arith.example("train", 0), cd.example("train", 0)
    return {
        "format": lambda s: format_reward(s), "format_prefilled": lambda s: format_reward(s, True),
        "extract": lambda s: float(extract_answer(s) is not None), "math_equal": lambda s: float(math_equal(s, "5")),
        "math_equal_gold": lambda s: float(math_equal("\\frac{1}{2}", s)),
        "accuracy": lambda s: accuracy_reward(s, "5"),
        "accuracy_tagged": lambda s: accuracy_reward(f"<think>t</think><answer>{s}</answer>", "(1,2)",
                                                     number_only=False),
        "accuracy_number": lambda s: accuracy_reward(f"<answer>{s}</answer>", "5", number_only=True),
        "countdown": lambda s: countdown_reward(f"<answer>{s}</answer>", c_ex.answer),
        "language": lambda s: language_consistency_reward(s),
        "language_zh": lambda s: language_consistency_reward(s, "zh"),
        "arith_task": lambda s: arith.reward(a_ex, s)[0], "countdown_task": lambda s: cd.reward(c_ex, s)[0],
        "extract_code": lambda s: float(extract_code(s) is not None),
        "canonical": lambda s: float(len(canonical_answer(s))),
    }


def test_fuzz_rewards_return_numbers_fast():
    calls = reward_calls()
    for s in fuzz_strings(3000) + ADVERSARIAL:
        for name, fn in calls.items():
            result, cpu, wall = timed(fn, s)
            assert isinstance(result, float) and math.isfinite(result), (name, s[:50])
            assert cpu < 0.05 and wall < 1.0, (name, s[:50], cpu, wall)


def test_fuzz_megabyte_inputs_are_bounded():
    # 1 MB inputs get 1 s of CPU, not 50 ms: merely reading 1 MB char by char in Python (language
    # consistency on non-ASCII text) takes ~0.1-0.3 s. Everything is linear in the input, and the
    # parsers stop at MAX_ANSWER_CHARS / MAX_SCAN, so the bound holds for any length.
    for s in HUGE:
        for name, fn in reward_calls().items():
            result, cpu, wall = timed(fn, s)
            assert isinstance(result, float) and math.isfinite(result), (name, s[:20])
            assert cpu < 1.0 and wall < 5.0, (name, s[:20], cpu)

# -----------------------------------------------------------------------------
# DAPO's soft overlong punishment (eq. 13), L_max = 10, L_cache = 4: 0 up to 6 tokens, then -1/4 per token


@pytest.mark.parametrize("length, expected", [
    (0, 0.0), (5, 0.0),
    (6, 0.0),                       # |y| = L_max - L_cache: the last length without penalty
    (7, -0.25), (8, -0.5), (9, -0.75),
    (10, -1.0),                     # |y| = L_max: the whole penalty (a completion cut at the limit)
    (11, -1.0), (50, -1.0),         # past L_max (not produced by a sampler capped at L_max)
])
def test_overlong_penalty_at_the_boundaries(length, expected):
    assert overlong_penalty(length, max_len=10, buffer=4) == expected
    assert overlong_penalty(length, max_len=10, buffer=4, factor=0.5) == expected / 2


def test_overlong_penalty_whole_budget_and_bad_buffer():
    # L_cache = L_max: the penalty grows from the first token, -|y| / L_max
    assert [overlong_penalty(n, 4, 4) for n in range(6)] == [0.0, -0.25, -0.5, -0.75, -1.0, -1.0]
    for buffer in (0, 11):
        with pytest.raises(AssertionError):
            overlong_penalty(5, 10, buffer)
