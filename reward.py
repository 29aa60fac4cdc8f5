"""
The RL environment: tasks (where prompts and gold answers come from), prompt templates, and the
rule-based rewards of DeepSeek-R1 (§2.2.2: an accuracy reward and a format reward, no reward model).

    python -m pytest tests/test_reward.py -q      # tables of hard cases, fuzzing, the code sandbox

Rules that hold everywhere in this file:
  1. No regex and no sympy: every parser is a small hand-written scanner, and numbers are compared
     exactly with fractions.Fraction (0.5 == 1/2, but 0.33 != 1/3: there is no float tolerance).
  2. Model output can never crash or stall a reward: long answers, deep nesting and huge powers are
     refused by explicit limits (MAX_*) and then compared as plain strings. A malformed *gold* answer
     in a data file is the user's bug, so it raises ValueError at load time with the file and line.
  3. Rewards fail closed: anything that does not parse scores 0, never 1 by accident.

Tasks (load_task(spec)): arith[:operands=2,digits=1,ops=+,max=N], countdown[:numbers=3|4,max=99],
gsm8k:PATH, math:PATH, jsonl:PATH, code:PATH, each file task optionally PATH,test=TEST_PATH.
Held-out split: a generated problem, or a file line's prompt, is in "test" when a SHA-256 hash of it
falls in the lowest TEST_PERCENT percent. The split is a property of the problem (not of the seed or
of the line order), so train and test never share a problem, whatever seed either run used.

The code sandbox (code_reward). Each completion runs in a fresh Python process that gets: a wall-clock
limit (the whole process group is SIGKILLed at the deadline), RLIMIT_CPU, RLIMIT_AS (memory),
RLIMIT_FSIZE, RLIMIT_NPROC, stdin from /dev/null and a minimal environment. When running as root with
util-linux `unshare`/`setpriv` (checked once per process, see sandbox_mode()), it also gets new network,
PID and mount namespaces: no network at all (not even 127.0.0.1), every process it starts dies with it,
fresh private tmpfs over /tmp, /var/tmp and /dev/shm (its working directory is that /tmp, and all
of it vanishes afterwards), and it runs as user `nobody` without capabilities except read-only
CAP_DAC_READ_SEARCH (so it can read the Python install even when that lives under /root), so it cannot
write any file outside those tmpfs or raise its limits. Without namespaces (not root, no unshare) it
runs as the current user in a temporary directory: it can then use the network, write wherever that
user can, and a child that leaves the process group may outlive it. In both modes it does NOT protect
against: reading files (secrets included), kernel exploits, CPU/memory contention until the deadline,
or a program written to attack the harness (it shares its process with the test loop, so it could
forge the result, and an object whose __eq__ always returns True passes `assert f(x) == y`).
Use it for rewarding model-written code during training, not for running hostile code.

Left out: symbolic algebra (x^2+1 vs 1+x^2, trig identities, \\sqrt{8} vs 2\\sqrt{2} are unequal unless
written the same way), units other than \\text{...}/trailing words, and non-Latin number formats.
"""
import ast
import collections
import functools
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

MAX_ANSWER_CHARS = 1000   # longer answers are never parsed, only compared as stripped strings
MAX_SCAN = 10_000         # a \boxed{...} longer than this is treated as unbalanced (keeps 1 MB inputs linear and short)
MAX_DEPTH = 50            # nesting depth of parentheses/unary signs the evaluator follows (recursion guard)
MAX_BITS = 8192           # no exact value may need more bits than this (stops 9^9^9^9 and 10^100000)
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
TEMPLATES = ("r1zero", "chat")


@dataclass(frozen=True)
class Example:
    prompt: str                   # the question text, without template
    answer: str                   # gold answer as text ("" for code tasks; a solution expression for countdown)
    tests: tuple[str, ...] = ()   # code tasks only: Python snippets, each passes iff it runs without error


def render_prompt(example: Example, template: str, tokenizer=None, think_prefilled: bool = False) -> str:
    """The text the policy continues. template "r1zero" is the paper's raw-text template (the prompt is
    inserted verbatim, so generated prompts end without a full stop); "chat" calls
    tokenizer.render_chat(messages, add_generation_prompt=True) with CHAT_SYSTEM as the system message.
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
    raise ValueError(f"unknown template {template!r}; known templates: {', '.join(TEMPLATES)}")

# -----------------------------------------------------------------------------
# Tags: the format reward and answer extraction (DeepSeek-R1 §2.2.2)


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


def tags_reward(text: str, think_prefilled: bool = False) -> float:
    """Partial credit on the way to format_reward: 0.25 for each of <think>, </think>, <answer>,
    </answer> that appears exactly once (<think>: not at all when think_prefilled). A shaping term,
    not in the paper: a small model that never writes the tags gets format = accuracy = 0 in every
    sample, so every group has zero reward variance and GRPO has nothing to learn from; this part
    varies from the first step (open R1 reproductions use the same "count the tags" reward)."""
    want = {"<think>": 0 if think_prefilled else 1, "</think>": 1, "<answer>": 1, "</answer>": 1}
    return sum(0.25 for tag, n in want.items() if text.count(tag) == n)


def _group_end(s: str, i: int, limit: int = MAX_SCAN) -> int | None:
    """s[i] == "{": the index just after its matching "}", skipping escaped \\{ and \\}.
    None if unbalanced or longer than limit."""
    depth, j, stop = 0, i, min(len(s), i + limit)
    while j < stop:
        c = s[j]
        if c == "\\":
            j += 2
            continue
        depth += (c == "{") - (c == "}")
        j += 1
        if depth == 0:
            return j
    return None


def extract_answer(text: str) -> str | None:
    """The final answer in a completion, stripped: the content of the last <answer>...</answer>; else
    of the last \\boxed{...} or \\fbox{...} (only the last one is tried, and it must close within
    MAX_SCAN characters); else the rest of the last line starting with "####" (GSM8K style).
    None when there is none, or when the chosen one is empty (no fallback then: the model committed)."""
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    if start >= 0:
        return text[start + len("<answer>"):end].strip() or None
    cmd = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if cmd >= 0:
        i = cmd + (6 if text.startswith("\\boxed", cmd) else 5)
        while i < len(text) and text[i] == " ":
            i += 1
        j = _group_end(text, i) if text.startswith("{", i) else None
        return (text[i + 1:j - 1].strip() or None) if j else None
    for line in reversed(text.split("\n")):
        if line.lstrip().startswith("####"):
            return line.lstrip()[4:].strip() or None
    return None

# -----------------------------------------------------------------------------
# Exact arithmetic: a tokenizer and a recursive-descent evaluator over Fractions


class _ParseError(ValueError):
    """Raised inside the evaluator for anything it does not accept; never escapes this module."""


def _bounded(v: Fraction) -> Fraction:
    if v.numerator.bit_length() > MAX_BITS or v.denominator.bit_length() > MAX_BITS:
        raise _ParseError("value too large")
    return v


def _scan_number(s: str, i: int, integers_only: bool) -> tuple[Fraction, int]:
    """Reads an unsigned literal at s[i]: 12, 1.5, .5, 2e-3 (not in integers_only mode)."""
    j = i
    while j < len(s) and s[j].isdigit():  # isdigit() is Unicode-wide, so check ASCII below
        j += 1
    whole, frac = s[i:j], ""
    if not integers_only and j < len(s) and s[j] == ".":
        k = j + 1
        while k < len(s) and s[k].isdigit():
            k += 1
        frac, j = s[j + 1:k], k
    if not (whole + frac) or not (whole + frac).isascii():
        raise _ParseError(f"bad number at {i}")
    v = Fraction(int(whole + frac), 10 ** len(frac))
    if not integers_only and j < len(s) and s[j] in "eE":  # scientific notation; 'e' alone is not a number
        k = j + 1 + (j + 1 < len(s) and s[j + 1] in "+-")
        m = k
        while m < len(s) and s[m].isdigit() and s[m].isascii():
            m += 1
        if m > k:
            exp = int(s[k:m]) * (-1 if s[k - 1] == "-" else 1)
            if abs(exp) > 1000:
                raise _ParseError("exponent too large")
            v, j = v * Fraction(10) ** exp, m
    return _bounded(v), j


def _tokens(s: str, countdown: bool = False) -> list:
    """Fractions, one-character operators, and "sqrt". Braces act as parentheses (10^{3}).
    countdown mode allows only integers, + - * / and parentheses."""
    if len(s) > MAX_ANSWER_CHARS:  # also keeps int() below Python's 4300-digit limit
        raise _ParseError("too long")
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or c == ".":
            v, i = _scan_number(s, i, integers_only=countdown)
            out.append(v)
        elif c in "+-*/()":
            if s.startswith("**", i) and not countdown:
                out.append("^")
                i += 2
            else:
                out.append(c)
                i += 1
        elif countdown:
            raise _ParseError(f"character {c!r} not allowed")
        elif c in "^{}":
            out.append({"{": "(", "}": ")"}.get(c, c))
            i += 1
        elif s.startswith("\\sqrt", i):
            out.append("sqrt")
            i += 5
        else:
            raise _ParseError(f"unexpected {c!r}")
    return out


class _Evaluator:
    """expr := term (+|- term)*; term := unary (*|/ unary)*; unary := (+|-) unary | power;
    power := atom [^ unary] (so -2^2 = -4 and 2^3^2 = 2^9); atom := number | ( expr ) | sqrt atom.
    No implicit multiplication. numbers collects the literals in order (the countdown check needs them)."""

    def __init__(self, tokens: list):
        self.tokens, self.pos, self.depth, self.numbers = tokens, 0, 0, []

    def run(self) -> Fraction:
        v = self.expr()
        if self.pos != len(self.tokens):
            raise _ParseError("trailing tokens")
        return v

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        tok = self.peek()
        if tok is None:
            raise _ParseError("unexpected end")
        self.pos += 1
        return tok

    def nested(self, parse):  # every level of nesting goes through here, so recursion stays bounded
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _ParseError("nested too deeply")
        v = parse()
        self.depth -= 1
        return v

    def expr(self) -> Fraction:
        v = self.term()
        while self.peek() in ("+", "-"):
            v = _bounded(v + self.term() if self.take() == "+" else v - self.term())
        return v

    def term(self) -> Fraction:
        v = self.unary()
        while self.peek() in ("*", "/"):
            op, w = self.take(), self.unary()
            if op == "/" and w == 0:
                raise _ParseError("division by zero")
            v = _bounded(v * w if op == "*" else v / w)
        return v

    def unary(self) -> Fraction:
        if self.peek() in ("+", "-"):
            sign = -1 if self.take() == "-" else 1
            return sign * self.nested(self.unary)
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exp = self.nested(self.unary)
        if exp.denominator != 1 or (base == 0 and exp < 0):
            raise _ParseError("only integer powers, and not of zero to a negative power")
        size = max(base.numerator.bit_length(), base.denominator.bit_length())
        if abs(base) != 1 and base != 0 and size * abs(exp) > MAX_BITS:  # check the size before computing
            raise _ParseError("power too large")
        return _bounded(base ** int(exp))

    def atom(self) -> Fraction:
        tok = self.take()
        if isinstance(tok, Fraction):
            self.numbers.append(tok)
            return tok
        if tok == "(":
            v = self.nested(self.expr)
            if self.take() != ")":
                raise _ParseError("unbalanced parentheses")
            return v
        if tok == "sqrt":  # exact only for squares of rationals; other roots stay symbolic (string compare)
            v = self.nested(self.atom)
            if v < 0 or math.isqrt(v.numerator) ** 2 != v.numerator or math.isqrt(v.denominator) ** 2 != v.denominator:
                raise _ParseError("irrational square root")
            return Fraction(math.isqrt(v.numerator), math.isqrt(v.denominator))
        raise _ParseError(f"unexpected {tok!r}")


def _value(s: str) -> Fraction | None:
    """The exact value of a normalised answer, or None if it is not a plain arithmetic expression."""
    try:
        return _Evaluator(_tokens(s)).run()
    except _ParseError:
        return None

# -----------------------------------------------------------------------------
# Answer normalisation and math_equal


_REPLACEMENTS = [  # applied in this order; each pair is (LaTeX or Unicode spelling, what it means here)
    ("\\left", ""), ("\\right", ""), ("\\displaystyle", ""),
    ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\qquad", " "), ("\\quad", " "), ("\\ ", " "), ("~", " "),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\u2212", "-"),
    ("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"),
    ("^{\\circ}", ""), ("^\\circ", ""), ("\u00b0", ""), ("\\degree", ""),   # degrees: 90^\circ == 90
    ("\\%", ""), ("%", ""), ("\\$", ""), ("$", ""), ("{,}", ","),           # 50% == 50; $...$ math mode
]
_TEXT_COMMANDS = ("\\text{", "\\textbf{", "\\textrm{", "\\mathrm{", "\\mbox{")


def _strip_text(s: str) -> str:
    """\\text{...} and friends: a whole answer \\text{yes} becomes yes; elsewhere they are units and
    are dropped together with a power right after them (5\\text{ cm}^2 -> 5, not 25)."""
    kept, texts, i = [], [], 0
    while True:
        hits = [(j, c) for c in _TEXT_COMMANDS if (j := s.find(c, i)) >= 0]
        if not hits:
            break
        j, cmd = min(hits)
        end = _group_end(s, j + len(cmd) - 1)
        if end is None:
            break
        kept.append(s[i:j])
        texts.append(s[j + len(cmd):end - 1])
        i = end
        if s.startswith("^", i):  # unit power: ^2 or ^{2}
            i = (_group_end(s, i + 1) or len(s)) if s.startswith("{", i + 1) else i + 2
    kept.append(s[i:])
    rest = "".join(kept)
    return rest if rest.strip() else "".join(texts)


def _latex_arg(s: str, i: int) -> tuple[str, int] | None:
    """One macro argument at s[i] (after spaces): {group}, \\command, or a single character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        end = _group_end(s, i)
        return (s[i + 1:end - 1], end) if end else None
    if s[i] == "\\":
        j = i + 1
        while j < len(s) and s[j].isalpha():
            j += 1
        return (s[i:j], j) if j > i + 1 else None
    return (s[i], i + 1) if s[i].isalnum() else None


def _expand_macros(s: str, depth: int = 0) -> str:
    """\\frac{a}{b} and \\frac ab -> a/b (parenthesised unless a single token); \\sqrt 3 -> \\sqrt{3}.
    Any other macro, or one whose arguments cannot be read, is copied as it is."""
    out, i = [], 0
    while (j := s.find("\\", i)) >= 0:
        out.append(s[i:j])
        name = next((m for m in ("\\frac", "\\sqrt") if s.startswith(m, j)), "")
        args, k = [], j + len(name)
        if name and not s[k:k + 1].isalpha() and depth < 20:
            for _ in range(2 if name == "\\frac" else 1):
                if (got := _latex_arg(s, k)) is None:
                    break
                args.append(_expand_macros(got[0], depth + 1))
                k = got[1]
        if name == "\\frac" and len(args) == 2:
            out.append("/".join(a if _single_token(a) else f"({a})" for a in args))
        elif name == "\\sqrt" and len(args) == 1:
            out.append("\\sqrt{" + args[0] + "}")
        else:
            out.append(s[j:j + 2])
            k = j + 2
        i = k
    out.append(s[i:])
    return "".join(out)


def _single_token(a: str) -> bool:
    return a.isalnum() or (a[:1] == "\\" and a[1:].isalpha()) or (
        a.startswith("\\sqrt{") and _group_end(a, 5) == len(a))


def _thousands(s: str) -> str:
    """1,234,567.5 -> 1234567.5 when every comma sits between a 1-3 digit head and 3-digit groups."""
    body = s[1:] if s[:1] in "+-" else s
    whole, _, frac = body.partition(".")
    groups = whole.split(",")
    ok = (len(groups) > 1 and 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
          and all(g.isdigit() and g.isascii() for g in groups) and (not frac or frac.isdigit()))
    return s.replace(",", "") if ok else s


def _mixed_number(s: str) -> str | None:
    """3 1/2, 3\\frac12, -2 \\frac{1}{2} -> "7/2", "7/2", "-5/2"; None when s is not a mixed number."""
    sign = -1 if s.startswith("-") else 1
    body = s.lstrip("+-")
    j = 0
    while j < len(body) and body[j].isdigit() and body[j].isascii():
        j += 1
    rest = body[j:]
    if not j or not (rest.startswith(" ") or rest.startswith("\\frac")):  # "31/2" is not 3 1/2
        return None
    num, slash, den = _expand_macros(rest).strip().partition("/")
    if not (slash and num.isdigit() and den.isdigit() and num.isascii() and den.isascii() and len(num + den) < 50):
        return None
    if not 0 < int(num) < int(den):
        return None
    return str(sign * (int(body[:j]) + Fraction(int(num), int(den))))


def _normalize(s: str) -> str:
    """Spelling-only rewrites that never change a value; see the table in tests/test_reward.py."""
    s = s.strip()
    if len(s) > MAX_ANSWER_CHARS:
        return s
    for cmd in ("\\boxed{", "\\fbox{"):
        if s.startswith(cmd) and _group_end(s, len(cmd) - 1) == len(s):
            s = s[len(cmd):-1]
    for old, new in _REPLACEMENTS:
        s = s.replace(old, new)
    s = _strip_text(s).strip().rstrip(".").strip()
    left, eq, right = s.partition("=")  # "x = 5" -> "5", only for a single = with a name on its left
    name = left.strip()
    if eq and "=" not in right and (name[:1].isalpha() or name[:1] == "\\") and \
            all(c.isalnum() or c in "_\\{}'" for c in name):
        s = right.strip()
    if (mixed := _mixed_number(s)) is not None:
        return mixed
    words = s.split()  # "18 dollars" -> "18": a number followed only by plain words
    if len(words) > 1 and all(w.isascii() and w.isalpha() for w in words[1:]) and _value(_thousands(words[0])) is not None:
        s = words[0]
    words = _expand_macros(s).split()  # drop whitespace, but keep one space between digits: "1 2" is not 12
    s = "".join(w if not i or not (words[i - 1][-1].isdigit() and w[0].isdigit()) else " " + w
                for i, w in enumerate(words))
    return _thousands(s)


def _split_top(s: str) -> list[str] | None:
    """Split at commas outside any bracket; None if the brackets do not balance."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and s[i + 1:i + 2] in ("{", "}"):
            c, i = s[i + 1], i + 1
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    return parts + [s[start:]] if depth == 0 else None


def _canonical(s: str, depth: int = 0) -> str:
    """A normalised answer in canonical text: exact values as Fraction text ("7/2", "-3"), tuples and
    intervals item by item keeping their brackets, sets (\\{..\\}) and bare lists (a, b) sorted."""
    shapes = [(("", ""), s)]  # a bare list "a, b", tried last: "(1,2), (3,4)" is a list of two tuples
    if s.startswith("\\{") and s.endswith("\\}") and len(s) >= 4:
        shapes.insert(0, (("\\{", "\\}"), s[2:-2]))
    elif len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        shapes.insert(0, ((s[0], s[-1]), s[1:-1]))
    for (left, right), inner in shapes if depth < 3 and len(s) <= MAX_ANSWER_CHARS else []:
        items = _split_top(inner)
        if items is not None and 1 < len(items) <= 100:
            keys = [_canonical(x, depth + 1) for x in items]
            if left in ("\\{", ""):  # sets and bare lists are order-free
                keys.sort()
            return left + ",".join(keys) + right
    v = _value(s)
    return s if v is None else str(v)


def canonical_answer(answer: str) -> str:
    """The text two equal answers share (used for majority voting): "1,000" and "1000.0" -> "1000"."""
    return _canonical(_normalize(answer))


def math_equal(pred: str, gold: str) -> bool:
    """True iff pred and gold are the same answer under exact, spelling-only equivalences: thousands
    separators, decimals, signs (incl. U+2212), a/b, \\frac/\\dfrac/\\tfrac (also \\frac12), mixed
    numbers, percentages (50% == 50), scientific notation, $...$, \\left/\\right, \\!, \\, \\text{}
    units, degrees, "x = 5" == 5, tuples and intervals item by item with the same brackets, sets and
    bare lists order-free, + - * / ^ ( ) evaluated exactly, \\sqrt of a perfect square. \\sqrt{2}, \\pi
    and anything else symbolic must be written the same way (up to spacing): no algebra, so it is
    False rather than True by accident. An empty answer never matches."""
    a, b = canonical_answer(pred), canonical_answer(gold)
    return bool(a) and a == b


def accuracy_reward(completion: str, answer: str, number_only: bool = False) -> float:
    """1.0 iff extract_answer(completion) math_equal's the gold answer. number_only requires a plain
    number, so echoing the question ("3 + 5") does not score on arithmetic tasks.
    Source: DeepSeek-R1 §2.2.2 (accuracy reward, rule-based)."""
    pred = extract_answer(completion)
    if pred is None or (number_only and not _is_number(pred)):
        return 0.0
    return 1.0 if math_equal(pred, answer) else 0.0


def _is_number(answer: str) -> bool:
    toks = _safe_tokens(_normalize(answer)) or [None]
    signs = toks[:-1] in ([], ["+"], ["-"])
    return signs and isinstance(toks[-1], Fraction)


def _safe_tokens(s: str, countdown: bool = False) -> list | None:
    try:
        return _tokens(s, countdown)
    except _ParseError:
        return None

# -----------------------------------------------------------------------------
# Countdown (TinyZero: Pan et al. 2025; the number game from the British TV show)


def _countdown_eval(expr: str) -> tuple[Fraction, list[Fraction]] | None:
    """(value, sorted literals) of an expression with integers, + - * / and parentheses only."""
    ev = _Evaluator(_safe_tokens(expr, countdown=True) or [])
    try:
        return ev.run(), sorted(ev.numbers)
    except _ParseError:
        return None


def countdown_reward(completion: str, answer: str) -> float:
    """1.0 iff the extracted answer is an expression (optionally "expr = target") that uses exactly
    the numbers of the gold solution expression `answer`, each once, and equals its value exactly.
    Division by zero, other numbers, repeats, or any other character score 0. Source: TinyZero."""
    gold, pred = _countdown_eval(answer), extract_answer(completion)
    if gold is None:
        raise ValueError(f"countdown gold answer {answer!r} is not an expression")
    if pred is None:
        return 0.0
    lhs, eq, rhs = pred.partition("=")
    if eq and rhs.strip() != str(gold[0]):
        return 0.0
    return 1.0 if _countdown_eval(lhs) == gold else 0.0


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
        v = _value(expr)
        if v is not None and v.denominator == 1:
            return f"arith|{expr}", Example(f"Compute {expr}", str(v))
    raise ValueError(f"arith: no integer-valued problem with ops={ops} up to {max_number}")

# -----------------------------------------------------------------------------
# Language consistency (DeepSeek-R1 §2.3.2)

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

# -----------------------------------------------------------------------------
# Code: run the completion's program against assert-tests in a sandbox (see the module docstring)

_NAMESPACES = ("unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "--", "sh", "-c",
               'for d in /tmp /var/tmp /dev/shm; do [ -d "$d" ] && { mount -t tmpfs -o size=64m,mode=1777 '
               'tmpfs "$d" || exit 97; }; done; cd /tmp && exec setpriv --reuid=65534 --regid=65534 '
               '--clear-groups --no-new-privs --inh-caps=-all,+dac_read_search --ambient-caps=+dac_read_search '
               '--bounding-set=-all,+dac_read_search -- "$@"', "sh")
# The program run inside the sandbox (its first line is also how tests find leftover processes). It
# catches BaseException on purpose: any exception, SystemExit included, means "this test failed".
_RUNNER = r"""# r1 sandbox runner: limits, then the solution, then each test; reports passes on the saved stdout
import json, os, resource, sys
job = json.load(sys.stdin)
for name, v in (("CPU", job["cpu"]), ("AS", job["mem"]), ("FSIZE", job["fsize"]), ("NPROC", job["nproc"]), ("CORE", 0)):
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (v, v))
report = os.dup(1)
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
scope = {"__name__": "solution"}
try:
    exec(compile(job["code"], "solution.py", "exec"), scope)
except BaseException:
    os._exit(0)
for i, test in enumerate(job["tests"]):
    try:
        exec(compile(test, "test_%d.py" % i, "exec"), scope)
    except BaseException:
        continue
    os.write(report, ("%s %d\n" % (job["nonce"], i)).encode())
os._exit(0)
"""


_SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "HOME": "/tmp"}  # no secrets inherited


@functools.cache  # probed once per process: whether this machine lets us build the namespaces
def _namespace_prefix() -> tuple[str, ...]:
    if os.name != "posix" or os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        return ()
    try:
        done = subprocess.run([*_NAMESPACES, sys.executable, "-I", "-c", "print('ok')"], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=30, env=_SANDBOX_ENV)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return _NAMESPACES if done.stdout == b"ok\n" else ()


def sandbox_mode() -> str:
    """"namespaces" (no network, private /tmp, runs as nobody) or "rlimits" (limits only); see the module docstring."""
    return "namespaces" if _namespace_prefix() else "rlimits"


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


def code_reward(completion: str, tests: tuple[str, ...] | list[str], timeout: float = 5.0,
                memory_mb: int = 1024) -> float:
    """Fraction of tests (Python snippets, usually asserts) that run without error after the
    completion's program (extract_code) in the sandbox described in the module docstring. Tests run
    in order in the program's globals; at the deadline the process is killed and tests not yet passed
    count as failed. 0.0 with no program or no tests. Never raises for any completion."""
    code = extract_code(completion)
    if not code or not tests:
        return 0.0
    nonce = secrets.token_hex(16)  # a pass line must carry it, so printing "0 1 2" from the program scores nothing
    job = dict(code=code, tests=list(tests), nonce=nonce, cpu=math.ceil(timeout), mem=memory_mb << 20,
               fsize=16 << 20, nproc=32)
    with tempfile.TemporaryFile() as job_file, tempfile.TemporaryFile() as report, \
            tempfile.TemporaryDirectory(prefix="r1sandbox-") as work:
        job_file.write(json.dumps(job).encode())  # ensure_ascii: lone surrogates survive as \ud800 escapes
        job_file.seek(0)
        proc = subprocess.Popen([*_namespace_prefix(), sys.executable, "-I", "-c", _RUNNER], stdin=job_file,
                                stdout=report, stderr=subprocess.DEVNULL, cwd=work, env=_SANDBOX_ENV,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also after a normal exit: takes down anything the program left running in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # the group is already gone
                pass
            proc.wait()
        report.seek(0)
        lines = report.read(1 << 20).decode("ascii", errors="replace").split("\n")
    passed = {line[len(nonce) + 1:] for line in lines if line.startswith(nonce + " ")}
    return len(passed & {str(i) for i in range(len(tests))}) / len(tests)

# -----------------------------------------------------------------------------
# Tasks


def _split_of(key: str) -> str:
    """The split a problem belongs to, fixed by a hash of its canonical text (not by seed or position)."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return "test" if h % 100 < TEST_PERCENT else "train"


DEFAULT_WEIGHTS = {"accuracy": 1.0, "format": 1.0, "tags": 0.0, "language": 0.0}


class Task:
    """A source of examples (generated by draw(rng) -> (key, Example), or a list per split loaded
    from a file) plus the rule that scores completions for them."""

    def __init__(self, name: str, seed: int, accuracy, extract, draw=None, splits=None):
        self.name, self.seed, self._accuracy, self._extract, self._draw = name, seed, accuracy, extract, draw
        self._splits = {}
        for split, examples in (splits or {}).items():  # a fixed per-seed order, so i = 0, 1, ... is shuffled
            order = list(examples)
            random.Random(f"{name}|{seed}|{split}").shuffle(order)
            self._splits[split] = order

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
        (tags_reward, weight 0 by default) and language (language_consistency_reward, weight 0 by default); total = sum(weights[k] * parts[k]),
        weights defaulting to DEFAULT_WEIGHTS. Raises ValueError for an unknown weight name."""
        w = {**DEFAULT_WEIGHTS, **(weights or {})}
        if set(w) != set(DEFAULT_WEIGHTS):
            raise ValueError(f"unknown reward weights {sorted(set(w) - set(DEFAULT_WEIGHTS))}; known: {list(DEFAULT_WEIGHTS)}")
        parts = {"accuracy": self._accuracy(example, completion),
                 "format": format_reward(completion, think_prefilled),
                 "tags": tags_reward(completion, think_prefilled),
                 "language": language_consistency_reward(completion)}
        return sum(w[k] * parts[k] for k in parts), parts

    def extract(self, completion: str) -> str | None:
        """The answer for majority voting (cons@k), in a form where equal answers are equal strings."""
        return self._extract(completion)


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


def _read_jsonl(path: str, make) -> list[Example]:
    """make(row) -> Example for each non-blank line; any error is re-raised naming path:line."""
    examples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                examples.append(make(row))
            except (ValueError, KeyError, TypeError, SyntaxError, RecursionError) as e:  # JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{lineno}: {type(e).__name__}: {e}") from None
    return examples


def _text(row: dict, key: str) -> str:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise ValueError(f"field {key!r} must be a non-empty string or number, got {value!r}")
    return str(value).strip()


def _gsm8k_row(row: dict) -> Example:
    _, sep, final = _text(row, "answer").rpartition("####")
    gold = final.strip().replace(",", "")
    if not sep or not _is_number(gold):
        raise ValueError(f"answer must end in '#### <number>', got {row['answer'][-60:]!r}")
    return Example(_text(row, "question"), gold)


def _math_row(row: dict) -> Example:
    gold = _text(row, "answer") if "answer" in row else extract_answer(_text(row, "solution"))
    if not gold or (len(gold) > MAX_ANSWER_CHARS):
        raise ValueError("no 'answer', and 'solution' has no final \\boxed{...} answer (or it is too long)")
    return Example(_text(row, "problem"), gold)


def _code_row(row: dict) -> Example:
    tests = row["tests"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError("'tests' must be a non-empty list of strings")
    for t in tests:
        ast.parse(t)  # a SyntaxError in a gold test is reported with the file and line
    return Example(_text(row, "prompt"), "", tuple(tests))


def _math_extract(completion: str) -> str | None:
    pred = extract_answer(completion)
    return None if pred is None else canonical_answer(pred)


def _arith_extract(completion: str) -> str | None:  # a non-number (an echoed "3 + 5") keeps its own text
    pred = extract_answer(completion)
    return None if pred is None else canonical_answer(pred) if _is_number(pred) else _normalize(pred)


def _countdown_extract(completion: str) -> str | None:
    pred = extract_answer(completion)
    return None if pred is None else "".join(pred.split())


def _math_accuracy(example: Example, completion: str) -> float:
    return accuracy_reward(completion, example.answer)


def _jsonl_row(row: dict) -> Example:
    return Example(_text(row, "prompt"), _text(row, "answer"))


FILE_TASKS = {  # name -> (row parser, accuracy(example, completion), extract(completion))
    "gsm8k": (_gsm8k_row, _math_accuracy, _math_extract),
    "math": (_math_row, _math_accuracy, _math_extract),
    "jsonl": (_jsonl_row, _math_accuracy, _math_extract),
    "code": (_code_row, lambda example, c: code_reward(c, example.tests), extract_code),
}
KNOWN_TASKS = "arith[:operands=2,digits=1,ops=+,max=N], countdown[:numbers=3|4,max=99], " + \
    ", ".join(f"{k}:PATH[,test=TEST_PATH]" for k in FILE_TASKS)


def load_task(spec: str, seed: int = 0) -> Task:
    """A task from its spec: "arith" (default: single-digit a + b, learnable by a 135M model on CPU),
    "arith:operands=3,digits=2,ops=+-*/" (max=N caps the numbers below 10^digits for finer steps),
    "countdown" (3 or 4 numbers in 1..99, target in 1..99; numbers=3 and max=N narrow it),
    "gsm8k:PATH", "math:PATH", "jsonl:PATH", "code:PATH". A file task's test split is TEST_PATH if
    given as PATH,test=TEST_PATH, else the lines whose prompt hashes into TEST_PERCENT.
    Raises ValueError for an unknown task or option, or a malformed line (naming file and line)."""
    name, _, arg = spec.partition(":")
    if name == "arith":
        o = _options(spec, arg, dict(operands=2, digits=1, ops="+", max=0))  # max=0: 10^digits - 1
        top = o["max"] or 10 ** min(o["digits"], 100) - 1
        if o["operands"] < 2 or top < 1 or not o["ops"] or set(o["ops"]) - set("+-*/"):
            raise ValueError(f"task {spec!r}: need operands >= 2, max >= 1 and ops from +-*/")
        draw = functools.partial(_draw_arith, operands=o["operands"], max_number=top, ops=o["ops"])
        number = lambda example, c: accuracy_reward(c, example.answer, number_only=True)
        return Task(spec, seed, number, _arith_extract, draw=draw)
    if name == "countdown":
        o = _options(spec, arg, dict(numbers=0, max=99))  # numbers=0: 3 or 4 at random
        if o["numbers"] not in (0, 2, 3, 4, 5, 6) or o["max"] < 1:
            raise ValueError(f"task {spec!r}: numbers must be 2..6 and max >= 1")
        draw = functools.partial(_draw_countdown, numbers=o["numbers"], max_number=o["max"])
        return Task(spec, seed, lambda example, c: countdown_reward(c, example.answer), _countdown_extract, draw=draw)
    if name in FILE_TASKS and arg:
        parse_row, accuracy, extract = FILE_TASKS[name]
        path, _, test_path = arg.partition(",test=")
        train = _read_jsonl(path, parse_row)
        if test_path:
            splits = dict(train=train, test=_read_jsonl(test_path, parse_row))
        else:
            splits = {s: [ex for ex in train if _split_of(ex.prompt) == s] for s in ("train", "test")}
        return Task(spec, seed, accuracy, extract, splits=splits)
    raise ValueError(f"unknown task {spec!r}; known tasks: {KNOWN_TASKS}")
