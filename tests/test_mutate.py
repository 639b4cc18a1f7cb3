"""gradcheck.mutate: the mutants of each kind, the run of a check on each, the report and the CLI."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradcheck.mutate
import gradcheck.mutate.__main__ as cli
from gradcheck.mutate import KINDS, MutationError, generate_mutants

ROOT = Path(__file__).resolve().parents[1]

CLIP = '''\
def clip(x, lo, hi):
    """Docstring: x < lo is prose, not code."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x
'''
WEAK = "import toy; assert toy.clip(5, 0, 10) == 5 and toy.clip(-1, 0, 10) == 0"
STRONG = "import toy; assert (toy.clip(5, 1, 10), toy.clip(-1, 1, 10), toy.clip(11, 1, 10)) == (5, 1, 10)"
LOOPS = '''\
def countdown(n):
    while n > 0:
        n -= 1
    return n


def divisor():
    return 1


RATIO = 1 / divisor()
'''


def body(code: str) -> str:
    return "import numpy as np\n\n\ndef f(a, b, c, d, e):\n" + textwrap.indent(textwrap.dedent(code), "    ")


# kind -> (function body, the mutated lines expected: one per mutant, in order)
KIND_CASES = {
    "arith": ("a += b\nreturn a + b - c * d / e\n",
              ["a -= b", "return a - b - c * d / e", "return a + b + c * d / e", "return a + b - c / d / e",
               "return a + b - c * d * e"]),
    "sign": ("c = -a\nreturn c, b\n", ["c = a", "return -c, b", "return c, -b"]),
    "drop_term": ("a += b\nreturn (a + b) - c\n", ["pass", "return (a + b)", "return (a) - c", "return (b) - c"]),
    "augassign": ("a += b\na *= c\nreturn a\n", ["a = b", "a = c"]),
    "axis": ("return a.sum(axis=-1) + a.mean(axis=0) + np.sum(a, 1)\n",
             ["return a.sum(axis=-2) + a.mean(axis=0) + np.sum(a, 1)",
              "return a.sum(axis=-1) + a.mean(axis=1) + np.sum(a, 1)"]),
    "compare": ("return a < b, a >= b, a == b, a is not b, a in b, a < b <= c\n",
                ["return a <= b, a >= b, a == b, a is not b, a in b, a < b <= c",
                 "return a < b, a > b, a == b, a is not b, a in b, a < b <= c",
                 "return a < b, a >= b, a != b, a is not b, a in b, a < b <= c",
                 "return a < b, a >= b, a == b, a is b, a in b, a < b <= c",
                 "return a < b, a >= b, a == b, a is not b, a not in b, a < b <= c",
                 "return a < b, a >= b, a == b, a is not b, a in b, a <= b <= c",
                 "return a < b, a >= b, a == b, a is not b, a in b, a < b < c"]),
    "boolop": ("return (a and b) or c\n", ["return (a and b) and c", "return (a or b) or c"]),
    "condition": ("if a:\n    b = c\nwhile b:\n    b = d\nreturn c if a else b\n",
                  ["if not a:", "while not b:", "return c if not a else b"]),
    # (a test that is not a single name is negated in parentheses: ``not (x < lo)``)
    "constant": ("return 0, 1, 2, 0.0, 2.5, True, None, 's'\n",
                 ["return 1, 1, 2, 0.0, 2.5, True, None, 's'", "return 0, 0, 2, 0.0, 2.5, True, None, 's'",
                  "return 0, 1, 3, 0.0, 2.5, True, None, 's'", "return 0, 1, 2, 1.0, 2.5, True, None, 's'",
                  f"return 0, 1, 2, 0.0, {2.5 * 1.001!r}, True, None, 's'",
                  "return 0, 1, 2, 0.0, 2.5, False, None, 's'"]),
    "transpose": ("return a.T, a.mT, np.swapaxes(a, 0, 1), a.transpose(1, 0), np.moveaxis(a, 0, -1)\n",
                  ["return a, a.mT, np.swapaxes(a, 0, 1), a.transpose(1, 0), np.moveaxis(a, 0, -1)",
                   "return a.T, a, np.swapaxes(a, 0, 1), a.transpose(1, 0), np.moveaxis(a, 0, -1)",
                   "return a.T, a.mT, a, a.transpose(1, 0), np.moveaxis(a, 0, -1)",
                   "return a.T, a.mT, np.swapaxes(a, 0, 1), a, np.moveaxis(a, 0, -1)",
                   "return a.T, a.mT, np.swapaxes(a, 0, 1), a.transpose(1, 0), a"]),
    "keepdims": ("return a.sum(axis=0, keepdims=True), a.max(keepdims=False)\n",
                 ["return a.sum(axis=0, keepdims=False), a.max(keepdims=False)"]),
}


def changed_line(mutant) -> str:
    """The one line the mutant changed, stripped."""
    new = [line[1:].strip() for line in mutant.diff(0).splitlines() if line.startswith("+") and line[1:2] != "+"]
    assert len(new) == 1, mutant.diff()
    return new[0]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gives_the_expected_mutants(kind):
    code, expected = KIND_CASES[kind]
    source = body(code)
    found = generate_mutants(source, kinds=[kind])
    assert sorted(changed_line(m) for m in found) == sorted(expected)
    for m in found:
        assert (m.kind, m.function) == (kind, "f")
        assert m.source.splitlines()[m.line - 1].strip() == changed_line(m)
        ast.parse(m.source)  # every mutant is valid Python
        assert m.source != source and m.original == source


def test_docstrings_messages_and_guards_are_not_mutated_unless_asked():
    source = body('''\
    """a + b in prose"""
    if a.ndim != 2:
        raise ValueError(f"a must be 2-D; got {a.ndim + 1}")
    if a.size < 1:
        what = "empty" if a.size == 0 else "negative"
        raise ValueError(f"a is {what}")
    assert a > 0, "positive"
    ''')
    assert generate_mutants(source) == []
    guards = generate_mutants(source, include_guards=True)
    lines = {m.line: m.original.splitlines()[m.line - 1].strip() for m in guards}
    first = [line for line, text in lines.items() if text.startswith("if a.ndim")]
    assert sorted(m.kind for m in guards if m.line in first) == ["compare", "condition", "constant"]
    # the second guard builds its message before it raises: its condition and the message are mutated only when asked
    assert {text.split()[0] for text in lines.values()} == {"if", "what"}


def test_functions_and_methods_can_be_selected_and_unknown_names_are_refused():
    source = "class Layer:\n    def backward(self, d):\n        return -d\n\n\ndef helper(x):\n    return x + 1\n"
    assert {m.function for m in generate_mutants(source)} == {"Layer.backward", "helper"}
    assert {m.function for m in generate_mutants(source, functions=["backward"])} == {"Layer.backward"}
    with pytest.raises(ValueError, match="functions: .*'forward'.* it defines Layer.backward, helper"):
        generate_mutants(source, functions=["forward"])
    with pytest.raises(ValueError, match="kinds: unknown"):
        generate_mutants(source, kinds=["typo"])


def test_ids_are_stable_unique_and_independent_of_other_code():
    first = generate_mutants(CLIP, module="toy")
    assert [m.id for m in first] == [m.id for m in generate_mutants(CLIP, module="toy")]
    assert len({m.id for m in first}) == len(first) == 7
    edited = "import math\n\n\ndef other(y):\n    return y - 1\n\n\n" + CLIP + "\n\ndef last(z):\n    return -z\n"
    again = {m.id: m for m in generate_mutants(edited, module="toy") if m.function == "clip"}
    assert set(again) == {m.id for m in first}
    assert all(again[m.id].line == m.line + 7 and again[m.id].description == m.description for m in first)
    assert not {m.id for m in first} & {m.id for m in generate_mutants(CLIP, module="other")}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A module ``toy`` (CLIP) in tmp_path, on sys.path, and the hashes of every file there."""
    (tmp_path / "toy.py").write_text(CLIP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def statuses(report) -> dict[str, str]:
    return {changed_line(r.mutant): r.status for r in report.results}


def test_a_weak_check_lets_mutants_survive_that_a_strong_one_kills(toy):
    before = snapshot(toy)
    weak = gradcheck.mutate.run(toy / "toy.py", ["python", "-c", WEAK])
    assert statuses(weak) == {"if x <= lo:": "survived", "return -lo": "survived", "if x >= hi:": "survived",
                              "return -hi": "survived", "if not (x < lo):": "killed",
                              "if not (x > hi):": "killed",
                              "return -x": "killed"}
    assert weak.score == pytest.approx(100 * 3 / 7)
    strong = gradcheck.mutate.run("toy", ["python", "-c", STRONG], timeout=30)
    assert {line for line, s in statuses(strong).items() if s == "survived"} == {"if x <= lo:", "if x >= hi:"}
    assert snapshot(toy) == before  # nothing written in the tree, nothing left behind
    text = str(weak)
    assert "-    if x < lo:\n+    if x <= lo:" in text and text.rstrip().splitlines()[-1].startswith("score 42.9 %")


def test_equivalence_marks_from_files_and_comments_are_not_counted(toy):
    boundary = [m for m in gradcheck.mutate.mutants("toy") if m.kind == "compare"]
    marks = toy / "equivalent.json"
    marks.write_text(json.dumps([{"id": boundary[0].id, "reason": "x == lo returns lo either way"},
                                 {"id": "0000000000", "reason": "stale"}]))
    report = gradcheck.mutate.run("toy", ["python", "-c", STRONG], equivalents=marks)
    by_id = {r.mutant.id: r for r in report.results}
    marked = by_id[boundary[0].id]
    assert (marked.status, marked.reason) == ("equivalent", "x == lo returns lo either way")
    assert by_id[boundary[1].id].status == "survived"
    assert report.score == pytest.approx(100 * 5 / 6) and report.unknown_equivalents == ["0000000000"]
    if sys.version_info >= (3, 11):
        (toy / "eq.toml").write_text(f'[[equivalent]]\nid = "{boundary[1].id}"\nreason = "x == hi gives hi"\n')
        assert gradcheck.mutate.load_equivalents(toy / "eq.toml") == {boundary[1].id: "x == hi gives hi"}
    (toy / "toy.py").write_text(CLIP.replace("if x < lo:", "if x < lo:  # mutate: skip boundary: lo either way")
                                .replace("if x > hi:", "if x > hi:  # mutate: skip"))
    report = gradcheck.mutate.run("toy", ["python", "-c", STRONG])
    marked = [r for r in report.results if r.status == "equivalent"]
    assert len(marked) == 4 and {r.reason for r in marked} == {"boundary: lo either way", "marked '# mutate: skip'"}
    assert report.score == 100.0 and report.counts()["killed"] == 3
    marks.write_text('{"id": "not in a list"}')
    with pytest.raises(ValueError, match="equivalents: .* list of"):
        gradcheck.mutate.load_equivalents(marks)


def test_hanging_mutants_are_timeouts_and_import_failures_errors(tmp_path, monkeypatch):
    (tmp_path / "loops.py").write_text(LOOPS)
    monkeypatch.chdir(tmp_path)
    report = gradcheck.mutate.run(tmp_path / "loops.py", "python -c 'import loops; assert loops.countdown(3) == 0'",
                                  timeout=1.5, jobs=2)
    assert statuses(report) == {
        "while n >= 0:": "killed", "while not (n > 0):": "killed", "while n > 1:": "killed",
        "n += 1": "timeout", "pass": "timeout", "n = 1": "timeout", "n -= 0": "timeout",
        "return -n": "survived", "return 0": "error"}
    assert report.counts() == {"killed": 3, "timeout": 4, "survived": 1, "equivalent": 0, "error": 1}
    assert report.score == pytest.approx(100 * 7 / 8)
    error = next(r for r in report.results if r.status == "error")
    assert "ZeroDivisionError" in error.output and "ZeroDivisionError" in error.to_dict()["output"]


def passes_strong() -> bool:
    import toy

    return (toy.clip(5, 1, 10), toy.clip(-1, 1, 10), toy.clip(11, 1, 10)) == (5, 1, 10)


class Passed:
    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        raise AssertionError("a report's passed attribute decides, not its truth value")


def report_like() -> Passed:
    import toy

    return Passed(toy.clip(11, 1, 10) == 10)


def test_a_callable_check_runs_in_the_child_and_may_return_a_report(toy):
    sys.modules.pop("toy", None)
    import toy as module

    report = gradcheck.mutate.run([module.clip], passes_strong)
    assert report.check == f"{__name__}.passes_strong()"
    assert [changed_line(r.mutant) for r in report.survivors] == ["if x <= lo:", "if x >= hi:"]
    report = gradcheck.mutate.run(module, report_like, kinds=["sign"])
    assert statuses(report) == {"return -lo": "survived", "return -hi": "killed", "return -x": "survived"}


def test_unusable_checks_and_targets_are_refused(toy):
    with pytest.raises(MutationError, match="not a module-level function"):
        gradcheck.mutate.run("toy", lambda: True)
    with pytest.raises(MutationError, match="fails on the original toy"):
        gradcheck.mutate.run("toy", "python -c 'import toy; assert toy.clip(5, 0, 1) == 5'")
    with pytest.raises(MutationError, match="never imports toy"):
        gradcheck.mutate.run("toy", "python -c 'pass'")
    with pytest.raises(MutationError, match="no Python module named 'no_such_module'"):
        gradcheck.mutate.run("no_such_module", "python -c pass")
    with pytest.raises(ValueError, match="jobs must be a positive integer; got 0"):
        gradcheck.mutate.run("toy", WEAK, jobs=0)


def test_cli_table_json_fail_under_and_list(toy, capsys):
    out_json = toy / "out" / "mutants.json"
    assert cli.main(["toy.py", "--check", f"python -c '{WEAK}'", "--json", str(out_json), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "id          status    kind" in out and "score 42.9 %: 3 killed" in out
    data = json.loads(out_json.read_text())
    assert data["score"] == pytest.approx(100 * 3 / 7) and data["counts"]["survived"] == 4
    assert {m["id"] for m in data["mutants"]} == {m.id for m in gradcheck.mutate.mutants("toy")}
    assert all(m["diff"].startswith("--- a/toy.py") for m in data["mutants"])
    assert cli.main(["toy", "--check", f"python -c '{WEAK}'", "--fail-under", "50", "--kinds", "sign"]) == 1
    assert "below --fail-under 50 %" in capsys.readouterr().err
    assert cli.main(["toy", "--list", "--functions", "clip", "--kinds", "compare"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and all(" compare " in line and "clip:" in line for line in listed)
    first = listed[0].split()[0]
    assert cli.main(["toy", "--check", f"python -c '{WEAK}'", "--ids", first, "--quiet"]) == 0
    assert "score 0.0 %: 0 killed, 0 killed by timeout, 1 survived" in capsys.readouterr().out
    assert cli.main(["toy", "--check", f"python -c '{WEAK}'", "--ids", "0123456789"]) == 2
    assert "ids: ['0123456789'] are not mutants of toy" in capsys.readouterr().err
    assert cli.main(["toy", "--check", "python -c 'raise SystemExit(1)'"]) == 2
    assert "fails on the original" in capsys.readouterr().err


def test_the_demo_weak_check_misses_two_bugs_that_gradcheck_kills():
    before = snapshot(ROOT / "examples")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "mutation_demo.py")], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr
    stdout = result.stdout
    weak, strong = stdout.split("== strong_check")
    assert "score 86.7 %: 13 killed, 0 killed by timeout, 2 survived" in weak
    assert "+    dweight = dout @ x" in weak and "+    dbias = dout.sum(axis=1)" in weak
    assert "score 100.0 %: 15 killed, 0 killed by timeout, 0 survived" in strong
    assert snapshot(ROOT / "examples") == before


def test_the_readme_quotes_the_demo_survivors_by_their_real_ids():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How strong is your check? Mutation testing", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"survived (\w{10}) \((\w+), (\w+), line (\d+)\):\n-(.*)\n\+(.*)", section)
    demo = {m.id: m for m in gradcheck.mutate.mutants(ROOT / "examples" / "mutation_demo.py")}
    assert len(quoted) == 2
    for mutant_id, kind, function, line, before, after in quoted:
        m = demo[mutant_id]
        assert (m.kind, m.function, m.line) == (kind, function, int(line))
        assert m.original.splitlines()[m.line - 1] == before and m.source.splitlines()[m.line - 1] == after
