"""
The answer grader: the final answer in a completion (extract_answer), and whether two answers are the
same (math_equal). canonical_answer gives equal answers one text (majority voting); grade() shows both
steps, and so does the command line:

    python grader.py --pred 'so the answer is $\\frac{1}{2}$' --gold 0.5   # exit status 0 if equal, else 1
    python grader.py --pred 'the answer is 5' --gold 5 --strict   # as R1's accuracy reward: no tags, not equal
    python -m pytest tests/test_grader.py -q      # tables of hard cases and near misses, fuzzing for stalls

What it guarantees:
  1. No regex, no sympy, no eval: every parser is a small hand-written scanner, and numbers are compared
     exactly with fractions.Fraction wherever that decides (0.5 == 1/2, 0.33 != 1/3). The two numeric
     tolerances below apply only where exact arithmetic cannot decide, and are tested on near misses.
  2. Bounded work: model output can never crash or stall the grader. Long answers, deep nesting and huge
     powers are refused by explicit limits (MAX_*) and then compared as plain strings.
  3. It fails closed: what does not parse equals only the same text (up to spaces and ASCII case), and an
     empty answer equals nothing, so an answer is never judged right by accident.

What is read (extract_answer gives the steps). The R1 accuracy reward reads only <answer>...</answer>,
\\boxed{} and #### (strict, as the paper asks for a final answer in a fixed format; lenient only in not
needing the format reward's tags, which is the format reward's job). Free-form text (chat and distilled
models, gold solutions) falls back to what the end of the text offers: an answer phrase (and the value
a sentence after it states: "Final answer: the smallest $k$ is 7."), a number that the last sentence
states ("so the largest $n$ is 34"), a math span, a short line that reads as an answer, a number (LaTeX
thousands separators included: 11,\\!111).

What is judged equal (math_equal), after spellings that never change a value (_normalize: LaTeX spacing
and sizing, \\dfrac, \\text{} units, $, \\%, degrees, currency signs, \\geq for >=):
  - The same text, and exact values: + - * / ^, \\frac, mixed numbers, 1,000.5, 2.5e3, \\sqrt of squares;
    thousands separators as LaTeX writes them, spaces around them included (1{,} 234, 1,\\! 234), while a
    bare comma and a space separate a list (1, 234 is 1 and 234: _latex_thousands).
  - Decimals against fractions. A decimal written with k >= MIN_PLACES = 6 places equals a value that no
    finite decimal equals (a fraction whose denominator has a prime other than 2 and 5, or an irrational
    number) when they differ by less than 10^-k: rounded or truncated, 0.333333 is 1/3. This cannot make
    two different short answers equal: values with finite decimals are compared exactly, and two
    different fractions with denominators up to 700 are more than 2 * 10^-6 apart, so at most one is
    within 10^-6 of a given decimal. With fewer places there is no tolerance: 0.33, 0.333 != 1/3.
  - Irrational constants (\\sqrt of a non-square, \\pi, fractional powers) are evaluated in Decimal at
    DECIMAL_DIGITS = 60 digits and equal when they agree to REL_TOL = 1e-30 (relative; absolute below 1).
    Rounding error is ~1e-55, so equal forms pass; two different closed forms the size of an answer
    agreeing to 30 digits would be a numerical coincidence, not a near miss (3.14159 vs \\pi is 1e-6).
  - Variables: both sides are evaluated exactly at N_POINTS = 6 points, each variable p / 2^24 with
    |p| <= 2^24 taken from SHA-256 of the pair (so a completion cannot choose them), and are equal when
    they agree at every point where either is defined and at least MIN_DEFINED = 3 points are. If they
    differ, the numerator of their difference is a nonzero polynomial of degree d <= MAX_BITS / 24 ~ 341
    (the highest degree evaluated exactly), and by Schwartz-Zippel a point is one of its roots with
    probability <= d / (2^25 + 1): a false "equal" has probability <= (341 / 2^25)^3 ~ 1e-15 at worst,
    < 1e-39 for degree <= 10 at 6 points. Higher powers, and \\sqrt or \\pi with variables, are evaluated
    in Decimal at the same points and compared to REL_TOL.
  - Structure: labels dropped (x = 5, (p, q) = (3, 2), x \\in S); relations (x >= 5 == 5 <= x, and a bound
    on a lone variable == its interval); sets and lists order-free, tuples and intervals in order with
    their brackets, matrices cell by cell; \\pm as a two-element set; units and trailing words after a
    number dropped.
  - What does not evaluate (\\log, \\sin, \\sum, n!), or is defined at too few points (\\sqrt{ab}): the same
    expression up to the order of the terms of each sum and of the factors of each product (\\cdot, \\times,
    * or side by side), at any depth: \\log 2 + 1 == 1 + \\log 2, \\sum_i b_i a_i == \\sum_i a_i b_i,
    \\frac{\\log(ba)}{2} == \\frac{\\log(ab)}{2}. Factors that may be matrices (capital letters, \\mathbf,
    \\vec) keep their order, and so do subscripts (a_{ij} != a_{ji}): _Shape.
  - Refused (False): an empty answer, prose that is not spelled the same, a value out of bounds (MAX_BITS),
    different kinds (a tuple vs a set, an interval vs a number, an equation vs its right side).

Left out: trigonometric and logarithmic functions (\\sin^2x+\\cos^2x vs 1), equations equal up to a
factor (2x+2y=2 vs x+y=1), percent as a fraction (50% is 50, not 0.5), multi-letter variable names
(a word standing alone is text), and non-Latin number formats.
"""
import argparse
import decimal
import functools
import hashlib
import sys
from dataclasses import dataclass
from fractions import Fraction

MAX_ANSWER_CHARS = 1000   # longer answers are never parsed, only compared as stripped strings
MAX_SCAN = 10_000         # a \boxed{...} longer than this is treated as unbalanced (keeps 1 MB inputs linear and short)
MAX_DEPTH = 50            # nesting depth of parentheses/unary signs the evaluator follows (recursion guard)
MAX_BITS = 8192           # no exact value may need more bits than this (stops 9^9^9^9 and 10^100000)

# -----------------------------------------------------------------------------
# Extraction: the final answer in a completion


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


def _marked_answer(text: str, list_boxes: bool = False) -> tuple[bool, str | None]:
    """(found, answer) for the markers the R1 accuracy reward reads: the last <answer>...</answer>; else the
    last \\boxed{...} or \\fbox{...} (only the last one is tried, and it must close within MAX_SCAN
    characters; list_boxes adds the boxes listed before it, see _listed_boxes); else the last GSM8K answer
    line (_gsm8k_line). found with answer None: the marker is there but empty or broken (the model
    committed, so no fallback is tried)."""
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    if start >= 0:
        return True, text[start + len("<answer>"):end].strip() or None
    cmd = _last_box(text, len(text))
    if cmd >= 0:
        box = _box_at(text, cmd)
        return True, (_listed_boxes(text) if list_boxes else box[0] or None) if box else None
    for line in reversed(text.split("\n")):
        if (answer := _gsm8k_line(line)) is not None:
            return True, answer
    return False, None


def _gsm8k_line(line: str) -> str | None:
    """The rest of a line that starts with "####" when a number follows the marker, as GSM8K writes its
    answers: "#### 72", "#### -3", "#### $1,234", "#### 1.5 kg" (a sign and a currency sign may come
    first). None for anything else: a Markdown heading ("#### Step 1: Compute", "#### 1. Setup", "#### 2)
    Check", "##### 8") is not an answer."""
    line = line.lstrip()
    if not line.startswith("####"):
        return None
    rest = line[4:].strip()
    s = rest.lstrip("+-\u2212")
    s = s[2:] if s.startswith("\\$") else s[1:] if s[:1] == "$" else s
    s = s.lstrip(" +-\u2212")
    digits = len(s) - len(s.lstrip("0123456789"))
    if not digits and not (s[:1] == "." and len(s) > 1 and s[1] in "0123456789"):
        return None
    numbered = s[digits:digits + 1] in (".", ")", ":") and s[digits + 1:digits + 2] == " " and s[digits + 2:].strip()
    return None if numbered else rest


def _last_box(text: str, end: int) -> int:
    """Where the last \\boxed or \\fbox before end starts; -1 if none."""
    return max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))


def _box_at(text: str, cmd: int) -> tuple[str, int] | None:
    """(stripped content, end) of the box command at text[cmd]; None if its group does not close within
    MAX_SCAN characters."""
    i = cmd + (6 if text.startswith("\\boxed", cmd) else 5)
    while i < len(text) and text[i] == " ":
        i += 1
    j = _group_end(text, i) if text.startswith("{", i) else None
    return (text[i + 1:j - 1].strip(), j) if j else None


def _listed_boxes(text: str) -> str | None:
    """Free-form only: the last box together with the boxes before it that are joined to it by _JOINS
    ("\\boxed{19}, \\boxed{46}, and \\boxed{82}" -> "19, 46, 82"). The R1 reward reads the last box alone."""
    cmd = _last_box(text, len(text))
    box = _box_at(text, cmd)
    if box is None:
        return None
    contents = [box[0]]  # last first
    while len(contents) <= MAX_ITEMS and (prev := _last_box(text, cmd)) >= 0 and (got := _box_at(text, prev)) \
            and got[1] <= cmd:
        gap = text[got[1]:cmd].replace("$", "").replace("\\text{", "").replace("}", "")
        if gap.strip().translate(_ASCII_LOWER) not in _JOINS:
            break
        contents.append(got[0])
        cmd = prev
    return ", ".join(c for c in reversed(contents) if c) or None


def extract_answer(text: str, strict: bool = False) -> str | None:
    """The final answer in a completion, stripped, or None. Tried in this order, the first that applies wins:
      1. the R1 markers (_marked_answer): the last <answer>...</answer>, else the last \\boxed{} / \\fbox{}
         (in free-form mode with the boxes listed before it by "," / "and" / "or"), else the last "####"
         line with a number after the marker (a Markdown heading is not one). An empty or broken marker
         gives None, with no fallback.
    strict=True stops here: that is what the R1 accuracy reward reads (accuracy_reward). Otherwise, for
    free-form text (chat and distilled models, gold solutions), and only if no <answer> tag was opened:
      2. the text after the last "answer is" / "answer:" / "final answer" (any case): its first math span
         if it starts with one, else the rest of that sentence;
      3. the last LaTeX math span, \\[..\\], $$..$$, \\(..\\) or $..$, together with the spans before it that
         are joined to it by "," / "and" / "or" ("$6$ and $8$" -> "6, 8");
      4. the whole text, if it is one short line that reads as an answer ("x \\in [2, 7]", "6 and 8", "yes");
      5. the last number ("...so the largest n is 34." -> "34"; 1,000 and 3/4 are one number).
    Steps 2-5 look only at the end of the text: the last MAX_SCAN characters (step 3: from the blank line
    before them, so that math spans pair up)."""
    found, answer = _marked_answer(text, list_boxes=not strict)
    if found or strict:
        return answer
    if "<answer>" in text:  # an answer tag that never closed: cut off mid-answer, so nothing is trusted
        return None
    tail = text[-MAX_SCAN:]
    return _phrase_answer(tail) or _stated_value(tail) or _last_math(text) or _bare_answer(tail) or last_number(tail)


_VERBS = ("is", "are", "was", "equals", "=")   # "the largest $n$ is 34": what the last sentence says a thing is


def _stated_value(text: str, spans: bool = False) -> str | None:
    """Step 2b of extract_answer: a number (with units) that ends the last sentence after one of _VERBS, as
    MATH-style prose states its result: "Therefore, the largest value of $n$ is 34." -> "34" (the math span
    $n$ names the unknown; step 3 would read it as the answer). With spans (a sentence after an answer
    phrase), also the math spans that start the words after the verb ("the area is $\\frac72$." ->
    "\\frac72"). None when the words after the verb are anything else ("$x = 5$ is the answer")."""
    s = text.strip().rstrip(".!").strip()
    cut = max(s.rfind(". "), s.rfind("\n"), s.rfind("? "), s.rfind("! "))
    words = s[cut + 1:].split()
    at = max((i for i, w in enumerate(words) if w.translate(_ASCII_LOWER) in _VERBS), default=-1)
    rest = " ".join(words[at + 1:])
    if at < 0 or not rest:
        return None
    if spans and (math := _leading_math(rest)):
        return math
    return None if "$" in rest or "\\" in rest or not is_number(rest) else rest


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}  # str.lower() can change a string's length
_PHRASES = ("answer is", "answer:", "final answer")
_NEGATIONS = ("not", "no", "never", "cannot", "isn't", "aren't", "wasn't", "doesn't")
_JOINS = (",", "and", ", and", "or", ", or")  # what may stand between the spans of one listed answer
_CLOSERS = {"[": "\\]", "(": "\\)"}
MAX_DELIMITERS = 2_000  # math delimiters ($, \\[, \\() read before giving up (keeps 1 MB inputs fast)


def _phrase_answer(text: str) -> str | None:
    """Step 2 of extract_answer: what follows the last answer phrase: the math spans it starts with, else
    the rest of its sentence; a sentence in words is read for the value it states ("Final answer: the
    smallest $k$ is 7." -> "7"): the number or math after its last verb (_stated_value), else its last
    math span that holds a digit ($k$ names the unknown), else its last number, else the sentence itself
    (and the sentence itself when it denies: "the answer is not 5")."""
    low = text.translate(_ASCII_LOWER)
    at, phrase = max((low.rfind(p), p) for p in _PHRASES)
    if at < 0:
        return None
    rest = text[at + len(phrase):].lstrip(" \t\n*:")
    if math := _leading_math(rest):
        return math
    ends = [i for i in (rest.find("\n"), rest.find(". ")) if i >= 0]
    answer = (rest[:min(ends)] if ends else rest).strip().rstrip(".").strip("* ")
    if not answer or not is_prose(answer) or any(w.strip(".,;:!?").translate(_ASCII_LOWER) in _NEGATIONS
                                                 for w in answer.split()):
        return answer or None
    spans = _math_spans(answer)
    k = max((i for i, (_, _, c) in enumerate(spans) if any(d in c for d in "0123456789")), default=-1)
    return (_stated_value(answer, spans=True) or (_joined(answer, spans, k, -1) if k >= 0 else None)
            or last_number(answer) or answer)


def _leading_math(text: str) -> str | None:
    """The math spans that text starts with, joined as _joined joins them ("$4$ and $9$." -> "4, 9")."""
    spans = _math_spans(text) if text[:1] == "$" or text[:2] in ("\\[", "\\(") else []
    return _joined(text, spans, 0, +1) if spans and spans[0][0] == 0 else None


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    """Complete math spans in text, in order, as (start, end, content). \\$ is a dollar sign, not a delimiter.
    An inline $..$ follows pandoc's rule (no space just inside either $, no newline), so "$5 and $3" holds
    no math; its would-be closing $ may then open the next span. No span crosses a blank line, so an
    unclosed $$ costs only its paragraph. Gives up (no spans) after MAX_DELIMITERS."""
    spans, i, nxt = [], 0, {"$": -1, "\\[": -1, "\\(": -1}
    for _ in range(MAX_DELIMITERS):
        for d in nxt:  # cached: searching again from every stop would make long texts quadratic
            if nxt[d] < i:
                found = text.find(d, i)
                nxt[d] = found if found >= 0 else len(text)
        p = min(nxt.values())
        if p >= len(text):
            return spans
        if text[p - 1:p] == "\\":  # \$ is a dollar sign; \\[ is a line break, not display math
            i = p + 1
            continue
        closer = _CLOSERS.get(text[p + 1]) if text[p] == "\\" else "$$" if text[p:p + 2] == "$$" else None
        if closer:
            e = text.find(closer, p + 2)
            blank = text.find("\n\n", p, e if e >= 0 else len(text))
            if blank >= 0:  # display math never spans a blank line (TeX stops there): this opener is unmatched
                i = blank + 2
                continue
            if e < 0:
                return spans
            spans.append((p, e + 2, text[p + 2:e]))
            i = e + 2
            continue
        e = text.find("$", p + 1)
        if e < 0:
            return spans
        body = text[p + 1:e]
        if body and not body[0].isspace() and not body[-1].isspace() and "\n" not in body and body[-1] != "\\":
            spans.append((p, e + 1, body))
            i = e + 1
        else:
            i = e
    return []


def _joined(text: str, spans: list, k: int, step: int) -> str | None:
    """Span k's content, with the neighbouring spans (step -1: before it, +1: after it) that are joined
    to it by _JOINS, in text order and separated by ", "."""
    run = [spans[k]]  # in the direction of step
    while 0 <= k + step < len(spans):
        a, b = sorted((run[-1], spans[k + step]))
        if text[a[1]:b[0]].strip().translate(_ASCII_LOWER) not in _JOINS:
            break
        run.append(spans[k + step])
        k += step
    return ", ".join(c.strip() for _, _, c in sorted(run) if c.strip()) or None


def _last_math(text: str) -> str | None:
    """Step 3 of extract_answer: the last math span and the spans listed with it. A long text is read from
    the paragraph break (blank line) before its last MAX_SCAN characters: no span crosses one."""
    start = text.rfind("\n\n", 0, len(text) - MAX_SCAN) + 1 if len(text) > MAX_SCAN else 0
    text = text[start:]
    spans = _math_spans(text)
    return _joined(text, spans, len(spans) - 1, -1) if spans else None


def _bare_answer(text: str) -> str | None:
    """Step 4 of extract_answer: the text itself, when it is one short line that parses as an answer
    (no part of it prose), or at most two words without digits ("yes", "no solution")."""
    s = text.strip()
    if not s or "\n" in s or len(s) > 200:
        return None
    words = len(s.split()) <= 2 and not any(c in "0123456789" for c in s)
    return s if words or not is_prose(s) else None


def _has_text(node: tuple) -> bool:
    """Whether any part of a _parse tree is prose rather than mathematics."""
    kind = node[0]
    if kind in ("text", "expr"):
        return kind == "text"
    if kind == "tuple":
        return any(map(_has_text, node[2]))
    if kind == "matrix":
        return any(_has_text(x) for row in node[1] for x in row)
    return any(map(_has_text, node[1])) if kind in ("set", "union") else _has_text(node[2]) or _has_text(node[3])


def last_number(text: str) -> str | None:
    """Step 5 of extract_answer: the last number, with its sign, decimal point, thousands separators, or
    a /denominator; a comma not followed by a 3-digit group ends it ("(3,4)" -> "4"). LaTeX's thousands
    separators count as commas (_latex_thousands): 11,\\!111, 11{,} 111 and 11\\,111 -> "11,111"."""
    end = max(text.rfind(d) for d in "0123456789") + 1
    if end == 0:
        return None
    text = _latex_thousands(text[max(0, end - 300):end])   # the number: its last 100 characters at most
    start = end = len(text)
    while start > 0 and end - start < 100 and text[start - 1] in ".,/0123456789":
        start -= 1
    run = text[start:end]
    number = run.lstrip(",/")
    if "," in number and _thousands(number) == number:  # not a thousands grouping: the digits after the comma
        number = number.rpartition(",")[2]
    if start > 0 and text[start - 1] == "-" and number == run and not text[start - 2:start - 1].isalnum():
        number = "-" + number
    return number or None

# -----------------------------------------------------------------------------
# Exact arithmetic: a tokenizer, a recursive-descent parser into small trees, and two evaluators
# (exact Fractions first; Decimal at DECIMAL_DIGITS digits where an irrational number makes exact fail)


class _ParseError(ValueError):
    """Raised inside the parser or evaluator for anything it does not accept; never escapes this module."""


class _Inexact(Exception):
    """Exact arithmetic cannot go on (an irrational root, \\pi, \\infty): evaluate in Decimal instead."""


def _bounded(v: Fraction) -> Fraction:
    if v.numerator.bit_length() > MAX_BITS or v.denominator.bit_length() > MAX_BITS:
        raise _ParseError("value too large")
    return v


def _scan_number(s: str, i: int, integers_only: bool) -> tuple[Fraction, int, int]:
    """Reads an unsigned literal at s[i]: 12, 1.5, .5, 2e-3 (not in integers_only mode). Returns (value,
    end, places): places is the number of digits written after the decimal point (0 with an exponent)."""
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
    v, places = Fraction(int(whole + frac), 10 ** len(frac)), len(frac)
    if not integers_only and j < len(s) and s[j] in "eE":  # scientific notation; 'e' alone is not a number
        k = j + 1 + (j + 1 < len(s) and s[j + 1] in "+-")
        m = k
        while m < len(s) and s[m].isdigit() and s[m].isascii():
            m += 1
        if m > k:
            exp = int(s[k:m]) * (-1 if s[k - 1] == "-" else 1)
            if abs(exp) > 1000:
                raise _ParseError("exponent too large")
            v, j, places = v * Fraction(10) ** exp, m, 0
    return _bounded(v), j, places


GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
         "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega"}


def _name_at(s: str, i: int) -> tuple[str, int]:
    """A variable at s[i]: one ASCII letter, with a subscript _1 or _{12} (letters and digits)."""
    j = i + 1
    if s.startswith("_", j):
        if s.startswith("{", j + 1):
            end = s.find("}", j + 2)
            sub = s[j + 2:end] if end > 0 else ""
            j = end + 1
        else:
            sub, j = s[j + 1:j + 2], j + 2
        if not (sub.isascii() and sub.isalnum()):
            raise _ParseError("bad subscript")
        return s[i] + "_" + sub, j
    return s[i], j


def _stands_alone(s: str, i: int) -> bool:
    """Whether the run of letters starting at s[i] has only spaces (or the ends of s) on both sides."""
    j = i
    while j < len(s) and s[j].isalpha():
        j += 1
    return (i == 0 or s[i - 1].isspace()) and (j == len(s) or s[j].isspace())


def _tokens(s: str, countdown: bool = False) -> list:
    """("num", Fraction, places), ("var", name), ("root", n) for \\sqrt / \\sqrt[n], "pi", "inf", and
    one-character operators ("**" becomes "^"). Braces act as parentheses (10^{3}). A variable is one
    letter or a Greek letter; a run of letters is a product of variables (2xy, xy+1) only when something
    other than a space touches it: a word standing alone ("yes", "it is") is not an expression (raises),
    so it cannot equal its anagram. countdown mode allows only integers, + - * / and parentheses."""
    if len(s) > MAX_ANSWER_CHARS:  # also keeps int() below Python's 4300-digit limit
        raise _ParseError("too long")
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or c == ".":
            v, i, places = _scan_number(s, i, integers_only=countdown)
            out.append(("num", v, places))
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
        elif c == "\\":
            j = i + 1
            while j < len(s) and s[j].isascii() and s[j].isalpha():
                j += 1
            name, i = s[i + 1:j], j
            if name == "sqrt" and s.startswith("[", i):  # \sqrt[3]{x}: a plain integer index only
                close = s.find("]", i)
                if close < 0 or not s[i + 1:close].isdigit() or not s[i + 1:close].isascii() or close - i > 4:
                    raise _ParseError("bad root index")
                out.append(("root", int(s[i + 1:close])))
                i = close + 1
            elif name in ("sqrt", "pi", "infty") or name in GREEK:
                out.append(("root", 2) if name == "sqrt" else "pi" if name == "pi" else "inf" if name == "infty"
                           else ("var", name))
            else:
                raise _ParseError(f"unknown command \\{name}")
        elif c.isascii() and c.isalpha():
            if s.startswith("pi", i) and not s[i + 2:i + 3].isalpha() or s.startswith("sqrt", i):
                out.append("pi" if s[i + 1] == "i" else ("root", 2))  # pi and sqrt written without a backslash
                i += 2 if s[i + 1] == "i" else 4
                continue
            if s[i + 1:i + 2].isalpha() and _stands_alone(s, i):
                raise _ParseError("a word, not a variable")
            name, i = _name_at(s, i)
            out.append(("var", name))
        else:
            raise _ParseError(f"unexpected {c!r}")
    return out


def _symbolic(tree) -> bool:
    """Whether a tree holds a variable, a root, \\pi or \\infty (what may stand next to a number: 2x, 2\\sqrt3)."""
    kind = tree[0]
    if kind in ("var", "root", "pi", "inf"):
        return True
    if kind in ("sum", "prod"):
        return any(_symbolic(t) for _, t in tree[1])
    return kind != "num" and any(_symbolic(t) for t in tree[1:])


class _Parser:
    """expr := term (+|- term)*;  term := unary (*|/ unary | implicit)*;  unary := (+|-) unary | power;
    power := atom [^ unary] (so -2^2 = -4 and 2^3^2 = 2^9);  atom := number | variable | \\pi | \\infty
    | ( expr ) | root atom. implicit is a product written without a sign (2x, x(x+1), 2\\sqrt3), allowed
    only when one side is symbolic: "2(3)" and "1 2" are refused, not read as 6 or 12.
    Trees are tuples: ("num", v, places), ("var", name), ("pi",), ("inf",), ("neg", t), ("sum", [(+1|-1,
    t), ...]), ("prod", [(divide, t), ...]), ("pow", base, exponent), ("root", n, t)."""

    def __init__(self, tokens: list, implicit: bool = True):
        self.tokens, self.pos, self.depth, self.implicit = tokens, 0, 0, implicit

    def run(self):
        tree = self.expr()
        if self.pos != len(self.tokens):
            raise _ParseError("trailing tokens")
        return tree

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
        tree = parse()
        self.depth -= 1
        return tree

    def expr(self):
        terms = [(1, self.term())]
        while self.peek() in ("+", "-"):
            terms.append((1 if self.take() == "+" else -1, self.term()))
        return terms[0][1] if len(terms) == 1 else ("sum", terms)

    def term(self):
        factors = [(False, self.unary())]
        while True:
            tok = self.peek()
            if tok in ("*", "/"):
                self.take()
                factors.append((tok == "/", self.unary()))
            elif self.implicit and (tok in ("(", "pi", "inf") or isinstance(tok, tuple) and tok[0] != "num"):
                right = self.power()
                if not (_symbolic(right) or any(_symbolic(f) for _, f in factors)):
                    raise _ParseError("two numbers side by side")
                factors.append((False, right))
            else:
                return factors[0][1] if len(factors) == 1 else ("prod", factors)

    def unary(self):
        if self.peek() in ("+", "-"):
            sign = self.take()
            tree = self.nested(self.unary)
            return tree if sign == "+" else ("neg", tree)
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        return ("pow", base, self.nested(self.unary))

    def atom(self):
        tok = self.take()
        if isinstance(tok, tuple) and tok[0] in ("num", "var"):
            return tok
        if tok in ("pi", "inf"):
            return (tok,)
        if tok == "(":
            tree = self.nested(self.expr)
            if self.take() != ")":
                raise _ParseError("unbalanced parentheses")
            return tree
        if isinstance(tok, tuple) and tok[0] == "root":
            return ("root", tok[1], self.nested(self.atom))
        raise _ParseError(f"unexpected {tok!r}")


def _iroot(k: int, n: int) -> int:
    """floor(k ** (1/n)) for an int k >= 0 (Newton's method on integers: exact for any size)."""
    if k < 2:
        return k
    x = 1 << -(-k.bit_length() // n)  # a power of two above the root
    while True:
        y = ((n - 1) * x + k // x ** (n - 1)) // n
        if y >= x:
            return x
        x = y


def _root(v: Fraction, n: int) -> Fraction:
    """The real n-th root of v when it is rational; _Inexact when it is not; _ParseError when undefined."""
    if n < 1:
        raise _ParseError("root index below 1")
    if v < 0:
        if n % 2 == 0:
            raise _ParseError("even root of a negative number")
        return -_root(-v, n)
    if n > 64:
        raise _Inexact("large root index")
    a, b = _iroot(v.numerator, n), _iroot(v.denominator, n)
    if a ** n != v.numerator or b ** n != v.denominator:
        raise _Inexact("irrational root")
    return Fraction(a, b)


def _power(base: Fraction, exp: Fraction) -> Fraction:
    p, q = exp.numerator, exp.denominator
    if base == 0 and p < 0:
        raise _ParseError("zero to a negative power")
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if abs(base) != 1 and base != 0 and size * abs(p) > MAX_BITS:  # check the size before computing
        if abs(exp) > 100_000:
            raise _ParseError("power too large")
        raise _Inexact("too large to hold exactly")  # 2^{x+1} at x = p/2^24: Decimal can
    v = _bounded(base ** p)
    return v if q == 1 else _root(v, q)


def _exact(tree, env: dict) -> Fraction:
    """The exact value of a tree, with env mapping variable names to Fractions (KeyError for a missing one)."""
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "var":
        return env[tree[1]]
    if kind == "neg":
        return -_exact(tree[1], env)
    if kind == "sum":
        total = Fraction(0)
        for sign, term in tree[1]:
            total = _bounded(total + sign * _exact(term, env))
        return total
    if kind == "prod":
        v = Fraction(1)
        for divide, factor in tree[1]:
            w = _exact(factor, env)
            if divide and w == 0:
                raise _ParseError("division by zero")
            v = _bounded(v / w if divide else v * w)
        return v
    if kind == "pow":
        return _power(_exact(tree[1], env), _exact(tree[2], env))
    if kind == "root":
        return _root(_exact(tree[2], env), tree[1])
    raise _Inexact(kind)  # pi, inf


DECIMAL_DIGITS = 60   # working precision of the Decimal evaluator
_DECIMAL = decimal.Context(prec=DECIMAL_DIGITS, Emax=100_000, Emin=-100_000,
                           traps=[decimal.Overflow, decimal.Underflow, decimal.DivisionByZero,
                                  decimal.InvalidOperation])  # every way out of range raises, so None, never 0
_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899")


def _dec(v: Fraction) -> decimal.Decimal:
    return decimal.Decimal(v.numerator) / decimal.Decimal(v.denominator)


def _approx(tree, env: dict) -> decimal.Decimal:
    """The value of a tree in Decimal arithmetic (call inside localcontext(_DECIMAL)): the same rules as
    _exact, plus \\pi, \\infty, irrational roots and powers."""
    kind = tree[0]
    if kind in ("num", "var"):
        return _dec(tree[1] if kind == "num" else env[tree[1]])
    if kind in ("pi", "inf"):
        return +_PI if kind == "pi" else decimal.Decimal("Infinity")
    if kind == "neg":
        return -_approx(tree[1], env)
    if kind == "sum":
        return sum((sign * _approx(term, env) for sign, term in tree[1]), decimal.Decimal(0))
    if kind == "prod":
        v = decimal.Decimal(1)
        for divide, factor in tree[1]:
            v = v / _approx(factor, env) if divide else v * _approx(factor, env)
        return v
    if kind == "root":
        return _approx_power(_approx(tree[2], env), Fraction(1, tree[1]))
    try:  # pow: an exact exponent keeps odd roots of negative numbers real, (-8)^{1/3} = -2
        exp = _exact(tree[2], env)
    except _Inexact:
        exp = _approx(tree[2], env)
    return _approx_power(_approx(tree[1], env), exp)


def _approx_power(base: decimal.Decimal, exp) -> decimal.Decimal:
    """base ** exp in Decimal: integer powers, real roots p/q with q <= 64 (odd roots of negative numbers
    too) by _dec_root, anything else through Decimal's general power (slow, so only where needed)."""
    if isinstance(exp, Fraction):
        if abs(exp) > 100_000:
            raise _ParseError("power too large")
        p, q = exp.numerator, exp.denominator
        if q == 1:
            return base ** p
        if q <= 64:
            if base < 0 and q % 2 == 0:
                raise _ParseError("even root of a negative number")
            root = _dec_root(abs(base), q)
            return (-root if base < 0 else root) ** p
        exp = _dec(exp)
    return base ** exp


def _dec_root(a: decimal.Decimal, n: int) -> decimal.Decimal:
    """a ** (1/n) for a >= 0: Newton's method from a float estimate (each step doubles the correct digits:
    16 -> 32 -> 64), some 30 times faster than Decimal's general power at DECIMAL_DIGITS."""
    if a == 0 or n == 1:
        return a
    if n == 2:
        return a.sqrt()
    k = a.adjusted() // n  # a = m * 10^(n k) with m in [1, 10^n): a float holds m
    x = decimal.Decimal(float(a.scaleb(-n * k)) ** (1 / n)).scaleb(k)
    for _ in range(3):  # ~16 correct digits -> 32 -> 64 -> (a check step)
        x = ((n - 1) * x + a / x ** (n - 1)) / n
    return x


def _at(tree, env: dict) -> Fraction | decimal.Decimal | None:
    """The value of a tree at env: exact when it can be, else Decimal; None where undefined (1/0, 0^-1,
    \\sqrt{-1}, a power too large to hold)."""
    try:
        return _exact(tree, env)
    except _Inexact:
        pass
    except _ParseError:
        return None
    try:
        with decimal.localcontext(_DECIMAL):
            return +_approx(tree, env)
    except (_ParseError, decimal.DecimalException):
        return None


def _variables(tree, out: set) -> set:
    kind = tree[0]
    if kind == "var":
        out.add(tree[1])
    elif kind in ("sum", "prod"):
        for _, t in tree[1]:
            _variables(t, out)
    elif kind in ("neg", "pow", "root"):
        for t in tree[1:]:
            if isinstance(t, tuple):
                _variables(t, out)
    return out


def _literals(tree) -> list[Fraction]:
    """The number literals of a tree, in order (the countdown check needs them)."""
    if tree[0] == "num":
        return [tree[1]]
    if tree[0] in ("sum", "prod"):
        return [v for _, t in tree[1] for v in _literals(t)]
    return [v for t in tree[1:] if isinstance(t, tuple) for v in _literals(t)]


def exact_value(s: str) -> Fraction | None:
    """The exact value of a plain arithmetic expression (no variables, nothing irrational), or None."""
    try:
        return _exact(_Parser(_tokens(s)).run(), {})
    except (_ParseError, _Inexact, KeyError):
        return None


def integer_arithmetic(expr: str) -> tuple[Fraction, list[Fraction]] | None:
    """(value, sorted literals) of an expression with integers, + - * / and parentheses only (countdown)."""
    try:
        tree = _Parser(_tokens(expr, countdown=True), implicit=False).run()
        return _exact(tree, {}), sorted(_literals(tree))
    except (_ParseError, _Inexact):
        return None

# -----------------------------------------------------------------------------
# Answer normalisation: spellings that never change a value


_BEFORE_MACROS = [("^{\\circ}", ""), ("^\\circ", ""), ("\\%", ""), ("\\$", ""),  # degrees: 90^\circ == 90
                  ("\\mathbb{R}", "(-\\infty, \\infty)")]
_MACROS = {  # LaTeX command name -> what it means here ("" drops it); other commands are kept as they are
    "left": "", "right": "", "bigl": "", "bigr": "", "Bigl": "", "Bigr": "", "displaystyle": "", "textstyle": "",
    ",": "", "!": "", ";": "", ":": "", " ": " ", "quad": " ", "qquad": " ",
    "(": "", ")": "", "[": "", "]": "",  # \( \) \[ \] delimit math; \{ \} stay (a set)
    "langle": "(", "rangle": ")",        # a vector <1, 2> is the tuple (1, 2)
    "dfrac": "\\frac", "tfrac": "\\frac", "cfrac": "\\frac",
    "textnormal": "\\text", "textrm": "\\text", "textbf": "\\text", "textit": "\\text", "textup": "\\text",
    "mathrm": "\\text", "mbox": "\\text", "operatorname": "\\text",   # \mathbf stays: a vector or matrix
    "cdot": "*", "times": "*", "ast": "*", "div": "/", "degree": "", "circ": "", "euro": "", "pounds": "",
    "le": "<=", "leq": "<=", "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=", "lt": "<", "gt": ">",
    "ne": "!=", "neq": "!=", "emptyset": "\\{\\}", "varnothing": "\\{\\}",
}
_AFTER_MACROS = [  # Unicode and plain-text spellings; the commands they become end in a space so "πr" stays two
    ("\u2212", "-"), ("\u00b0", ""), ("\u2264", "<="), ("\u2265", ">="), ("\u2260", "!="), ("\u00b1", "\\pm "),
    ("\u2213", "\\mp "), ("\u03c0", "\\pi "), ("\u221e", "\\infty "), ("\u222a", "\\cup "), ("\u2208", "\\in "),
    ("\u2205", "\\{\\}"), ("\u00d7", "*"), ("\u00f7", "/"), ("\u00b7", "*"), ("\u22c5", "*"), ("\u00b2", "^2"),
    ("\u00b3", "^3"), ("\u20ac", ""), ("\u00a3", ""), ("\u00a5", ""), ("\u20b9", ""), ("%", ""), ("$", ""),
    ("{,}", ","), ("~", " "), ("==", "="),
]


def _rename_macros(s: str) -> str:
    """Each LaTeX command (\\name, or \\ and one other character) replaced as _MACROS says."""
    out, i = [], 0
    while (j := s.find("\\", i)) >= 0:
        out.append(s[i:j])
        k = j + 1
        while k < len(s) and s[k].isascii() and s[k].isalpha():
            k += 1
        k = max(k, min(j + 2, len(s)))  # a control symbol: \, \! \{ \\ (the latter two are kept)
        out.append(_MACROS.get(s[j + 1:k], s[j:k]))
        i = k
    out.append(s[i:])
    return "".join(out)


def _strip_text(s: str) -> str:
    """\\text{...}: a whole answer \\text{yes} becomes yes; \\text{ and } / \\text{ or } become the word;
    elsewhere it is a unit and is dropped together with a power right after it (5\\text{ cm}^2 -> 5)."""
    kept, texts, i = [], [], 0
    while (j := s.find("\\text{", i)) >= 0:
        end = _group_end(s, j + 5)
        if end is None:
            break
        word = s[j + 6:end - 1]
        kept.append(s[i:j] + (f" {word.strip()} " if word.strip().translate(_ASCII_LOWER) in ("and", "or") else ""))
        texts.append(word)
        i = end
        if s.startswith("^", i):  # unit power: ^2 or ^{2}
            i = (_group_end(s, i + 1) or len(s)) if s.startswith("{", i + 1) else i + 2
    kept.append(s[i:])
    rest = "".join(kept)
    return rest if rest.strip() else "".join(texts)


def _group_ends(s: str) -> dict[int, int]:
    """{index of each "{": the index just after its matching "}"} in one pass (unclosed ones left out),
    with _group_end's rule for \\{ and \\}: many unclosed groups stay linear, not quadratic."""
    ends, stack, j = {}, [], 0
    while j < len(s):
        c = s[j]
        if c == "{":
            stack.append(j)
        elif c == "}" and stack:
            ends[stack.pop()] = j + 1
        j += 2 if c == "\\" else 1
    return ends


def _latex_arg(s: str, i: int, ends: dict[int, int]) -> tuple[str, int] | None:
    """One macro argument at s[i] (after spaces): {group}, \\command, or a single character.
    ends is _group_ends(s)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        end = ends.get(i)
        return (s[i + 1:end - 1], end) if end else None
    if s[i] == "\\":
        j = i + 1
        while j < len(s) and s[j].isalpha():
            j += 1
        return (s[i:j], j) if j > i + 1 else None
    return (s[i], i + 1) if s[i].isalnum() else None


def _expand_macros(s: str, depth: int = 0) -> str:
    """\\frac{a}{b} and \\frac ab -> {{a}/{b}} (one group, so 3\\frac{1}{x} is 3 times 1/x, never 31/x);
    \\sqrt 3 -> \\sqrt{3}, \\sqrt[3]{x} kept. Any other macro, or one whose arguments cannot be read, is
    copied as it is."""
    out, i, ends = [], 0, _group_ends(s)
    while (j := s.find("\\", i)) >= 0:
        out.append(s[i:j])
        name = next((m for m in ("\\frac", "\\sqrt") if s.startswith(m, j)), "")
        args, k, index = [], j + len(name), ""
        if name == "\\sqrt" and s.startswith("[", k) and (close := s.find("]", k)) > 0:
            index, k = s[k:close + 1], close + 1
        if name and not s[k:k + 1].isalpha() and depth < 20:
            for _ in range(2 if name == "\\frac" else 1):
                if (got := _latex_arg(s, k, ends)) is None:
                    break
                args.append(_expand_macros(got[0], depth + 1))
                k = got[1]
        if name == "\\frac" and len(args) == 2:
            out.append("{{" + args[0] + "}/{" + args[1] + "}}")
        elif name == "\\sqrt" and len(args) == 1:
            out.append("\\sqrt" + index + "{" + args[0] + "}")
        else:
            out.append(s[j:j + 2])
            k = j + 2
        i = k
    out.append(s[i:])
    return "".join(out)


def _list_words(s: str) -> str:
    """"6 and 8", "19, 46, and 82", "2 or 3" -> commas: and / or between answers list them."""
    words = s.split(" ")
    for i, w in enumerate(words):
        if w.translate(_ASCII_LOWER) in ("and", "or"):
            before = " ".join(words[:i]).rstrip()
            words[i] = "" if before.endswith(",") else ","
    return " ".join(words)


def _normalize(s: str) -> str:
    """Spelling-only rewrites that never change a value: a whole \\boxed{}, LaTeX spacing and sizing,
    \\dfrac/\\tfrac/\\cfrac, \\text{} units, $, \\%, degrees, currency signs, relation commands (\\geq -> >=),
    \\frac{a}{b} -> {{a}/{b}}, "and"/"or" lists -> commas. Structure is left to _parse."""
    s = s.strip()
    if len(s) > MAX_ANSWER_CHARS:
        return s
    s = _latex_thousands(s)
    for old, new in _BEFORE_MACROS:
        s = s.replace(old, new)
    s = _rename_macros(s)
    for old, new in _AFTER_MACROS:
        s = s.replace(old, new)
    s = s.strip()
    for cmd in ("\\boxed{", "\\fbox{"):  # after $ is gone: $\boxed{5}$ is a whole box too
        if s.startswith(cmd) and _group_end(s, len(cmd) - 1) == len(s):
            s = s[len(cmd):-1]
    s = _expand_macros(_strip_text(s))
    return _list_words(" ".join(s.split())).strip()


def _despace(s: str) -> str:
    """s without whitespace, except one space between digits, or after a comma after a digit: "1 2" is not
    12, and "1, 234" (a list, _latex_thousands) is not 1,234."""
    words = s.split()
    return "".join(" " + w if i and w[0].isdigit() and (words[i - 1][-1].isdigit() or words[i - 1][-2:-1].isdigit()
                                                         and words[i - 1][-1] == ",") else w
                   for i, w in enumerate(words))


_SPACING = ("\\!", "\\,", "\\ ", "\\;", "\\:")   # LaTeX's spacing commands


def _latex_thousands(s: str) -> str:
    """LaTeX's thousands separators as plain commas: a comma that LaTeX markup touches ({,}, or a comma
    next to a spacing command \\! \\, \\  \\; \\:), or a spacing command alone (1\\,234, the SI style), between
    a digit and a group of exactly 3 digits, with any spaces around it, since math mode ignores them:
    1,\\! 234, 1{,} 234, 1,\\ 234 and 1\\, 234 -> 1,234. A bare comma and a space are left alone: "1, 234" is
    the list 1 and 234, as in prose and as lists are typed."""
    if "\\" not in s and "{,}" not in s:
        return s
    out, last, i = [], 0, 0
    while i < len(s):
        if s[i] not in "0123456789":
            i += 1
            continue
        j, commas, marks = i + 1, 0, 0
        while j < len(s):
            if s[j] == " ":
                j += 1
            elif s.startswith("{,}", j) or s[j] == ",":
                commas, marks, j = commas + 1, marks + (s[j] == "{"), j + (3 if s[j] == "{" else 1)
            elif s.startswith(_SPACING, j):
                marks, j = marks + 1, j + 2
            else:
                break
        group = s[j:j + 4]
        if marks and commas <= 1 and len(group) >= 3 and all(c in "0123456789" for c in group[:3]) \
                and group[3:] not in tuple("0123456789"):
            out.append(s[last:i + 1] + ",")
            last = i = j
        else:
            i += 1
    return "".join(out) + s[last:]


def _thousands(s: str) -> str:
    """1,234,567.5 -> 1234567.5 when every comma sits between a 1-3 digit head and 3-digit groups."""
    body = s[1:] if s[:1] in "+-" else s
    whole, _, frac = body.partition(".")
    groups = whole.split(",")
    ok = (len(groups) > 1 and 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
          and all(g.isdigit() and g.isascii() for g in groups) and (not frac or frac.isdigit() and frac.isascii()))
    return s.replace(",", "") if ok else s


def _mixed_number(s: str) -> Fraction | None:
    """3 1/2, 3\\frac12 (normalised: 3{{1}/{2}}), -2 \\frac{1}{2} -> 7/2, 7/2, -5/2; None when s is not a
    mixed number. The fraction must be proper and come after a space or as a \\frac: 31/2 is not 3 1/2."""
    sign = -1 if s.startswith("-") else 1
    body = s[1:] if s[:1] in "+-" else s
    j = 0
    while j < len(body) and body[j] in "0123456789":
        j += 1
    rest = body[j:]
    if not j or rest[:1] not in (" ", "{"):
        return None
    num, slash, den = rest.replace("{", "").replace("}", "").strip().partition("/")
    if not (slash and num.isdigit() and den.isdigit() and (num + den).isascii() and len(num + den) < 50):
        return None
    if not 0 < int(num) < int(den):
        return None
    return sign * (int(body[:j]) + Fraction(int(num), int(den)))


_NOT_UNITS = GREEK | {"pi", "sqrt", "infty", "frac", "text"}  # "2 pi" is not 2 of a unit called pi


def _is_unit(word: str) -> bool:
    """A trailing unit word: letters (one letter only for m, g, s, h, L), a power, and / between parts:
    miles, cm^2, km/h, m/s^{2}."""
    base, hat, power = word.partition("^")
    if hat and not (power.strip("{}").isdigit() and power.strip("{}").isascii()):
        return False
    return all(p.isascii() and p.isalpha() and (len(p) > 1 or p in "mgshL") and p not in _NOT_UNITS
               for p in base.split("/"))


def _strip_units(s: str) -> str:
    """"125 miles", "5 m^2", "1,000 dollars" -> the number: trailing unit words after a constant."""
    words = s.split()
    k = len(words)
    while k > 1 and _is_unit(words[k - 1]):
        k -= 1
    if k == len(words):
        return s
    head = _thousands(" ".join(words[:k]))
    try:
        return head if not _variables(_Parser(_tokens(head)).run(), set()) else s
    except _ParseError:
        return s
# -----------------------------------------------------------------------------
# Answers as trees, and when two are equal


MAX_ITEMS = 100        # items in a list, set or tuple (more: compared as text)
MAX_NEST = 3           # lists inside tuples inside sets ...
MIN_PLACES = 6         # a decimal written with this many places may stand for a fraction it rounds to
REL_TOL = decimal.Decimal("1e-30")   # Decimal-evaluated values agree to 30 significant digits
N_POINTS, MIN_DEFINED = 6, 3         # expressions with variables: points tried, points that must be defined
POINT_DEN = 2 ** 24                  # points are p / 2^24 with |p| <= 2^24: 2^25 + 1 values in [-1, 1]


@functools.lru_cache(maxsize=4096)  # a list of 100 items in x asks for the same 6 points 100 times
def _point(seed: bytes, name: str, i: int) -> Fraction:
    """Variable name's value at point i: p / POINT_DEN with p from SHA-256(seed, name, i)."""
    h = hashlib.sha256(seed + f"|{name}|{i}".encode()).digest()
    return Fraction(int.from_bytes(h[:8], "big") % (2 * POINT_DEN + 1) - POINT_DEN, POINT_DEN)


class _Expr:
    """A parsed expression: its tree, whether it has variables, the decimal places of a lone literal, and
    its value at each of N_POINTS points chosen by seed (a constant has one value). Values are computed
    when first asked for: most comparisons need one point, or none (a tuple is never an expression)."""

    def __init__(self, tree: tuple, seed: bytes, src: str):
        self.tree, self.seed, self.src = tree, seed, src
        self.names = sorted(_variables(tree, set()))
        self.has_vars = bool(self.names)
        lit = tree[1] if tree[0] == "neg" else tree
        self.places = lit[2] if lit[0] == "num" else 0
        self._values = {}

    def value(self, i: int) -> Fraction | decimal.Decimal | None:
        """The value at point i: a Fraction, a Decimal, or None where undefined."""
        i = i if self.has_vars else 0
        if i not in self._values:
            self._values[i] = _at(self.tree, {n: _point(self.seed, n, i) for n in self.names})
        return self._values[i]

    def values(self) -> list:
        return [self.value(i) for i in range(N_POINTS if self.has_vars else 1)]


def _expr(tree, seed: bytes, src: str) -> tuple:
    return ("expr", _Expr(tree, seed, src))


def _terminates(v) -> bool:
    """Whether v is a fraction with a finite decimal expansion (its denominator has no prime but 2 and 5)."""
    if not isinstance(v, Fraction):
        return False
    d = v.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _close(a, b) -> bool:
    """Exact equality for two Fractions; otherwise agreement to REL_TOL relative (absolute below 1)."""
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    with decimal.localcontext(_DECIMAL):
        a, b = (_dec(v) if isinstance(v, Fraction) else v for v in (a, b))
        if a.is_infinite() or b.is_infinite():
            return a == b
        return abs(a - b) <= REL_TOL * max(decimal.Decimal(1), abs(a), abs(b))


def _expr_equal(a: _Expr, b: _Expr) -> bool:
    """Constants: exact when both are exact; a decimal literal with >= MIN_PLACES places against a value no
    finite decimal equals (1/3, \\sqrt2) when they differ by less than one unit in its last place; else
    agreement to REL_TOL. With variables: the two agree at every point where either is defined, and at
    least MIN_DEFINED points are (polynomial identity testing; this file's header gives the odds), or
    fewer are and they have the same _shape (\\sqrt{ab} and \\sqrt{ba} are undefined where ab < 0)."""
    if not a.has_vars and not b.has_vars:
        va, vb = a.value(0), b.value(0)
        if va is None or vb is None:
            return False
        for lit, lit_value, other in ((a, va, vb), (b, vb, va)):
            if lit.places >= MIN_PLACES and not _terminates(other):
                if isinstance(other, Fraction):
                    return abs(lit_value - other) < Fraction(1, 10 ** lit.places)
                with decimal.localcontext(_DECIMAL):
                    return abs(_dec(lit_value) - other) < decimal.Decimal(10) ** -lit.places
        return _close(va, vb)
    defined = 0
    for i in range(N_POINTS):  # stops at the first point where they differ
        va, vb = a.value(i), b.value(i)
        if va is None and vb is None:
            continue
        if va is None or vb is None or not _close(va, vb):
            return False
        defined += 1
    return defined >= MIN_DEFINED or _shape(a.src) is not None and _shape(a.src) == _shape(b.src)


def _split_top(s: str, seps: tuple = (",",)) -> tuple[list[str], list[str]] | None:
    """s cut at each separator outside (), [], {} and \\{\\}: (parts, separators found). A separator that
    ends in a letter must not be followed by one (\\in is not the start of \\infty). None if brackets do not
    balance (any closer closes any opener: intervals mix them)."""
    parts, found, depth, start, i, firsts = [], [], 0, 0, 0, {t[0] for t in seps}
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
        elif depth == 0 and c in firsts:
            sep = next((t for t in seps if s.startswith(t, i)
                        and not (t[-1].isalpha() and s[i + len(t):i + len(t) + 1].isalpha())), None)
            if sep:
                parts.append(s[start:i])
                found.append(sep)
                i += len(sep)
                start = i
                continue
        i += 1
    return (parts + [s[start:]], found) if depth == 0 else None


def _is_name(s: str) -> bool:
    """x, AB, x_1, a_{n}, \\theta, f': something an answer may be labelled with."""
    s = s.strip().rstrip("'")
    head, under, sub = s.partition("_")
    if head.startswith("\\"):
        head = head[1:] if head[1:] in GREEK else ""
    return bool(head) and head.isascii() and head.isalpha() and (not under or sub.strip("{}").isalnum())


def _is_label(s: str) -> bool:
    """What may stand left of "=" in a labelled answer: a name, a tuple of names (p, q), or f(x)."""
    s = s.strip()
    inner = s[1:-1] if s[:1] == "(" and s[-1:] == ")" else None
    if inner is None and s.endswith(")") and "(" in s:
        name, _, inner = s[:-1].partition("(")
        if not _is_name(name):
            return False
    if inner is None:
        return _is_name(s)
    return all(_is_name(a) or a.strip().isdigit() for a in inner.split(","))


_RELATIONS = ("<=", ">=", "!=", "<", ">", "=")
_FLIPPED = {">": "<", ">=": "<="}


def _interval(lo, hi, closed_lo: bool, closed_hi: bool) -> tuple:
    return ("tuple", ("[" if closed_lo else "(") + ("]" if closed_hi else ")"), [lo, hi])


def _is_variable(node) -> bool:
    return node[0] == "expr" and node[1].tree[0] == "var"


def _is_constant(node) -> bool:
    return node[0] == "expr" and not node[1].has_vars


def _relation(s: str, seed: bytes, depth: int):
    """"x = 2 + 3 = 5" (labels and true equality chains give their value), x >= 5 / 5 <= x (-> [5, inf)),
    2 < x <= 7 (-> (2, 7]), other relations as ("rel", op, a, b) with > and >= turned around."""
    split = _split_top(s, _RELATIONS)
    if split is None or not split[1]:
        return None
    parts, ops = split
    if any(not p.strip() for p in parts) or len(parts) > MAX_ITEMS:
        return _prose(s)
    if set(ops) == {"="}:
        if _is_label(parts[0]):
            parts = parts[1:]
        nodes = [_parse(p, seed, depth + 1) for p in parts]
        if all(_equal(nodes[0], n) for n in nodes[1:]):
            return nodes[-1]
        return ("rel", "=", nodes[0], nodes[1]) if len(nodes) == 2 else _prose(s)
    if ops[0] in _FLIPPED and all(op in _FLIPPED for op in ops):  # 7 > x > 2 -> 2 < x < 7
        parts, ops = parts[::-1], [_FLIPPED[op] for op in reversed(ops)]
    nodes = [_parse(p, seed, depth + 1) for p in parts]
    inf = _expr(("inf",), seed, "\\infty")
    if len(ops) == 2 and set(ops) <= {"<", "<="} and _is_variable(nodes[1]) and _is_constant(nodes[0]) \
            and _is_constant(nodes[2]):
        return _interval(nodes[0], nodes[2], ops[0] == "<=", ops[1] == "<=")
    if len(ops) != 1:
        return _prose(s)
    (op,), (a, b) = ops, nodes
    if op in ("<", "<=") and _is_variable(a) and _is_constant(b):
        return _interval(_expr(("neg", ("inf",)), seed, "-\\infty"), b, False, op == "<=")
    if op in ("<", "<=") and _is_constant(a) and _is_variable(b):
        return _interval(a, inf, op == "<=", False)
    return ("rel", op, a, b)


def _membership(s: str, seed: bytes, depth: int):
    """"x \\in [2, 7]" -> [2, 7]."""
    split = _split_top(s, ("\\in",))
    if split and len(split[0]) == 2 and _is_label(split[0][0]) and split[0][1].strip():
        return _parse(split[0][1], seed, depth + 1)
    return None


def _brackets(s: str, seed: bytes, depth: int):
    """\\{a, b\\} (a set, like a bare list); (a, b) and [a, b) (tuples and intervals: the brackets count);
    A \\cup B (a union: order-free); \\begin{pmatrix} ... \\end{pmatrix} (rows by \\\\, cells by &)."""
    union = _split_top(s, ("\\cup",))
    if union and len(union[0]) > 1:
        return ("union", [_parse(p, seed, depth + 1) for p in union[0]]) if len(union[0]) <= MAX_ITEMS else _prose(s)
    if s.startswith("\\begin{"):
        env, _, body = s[7:].partition("}")
        if env in ("pmatrix", "bmatrix", "matrix", "Bmatrix", "vmatrix") and body.endswith("\\end{" + env + "}"):
            rows = [r.split("&") for r in body[:-len(env) - 6].split("\\\\") if r.strip()]
            if 0 < len(rows) <= MAX_ITEMS and all(len(r) <= MAX_ITEMS for r in rows):
                return ("matrix", [[_parse(c, seed, depth + 1) for c in r] for r in rows])
        return None
    if s.startswith("\\{") and s.endswith("\\}") and len(s) >= 4 and (inner := _split_top(s[2:-2])):
        items = inner[0] if s[2:-2].strip() else []
        return ("set", [_parse(x, seed, depth + 1) for x in items]) if len(items) <= MAX_ITEMS else _prose(s)
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and (inner := _split_top(s[1:-1])) and 1 < len(inner[0]):
        if len(inner[0]) > MAX_ITEMS:
            return _prose(s)
        return ("tuple", s[0] + s[-1], [_parse(x, seed, depth + 1) for x in inner[0]])
    return None


def _plus_minus(s: str, seed: bytes, depth: int):
    """"2 \\pm \\sqrt3" -> the set {2 + \\sqrt3, 2 - \\sqrt3} (one \\pm or \\mp only)."""
    for sign in ("\\pm", "\\mp"):
        if sign in s:
            if s.count("\\pm") + s.count("\\mp") > 1:
                return _prose(s)
            return ("set", [_parse(s.replace(sign, op, 1), seed, depth + 1) for op in ("+", "-")])
    return None


def _prose(s: str) -> tuple:
    """What does not evaluate (or is too big to read): ("text", lower-case text without spaces, _shape)."""
    return ("text", _despace(s).translate(_ASCII_LOWER), _shape(s))


def _unwrap(s: str) -> str:
    """Spaces, one final full stop, and braces around the whole answer ({-a, a} is -a, a) removed."""
    s = s.strip()
    s = s[:-1].strip() if s.endswith(".") else s
    while s.startswith("{") and _group_end(s, 0) == len(s):
        s = s[1:-1].strip()
    return s


def _parse(s: str, seed: bytes, depth: int = 0) -> tuple:
    """A normalised answer as a tree that _equal compares: ("expr", _Expr), ("set", items) for \\{..\\} and
    bare lists (order-free), ("union", items), ("tuple", brackets, items), ("matrix", rows), ("rel", op, a,
    b), or ("text", s, shape) for what does not evaluate (_prose: compared as lower-case text without
    spaces, or by _shape). seed picks the points at which expressions with variables are evaluated."""
    if len(s) > MAX_ANSWER_CHARS:
        return ("text", s, None)  # never read, so never equal to a different spelling
    s = _unwrap(s)
    if not s or depth > MAX_NEST:
        return _prose(s)
    s = _strip_units(_thousands(s))
    label, eq, value = s.rpartition("=")
    if eq and _is_label(label) and (number := _strip_units(_thousands(value.strip()))) != value.strip():
        s = f"{label}= {number}"  # x = 1,234: one number, not the list "x = 1" and 234
    items = _split_top(s)
    if items and len(items[0]) > 1:
        if len(items[0]) > MAX_ITEMS or any(not x.strip() for x in items[0]):
            return _prose(s)
        return ("set", [_parse(x, seed, depth + 1) for x in items[0]])
    for structure in (_membership, _relation, _brackets, _plus_minus):
        if (node := structure(s, seed, depth)) is not None:
            return node
    if (mixed := _mixed_number(s)) is not None:
        return _expr(("num", mixed, 0), seed, s)
    try:
        return _expr(_Parser(_tokens(s)).run(), seed, s)
    except _ParseError:
        return _prose(s)


def _same_items(xs: list, ys: list) -> bool:
    """Whether ys is a reordering of xs, item for item (a multiset match)."""
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        j = next((j for j, y in enumerate(left) if _equal(x, y)), None)
        if j is None:
            return False
        left.pop(j)
    return True


def _equal(a: tuple, b: tuple) -> bool:
    """Whether two _parse trees are the same answer. Different kinds are never equal (a tuple is not a set)."""
    if a[0] != b[0]:
        return False
    kind = a[0]
    if kind == "expr":
        return _expr_equal(a[1], b[1])
    if kind == "text":  # the same text, or the same expression up to the order of terms and factors
        return bool(a[1]) and a[1] == b[1] or a[2] is not None and a[2] == b[2]
    if kind in ("set", "union"):
        return _same_items(a[1], b[1])
    if kind == "tuple":
        return a[1] == b[1] and len(a[2]) == len(b[2]) and all(map(_equal, a[2], b[2]))
    if kind == "matrix":
        return [len(r) for r in a[1]] == [len(r) for r in b[1]] and \
            all(_equal(x, y) for ra, rb in zip(a[1], b[1]) for x, y in zip(ra, rb))
    _, op, x, y = a  # rel: = and != read both ways round
    return op == b[1] and (_equal(x, b[2]) and _equal(y, b[3]) or op in ("=", "!=") and _equal(x, b[3])
                           and _equal(y, b[2]))


def _number_text(v) -> str:
    if v is None:
        return "undefined"
    if isinstance(v, decimal.Decimal) and v.is_infinite():
        return "-inf" if v < 0 else "inf"
    return str(v) if isinstance(v, Fraction) else format(v, ".20g")


def _form(node: tuple, readable: bool = False) -> str:
    """A tree as text: values for expressions (an expression with variables: its values at the points, or
    its normalised spelling when readable), items of sets sorted, the brackets of tuples kept."""
    kind = node[0]
    if kind == "expr":
        e = node[1]
        if all(v is None for v in e.values()) or e.has_vars and readable:
            names = ", ".join(sorted(_variables(e.tree, set())))
            return _despace(e.src) + (f"  (variables {names})" if readable else "")
        return _number_text(e.value(0)) if not e.has_vars else "(" + ",".join(map(_number_text, e.values())) + ")"
    if kind == "text":
        return node[1] if node[2] is None else node[2].removeprefix("+")
    if kind in ("set", "union"):
        items = sorted(_form(x, readable) for x in node[1])
        return "{" + ", ".join(items) + "}" if kind == "set" else " \\cup ".join(items)
    if kind == "tuple":
        return node[1][0] + ", ".join(_form(x, readable) for x in node[2]) + node[1][1]
    if kind == "matrix":
        return "[" + "; ".join(", ".join(_form(x, readable) for x in row) for row in node[1]) + "]"
    sides = [_form(node[2], readable), _form(node[3], readable)]
    return f" {node[1]} ".join(sorted(sides) if node[1] in ("=", "!=") else sides)


# -----------------------------------------------------------------------------
# Answers that do not evaluate: the same expression up to the order of terms and of scalar factors


_FUNCTIONS = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "log",
              "ln", "lg", "exp", "det", "gcd", "lcm", "max", "min", "arg", "deg"}   # applied to what follows
_BIG_OPERATORS = {"sum", "prod", "int", "iint", "iiint", "oint", "lim", "sup", "inf"}   # over the rest of the term
_ACCENTS = {"bar", "overline", "hat", "widehat", "tilde", "widetilde", "dot", "ddot", "vec", "overrightarrow",
            "mathbf", "boldsymbol"}
_VECTORS = ("\\vec", "\\overrightarrow", "\\mathbf", "\\boldsymbol")
_SYMBOLS = GREEK | {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega", "pi", "infty",
                    "ell", "partial"}
_SHAPE_RELATIONS = {"in", "notin", "subset", "subseteq", "to", "approx", "equiv", "\\"}   # and , ; & = < > <= >= !=


def _shape_tokens(s: str) -> list[tuple[str, str]] | None:
    """A normalised answer as (kind, text) tokens for _Shape: num, letter, cmd (a known command or function
    name, sqrt and pi without a backslash), open, close, bar, op (+ - * / ^ _ ! '), sep (a comma, a relation).
    None for anything else, an unknown command or a word standing alone (prose) included."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c.isspace():
            i += 1
        elif c in "0123456789" or c == "." and s[i + 1:i + 2].isdigit():
            _, j, _ = _scan_number(s, i, integers_only=False)
            out.append(("num", s[i:j]))
            i = j
        elif s.startswith(("<=", ">=", "!="), i):
            out.append(("sep", s[i:i + 2]))
            i += 2
        elif c in "([{)]}|+-*/^_!',;&=<>":
            kind = "open" if c in "([{" else "close" if c in ")]}" else "bar" if c == "|" else \
                "sep" if c in ",;&=<>" else "op"
            out.append((kind, c))
            i += 1
        elif c == "\\":
            j = i + 1
            while j < len(s) and s[j].isascii() and s[j].isalpha():
                j += 1
            j = max(j, i + 2)                  # a control symbol: \{ \} \\
            name = s[i + 1:j]
            if name in ("{", "}"):
                out.append(("open" if name == "{" else "close", "\\" + name))
            elif name in _SHAPE_RELATIONS:
                out.append(("sep", "\\" + name))
            elif name in _FUNCTIONS or name in _BIG_OPERATORS or name in _ACCENTS or name in _SYMBOLS \
                    or name in ("sqrt", "binom"):
                out.append(("cmd", name))
            else:
                return None
            i = j
        elif c.isascii() and c.isalpha():
            j = i
            while j < len(s) and s[j].isascii() and s[j].isalpha():
                j += 1
            run = s[i:j]
            if run in _FUNCTIONS or run in ("sqrt", "pi"):
                out.append(("cmd", run))
            elif j - i > 1 and _stands_alone(s, i):
                return None
            else:
                out.extend(("letter", x) for x in run)
            i = j
        else:
            return None
    return out


def _may_be_matrix(key: str) -> bool:
    """A factor that may be a matrix or vector (a capital letter, \\mathbf, \\vec anywhere in it): its
    products do not commute."""
    return any("A" <= c <= "Z" for c in key) or any(v in key for v in _VECTORS)


class _Shape:
    """The canonical text of an answer that does not evaluate, read by recursive descent over _shape_tokens:
    the terms of every sum sorted, and the factors of every product (joined by *, / or written side by
    side) sorted unless one may be a matrix (_may_be_matrix), at every depth: inside brackets, |..|,
    arguments of functions and \\sqrt, the body of \\sum / \\prod / \\int / \\lim (the rest of its term) and
    exponents. Subscripts are kept as written (a_{ij} is not a_{ji}), and so is the order of what commas
    and relations separate. So two answers with the same shape are equal for any scalar values.
        seq := sum (sep sum)*        sum := [+|-] term ((+|-) term)*       term := factor ((*|/)? factor)*
        factor := [+|-] factor | atom (^ script | _ script | ! | ')* [( seq )]
    A letter followed by ( is a function applied, f(x), not a product; a function name takes a bracket, or
    the factors written side by side after it up to the next function (\\log 2x, \\sin x \\cos x)."""

    def __init__(self, tokens: list):
        self.tokens, self.pos, self.depth, self.bars, self.verbatim = tokens, 0, 0, 0, 0

    def run(self) -> str:
        key = self.seq()
        if self.pos != len(self.tokens):
            raise _ParseError("trailing tokens")
        return key

    def peek(self) -> tuple:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self, kind: str | None = None) -> tuple:
        tok = self.peek()
        if tok[0] is None or kind and tok[0] != kind:
            raise _ParseError(f"expected {kind}")
        self.pos += 1
        return tok

    def nested(self, parse, *args):  # every level of nesting goes through here, so recursion stays bounded
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _ParseError("nested too deeply")
        key = parse(*args)
        self.depth -= 1
        return key

    def seq(self) -> str:
        key = self.sum()
        while self.peek()[0] == "sep":
            key += self.take()[1] + self.sum()
        return key

    def sum(self) -> str:
        terms = []
        while not terms or self.peek() in (("op", "+"), ("op", "-")):
            sign = self.take()[1] if self.peek() in (("op", "+"), ("op", "-")) else "+"
            terms.append(sign + self.term())
        return "".join(terms if self.verbatim else sorted(terms))

    def term(self, argument: bool = False) -> str:
        """A product; argument: only factors written side by side, up to the next function (\\log 2x)."""
        factors = ["*" + self.factor()]
        while True:
            kind, text = self.peek()
            if kind == "op" and text in "*/" and not argument:
                self.take()
                factors.append(text + self.factor())
            elif kind in ("num", "letter", "open") or kind == "bar" and not self.bars or kind == "cmd" and not (
                    argument and (text in _FUNCTIONS or text in _BIG_OPERATORS)):
                if kind == "num" and self.tokens[self.pos - 1][0] == "num":
                    raise _ParseError("two numbers side by side")
                factors.append("*" + self.factor())
            else:
                break
        ordered = self.verbatim or any(_may_be_matrix(f) for f in factors)
        return "".join(factors if ordered else sorted(factors))[1:]  # "*" sorts before "/": a product comes first

    def factor(self) -> str:
        if self.peek() in (("op", "+"), ("op", "-")):  # a sign inside a product: a * -b
            return self.take()[1] + self.nested(self.factor)
        letter = self.peek()[0] == "letter"
        key = self.nested(self.atom)
        while self.peek()[0] == "op" and self.peek()[1] in "^_!'":
            op = self.take()[1]
            key += op + (self.script(op) if op in "^_" else "")
        if letter and self.peek() == ("open", "("):
            key += self.group()
        return key

    def script(self, op: str) -> str:
        """A superscript (read like any expression) or a subscript (kept as written) after op."""
        self.verbatim += op == "_"
        kind, text = self.peek()
        if kind == "open":
            key = self.group()
        elif (kind, text) in (("op", "+"), ("op", "-")):
            self.take()
            key = text + self.nested(self.atom)
        else:
            key = self.nested(self.atom)
        self.verbatim -= op == "_"
        return key

    def group(self) -> str:
        opener = self.take("open")[1]
        bars, self.bars = self.bars, 0
        inner = self.nested(self.seq) if self.peek()[0] != "close" else ""
        closer = self.take("close")[1]
        self.bars = bars
        return opener + inner + closer

    def atom(self) -> str:
        kind, text = self.peek()
        if kind == "open":
            return self.group()
        self.take()
        if kind in ("num", "letter"):
            return text
        if kind == "bar" and not self.bars:
            self.bars += 1
            inner = self.nested(self.seq)
            self.take("bar")
            self.bars -= 1
            return "|" + inner + "|"
        if kind != "cmd":
            raise _ParseError(f"unexpected {text!r}")
        key = "\\" + text
        if text in _FUNCTIONS or text in _BIG_OPERATORS:
            while self.peek() in (("op", "^"), ("op", "_")):
                op = self.take()[1]
                key += op + self.script(op)
            if text in _BIG_OPERATORS:
                return key + "[" + self.nested(self.term) + "]"
            return key + "(" + self.argument() + ")"
        if text == "sqrt":
            return key + (self.group() if self.peek() == ("open", "[") else "") + "{" + self.argument() + "}"
        if text in _ACCENTS:
            return key + "{" + self.argument() + "}"
        if text == "binom":
            return key + "{" + self.argument() + "}{" + self.argument() + "}"
        return key

    def argument(self) -> str:
        if self.peek()[0] == "open" or self.peek()[0] == "bar" and not self.bars:
            return self.nested(self.atom)
        return self.nested(self.term, True)


@functools.lru_cache(maxsize=4096)
def _shape(s: str) -> str | None:
    """_Shape's canonical text of a normalised answer; None when it does not read (prose, an unknown
    command, unbalanced brackets) or is longer than MAX_ANSWER_CHARS."""
    try:
        tokens = _shape_tokens(s) if len(s) <= MAX_ANSWER_CHARS else None
        return _Shape(tokens).run() if tokens else None
    except _ParseError:
        return None


# -----------------------------------------------------------------------------
# The public functions: reading answers and comparing them


def canonical_answer(answer: str) -> str:
    """The text equal answers share, for majority voting: "1,000", "1000.0" -> "1000"; \\{2,1\\} and 1, 2
    -> "{1, 2}". Equalities that need a tolerance (0.333333 vs 1/3) may keep different texts."""
    s = _normalize(answer)
    return _form(_parse(s, b"")) if len(s) <= MAX_ANSWER_CHARS else s


def math_equal(pred: str, gold: str) -> bool:
    """True iff pred and gold (answers, not completions: see extract_answer) are the same answer, by the
    rules in this file's header. An int or float is read as its text; None or any other type is False.
    Never raises; bounded in time for any input."""
    if not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in (pred, gold)):
        return False
    a, b = _normalize(str(pred)), _normalize(str(gold))
    if not a or not b:
        return False
    if max(len(a), len(b)) > MAX_ANSWER_CHARS:  # never parsed: compared as stripped strings
        return a == b
    if _despace(a) == _despace(b):
        return True
    seed = hashlib.sha256("\0".join(sorted((a, b))).encode("utf-8", "surrogatepass")).digest()
    pa, pb = _parse(a, seed), _parse(b, seed)
    return _equal(pa, pb)


def is_number(answer: str) -> bool:
    """A plain signed number, possibly labelled or with units (x = 8, 18 dollars), not an expression."""
    node = _parse(_normalize(answer), b"")
    if node[0] != "expr":
        return False
    tree = node[1].tree
    return (tree[1] if tree[0] == "neg" else tree)[0] == "num"


def is_prose(answer: str) -> bool:
    """Whether any part of an answer is prose rather than mathematics ("Evelyn", "one half"; not "x = 5")."""
    return _has_text(_parse(_normalize(answer), b""))


def spelling(answer: str) -> str:
    """The answer as _normalize spells it, without spaces (as _despace keeps them): the text math_equal
    compares first."""
    return _despace(_normalize(answer))


@dataclass(frozen=True)
class Grade:
    """What grade() saw: the answers extracted, their normalised forms, and the verdict."""
    pred_answer: str | None
    gold_answer: str | None
    pred_form: str
    gold_form: str
    equal: bool


def grade(pred: str, gold: str, strict: bool = False) -> Grade:
    """Grades a completion (or a bare answer) pred against gold, a bare answer or a solution. The pred's
    answer is extract_answer(pred, strict); the gold's is extract_answer(gold) or the gold text itself.
    The forms are what math_equal compares (values of constants; sets sorted). Never raises."""
    pred, gold = (str(x) if isinstance(x, (str, int, float)) and not isinstance(x, bool) else "" for x in (pred, gold))
    p = extract_answer(pred, strict=strict)
    g = extract_answer(gold) or gold.strip() or None
    forms = [_form(_parse(_normalize(x), b""), readable=True) if x else "(none)" for x in (p, g)]
    return Grade(p, g, forms[0], forms[1], p is not None and g is not None and math_equal(p, g))


def main(argv=None) -> int:
    """python grader.py --pred '...' --gold '...': prints what grade() saw; exit status 0 if equal, else 1."""
    ap = argparse.ArgumentParser(description="Grade an answer as the math tasks do: the answers extracted, "
                                             "their normalised forms, and the verdict.")
    ap.add_argument("--pred", required=True, help="a completion or a bare answer")
    ap.add_argument("--gold", required=True, help="the gold answer, or a solution ending in \\boxed{...}")
    ap.add_argument("--strict", action="store_true", help="read the pred as the R1 accuracy reward does "
                    "(<answer> tags, \\boxed{}, ####), with no free-form fallback")
    args = ap.parse_args(argv)
    g = grade(args.pred, args.gold, strict=args.strict)
    print(f"pred answer: {g.pred_answer}\ngold answer: {g.gold_answer}")
    print(f"pred form:   {g.pred_form}\ngold form:   {g.gold_form}")
    print(f"verdict:     {'equal' if g.equal else 'not equal'}")
    return 0 if g.equal else 1


if __name__ == "__main__":
    sys.exit(main())
