"""
Tests for grader.py: tables of hard cases written from the rules of LaTeX and arithmetic (extraction,
equality class by class, near misses), the documented tolerances checked against Fractions, grade() and
its command line, and pairs that make the grader work hardest. The fuzz inputs defined here are shared
with tests/test_reward.py and tests/test_sandbox.py.

    python -m pytest tests/test_grader.py -q
"""
import itertools
import math
import random
import time
from fractions import Fraction

import pytest

from grader import canonical_answer, extract_answer, grade, math_equal
from grader import main as grader_main

# -----------------------------------------------------------------------------
# extract_answer


@pytest.mark.parametrize("text, expected", [
    ("<answer>5</answer>", "5"),
    ("<answer> 1 </answer> then <answer>2</answer>", "2"),           # the last one
    ("<answer></answer>", None),                                     # empty: no fallback
    ("<answer>  </answer> \\boxed{3}", None),
    ("<answer>5", None),                                             # unclosed and nothing else
    ("</answer>5<answer>", None),
    ("so \\boxed{3} or \\boxed{4}", "4"),                            # the last box
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),                             # escaped braces do not close the box
    ("\\fbox{7}", "7"),
    ("\\boxed {7}", "7"),
    ("\\boxed{3} then \\boxed{", None),                              # only the last box is tried
    ("\\boxed{{5}", None),
    ("<answer>\\boxed{5}</answer>", "\\boxed{5}"),                   # answer tags win; math_equal unwraps
    ("work\n#### 1,234\n", "1,234"),
    ("#### 1\nmore\n  #### 2", "2"),
    ("####", None),
    ("the answer is 5", None),
    ("", None),
])
def test_extract_answer_strict(text, expected):
    assert extract_answer(text, strict=True) == expected


GSM8K_LINES = [  # (text, strict, free-form): "####" marks GSM8K's answer only when a number follows it
    ("work\n#### 8", "8", "8"), ("#### $1,234", "$1,234", "$1,234"), ("#### \\$1,234", "\\$1,234", "\\$1,234"),
    ("#### -3", "-3", "-3"), ("#### 1.5", "1.5", "1.5"), ("#### .5", ".5", ".5"), ("#### 1,234\n", "1,234", "1,234"),
    ("#### 18 dollars", "18 dollars", "18 dollars"), ("#### 8.", "8.", "8."),
    ("#### 8\n#### Check\nIt works.", "8", "8"),                       # a heading after the answer is no answer
    # Markdown headings: no number right after the marker, or a numbered heading; the next rule reads the text
    ("#### Step 1: Compute\n2 + 6 = 8\nThe answer is 8.", None, "8"),
    ("#### 1. Setup\nwe add 2 and 6\nso the total is 8", None, "8"),
    ("#### 2) Check\n8 - 6 = 2 works, so it is 8", None, "8"),
    ("#### 3: Result\nShe has 8 apples.", None, "8"),
    ("##### 8 apples\nthe answer is 9", None, "9"), ("### 8 apples", None, "8"),
    ("#### Final answer: 42", None, "42"), ("#### x = 5\nso it is 7", None, "7"), ("####\nso it is 7", None, "7"),
]


def test_gsm8k_answer_lines_and_markdown_headings():
    for text, strict, free in GSM8K_LINES:
        assert (extract_answer(text, strict=True), extract_answer(text)) == (strict, free), text


@pytest.mark.parametrize("text, expected", [
    # 1. the R1 markers come first, and an empty or broken one is final
    ("I think 7. \\boxed{9}", "9"),
    ("the answer is 4 <answer>6</answer>", "6"),
    ("the answer is 4 <answer>6", None),                             # an <answer> that never closed
    ("\\boxed{2} so the answer is 3", "2"),
    ("work\n#### 15", "15"),
    ("so $\\boxed{19}$, $\\boxed{46}$, and $\\boxed{82}$", "19, 46, 82"),  # listed boxes: one answer (strict: 82)
    ("\\boxed{3} then \\boxed{4}", "4"),
    # 2. after an answer phrase: its first math span, else the rest of that sentence
    ("Final Answer: The final answer is $\\dfrac{5}{8}$. I hope it is correct.", "\\dfrac{5}{8}"),
    ("Therefore, the answer is 27. Let me double-check.", "27"),
    ("ANSWER: 3.5 hours\nThat is all", "3.5 hours"),
    ("**Final Answer**\n\n\\[ \\sqrt{13} \\]", "\\sqrt{13}"),
    ("The answer is: **(B)**", "(B)"),
    ("So the answer is $4$ and $9$.", "4, 9"),
    ("first the answer is 1, then\nanswer: 2", "2"),                 # the last phrase
    # 3. the last math span, with the spans listed with it
    ("so we get \\[ y = 3x - 1 \\] as the line", "y = 3x - 1"),
    ("which gives $$\\frac{7}{2}$$", "\\frac{7}{2}"),
    ("hence \\(t = 12\\).", "t = 12"),
    ("The solutions are $x=1$, $x=5$, and $x=-2$.", "x=1, x=5, x=-2"),
    ("It is $3$ or $4$", "3, 4"),
    ("$2$ apples cost $1$ dollar in total", "1"),                    # not joined by and / or / a comma
    ("costs \\$5 and we have $n = 6$", "n = 6"),                     # \$ is a dollar sign
    ("paid $5 and got $3 back, so 2 remain", "2"),                   # pandoc's rule: "$5 and got $" is no math
    ("$ x $ is 4", "4"),
    ("$$ unclosed\n\nso $y = 2$", "y = 2"),                            # no math span crosses a blank line
    ("\\[ x \n\n" + "a " * 10_000 + "\n\nso $y = 2$", "y = 2"),          # a long text: its last paragraphs
    # 4. the whole text, when it reads as an answer
    ("x \\in (0, 3]", "x \\in (0, 3]"),
    ("10 and 12", "10 and 12"),
    ("No solution", "No solution"),
    # 5. the last number
    ("so the largest n is 34.", "34"),
    ("In total she spends 1,250 dollars.", "1,250"),
    ("the chance is 5/36 here", "5/36"),
    ("the temperature fell to -4 overnight", "-4"),
    ("at the point (2,9)", "9"),                                     # a comma without 3 digits ends the number
    ("pages 10-12", "12"),                                           # a - after a digit is not a sign
    ("I could not solve it", None),
    ("", None),
])
def test_extract_answer_free_form(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    # a chat model's prose, as MATH-style solutions end: the number the last sentence states
    ("Therefore, the largest value of $n$ is 34.", "34"),                  # not the math span $n$
    ("So the largest $n$ such that $n^2 < 1200$ is 34.", "34"),
    ("Checking $n = 35$ fails. Hence the smallest $k$ equals 12!", "12"),
    ("so the largest n is 34", "34"),
    ("So $x = 5$ is the answer.", "x = 5"),                                # not a number after the verb: step 3
    ("We get $x=3$. Then $y$ is 2x.", "y"),                               # "2x" is not a number: step 3 as before
    ("The total is 42 apples!", "42 apples"),                             # units stay; math_equal drops them
    # LaTeX thousands separators inside a number in prose
    ("The number of ways is 11,\\!111.", "11,111"),
    ("so there are 1{,}000{,}000 cells", "1{,}000{,}000 cells"),          # stated: kept as written
    ("we count 1{,}000{,}000 cells in all", "1,000,000"),                  # the last number
    ("a total of 11\\,111 steps", "11,111"),
    ("she owes -1,\\!000 dollars", "-1,000"),
    ("integrating f(x)\\,dx we get 3", "3"),                               # \, between non-digits is spacing
    ("from 2\\,x we get 3", "3"),
    # GSM8K completions of a chat model asked for \boxed{}: every form it uses
    ("Janet makes 9 * 2 = $18 every day.\n\nThe answer is 18.", "18"),
    ("Therefore, Janet makes \\(\\boxed{18}\\) dollars every day.", "18"),
    ("9 * 2 = 18\n#### 18", "18"),
    ("She makes $18 per day.", "18"),
])
def test_extract_answer_prose_results(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("pred, gold, equal", [
    ("11,\\!111", "11111", True), ("\\$11,\\!111.50", "11111.5", True), ("11,\\!112", "11111", False),
    # terms of a sum, and factors of a product, that do not evaluate, in another order
    ("\\log 2 + 1", "1 + \\log 2", True), ("\\log 2 - 1", "-1 + \\log 2", True), ("-\\log 2 + 1", "1 - \\log 2", True),
    ("\\sin x + \\cos x", "\\cos x + \\sin x", True), ("n! + 1", "1 + n!", True),
    ("3 \\cdot \\log 3", "\\log 3 \\times 3", True), ("a! \\times b!", "b! * a!", True),
    ("\\sin(x+1) + 2", "2 + \\sin(x+1)", True), ("e^{-x}\\log x + 1", "1 + e^{-x} \\log x", True),
    ("\\sin(x+1) + 2", "2 + \\sin(1+x)", True),                      # inside a function too
    # near misses: a sign, a term, a repeated term, matrices
    ("\\sin x + \\cos x", "\\cos x - \\sin x", False), ("\\log 2 + 1", "\\log 2 + 2", False),
    ("\\log 2 + \\log 2 + 1", "\\log 2 + 1 + 1", False), ("\\log 2 + 1", "1 + \\log 2 + 0", False),
    ("\\mathbf{A} \\cdot \\mathbf{B} + \\log 2", "\\log 2 + \\mathbf{B} \\cdot \\mathbf{A}", False),  # matrices
    ("\\log 2", "\\log 3", False),
])
def test_math_equal_prose_answers_and_reordered_terms(pred, gold, equal):
    assert math_equal(pred, gold) == equal and math_equal(gold, pred) == equal


# Generated tables, one per class of answer: every true pair must be equal, every near miss not

PHRASE_MARKERS = ["Final answer: {}", "Final Answer: {}", "**Final Answer:** {}", "The final answer is: {}",
                  "Answer: {}", "ANSWER:\n{}", "We checked $k = 1$ to $6$.\n\nFinal answer: {} This settles it."]
PHRASINGS = ["the smallest $k$ is {}.", "the smallest k is {}.", "the number of ways is {}.", "there are {} ways.",
             "the value of $x$ equals {}.", "it is {}", "she has {} apples left.", "the total over all $3$ days is {}."]
SPAN_PHRASINGS = ["so $k$ is ${}$.", "there are ${}$ values of $n$.", "we get $N = {}$.", "therefore ${}$"]
STATED = {"7": "8", "-3": "3", "12": "21", "1,234": "1,243", "2.5": "2.6", "0": "1"}   # value -> a near miss
STATED_MATH = {"\\frac{7}{2}": "\\frac{7}{3}", "2\\sqrt{3}": "3\\sqrt{2}"}


def test_answer_phrase_followed_by_a_sentence():
    # markers x phrasings x values: the value the sentence states is the answer, not the sentence
    cases = [(m.format(p.format(v)), v, miss) for m in PHRASE_MARKERS for p in PHRASINGS for v, miss in STATED.items()]
    cases += [(m.format(p.format(v)), v, miss) for m in PHRASE_MARKERS for p in SPAN_PHRASINGS
              for v, miss in (STATED | STATED_MATH).items()]
    cases += [(m.format(p.format(v)), None, v) for m in PHRASE_MARKERS for p in ("it is not {}.", "$k$ is never {}")
              for v in STATED]                                       # a sentence that denies states no value
    unequal = [(text, v) for text, v, _ in cases if v is not None and not grade(text, v).equal]
    false_equal = [(text, miss) for text, _, miss in cases if grade(text, miss).equal]
    assert not unequal and not false_equal, (unequal[:5], false_equal[:5])


SEPARATORS = ["{,}", ",\\!", ",\\ ", ",\\,", "\\,", "\\!"]   # how LaTeX writes a thousands separator
SPACINGS = [("", ""), (" ", ""), ("", " "), (" ", " ")]
GROUPED = ["1,234", "12,345", "-1,234", "1,234,567", "1,234.5", "999,000"]


def test_latex_thousands_separators_with_spacing():
    # separators x spacing x numbers: one number, in an answer and in prose; near misses: other digits, a
    # 2-digit group, and a bare comma and space (a list: "1, 234" is 1 and 234)
    unequal, false_equal = [], []
    for sep, (before, after) in itertools.product(SEPARATORS, SPACINGS):
        for n in GROUPED:
            written, plain = n.replace(",", before + sep + after), n.replace(",", "")
            other = str(Fraction(plain) + 10)                      # a digit off: 1,234 vs 1244
            for pred in (written, f"$\\boxed{{{written}}}$", f"So the total is {written} dollars.",
                         f"There are {written} ways in all"):
                unequal += [(pred, gold) for gold in (plain, n) if not grade(pred, gold).equal]
                false_equal += [(pred, gold) for gold in (other, n.replace(",", ", ")) if grade(pred, gold).equal]
        short = "1" + before + sep + after + "23"                   # a comma before 2 digits: a list
        if sep not in ("\\,", "\\!"):
            false_equal += [(short, gold) for gold in ("123", "1.23") if math_equal(short, gold)]
    for n in GROUPED[:2]:
        listed = n.replace(",", ", ")
        assert not math_equal(listed, n.replace(",", "")) and math_equal(listed, ", ".join(listed.split(", ")[::-1]))
    assert not unequal and not false_equal, (unequal[:5], false_equal[:5])


# (form, the same form written another way) around an answer; the bare \sum takes the rest of its term,
# so it only ever wraps the product itself
WRAPPERS = [("\\log({})", "\\log({})"), ("\\frac{{{}}}{{2}}", "\\frac{{{}}}{{2}}"), ("\\sqrt{{{}}}", "\\sqrt{{{}}}"),
            ("\\sin\\left({}\\right)", "\\sin({})"), ("\\log 2 + {}", "{} + \\log 2"), ("e^{{{}}}", "e^{{{}}}"),
            ("({}) \\log 3", "\\log 3 \\cdot ({})")]
SUM = ("\\sum_i {}", "\\sum_i {}")
FACTORS = [["a_i", "b_i"], ["x", "y", "z"], ["\\alpha", "\\beta", "c"], ["n!", "m"], ["2", "p", "q"],
           ["\\log x", "y"], ["a_i", "b_j", "c_k"]]


def test_reordered_factors_at_any_depth():
    # products of scalars in another order, wrapped in 0 to 3 operators; near misses: another factor, subscripts
    # traded (a_i b_j vs a_j b_i), a factor moved out of its operator, a sign; products that may be matrices
    # (capitals, \mathbf) keep their order
    rng, same, differ = random.Random(14), [], []
    for _ in range(400):
        factors = list(rng.choice(FACTORS))
        chain = [SUM] * (rng.random() < 0.3) + rng.sample(WRAPPERS, rng.randint(0, 3))
        order = factors[:]
        while order == factors:
            rng.shuffle(order)
        joins = (" \\cdot ", " \\times ") if "\\log x" in factors else (" ", " \\cdot ")  # \log x y is \log(xy)

        def wrap(inner: str, side: int) -> str:
            for w in chain:
                inner = w[side].format(inner)
            return inner

        same.append((wrap(joins[0].join(factors), 0), wrap(joins[1].join(order), 1)))
        other = order[:]
        other[rng.randrange(len(other))] = "w"
        differ += [(wrap(" ".join(factors), 0), wrap(" ".join(other), 1)),
                   (wrap(" ".join(factors), 0), wrap("-" + " ".join(order), 1))]
        if factors[1] == "b_j":
            differ.append((wrap("a_i b_j c_k", 0), wrap("a_j b_i c_k", 0)))
        if chain and chain[0] in (WRAPPERS[0], WRAPPERS[2], WRAPPERS[3], WRAPPERS[5]):   # not linear in the product
            inner = chain[0][0].format(" ".join(factors[:-1])) + " " + factors[-1]
            moved = inner
            for w in chain[1:]:
                moved = w[0].format(moved)
            differ.append((wrap(" ".join(factors), 0), moved))
        if any(w in chain for w in (SUM, WRAPPERS[0], WRAPPERS[3])):  # not evaluated: letters are not scalars there
            differ.append((wrap("A B", 0), wrap("B A", 1)))
        differ.append((wrap("\\mathbf{u} \\mathbf{v}", 0), wrap("\\mathbf{v} \\mathbf{u}", 1)))
    unequal = [(a, b) for a, b in same if not (math_equal(a, b) and math_equal(b, a))]
    false_equal = [(a, b) for a, b in differ if math_equal(a, b) or math_equal(b, a)]
    assert not unequal and not false_equal, (len(unequal), unequal[:5], len(false_equal), false_equal[:5])
    assert math_equal("\\sum_i b_i a_i", "\\sum_i a_i b_i") and not math_equal("\\sum_i a_i b_j", "\\sum_i a_j b_i")
    assert not math_equal("a_i \\sum_i b_i", "\\sum_i a_i b_i")        # what the sum runs over is kept
    assert not math_equal("a_{ij}", "a_{ji}") and not math_equal("|a - b| + |c - d|", "|a - d| + |c - b|")

# -----------------------------------------------------------------------------
# math_equal


@pytest.mark.parametrize("pred, gold", [
    ("1,000", "1000"), ("1,234,567", "1234567"), ("-1,000", "-1000"), ("1{,}000", "1000"), ("1\\,000", "1000"),
    ("1000.0", "1000"), ("0.5", "1/2"), (".5", "0.5"), ("+5", "5"), ("5.", "5"),
    ("\u22125", "-5"), ("-0", "0"),
    ("\\frac{1}{2}", "0.5"), ("\\dfrac{3}{4}", "0.75"), ("\\tfrac{3}{4}", "3/4"), ("\\frac12", "1/2"),
    ("\\frac{-1}{2}", "-\\frac12"), ("\\frac{\\frac{1}{2}}{2}", "1/4"),
    ("3\\frac{1}{2}", "3.5"), ("3 1/2", "7/2"), ("-2\\frac12", "-2.5"), ("2 \\frac{1}{3}", "7/3"),
    ("50\\%", "50"), ("50%", "50"), ("2.5e3", "2500"), ("1.5\\times10^{3}", "1500"), ("1E-2", "0.01"),
    ("$5$", "5"), ("\\$18", "18"), ("\\left(1,2\\right)", "(1, 2)"), ("1\\!000", "1000"),
    ("5\\text{ cm}", "5"), ("\\text{5}", "5"), ("18 dollars", "18"), ("\\mbox{yes}", "yes"),
    ("90^\\circ", "90"), ("90^{\\circ}", "90"), ("90\u00b0", "90"),
    ("x = 5", "5"), ("x=5", "x = 5"), ("\\theta = 2", "2"),
    ("(1, 2)", "(1,2)"), ("[1, 2)", "[1,2)"), ("(1,2), (3,4)", "(3, 4), (1, 2)"), ("1,000 dollars", "1000"),
    ("(1/2, 0.5)", "(0.5, \\frac12)"), ("(-\\infty, 3]", "(-\\infty,3]"),
    ("\\{3, 2, 1\\}", "\\{1,2,3\\}"), ("\\left\\{1,2\\right\\}", "\\{2,1\\}"), ("2, 1", "1, 2"),
    ("2+3*4", "14"), ("(2+3)*4", "20"), ("2^10", "1024"), ("2^-1", "0.5"), ("-2^2", "-4"), ("2^3^2", "512"),
    ("6/4", "3/2"), ("2**3", "8"), ("10^{3}", "1000"), ("3 \\cdot 4", "12"), ("12 \\div 4", "3"),
    ("\\sqrt{16}", "4"), ("\\sqrt{2}", "\\sqrt2"), ("2\\sqrt{2}", "2 \\sqrt 2"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}2"),
    ("\\pi", "\\pi"), ("\\frac{\\pi}{2}", "\\frac\\pi2"), ("2\\pi", "2 \\pi"),
    ("\\boxed{5}", "5"), ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("x^2+1", "1+x^2"), ("(x+1)^2", "x^2+2x+1"), ("\\sqrt{8}", "2\\sqrt{2}"),  # decided, not refused
])
def test_math_equal_true(pred, gold):
    assert math_equal(pred, gold) and math_equal(gold, pred)


@pytest.mark.parametrize("pred, gold", [
    ("", "5"), ("  ", "5"), ("5", ""),
    ("0.33", "1/3"), ("3.14", "\\pi"), ("6", "5"), ("-5", "5"), ("1,000", "1"),
    ("5,5", "5"), ("5 or 6", "5"), ("5, 6", "5"),                    # several answers in one
    ("the answer is not 5", "5"), ("not 5", "5"), ("5 not", "6"),
    ("[1,2]", "(1,2)"), ("(1,2]", "(1,2)"), ("(1,2)", "(2,1)"), ("(1,2)", "1,2"), ("(1,2,3)", "(1,2)"),
    ("(1,2), (3,4)", "(1,3), (2,4)"),
    ("\\{1,2\\}", "\\{1,2,3\\}"), ("\\{1,2\\}", "(1,2)"),
    ("5\\text{ cm}^2", "25"),                                        # a unit power is not a power of the number
    ("31/2", "3 1/2"),                                               # 31/2 is not a mixed number
    ("1 2", "12"), ("3 4/2", "17"), ("1 000", "1000"),                # spaces never join digits
    ("\\sin^2x+\\cos^2x", "1"),                                        # no trigonometry: refused
    ("2(3)", "6"),                                                   # no implicit multiplication
    ("1/0", "0"), ("0^-1", "0"),
    ("9^9^9^9", "0"), ("10^100000", "0"), ("1e100000", "0"),
    ("x = 5", "y"), ("5 = 5", "6"),
])
def test_math_equal_false(pred, gold):
    assert not math_equal(pred, gold)


@pytest.mark.parametrize("a, b", [("1,000", "1000.0"), ("\\frac12", "0.5"), ("\\{2,1\\}", "\\{1, 2\\}"),
                                  ("x = 3", "3")])
def test_canonical_answer_makes_equal_answers_equal_strings(a, b):
    assert canonical_answer(a) == canonical_answer(b)
    assert canonical_answer("7") != canonical_answer("8")

# -----------------------------------------------------------------------------
# math_equal, class by class: pairs that are the same answer, and near misses that are not.
# Written from the rules of LaTeX and arithmetic; every pair is checked both ways round.

SPELLINGS = (
    [("\\cfrac{5}{6}", "5/6"), ("\\dfrac{9}{4}", "2.25"), ("\\tfrac{1}{8}", "0.125"), ("\\frac 3 4", "0.75"),
     ("7\\text{ miles}", "7"), ("7 \\textnormal{km}", "7"), ("3\\mbox{ hours}", "3"), ("64 square feet", "64"),
     ("12 m^2", "12"), ("12 m\u00b2", "12"), ("12\\text{ m}^2", "12"), ("\u20ac45", "45"), ("\\$4.50", "4.5"),
     ("60^\\circ", "60"), ("60^{\\circ}", "60"), ("35\\%", "35"), ("35%", "35"), ("2,048.5", "2048.5"),
     ("1{,}000.25", "1000.25"), ("\\text{(E)}", "E"), ("(E)", "E"), ("\\textbf{(B)}", "\\text{B}"),
     ("\\left[ 1, 2 \\right]", "[1,2]"), ("\\displaystyle\\frac{1}{4}", "0.25"), ("3\\,000", "3000"),
     ("\\text{Yes}", "yes"), ("\\[ \\frac{1}{2} \\]", "0.5"), ("$\\boxed{5}$", "5"),
     ("\\langle 1, 2 \\rangle", "(1, 2)")],
    [("125 miles", "12.5"), ("C", "(D)"), ("\\text{(A)}", "B"), ("2,048.5", "2048"), ("12 m^2", "144"),
     ("60^\\circ", "\\frac{\\pi}{3}"),                               # degrees are dropped, not converted
     ("35\\%", "0.35"),                                              # a percentage is the number before %
     ("\\$4.50", "450"), ("1,000.25", "1000"), ("no", "on"), ("2 pi", "2")])

RELATIONS = (
    [("x \\geq 5", "x >= 5"), ("x \\geqslant 5", "5 \\leq x"), ("x \u2265 5", "[5, \\infty)"), ("n > 3", "3 < n"),
     ("n \\gt 3", "(3, \\infty)"), ("k \\lt 0", "k < 0"), ("k < 0", "(-\\infty, 0)"), ("y \\le -1", "(-\\infty, -1]"),
     ("x \\neq 2", "x != 2"), ("x \\ne 2", "2 \\neq x"), ("x \\in [2, 7]", "[2, 7]"),
     ("t \\in (0, \\frac{1}{2}]", "(0, 0.5]"), ("-2 < x \\leq 4", "(-2, 4]"), ("4 \\geq x > -2", "(-2, 4]"),
     ("a + b \\geq 2", "2 \\leq b + a"), ("x \\in \\mathbb{R}", "(-\\infty, \\infty)"),
     ("x \\in (-\\infty, 1) \\cup (2, \\infty)", "(2, \\infty) \\cup (-\\infty, 1)")],
    [("x > 5", "x >= 5"), ("x > 5", "x < 5"), ("x \\in [2, 7]", "(2, 7)"), ("[2, 7]", "(2, 7)"), ("[2, 7)", "[2, 7]"),
     ("x \\neq 2", "x = 2"), ("x \\geq 5", "5"), ("a + b > 2", "a + b \\geq 2"), ("x < 3", "x < 4"),
     ("(-\\infty, 1) \\cup (2, \\infty)", "(-\\infty, 1) \\cup [2, \\infty)")])

LISTS = (
    [("(p,q)=(3,2)", "(3,2)"), ("(m, n) = (4, -1)", "(4,-1)"), ("x = 4", "4"), ("a_1 = 7", "7"),
     ("f(x) = 3x+1", "1+3x"),
     ("6 and 8", "6, 8"), ("8, 6", "6 and 8"), ("19, 46, and 82", "82, 19, 46"), ("19, 46, and 82", "\\{19, 46, 82\\}"),
     ("x = 1 or x = 4", "4, 1"), ("2\\text{ and }5", "5, 2"), ("\\pm 3", "\\{-3, 3\\}"), ("\\pm 3", "3, -3"),
     ("{-a, a}", "\\pm a"), ("x = \\pm \\sqrt{7}", "\\sqrt7, -\\sqrt7"), ("1 \\pm \\sqrt{2}", "1-\\sqrt2, 1+\\sqrt2"),
     ("\\{1, 2\\} ", "\\{2, 1\\}"), ("\\emptyset", "\\{\\}"), ("x = 2 + 3 = 5", "5"),
     ("\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "\\begin{bmatrix} 2 \\\\ -1 \\end{bmatrix}"),
     ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
      "\\begin{pmatrix} 1 & 0 \\\\ 0 & \\frac{2}{2} \\end{pmatrix}")],
    [("(3,2)", "(2,3)"), ("(p,q)=(3,2)", "(2,3)"), ("6 and 8", "6"), ("6 and 8", "6, 8, 8"),
     ("19, 46, and 82", "19, 46"),
     ("\\pm 3", "3"), ("\\pm 3", "\\{3\\}"), ("(1, 2)", "\\{1, 2\\}"), ("(1, 2)", "1, 2"), ("x = 1 or x = 4", "(1, 4)"),
     ("\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "(2, -1)"),
     ("\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{pmatrix} 2 & 1 \\end{pmatrix}"),
     ("5 = 6", "6"), ("2x = 10", "10"), ("x + 1 = 5", "5")])                # an equation is not its right side

NUMBERS = (
    [("0.333333", "1/3"), ("0.3333333333", "\\frac{1}{3}"), ("0.666667", "2/3"), ("0.666666", "\\frac23"),
     ("0.142857", "1/7"), ("-0.833333", "-\\frac{5}{6}"), ("2.645751", "\\sqrt{7}"), ("3.1415927", "\\pi"),
     ("0.785398", "\\frac{\\pi}{4}"), ("15+2\\sqrt{33}", "2\\sqrt{33}+15"), ("\\sqrt{8}", "2\\sqrt{2}"),
     ("\\sqrt{50}", "5\\sqrt2"), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
     ("\\frac{\\sqrt6}{2}", "\\sqrt{\\frac{3}{2}}"),
     ("3\\pi", "\\pi+2\\pi"), ("\\frac{2\\pi}{3}", "\\frac{2}{3}\\pi"), ("\\sqrt[3]{64}", "4"), ("27^{2/3}", "9"),
     ("(-8)^{1/3}", "-2"), ("\\sqrt[3]{-27}", "-3"), ("2^{1/2}", "\\sqrt2"), ("\\sqrt{2}\\cdot\\sqrt{3}", "\\sqrt{6}"),
     ("(1+\\sqrt3)^2", "4+2\\sqrt3"), ("\\frac{1+\\sqrt{5}}{2}", "(1+\\sqrt{5})/2"), ("1.25e-2", "0.0125"),
     ("4.0", "4"), ("0.5000000", "1/2"), ("sqrt(2)", "\\sqrt{2}")],
    [("1/12", "0.083"), ("0.33", "1/3"), ("0.333", "1/3"), ("0.33333", "1/3"),        # under 6 places: exact only
     ("0.333335", "1/3"), ("1.414215", "\\sqrt{2}"),                                  # 6 places, off by > 1 unit
     ("3.14", "\\pi"), ("3.14159", "\\pi"), ("0.1428571", "0.142857"), ("0.500001", "1/2"),
     ("\\sqrt{2}", "\\sqrt{3}"), ("2\\sqrt{3}", "3\\sqrt{2}"), ("\\pi", "\\frac{22}{7}"), ("\\pi", "\\frac{355}{113}"),
     ("15+2\\sqrt{33}", "15-2\\sqrt{33}"), ("2^{1/3}", "1.26"), ("\\sqrt{-4}", "2"), ("(-8)^{1/2}", "2")])

EXPRESSIONS = (
    [("x^2+1", "1+x^2"), ("(x+1)^2", "x^2+2x+1"), ("2x(x-3)", "2x^2-6x"), ("(a-b)(a+b)", "a^2-b^2"),
     ("\\frac{x^2-1}{x-1}", "x+1"), ("3(x+2)", "3x+6"), ("\\frac{1}{x}+\\frac{1}{y}", "\\frac{x+y}{xy}"),
     ("2xy", "2yx"), ("x\\sqrt{2}", "\\sqrt{2}x"), ("\\frac{n(n+1)}{2}", "\\frac{n^2+n}{2}"),
     ("(x+y)^3", "x^3+3x^2y+3xy^2+y^3"), ("2^{n+1}", "2\\cdot 2^n"), ("y = 3 - 2x", "-2x + 3"), ("\\pi r^2", "r^2\\pi"),
     ("\\frac{a}{b}\\cdot\\frac{b}{c}", "\\frac{a}{c}"), ("4\\theta", "2\\theta+2\\theta"), ("x_1 + x_2", "x_2 + x_1")],
    [("x^2+1", "x^2-1"), ("(x+1)^2", "x^2+1"), ("2x", "x^2"), ("x+y", "x-y"), ("\\frac{x}{2}", "\\frac{2}{x}"),
     ("x", "y"), ("a", "A"), ("n(n+1)/2", "n(n-1)/2"), ("x^{10}+\\sqrt{2}", "x^{10}"), ("\\sqrt{x^2}", "x"),
     ("x^3", "x^3 + 10^{-12}"), ("2^{n+1}", "2^n + 2"), ("x_1 + x_2", "2x_1")])

CLASSES = {"spellings": SPELLINGS, "relations": RELATIONS, "lists": LISTS, "numbers": NUMBERS,
           "expressions": EXPRESSIONS}


def class_cases(equal: bool):
    return [pytest.param(p, g, id=f"{name}: {p} | {g}") for name, (same, differ) in CLASSES.items()
            for p, g in (same if equal else differ)]


@pytest.mark.parametrize("pred, gold", class_cases(equal=True))
def test_math_equal_classes_equal(pred, gold):
    assert math_equal(pred, gold) and math_equal(gold, pred)


@pytest.mark.parametrize("pred, gold", class_cases(equal=False))
def test_math_equal_classes_near_misses(pred, gold):
    assert not math_equal(pred, gold) and not math_equal(gold, pred)


@pytest.mark.parametrize("a, b", [("6 and 8", "8, 6"), ("x \\geq 5", "[5, \\infty)"), ("(p,q)=(3,2)", "(3, 2)"),
                                  ("\\pm 2", "\\{2, -2\\}"), ("15+2\\sqrt{33}", "2\\sqrt{33}+15"),
                                  ("2x(x-3)", "2x^2-6x")])
def test_canonical_answer_covers_the_new_classes(a, b):
    assert canonical_answer(a) == canonical_answer(b)


def test_math_equal_takes_numbers_and_refuses_other_types():
    assert math_equal("7", 7) and math_equal(0.5, "\\frac{1}{2}")
    assert not math_equal(None, "5") and not math_equal("1", True) and not math_equal(["5"], "5")
    assert not grade(None, "5").equal and grade(7, "7").equal


def test_long_decimal_rule_is_one_unit_in_the_last_place():
    # the documented rule, checked against Fractions: a decimal D with k >= 6 places equals p/q (q with a
    # prime other than 2 and 5) iff |D - p/q| < 10^-k; below 6 places only exact equality counts
    rng = random.Random(18)
    for _ in range(300):
        q = rng.choice([3, 6, 7, 9, 11, 12, 13, 17, 21, 37, 99, 101, 699])
        v = Fraction(rng.randint(-3 * q, 3 * q), q)
        if v.denominator in (1, 2, 4, 5, 8, 10):
            continue
        k = rng.randint(4, 9)
        units = math.floor(v * 10 ** k) + rng.randint(-2, 2)                   # d = units / 10^k
        digits = str(abs(units)).rjust(k + 1, "0")
        text = ("-" if units < 0 else "") + digits[:-k] + "." + digits[-k:]
        d = Fraction(units, 10 ** k)
        assert Fraction(text) == d
        expected = k >= 6 and abs(d - v) < Fraction(1, 10 ** k)
        assert math_equal(text, f"{v.numerator}/{v.denominator}") == expected, (text, v)


def test_no_decimal_matches_two_fractions_with_small_denominators():
    # the docstring's argument: neighbours in the Farey sequence of order 700 (every fraction in [0, 1]
    # with denominator <= 700) are more than 2e-6 apart, so no decimal is within 1e-6 of two of them
    a, b, c, d, n, gap = 0, 1, 1, 700, 700, Fraction(1)
    while c <= n:
        gap = min(gap, Fraction(c, d) - Fraction(a, b))
        k = (n + b) // d
        a, b, c, d = c, d, k * c - a, k * d - b
    assert gap > Fraction(2, 10 ** 6)


def expanded(coeffs: list[int], var: str = "x") -> str:
    """sum coeffs[i] * var^i written highest power first, as a student would."""
    terms = []
    for i in reversed(range(len(coeffs))):
        c = coeffs[i]
        if c:
            mono = "" if i == 0 else var if i == 1 else f"{var}^{{{i}}}"
            num = str(abs(c)) if abs(c) != 1 or not mono else ""
            terms.append(("- " if c < 0 else "+ ") + num + mono)
    return " ".join(terms).removeprefix("+ ") or "0"


def test_polynomial_identity_on_generated_polynomials():
    # c (x - r1) ... (x - rn), expanded here by convolution: equal to its factored form; moving one
    # coefficient by 1 makes a different polynomial, which must be unequal
    rng = random.Random(7)
    for _ in range(40):
        roots, c = [rng.randint(-9, 9) for _ in range(rng.randint(1, 6))], rng.choice([-3, -2, -1, 1, 2, 5])
        coeffs = [c]
        for r in roots:  # multiply by (x - r): coefficient i of the product is c[i-1] - r c[i]
            padded = [0] + coeffs + [0]
            coeffs = [padded[i] - r * padded[i + 1] for i in range(len(coeffs) + 1)]
        factored = f"{c}" + "".join(f"(x{'-' if r >= 0 else '+'}{abs(r)})" for r in roots)
        assert math_equal(factored, expanded(coeffs)), (factored, expanded(coeffs))
        bumped = list(coeffs)
        bumped[rng.randrange(len(bumped))] += rng.choice([-1, 1])
        assert not math_equal(factored, expanded(bumped)), (factored, expanded(bumped))


@pytest.mark.parametrize("completion, gold, equal", [
    ("Final Answer: The final answer is $\\frac{1}{3}$. I hope it is correct.", "0.333333", True),
    ("so the answer is 125 miles.", "125", True),
    ("so the answer is 125 miles.", "12.5", False),
    ("We find $(p, q) = (3, 2)$.", "(3,2)", True),
    ("We find $(p, q) = (3, 2)$.", "(2,3)", False),
    ("The roots are $x = 6$ and $x = 8$.", "6, 8", True),
    ("Thus \\[ x \\geq 5 \\]", "$[5, \\infty)$", True),
    ("Thus \\[ x > 5 \\]", "$[5, \\infty)$", False),
    ("It is \\boxed{\\text{(C)}}", "C", True),
    ("It is \\boxed{\\text{(C)}}", "(D)", False),
    ("Solution: ... the answer is $\\boxed{2\\sqrt{33}+15}$", "The area is $\\boxed{15+2\\sqrt{33}}$.", True),
])
def test_grade_reads_completions_and_golds(completion, gold, equal):
    g = grade(completion, gold)
    assert g.equal == equal, g
    assert g.pred_answer is not None and g.gold_answer is not None


def test_grade_cli(capsys):
    assert grader_main(["--pred", "so the answer is $0.5$", "--gold", "\\frac{1}{2}"]) == 0
    out = capsys.readouterr().out
    assert "pred answer: 0.5" in out and "gold answer: \\frac{1}{2}" in out and "pred form:   1/2" in out
    assert out.strip().endswith("verdict:     equal")
    assert grader_main(["--pred", "the answer is 5", "--gold", "5", "--strict"]) == 1   # no tags, no box
    assert "pred answer: None" in capsys.readouterr().out

# -----------------------------------------------------------------------------
# Fuzzing inputs (used by test_reward.py and test_sandbox.py too), and pairs that make the grader work hardest

PIECES = ["<think>", "</think>", "<answer>", "</answer>", "\\boxed{", "\\fbox{", "{", "}", "(", ")", "[", "]", "\\{",
          "\\}", "^", "**", "9", "0", "1", ".", ",", "-", "+", "*", "/", "=", "%", "$", "e", "E", "x", "\\frac",
          "\\dfrac", "\\sqrt", "\\text{", "\\left(", "\\right)", "\\pi", "####", "\n", " ", "\\", "\u2212", "\x00",
          "\ud800", "\udfff", "中", "é", "٣", "½", "\u00b0", "^\\circ", "\\!", "\\,", "1,000", "9^9^9^9", "1e999"]
ADVERSARIAL = ["9^9^9^9", "10^100000", "2^2^2^2^2^2^2", "1e100000", "1e-100000", "(" * 100_000 + "1" + ")" * 100_000,
               "-" * 100_000 + "1", "\\frac" * 5000, "\\frac{" * 5000 + "1", "\\sqrt{" * 5000, "9" * 5000, "9" * 999,
               "(" * 999, "2^" * 499 + "2", "0." + "0" * 997 + "1", "\x00" * 1000, "\ud800\udc00\udfff", "1/0",
               "0^-1", "\\boxed{" * 10_000, "<answer>" * 10_000, "1," * 400 + "1", "(1," * 300 + "1" + ")" * 300,
               "\\{" * 300 + "\\}" * 300, "9" * 999 + "^" + "9" * 999, "\\frac{" * 166, "\\sqrt{" * 166,
               "\\text{a}^" * 100, "\\frac{\\frac{" * 80 + "1" + "}{2}" * 80, "x = " * 250, "1 " * 499,
               # the free-form extraction and the grader's classes
               "$" * 100_000, "\\(" * 50_000, "\\[" + "x" * 10_000 + "\\]", "answer is " * 5000, "$1$ and " * 2000,
               "x^{" * 300 + "}" * 300, "\\pm" * 300, "1 and " * 150, "x \\geq " * 150, "\\sqrt[64]{" * 100,
               "(x+1)^{99999}", "(x+1)^{300}", "2^{2^{2^{2^{2^{2}}}}}", "\\pi^{9^{9^{9}}}", "\\pi^{-99999}",
               "x^{-99999}",
               "\\begin{pmatrix}" + "1 & " * 200 + "\\end{pmatrix}", ", ".join(["x"] * 100), "0." + "3" * 990,
               "x_{" * 300, "\\sqrt{x}" * 100, "\\sqrt[3]{x}" * 80, "e^{" * 200 + "x" + "}" * 200, "1/x" * 300,
               "\\frac{1}{x-" * 100 + "1" + "}" * 100, "(" * 500 + "x" + ")" * 500, "\\{" * 400 + "\\}" * 400,
               "\\boxed{1}, " * 10_000]
HUGE = ["{" * 1_000_000, "\\boxed{" + "{" * 1_000_000, "\x00" * 1_000_000, "中" * 1_000_000, "a " * 500_000,
        "<answer>" + "(" * 1_000_000 + "</answer>", "$" * 1_000_000, "\\(" * 500_000, "answer is " * 100_000,
        "1," * 500_000, "$x$ and " * 125_000]


def fuzz_strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.8:
            out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))))
        else:
            out.append("".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(0, 80))))
    return out


def timed(fn, s) -> tuple[float, float, float]:
    """(result, CPU seconds, wall seconds). CPU time of this thread is what a stall burns, and unlike wall
    time it does not grow when other jobs share the machine's two cores; wall time is also checked, loosely."""
    cpu, wall = time.thread_time(), time.perf_counter()
    result = fn(s)
    return result, time.thread_time() - cpu, time.perf_counter() - wall


# pairs that make the grader work hardest against each other: 100-item lists in another order (greedy
# matching is quadratic in the items), high powers, towers of \\pi
SLOW_PAIRS = [(", ".join(f"x^{{{i}}}+{i}" for i in range(100)), ", ".join(f"x^{{{i}}}+{i}" for i in range(99, -1, -1))),
              (", ".join(f"\\sqrt{{{i}}}" for i in range(2, 102)),
               ", ".join(f"\\sqrt{{{i}}}" for i in range(101, 1, -1))),
              (", ".join(f"\\sqrt{{2}}x+{i}" for i in range(100)), ", ".join(f"{i}+x\\sqrt{{2}}" for i in range(100))),
              ("(x+1)^{300}", "(1+x)^{300}"), ("\\pi^{\\pi^{\\pi^{\\pi}}}", "\\pi^{\\pi^{\\pi^{\\pi}}}+1"),
              (", ".join(["x"] * 100), ", ".join(["y"] * 100))]


@pytest.mark.parametrize("a, b", SLOW_PAIRS, ids=lambda s: s[:20])
def test_hard_pairs_are_fast(a, b):
    for x, y in ((a, b), (b, a)):
        result, cpu, wall = timed(lambda s: math_equal(s, y), x)
        assert isinstance(result, bool) and cpu < 0.05 and wall < 1.0, (x[:30], cpu)
