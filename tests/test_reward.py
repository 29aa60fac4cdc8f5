"""
Tests for reward.py: tables of hard cases written from the rules (DeepSeek-R1 §2.2.2, TinyZero),
reward-hacking cases, a brute-force countdown solver, fuzzing for crashes and stalls, the code
sandbox, task determinism and splits, and file loading.

    python -m pytest tests/test_reward.py -q
"""
import itertools
import json
import math
import os
import random
import socket
import sys
import time
import uuid
from fractions import Fraction

import pytest

import reward as reward_mod

from reward import (TEMPLATES, Example, accuracy_reward, canonical_answer, code_reward, countdown_reward,
                    extract_answer, extract_code, format_reward, grade, language_consistency_reward, load_task,
                    math_equal, overlong_penalty, render_prompt, sandbox_mode, tags_reward)
from reward import main as reward_main

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
    ("(1, 2)", "(1,2)"), ("[1, 2)", "[1,2)"), ("(1,2), (3,4)", "(3, 4), (1, 2)"), ("1,000 dollars", "1000"), ("(1/2, 0.5)", "(0.5, \\frac12)"), ("(-\\infty, 3]", "(-\\infty,3]"),
    ("\\{3, 2, 1\\}", "\\{1,2,3\\}"), ("\\left\\{1,2\\right\\}", "\\{2,1\\}"), ("2, 1", "1, 2"),
    ("2+3*4", "14"), ("(2+3)*4", "20"), ("2^10", "1024"), ("2^-1", "0.5"), ("-2^2", "-4"), ("2^3^2", "512"),
    ("6/4", "3/2"), ("2**3", "8"), ("10^{3}", "1000"), ("3 \\cdot 4", "12"), ("12 \\div 4", "3"),
    ("\\sqrt{16}", "4"), ("\\sqrt{2}", "\\sqrt2"), ("2\\sqrt{2}", "2 \\sqrt 2"), ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}2"),
    ("\\pi", "\\pi"), ("\\frac{\\pi}{2}", "\\frac\\pi2"), ("2\\pi", "2 \\pi"),
    ("\\boxed{5}", "5"), ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("x^2+1", "1+x^2"), ("(x+1)^2", "x^2+2x+1"), ("\\sqrt{8}", "2\\sqrt{2}"),  # once refused, now decided (issue 18)
])
def test_math_equal_true(pred, gold):
    assert math_equal(pred, gold) and math_equal(gold, pred)


@pytest.mark.parametrize("pred, gold", [
    ("", "5"), ("  ", "5"), ("5", ""),
    ("0.33", "1/3"), ("3.14", "\\pi"), ("6", "5"), ("-5", "5"), ("1,000", "1"),
    ("5,5", "5"), ("5 or 6", "5"), ("5, 6", "5"),                    # several answers in one
    ("the answer is not 5", "5"), ("not 5", "5"), ("5 not", "6"),
    ("[1,2]", "(1,2)"), ("(1,2]", "(1,2)"), ("(1,2)", "(2,1)"), ("(1,2)", "1,2"), ("(1,2,3)", "(1,2)"), ("(1,2), (3,4)", "(1,3), (2,4)"),
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


@pytest.mark.parametrize("a, b", [("1,000", "1000.0"), ("\\frac12", "0.5"), ("\\{2,1\\}", "\\{1, 2\\}"), ("x = 3", "3")])
def test_canonical_answer_makes_equal_answers_equal_strings(a, b):
    assert canonical_answer(a) == canonical_answer(b)
    assert canonical_answer("7") != canonical_answer("8")

# -----------------------------------------------------------------------------
# math_equal, class by class (issue 18): pairs that are the same answer, and near misses that are not.
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
    assert reward_main(["--pred", "so the answer is $0.5$", "--gold", "\\frac{1}{2}"]) == 0
    out = capsys.readouterr().out
    assert "pred answer: 0.5" in out and "gold answer: \\frac{1}{2}" in out and "pred form:   1/2" in out
    assert out.strip().endswith("verdict:     equal")
    assert reward_main(["--pred", "the answer is 5", "--gold", "5", "--strict"]) == 1   # no tags, no box
    assert "pred answer: None" in capsys.readouterr().out

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


def test_template_errors():
    assert TEMPLATES == ("r1zero", "chat")
    with pytest.raises(ValueError, match="tokenizer"):
        render_prompt(Example("q", "a"), "chat")
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
    good = f"<think>add them</think> <answer>{ex.answer}</answer>"
    assert task.reward(ex, good) == (2.0, {"accuracy": 1.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 1.0})
    assert task.reward(ex, f"<answer>{ex.answer}", weights={"tags": 1.0}) == (0.0, {"accuracy": 0.0, "format": 0.0, "tags": 0.0, "language": 0.0, "answer": 1.0})  # noqa: E501 (an answer tag never closed: no answer in tags, but the last number is right)
    assert task.reward(ex, f"so {ex.answer} <answer>", weights={"tags": 1.0}) == (0.0, {"accuracy": 0.0, "format": 0.0, "tags": 0.0, "language": 0.0, "answer": 1.0})  # noqa: E501
    assert task.reward(ex, f"so {ex.answer} </think>", weights={"tags": 1.0}) == (0.25, {"accuracy": 0.0, "format": 0.0, "tags": 0.25, "language": 1.0, "answer": 1.0})  # noqa: E501
    assert task.reward(ex, f"<answer>{ex.answer}</answer>")[0] == 1.0
    assert task.reward(ex, good, weights={"format": 0.5, "language": 1.0})[0] == 2.5
    assert task.reward(ex, f"reason</think><answer>{ex.answer}</answer>", think_prefilled=True)[0] == 2.0
    assert task.reward(ex, f"<think>x</think><answer>{int(ex.answer) + 1}</answer>")[0] == 1.0
    with pytest.raises(ValueError, match="bogus"):
        task.reward(ex, good, weights={"bogus": 1.0})
    with pytest.raises(ValueError, match="split"):
        task.example("valid", 0)


# The completions of the collapsed float32 run in issue 19 (step 11, every group): the system prompt's
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
    assert task.reward(ex, "3+5=8 </think> <answer> 7 </answer>", True)[1] == \
        {"accuracy": 0.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 0.0}
    assert task.reward(ex, "3 plus 5 </think> <answer> 8", True)[1]["tags"] == 0.0   # cut off: nothing is trusted
    assert task.reward(ex, "3 plus 5 is 8 </think>", True)[1]["tags"] == 0.5           # no tag: the last number
    assert task.reward(ex, "three plus five is eight </think>", True)[1]["tags"] == 0.0
    cd = load_task("countdown")
    ex = Example("Using the numbers [1, 2, 3] ...", "(1 + 2) * 3")
    assert cd.reward(ex, "x </think> <answer> 3 * (2 + 1) </answer>", True)[1]["format"] == 1.0
    assert cd.reward(ex, "x </think> <answer> 3 * 2 + 1 </answer>", True)[1] == \
        {"accuracy": 0.0, "format": 1.0, "tags": 1.0, "language": 1.0, "answer": 0.0}


def test_answer_part_pays_a_right_answer_wherever_it_is():
    """The answer part (weight 0.1 in train.py's default) is answer_accuracy: the last number, tags or not."""
    task = load_task("arith")
    ex = Example("Compute 3 + 5", "8")
    w = {"accuracy": 1.0, "format": 1.0, "tags": 0.5, "answer": 0.1}
    assert task.reward(ex, "3 + 5 = 8</think>", True, weights=w) == \
        (pytest.approx(0.5 * 0.5 + 0.1), {"accuracy": 0.0, "format": 0.0, "tags": 0.5, "language": 1.0, "answer": 1.0})
    assert task.reward(ex, "3 + 5 = 9</think>", True, weights=w)[0] == 0.5 * 0.5
    assert task.reward(ex, "3+5=8 </think> <answer> 7 </answer>", True, weights=w)[0] == 1.0 + 0.5 * 1.0
    assert task.reward(ex, "7 </think> <answer>8</answer>", True, weights=w)[0] == pytest.approx(1 + 1 + 0.5 + 0.1)
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

# -----------------------------------------------------------------------------
# Fuzzing: no model output crashes or stalls a reward

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
               # the free-form extraction and the grader's classes (issue 18)
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


def reward_calls():
    """Every reward (and extract_answer), called with the fuzz string in the positions a model controls."""
    arith, cd = load_task("arith"), load_task("countdown")
    a_ex, c_ex = arith.example("train", 0), cd.example("train", 0)
    return {
        "format": lambda s: format_reward(s), "format_prefilled": lambda s: format_reward(s, True),
        "extract": lambda s: float(extract_answer(s) is not None), "math_equal": lambda s: float(math_equal(s, "5")),
        "math_equal_gold": lambda s: float(math_equal("\\frac{1}{2}", s)), "accuracy": lambda s: accuracy_reward(s, "5"),
        "accuracy_tagged": lambda s: accuracy_reward(f"<think>t</think><answer>{s}</answer>", "(1,2)", number_only=False),
        "accuracy_number": lambda s: accuracy_reward(f"<answer>{s}</answer>", "5", number_only=True),
        "countdown": lambda s: countdown_reward(f"<answer>{s}</answer>", c_ex.answer),
        "language": lambda s: language_consistency_reward(s), "language_zh": lambda s: language_consistency_reward(s, "zh"),
        "arith_task": lambda s: arith.reward(a_ex, s)[0], "countdown_task": lambda s: cd.reward(c_ex, s)[0],
        "extract_code": lambda s: float(extract_code(s) is not None), "canonical": lambda s: float(len(canonical_answer(s))),
    }


def timed(fn, s) -> tuple[float, float, float]:
    """(result, CPU seconds, wall seconds). CPU time of this thread is what a stall burns, and unlike wall
    time it does not grow when other jobs share the machine's two cores; wall time is also checked, loosely."""
    cpu, wall = time.thread_time(), time.perf_counter()
    result = fn(s)
    return result, time.thread_time() - cpu, time.perf_counter() - wall


def test_fuzz_rewards_return_numbers_fast():
    calls = reward_calls()
    for s in fuzz_strings(3000) + ADVERSARIAL:
        for name, fn in calls.items():
            result, cpu, wall = timed(fn, s)
            assert isinstance(result, float) and math.isfinite(result), (name, s[:50])
            assert cpu < 0.05 and wall < 1.0, (name, s[:50], cpu, wall)


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
# The code sandbox

needs_namespaces = pytest.mark.skipif(sandbox_mode() != "namespaces",
                                      reason="network/file isolation needs root and util-linux unshare/setpriv")
ADD_ONE = "```python\ndef f(x):\n    return x + 1\n```"


def answer(code: str) -> str:
    return f"<think>t</think><answer>{code}</answer>"


def sandbox_processes(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains marker."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z":
            found.append(f"{pid} {cmd[:80]}")
    return found


def gone(marker: str, wait: float = 2.0) -> bool:
    deadline = time.monotonic() + wait   # the kernel reaps a killed namespace asynchronously
    while sandbox_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not sandbox_processes(marker)


@pytest.mark.parametrize("completion, tests, expected", [
    (answer(ADD_ONE), ["assert f(1) == 2", "assert f(2) == 3"], 1.0),
    (answer(ADD_ONE), ["assert f(1) == 2", "assert f(2) == 4"], 0.5),
    (answer("def f(x):\n    return x + 1"), ["assert f(1) == 2"], 1.0),      # no fence inside the answer
    ("Sure:\n" + ADD_ONE, ["assert f(1) == 2"], 1.0),                        # a fence without answer tags
    ("def f(x): return x + 1", ["assert f(1) == 2"], 0.0),                   # no answer, no fence
    (answer(""), ["assert True"], 0.0),
    (answer(ADD_ONE), [], 0.0),
    (answer("import sys\nsys.exit(0)"), ["assert True"], 0.0),
    (answer("import os\nos._exit(0)"), ["assert True"], 0.0),
    (answer("def f(x):\n    return x + 1\nraise ValueError"), ["assert f(1) == 2"], 0.0),
    (answer("print('0 1 2')\nimport os\nos.write(1, b'0\\n1\\n')"), ["assert False", "assert False"], 0.0),
    (answer("x = 1\n\x00"), ["assert True"], 0.0), (answer("x = '\ud800'"), ["assert True"], 0.0),
    (answer("import os"), ["assert os.read(0, 10) == b''", "input()"], 0.5),   # stdin is empty: input() fails
    (answer("import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = lambda *a, **k: None"),
     ["assert False", "assert False"], 0.0),                                    # the harness bound its own exec
])
def test_code_reward(completion, tests, expected):
    assert code_reward(completion, tests, timeout=5.0) == expected


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="dropping to nobody needs root")
def test_rlimits_mode_program_cannot_signal_its_caller(monkeypatch):
    """Without namespaces, as root, the program runs as nobody: it cannot signal the process that runs it.
    (SIGUSR1 with a handler, so that a failure shows up here instead of killing the test run.)"""
    import signal
    if not reward_mod._rlimits_user():
        pytest.skip(f"user nobody cannot run {sys.executable} (reward.py then warns and runs programs as root)")
    monkeypatch.setattr(reward_mod, "_namespace_prefix", lambda: ())
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *a: got.append(a))
    try:
        program = "import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)"
        assert code_reward(answer(program), ["assert True"], timeout=5.0) == 0.0     # kill raised PermissionError
        assert code_reward(answer("x = 1"), ["open('inside.txt', 'w').write('x')", "assert x == 1"]) == 1.0
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert not got and reward_mod._rlimits_user()["user"] == reward_mod.NOBODY


def test_sandbox_never_degrades_silently(monkeypatch, capsys):
    """A fallback to rlimits-only mode says why, once; R1_SANDBOX=namespaces refuses it instead."""
    monkeypatch.setattr(reward_mod, "_namespaces_unavailable", lambda: "not running as root")
    reward_mod._namespace_prefix.cache_clear()
    try:
        assert reward_mod.sandbox_mode() == "rlimits" and reward_mod.sandbox_mode() == "rlimits"
        assert capsys.readouterr().err.count("rlimits-only mode (not running as root)") == 1
        reward_mod._namespace_prefix.cache_clear()
        monkeypatch.setenv("R1_SANDBOX", "namespaces")
        with pytest.raises(RuntimeError, match="R1_SANDBOX=namespaces.*not running as root"):
            reward_mod.sandbox_mode()
    finally:
        reward_mod._namespace_prefix.cache_clear()


def test_code_infinite_loop_is_killed_in_time():
    start = time.monotonic()
    score = code_reward(answer("def f():\n    while True:\n        pass"), ["assert True", "f()", "assert True"], timeout=1.0)
    assert score == pytest.approx(1 / 3)                                      # tests before the hang still count
    assert time.monotonic() - start < 3.0


def test_code_huge_allocation_fails_fast():
    start = time.monotonic()
    assert code_reward(answer("x = bytearray(10 * 1024 ** 3)"), ["assert len(x) > 0"], timeout=5.0) == 0.0
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("new_session", [False, pytest.param(True, marks=needs_namespaces)])
def test_code_leaves_no_process_behind(new_session):
    # a child in the program's process group dies with the group; one that leaves it dies with the PID namespace
    marker = f"sleep {random.randint(10_000, 99_999)}.5"
    code = f"import subprocess\nsubprocess.Popen({marker.split()!r}, start_new_session={new_session})"
    assert code_reward(answer(code), ["assert True"], timeout=3.0) == 1.0
    assert gone(marker)


def test_rlimits_mode_leaves_no_process_or_directory_behind(monkeypatch):
    """Without namespaces a child in a session of its own escapes the process group; it is found by its
    working directory, inside the program's temporary directory, and killed; the directory is removed."""
    import glob
    import tempfile
    monkeypatch.setattr(reward_mod, "_namespace_prefix", lambda: ())
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "r1sandbox-*")))
    marker = f"sleep {random.randint(10_000, 99_999)}.5"
    code = f"import subprocess\nsubprocess.Popen({marker.split()!r}, start_new_session=True)"
    assert code_reward(answer(code), ["assert True"], timeout=3.0) == 1.0
    assert gone(marker)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "r1sandbox-*"))) <= before


def test_code_reward_fuzz():
    # each call starts a process (~0.1 s), so a dozen inputs stand in for the thousands used above
    for s in ADVERSARIAL[:6] + fuzz_strings(6, seed=1) + ["\x00", "\ud800", "```" * 1000, "<answer>```\n\n```</answer>"]:
        for completion in (s, answer(s), answer(f"```python\n{s}\n```")):
            start = time.monotonic()
            score = code_reward(completion, ["assert True", "assert 1 == 2"], timeout=2.0)
            assert score in (0.0, 0.5) and time.monotonic() - start < 4.0, (completion[:40], score)


@needs_namespaces
def test_code_fork_bomb_is_contained():
    start = time.monotonic()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert code_reward(answer(bomb), ["assert True"], timeout=1.0) == 0.0
    assert time.monotonic() - start < 4.0
    assert gone("r1 sandbox runner", wait=3.0)


@needs_namespaces
def test_code_cannot_write_outside_its_directory(tmp_path):
    escape = f"/tmp/r1-escape-{uuid.uuid4().hex}"
    targets = [str(tmp_path / "escaped.txt"), "../escaped.txt", escape, "/var/tmp/" + os.path.basename(escape)]
    tests = [f"open({t!r}, 'w').write('x')" for t in targets] + ["open('inside.txt', 'w').write('x')"]
    score = code_reward(answer("pass"), tests, timeout=5.0)
    # the private /tmp and /var/tmp accept the writes, then vanish; the real paths refuse them
    assert score == pytest.approx(3 / 5)
    assert not any(os.path.exists(p) for p in [targets[0], escape, targets[3], "/escaped.txt"])


@needs_namespaces
def test_code_cannot_write_to_world_writable_system_dirs():
    """/run/lock (/var/lock) is world-writable on the host; in the sandbox it is a private tmpfs too."""
    name = f"r1-escape-{uuid.uuid4().hex}"
    score = code_reward(answer("pass"), [f"open('/run/lock/{name}', 'w').write('x')"], timeout=5.0)
    assert score == 1.0 and not os.path.exists(f"/run/lock/{name}")      # written, then gone with the sandbox


@needs_namespaces
def test_namespaces_work_from_a_virtual_environment_under_tmp(tmp_path):
    """The private /tmp hides an interpreter that lives under /tmp; the sandbox binds its directory back."""
    import subprocess
    venv = tmp_path / "venv"                                   # tmp_path is under /tmp
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    program = ("import reward; print(reward.sandbox_mode(), "
               "reward.code_reward('<answer>x = 1</answer>', ['assert x == 1', 'assert x == 2']))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", program], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": repo}, timeout=120)
    assert done.stdout.split() == ["namespaces", "0.5"], done.stderr


@needs_namespaces
def test_code_has_no_network():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')"
        assert code_reward(answer(code), ["assert True"], timeout=5.0) == 0.0
        with pytest.raises(BlockingIOError):
            server.accept()


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
