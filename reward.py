"""
The RL environment of DeepSeek-R1: prompt templates, the rule-based rewards (§2.2.2: an accuracy reward
and a format reward, no reward model, plus the terms a task may weigh in), and tasks (where prompts and
gold answers come from).

    python -m pytest tests/test_reward.py -q      # reward tables, reward hacking, tasks and splits, fuzzing

Two parts live in files of their own, each with a header saying what it guarantees: grader.py reads the
answer in a completion and decides whether it equals the gold answer (accuracy_reward; `python reward.py
--pred ... --gold ...` is `python grader.py`), and sandbox.py runs model-written programs against tests
(code_reward).

Rules that hold everywhere in this file:
  1. No regex, no sympy, no eval: answers are read by grader.py's hand-written scanners.
  2. Model output can never crash or stall a reward (grader.py bounds its work, sandbox.py the programs it
     runs). A malformed *gold* answer in a data file is the user's bug, so it raises ValueError at load time
     with the file and line.
  3. Rewards fail closed: anything that does not parse scores 0, never 1 by accident.

Tasks (load_task(spec)): arith[:operands=2,digits=1,ops=+,max=N], countdown[:numbers=3|4,max=99],
gsm8k:PATH, math:PATH, jsonl:PATH, code:PATH, each file task optionally PATH,test=TEST_PATH.
Held-out split: a generated problem, or a file line's prompt, is in "test" when a SHA-256 hash of it
falls in the lowest TEST_PERCENT percent. The split is a property of the problem (not of the seed or
of the line order), so train and test never share a problem, whatever seed either run used.
"""
import ast
import collections
import functools
import hashlib
import json
import random
import sys
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from grader import (DECIMAL_DIGITS, GREEK, MAX_ANSWER_CHARS, MAX_BITS, MAX_DELIMITERS, MAX_DEPTH, MAX_ITEMS,
                    MAX_NEST, MAX_SCAN, MIN_DEFINED, MIN_PLACES, N_POINTS, POINT_DEN, REL_TOL, Grade, canonical_answer,
                    exact_value, extract_answer, grade, integer_arithmetic, is_number, is_prose, last_number, main,
                    math_equal, spelling)
from sandbox import NOBODY, run_tests, sandbox_mode

TEST_PERCENT = 10         # share of problems in the held-out split

# -----------------------------------------------------------------------------
# Templates

R1ZERO_TEMPLATE = (  # DeepSeek-R1 Table 1, verbatim; "prompt" is replaced by the question
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user "
    "with the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>. User: {prompt}. Assistant:"
)
CHAT_SYSTEM = (
    "You are a helpful assistant. You first think about the reasoning process in the mind and then "
    "provide the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here "
    "</think> <answer> answer here </answer>."
)
# The "boxed" template: how R1 itself is evaluated on mathematics (DeepSeek-R1's usage recommendations): the
# model's own chat format and system message, no R1 tags, this sentence after the question.
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
TEMPLATES = ("r1zero", "chat", "boxed")


@dataclass(frozen=True)
class Example:
    prompt: str                   # the question text, without template
    answer: str                   # gold answer as text ("" for code tasks; a solution expression for countdown)
    tests: tuple[str, ...] = ()   # code tasks only: Python snippets, each passes iff it runs without error


def render_prompt(example: Example, template: str, tokenizer=None, think_prefilled: bool = False) -> str:
    """The text the policy continues. template "r1zero" is the paper's raw-text template (the prompt is
    inserted verbatim, so generated prompts end without a full stop); "chat" calls
    tokenizer.render_chat(messages, add_generation_prompt=True) with CHAT_SYSTEM as the system message;
    "boxed" asks a chat model as benchmarks do: the question and BOXED_INSTRUCTION as the only (user)
    message, so the model's template adds its own system message, and no tags are asked for.
    think_prefilled appends " <think>" (r1zero) or "<think>" (chat, which ends in a newline) so the
    model starts inside its reasoning; score such completions with think_prefilled=True.
    Raises ValueError for an unknown template or "chat" without a tokenizer."""
    if template == "r1zero":
        return R1ZERO_TEMPLATE.format(prompt=example.prompt) + (" <think>" if think_prefilled else "")
    if template == "chat":
        if tokenizer is None:
            raise ValueError("the chat template needs a tokenizer with render_chat(messages, add_generation_prompt)")
        messages = [dict(role="system", content=CHAT_SYSTEM), dict(role="user", content=example.prompt)]
        return tokenizer.render_chat(messages, add_generation_prompt=True) + ("<think>" if think_prefilled else "")
    if template == "boxed":
        if tokenizer is None:
            raise ValueError("the boxed template needs a tokenizer with render_chat(messages, add_generation_prompt)")
        messages = [dict(role="user", content=f"{example.prompt}\n{BOXED_INSTRUCTION}")]
        return tokenizer.render_chat(messages, add_generation_prompt=True) + ("<think>" if think_prefilled else "")
    raise ValueError(f"unknown template {template!r}; known templates: {', '.join(TEMPLATES)}")

# -----------------------------------------------------------------------------
# The rewards: R1's accuracy and format rewards (§2.2.2), and the other terms a task may weigh in


def format_reward(text: str, think_prefilled: bool = False) -> float:
    """1.0 iff text is <think>...</think>, then only whitespace, then <answer>X</answer> with X not
    blank, then only whitespace; each tag exactly once (counted as exact strings, so a tag inside the
    reasoning counts too). With think_prefilled the prompt already ended in <think>, so text must
    contain no <think> and starts inside the reasoning. Source: DeepSeek-R1 §2.2.2 (format reward)."""
    want = {"<think>": 0 if think_prefilled else 1, "</think>": 1, "<answer>": 1, "</answer>": 1}
    if any(text.count(tag) != n for tag, n in want.items()):
        return 0.0
    if not think_prefilled:
        head, _, text = text.partition("<think>")
        if head.strip():
            return 0.0
    _, _, rest = text.partition("</think>")
    between, found, rest = rest.partition("<answer>")
    answer, _, tail = rest.partition("</answer>")
    # found is "" when <answer> came before </think> (tags in the wrong order)
    return 1.0 if found and not between.strip() and answer.strip() and not tail.strip() else 0.0


def tags_reward(text: str, think_prefilled: bool = False, think_tags: bool = True, answer_tags: bool = True) -> float:
    """Partial credit on the way to format_reward: 0.25 for each of <think>, </think> (if think_tags), <answer>,
    </answer> (if answer_tags) that appears exactly once (<think>: not at all when think_prefilled). A shaping
    term, not in the paper: a small model that never writes the tags gets format = accuracy = 0 in every
    sample, so every group has zero reward variance and GRPO has nothing to learn from; this part varies
    from the first step (open R1 reproductions use the same "count the tags" reward). Task.reward says which
    tags pay for a given completion."""
    want = ({"<think>": 0 if think_prefilled else 1, "</think>": 1} if think_tags else {}) | \
        ({"<answer>": 1, "</answer>": 1} if answer_tags else {})
    return sum(0.25 for tag, n in want.items() if text.count(tag) == n)


def accuracy_reward(completion: str, answer: str, number_only: bool = False, strict: bool = True) -> float:
    """1.0 iff extract_answer(completion, strict) math_equal's the gold answer. strict=True (the default)
    reads only the R1 markers: <answer> tags, \\boxed{}, ####. number_only requires a plain number, so
    echoing the question ("3 + 5") does not score on arithmetic tasks.
    Source: DeepSeek-R1 §2.2.2 (accuracy reward, rule-based)."""
    pred = extract_answer(completion, strict=strict)
    if pred is None or (number_only and not is_number(pred)):
        return 0.0
    return 1.0 if math_equal(pred, answer) else 0.0


def overlong_penalty(length: int, max_len: int, buffer: int, factor: float = 1.0) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, §3.4, eq. 13), times factor:
        R_length(y) = 0                                  if |y| <= L_max - L_cache
                    = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
                    = -1                                 if |y| > L_max
    with |y| = length (completion tokens, the stop token included), L_max = max_len (the generation limit),
    L_cache = buffer (1 <= buffer <= max_len). Added to the rule reward, so of two correct answers the one
    that ends later in the last buffer tokens before the limit gets less; a truncated one gets -factor. A
    length-aware reward, next to overlong filtering (train.py --mask-truncated), which drops truncated
    completions from the loss instead."""
    assert 1 <= buffer <= max_len, f"buffer={buffer} must be in [1, max_len={max_len}]"
    if length <= max_len - buffer:
        return 0.0
    if length <= max_len:
        return factor * (max_len - buffer - length) / buffer
    return -factor


def countdown_reward(completion: str, answer: str) -> float:
    """1.0 iff the extracted answer is an expression (optionally "expr = target") that uses exactly
    the numbers of the gold solution expression `answer`, each once, and equals its value exactly.
    Division by zero, other numbers, repeats, or any other character score 0. Source: TinyZero."""
    return _countdown_score(extract_answer(completion, strict=True), answer)


LANG_SCRIPTS = {"en": ("LATIN",), "fr": ("LATIN",), "de": ("LATIN",), "es": ("LATIN",),
                "zh": ("CJK",), "ja": ("CJK", "HIRAGANA", "KATAKANA"), "ru": ("CYRILLIC",), "ko": ("HANGUL",)}


def language_consistency_reward(text: str, lang: str = "en") -> float:
    """Share of words in the chain of thought written in lang's script. The CoT is the text before
    the first </think> (after a <think> if any), or all of text if there is no </think>. A word is a
    whitespace-separated token with at least one letter (Unicode category L*); it is in the target
    language iff every letter's Unicode name starts with one of LANG_SCRIPTS[lang] (ASCII letters are
    LATIN). Digits and symbols are neutral; no words at all scores 1.0 (nothing is mixed). Chinese has
    no spaces, so a Chinese sentence counts as one word. Raises ValueError for an unknown lang.
    Source: DeepSeek-R1 §2.3.2 (proportion of target-language words in the CoT)."""
    if lang not in LANG_SCRIPTS:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANG_SCRIPTS)}")
    scripts = LANG_SCRIPTS[lang]
    cot = text.split("</think>", 1)[0] if "</think>" in text else text
    cot = cot.rsplit("<think>", 1)[-1]
    if cot.isascii():  # fast path, all in C: every ASCII letter is Latin
        return 1.0 if "LATIN" in scripts or cot.lower() == cot.upper() else 0.0
    words = hits = 0
    for word, n in collections.Counter(cot.split()).items():  # each distinct word and character checked once
        letters = [c for c in set(word) if c.isalpha()]
        if letters:
            words += n
            hits += n * all(unicodedata.name(c, "").startswith(scripts) for c in letters)
    return hits / words if words else 1.0


def code_reward(completion: str, tests: tuple[str, ...] | list[str], timeout: float = 5.0,
                memory_mb: int = 1024) -> float:
    """Fraction of tests (Python snippets, usually asserts) that pass after the completion's program
    (extract_code), run by sandbox.run_tests (timeout in seconds, memory_mb of memory). 0.0 with no program
    or no tests. Never raises for any completion."""
    code = extract_code(completion)
    if not code or not tests:
        return 0.0
    return run_tests(code, tests, timeout=timeout, memory_mb=memory_mb) / len(tests)


DEFAULT_WEIGHTS = {"accuracy": 1.0, "format": 1.0, "tags": 0.0, "language": 0.0, "answer": 0.0}

# -----------------------------------------------------------------------------
# Reading and scoring completions: the parts of the rewards above that tasks also use


def extract_code(completion: str) -> str | None:
    """The program in a completion: the last ``` fenced block inside the last <answer>...</answer>
    (or anywhere, if there is no answer), without its language tag; else the whole answer text.
    None when there is neither an answer nor a fenced block."""
    end = completion.rfind("</answer>")
    start = completion.rfind("<answer>", 0, end) if end >= 0 else -1
    text = completion[start + len("<answer>"):end] if start >= 0 else completion
    fence_end = text.rfind("```")
    fence = text.rfind("```", 0, fence_end) if fence_end >= 0 else -1
    if fence >= 0:
        first, _, body = text[fence + 3:fence_end].partition("\n")
        text = body if not first.strip() or first.strip().isidentifier() else first + "\n" + body
    elif start < 0:
        return None
    return text.strip() or None


def _countdown_score(pred: str | None, answer: str) -> float:
    """countdown_reward of an extracted answer pred (None: no answer). Raises ValueError for a gold answer that
    is not an expression."""
    gold = integer_arithmetic(answer)
    if gold is None:
        raise ValueError(f"countdown gold answer {answer!r} is not an expression")
    if pred is None:
        return 0.0
    lhs, eq, rhs = pred.partition("=")
    if eq and rhs.strip() != str(gold[0]):
        return 0.0
    return 1.0 if integer_arithmetic(lhs) == gold else 0.0

# -----------------------------------------------------------------------------
# Tasks


def _split_of(key: str) -> str:
    """The split a problem belongs to, fixed by a hash of its canonical text (not by seed or position)."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return "test" if h % 100 < TEST_PERCENT else "train"


class Task:
    """A source of examples (generated by draw(rng) -> (key, Example), or a list per split loaded
    from a file) plus the rule that scores completions for them. well_formed(example, completion) -> bool
    gates the format/tags/language credit (default: always True); reasoned(example, completion) -> bool gates the
    format credit (default: always True); answer_accuracy(example, completion) -> float in [0, 1] is the
    format-independent accuracy (default: accuracy itself)."""

    def __init__(self, name: str, seed: int, accuracy, extract, draw=None, splits=None, well_formed=None,
                 answer_accuracy=None, reasoned=None):
        self.name, self.seed, self._accuracy, self._extract, self._draw = name, seed, accuracy, extract, draw
        self._well_formed = well_formed or (lambda example, completion: True)
        self._reasoned = reasoned or (lambda example, completion: True)
        self._answer_accuracy = answer_accuracy            # None: the accuracy itself
        self._splits = {split: list(examples) for split, examples in (splits or {}).items()}  # in example order

    def _check(self, split: str):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def size(self, split: str) -> int | None:
        """Examples in split; None for generated tasks (unlimited)."""
        self._check(split)
        return None if self._draw else len(self._splits[split])

    def example(self, split: str, i: int) -> Example:
        """Example i of split, deterministic in (seed, split, i); file tasks wrap i modulo the split size.
        Raises ValueError for an unknown or empty split."""
        self._check(split)
        if self._draw:
            rng = random.Random(f"{self.name}|{self.seed}|{split}|{i}")  # str seeds hash with SHA-512: stable
            for _ in range(10_000):  # redraw until the problem's hash puts it in this split
                key, ex = self._draw(rng)
                if _split_of(key) == split:
                    return ex
            raise ValueError(f"task {self.name}: too few distinct problems to fill the {split} split")
        examples = self._splits[split]
        if not examples:
            raise ValueError(f"task {self.name}: the {split} split is empty")
        return examples[i % len(examples)]

    def reward(self, example: Example, completion: str, think_prefilled: bool = False,
               weights: dict[str, float] | None = None) -> tuple[float, dict[str, float]]:
        """(total, parts): parts are accuracy (0/1, or the passed fraction for code), format (0/1), tags
        (tags_reward, weight 0 by default), language (language_consistency_reward, weight 0 by default) and
        answer (answer_accuracy: the answer read wherever it is, tags or not; weight 0 by default);
        total = sum(weights[k] * parts[k]), weights defaulting to DEFAULT_WEIGHTS. Raises ValueError for an
        unknown weight name.
        No answer, no credit: format, tags and language pay only when the completion's answer (read leniently,
        extract_answer(strict=False)) is a well-formed answer for the task: a number for arithmetic, an
        expression for countdown, mathematics (not prose, unless the gold is prose) for math files, a program
        for code. Otherwise tags around any text ("<answer> answer here </answer>", the template's own
        placeholder) pay as much as a real answer, and a policy that copies the placeholder gets a reward with
        zero variance in every group and stops learning. The paper's format reward checks tags only;
        R1's real policies always put an answer in them, a 135M model does not.
        The think tags also pay when the answer tag holds no answer but the reasoning before it does ("3 + 4 =
        7</think> <answer> the sum </answer>"): an answer tag then earns what stopping before it earns, never
        less. When it lost the think tags' credit too, the base model's frequent <answer> around words scored
        below "3 + 4 = 7</think>", and GRPO taught some seeds never to write the tag.
        The answer comes out of the reasoning: for arithmetic the format pays only when the reasoning ends at the
        number the answer tags give (_reasoned_number). Otherwise the format is found first by the shortest
        completions, a guess in tags ("Compute 2 + 5</think> <answer>8</answer>": format, tags, no sum), and the
        policy trades its arithmetic for the format before it learns both (benchmarks/README.md, "The default
        over seeds")."""
        w = {**DEFAULT_WEIGHTS, **(weights or {})}
        if set(w) != set(DEFAULT_WEIGHTS):
            raise ValueError(f"unknown reward weights {sorted(set(w) - set(DEFAULT_WEIGHTS))}; "
                             f"known: {list(DEFAULT_WEIGHTS)}")
        formed = self._well_formed(example, completion)
        accuracy = self._accuracy(example, completion)
        parts = {"accuracy": accuracy,
                 "format": format_reward(completion, think_prefilled) if formed and self._reasoned(example, completion)
                 else 0.0,
                 "tags": tags_reward(completion, think_prefilled, answer_tags=formed, think_tags=formed or
                                     self._well_formed(example, completion.partition("<answer>")[0])),
                 "language": language_consistency_reward(completion) if formed else 0.0,
                 "answer": self._answer_accuracy(example, completion) if self._answer_accuracy else accuracy}
        return sum(w[k] * parts[k] for k in parts), parts

    def answer_accuracy(self, example: Example, completion: str) -> float:
        """Format-independent accuracy: the answer read leniently, wherever it is (arithmetic: the last number
        in the completion; math, jsonl and gsm8k: extract_answer(strict=False), equal by math_equal, so an
        expression worth the answer counts here even where the accuracy wants a number, as gsm8k's does;
        countdown: the free-form answer; code: the same as accuracy). Returns a float in [0, 1]; never raises
        on model output. What the model knows, apart from whether it learned the tags."""
        return (self._answer_accuracy or self._accuracy)(example, completion)

    def extract(self, completion: str) -> str | None:
        """The answer for majority voting (cons@k), in a form where equal answers are equal strings."""
        return self._extract(completion)


def load_task(spec: str, seed: int = 0) -> Task:
    """A task from its spec: "arith" (default: single-digit a + b, learnable by a 135M model on CPU),
    "arith:operands=3,digits=2,ops=+-*/" (max=N caps the numbers below 10^digits for finer steps),
    "countdown" (3 or 4 numbers in 1..99, target in 1..99; numbers=3 and max=N narrow it),
    "gsm8k:PATH", "math:PATH", "jsonl:PATH", "code:PATH". A file task's test split is TEST_PATH in its
    own order if given as PATH,test=TEST_PATH, else the lines whose prompt hashes into TEST_PERCENT
    (orders: _file_splits). Answers are read as the R1 accuracy reward reads them (extract_answer(
    strict=True): <answer>, \\boxed{}, ####), or with PATH,extract=free also from free-form text (for
    models that do not use the tags).
    Raises ValueError for an unknown task or option, or a malformed line (naming file and line)."""
    name, _, arg = spec.partition(":")
    if name == "arith":
        o = _options(spec, arg, dict(operands=2, digits=1, ops="+", max=0))  # max=0: 10^digits - 1
        top = o["max"] or 10 ** min(o["digits"], 100) - 1
        if o["operands"] < 2 or top < 1 or not o["ops"] or set(o["ops"]) - set("+-*/"):
            raise ValueError(f"task {spec!r}: need operands >= 2, max >= 1 and ops from +-*/")
        draw = functools.partial(_draw_arith, operands=o["operands"], max_number=top, ops=o["ops"])
        number = lambda example, c: accuracy_reward(c, example.answer, number_only=True)
        return Task(spec, seed, number, _arith_extract, draw=draw, well_formed=_number_formed,
                    reasoned=_reasoned_number, answer_accuracy=_last_number_accuracy)
    if name == "countdown":
        o = _options(spec, arg, dict(numbers=0, max=99))  # numbers=0: 3 or 4 at random
        if o["numbers"] not in (0, 2, 3, 4, 5, 6) or o["max"] < 1:
            raise ValueError(f"task {spec!r}: numbers must be 2..6 and max >= 1")
        draw = functools.partial(_draw_countdown, numbers=o["numbers"], max_number=o["max"])
        return Task(spec, seed, lambda example, c: countdown_reward(c, example.answer), _countdown_extract, draw=draw,
                    well_formed=_countdown_formed,
                    answer_accuracy=lambda example, c: _countdown_score(_lenient_answer(c), example.answer))
    if name in FILE_TASKS and arg:
        parse_row, accuracy, extract, well_formed = FILE_TASKS[name]
        path, opts = _file_options(spec, arg)
        splits = _file_splits(name, path, opts["test"], parse_row, seed)
        strict = opts["extract"] == "strict"
        # code reads its program one way only: answer_accuracy is accuracy, not the tests run a second time
        lenient = None if name == "code" else functools.partial(_math_accuracy, strict=False)
        return Task(spec, seed, functools.partial(accuracy, strict=strict), functools.partial(extract, strict=strict),
                    splits=splits, well_formed=well_formed, answer_accuracy=lenient)
    raise ValueError(f"unknown task {spec!r}; known tasks: {KNOWN_TASKS}")

# -----------------------------------------------------------------------------
# Generated tasks: arithmetic, and countdown (TinyZero: Pan et al. 2025; the number game from the British TV show)


def _draw_countdown(rng: random.Random, numbers: int, max_number: int) -> tuple[str, Example]:
    """Pick numbers, combine them in random order with random valid ops (so a solution exists by
    construction, kept as the gold answer), keep it if the target is an integer in 1..99."""
    for _ in range(1000):
        nums = [rng.randint(1, max_number) for _ in range(numbers or rng.choice((3, 4)))]
        pool = [(Fraction(x), str(x)) for x in nums]
        while len(pool) > 1:
            (a, ea), (b, eb) = pool.pop(rng.randrange(len(pool))), pool.pop(rng.randrange(len(pool)))
            ops = "+*" + "-" * (a > b) + "/" * (a % b == 0)  # integer, positive intermediate values
            op = rng.choice(ops)
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]  # b >= 1: values stay positive
            pool.append((value, f"({ea} {op} {eb})"))
        target, expr = pool[0]
        if target.denominator == 1 and 1 <= target <= 99:
            prompt = (f"Using the numbers {nums}, create an equation that equals {target}. You can use +, -, *, / "
                      f"and parentheses, and must use each number exactly once. Write only the expression in "
                      f"the answer, for example (1 + 2) / 3")
            return f"countdown|{sorted(nums)}|{target}", Example(prompt, expr[1:-1])
    raise ValueError(f"countdown: no puzzle with target in 1..99 from {numbers} numbers up to {max_number}")


def _draw_arith(rng: random.Random, operands: int, max_number: int, ops: str) -> tuple[str, Example]:
    """operands numbers in 0..max_number joined by ops (usual precedence), redrawn until the value is an integer."""
    for _ in range(1000):
        parts = [str(rng.randint(0, max_number))]
        for _ in range(operands - 1):
            parts += [rng.choice(ops), str(rng.randint(0, max_number))]
        expr = " ".join(parts)
        v = exact_value(expr)
        if v is not None and v.denominator == 1:
            return f"arith|{expr}", Example(f"Compute {expr}", str(v))
    raise ValueError(f"arith: no integer-valued problem with ops={ops} up to {max_number}")


def _options(spec: str, arg: str, defaults: dict) -> dict:
    """"a=1,b=+-" -> dict, typed like the defaults. Raises ValueError naming the spec for unknown keys."""
    opts = dict(defaults)
    for item in filter(None, arg.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in defaults:
            raise ValueError(f"task {spec!r}: bad option {item!r}; options are {', '.join(f'{k}=' for k in defaults)}")
        try:
            opts[key] = type(defaults[key])(value)
        except ValueError:
            raise ValueError(f"task {spec!r}: option {key} needs a number, got {value!r}") from None
    return opts

# -----------------------------------------------------------------------------
# File tasks: one JSON object a line


def jsonl_lines(path: str):
    """(line number, text) of each non-blank line of a text file. Raises ValueError naming path:line for
    a line that is not UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            if line.strip():
                yield lineno, line


def _file_splits(kind: str, path: str, test_path: str, make, seed: int) -> dict[str, list[Example]]:
    """{"train": [...], "test": [...]} of a file task, in the order example(split, i) serves them. The
    order depends on the files' contents, the task kind and the seed, never on how the path is spelled:
    - with test_path, the test split is that file in its own order (GSM8K's test problem i is line i);
    - without, the test split is the lines whose prompt hashes into TEST_PERCENT (_split_of), shuffled
      by the kind and the file's SHA-256 (the same held-out problems in the same order for every seed);
    - the train split is shuffled by the kind, the file's SHA-256 and the seed.
    Raises ValueError as _read_jsonl does, or OSError for a file that cannot be read."""
    train = _read_jsonl(path, make)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if test_path:
        test = _read_jsonl(test_path, make)
    else:
        test = [ex for ex in train if _split_of(ex.prompt) == "test"]
        train = [ex for ex in train if _split_of(ex.prompt) == "train"]
        random.Random(f"{kind}|{digest}|test").shuffle(test)   # str seeds hash with SHA-512: stable
    random.Random(f"{kind}|{digest}|{seed}|train").shuffle(train)
    return {"train": train, "test": test}


def _read_jsonl(path: str, make) -> list[Example]:
    """make(row) -> Example for each non-blank line; any error is re-raised naming path:line."""
    examples = []
    for lineno, line in jsonl_lines(path):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            examples.append(make(row))
        except (ValueError, KeyError, TypeError, SyntaxError, RecursionError) as e:  # JSONDecodeError: a ValueError
            raise ValueError(f"{path}:{lineno}: {type(e).__name__}: {e}") from None
    if not examples:
        raise ValueError(f"{path}: no examples (the file is empty or blank)")
    return examples


def _text(row: dict, key: str) -> str:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise ValueError(f"field {key!r} must be a non-empty string or number, got {value!r}")
    return str(value).strip()


def _gsm8k_row(row: dict) -> Example:
    _, sep, final = _text(row, "answer").rpartition("####")
    gold = final.strip().replace(",", "")
    if not sep or not is_number(gold):
        raise ValueError(f"answer must end in '#### <number>', got {row['answer'][-60:]!r}")
    return Example(_text(row, "question"), gold)


def _check_gold(gold: str) -> str:
    """A gold answer the grader can read: braces balance and it is at most MAX_ANSWER_CHARS long."""
    depth, i = 0, 0
    while i < len(gold) and depth >= 0:
        depth += (gold[i] == "{") - (gold[i] == "}")
        i += 2 if gold[i] == "\\" else 1  # \{ and \} are braces the reader shows, not LaTeX groups
    if depth or len(gold) > MAX_ANSWER_CHARS:
        raise ValueError(f"gold answer {gold[:60]!r} has unbalanced braces or is over {MAX_ANSWER_CHARS} characters")
    return gold


def _math_row(row: dict) -> Example:
    """MATH / MATH-500 lines: "problem", and "answer" or else the last \\boxed{} of "solution"."""
    gold = _text(row, "answer") if "answer" in row else extract_answer(_text(row, "solution"), strict=True)
    if not gold:
        raise ValueError("no 'answer', and 'solution' has no final \\boxed{...} answer")
    return Example(_text(row, "problem"), _check_gold(gold))


def _code_row(row: dict) -> Example:
    tests = row["tests"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError("'tests' must be a non-empty list of strings")
    for t in tests:
        ast.parse(t)  # a SyntaxError in a gold test is reported with the file and line
    return Example(_text(row, "prompt"), "", tuple(tests))


def _math_extract(completion: str, strict: bool = True) -> str | None:
    pred = extract_answer(completion, strict=strict)
    return None if pred is None else canonical_answer(pred)


def _arith_extract(completion: str) -> str | None:  # a non-number (an echoed "3 + 5") keeps its own text
    pred = extract_answer(completion, strict=True)
    return None if pred is None else canonical_answer(pred) if is_number(pred) else spelling(pred)


def _countdown_extract(completion: str) -> str | None:
    pred = extract_answer(completion, strict=True)
    return None if pred is None else "".join(pred.split())


def _math_accuracy(example: Example, completion: str, strict: bool = True) -> float:
    return accuracy_reward(completion, example.answer, strict=strict)


def _number_accuracy(example: Example, completion: str, strict: bool = True) -> float:
    """GSM8K's answer is a number (as lm-evaluation-harness and R1's evaluation read it): "20 - 5" is not 15."""
    return accuracy_reward(completion, example.answer, number_only=True, strict=strict)


def _lenient_answer(completion: str) -> str | None:
    return extract_answer(completion, strict=False)


def _math_formed(example: Example, completion: str) -> bool:
    """An answer that is mathematics, or prose where the gold answer is prose too ("Evelyn")."""
    pred = _lenient_answer(completion)
    return pred is not None and (not is_prose(pred) or is_prose(example.answer))


def _number_formed(example: Example, completion: str) -> bool:
    pred = _lenient_answer(completion)
    return pred is not None and is_number(pred)


def _reasoned_number(example: Example, completion: str) -> bool:
    """The reasoning ends at the number the answer tags give: the last number before </think> equals the
    answer read strictly ("2 + 5 = 7</think> <answer>7</answer>": yes; "Compute 2 + 5</think> <answer>7</answer>":
    no, the 7 is not reasoned to)."""
    pred, last = extract_answer(completion, strict=True), last_number(completion.partition("</think>")[0])
    return pred is not None and last is not None and math_equal(last, pred)


def _last_number_accuracy(example: Example, completion: str) -> float:
    pred = last_number(completion)
    return 1.0 if pred is not None and math_equal(pred, example.answer) else 0.0


def _countdown_formed(example: Example, completion: str) -> bool:
    pred = _lenient_answer(completion)
    return pred is not None and integer_arithmetic(pred.partition("=")[0]) is not None


def _code_formed(example: Example, completion: str) -> bool:
    return extract_code(completion) is not None


def _jsonl_row(row: dict) -> Example:
    return Example(_text(row, "prompt"), _check_gold(_text(row, "answer")))


def _code_accuracy(example: Example, completion: str, strict: bool = True) -> float:
    return code_reward(completion, example.tests)


def _code_extract(completion: str, strict: bool = True) -> str | None:
    return extract_code(completion)


FILE_TASKS = {  # name -> (row parser, accuracy(example, completion, strict), extract(completion, strict),
    #                 well_formed(example, completion))
    "gsm8k": (_gsm8k_row, _number_accuracy, _math_extract, _number_formed),
    "math": (_math_row, _math_accuracy, _math_extract, _math_formed),
    "jsonl": (_jsonl_row, _math_accuracy, _math_extract, _math_formed),
    "code": (_code_row, _code_accuracy, _code_extract, _code_formed),
}
KNOWN_TASKS = "arith[:operands=2,digits=1,ops=+,max=N], countdown[:numbers=3|4,max=99], " + \
    ", ".join(f"{k}:PATH[,test=TEST_PATH][,extract=free]" for k in FILE_TASKS)


def _file_options(spec: str, arg: str) -> tuple[str, dict]:
    """"PATH[,test=TEST_PATH][,extract=strict|free]" -> (PATH, {"test": ..., "extract": ...})."""
    path, opts = arg, {"test": "", "extract": "strict"}
    while True:
        head, comma, last = path.rpartition(",")
        key, eq, value = last.partition("=")
        if not (comma and eq and key in opts):
            break
        opts[key], path = value, head
    if opts["extract"] not in ("strict", "free"):
        raise ValueError(f"task {spec!r}: extract must be strict or free, got {opts['extract']!r}")
    return path, opts

# -----------------------------------------------------------------------------
# reward.py's public names, those that moved to grader.py and sandbox.py included: callers import them from here

__all__ = [
    "BOXED_INSTRUCTION", "CHAT_SYSTEM", "DEFAULT_WEIGHTS", "FILE_TASKS", "KNOWN_TASKS", "LANG_SCRIPTS",
    "R1ZERO_TEMPLATE", "TEMPLATES", "TEST_PERCENT", "Example", "Task", "accuracy_reward", "code_reward",
    "countdown_reward", "extract_code", "format_reward", "jsonl_lines", "language_consistency_reward", "load_task",
    "overlong_penalty", "render_prompt", "tags_reward",
    # grader.py
    "DECIMAL_DIGITS", "GREEK", "MAX_ANSWER_CHARS", "MAX_BITS", "MAX_DELIMITERS", "MAX_DEPTH", "MAX_ITEMS", "MAX_NEST",
    "MAX_SCAN", "MIN_DEFINED", "MIN_PLACES", "N_POINTS", "POINT_DEN", "REL_TOL", "Grade", "canonical_answer",
    "extract_answer", "grade", "main", "math_equal",
    # sandbox.py
    "NOBODY", "sandbox_mode",
]

if __name__ == "__main__":
    sys.exit(main())  # grader.py's command line
