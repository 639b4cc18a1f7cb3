"""Single-point mutants of a module's function bodies, generated with ``ast``.

Every mutant is one small text edit of the original source (the rest of the file is
left byte for byte as it was), so its diff is one line or two. Kinds:

==============  ==============================================================
``arith``       ``+`` <-> ``-``, ``*`` <-> ``/`` (binary and augmented; ``@`` is kept)
``sign``        a unary minus removed; a returned or assigned value negated
``drop_term``   ``a + b`` -> ``a`` and -> ``b``, ``a - b`` -> ``a``; ``x += y`` -> ``pass``
``augassign``   ``x += y`` (any operator) -> ``x = y``
``axis``        ``axis=k`` -> ``k - 1`` for negative ``k``, ``k + 1`` otherwise
``compare``     ``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``, ``is`` <-> ``is not``, ``in`` <-> ``not in``
``boolop``      ``and`` <-> ``or``
``condition``   ``if c`` / ``while c`` / ``x if c else y`` -> ``not c``
``constant``    ints 0 <-> 1 (others n -> n + 1), ``True`` <-> ``False``, float 0.0 -> 1.0, x -> x * 1.001
``transpose``   ``.T`` / ``.mT`` removed, ``swapaxes`` / ``transpose`` / ``moveaxis`` call removed
``keepdims``    ``keepdims=True`` -> ``False``
==============  ==============================================================

Functions and methods (``Class.method``) are mutated; a nested function's mutants belong to
the function that defines it. Not mutated: module-level code, docstrings, f-strings, ``raise``
and ``assert`` statements, annotations, and (unless ``include_guards``) input-validation
guards: an ``if`` whose body ends in a raise.
A line ending in ``# mutate: skip`` (optionally followed by a reason) marks every mutant
on it as equivalent. A mutant's id hashes its module, function, its node's path inside
the function, its kind and its variant: it does not change when other code changes.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

KINDS = ("arith", "sign", "drop_term", "augassign", "axis", "compare", "boolop", "condition", "constant",
         "transpose", "keepdims")

_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@", ast.Mod: "%",
           ast.Pow: "**", ast.FloorDiv: "//", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
           ast.LShift: "<<", ast.RShift: ">>"}
_COMPARE = {ast.Lt: (ast.LtE, "<", "<="), ast.LtE: (ast.Lt, "<=", "<"), ast.Gt: (ast.GtE, ">", ">="),
            ast.GtE: (ast.Gt, ">=", ">"), ast.Eq: (ast.NotEq, "==", "!="), ast.NotEq: (ast.Eq, "!=", "=="),
            ast.Is: (ast.IsNot, "is", "is not"), ast.IsNot: (ast.Is, "is not", "is"),
            ast.In: (ast.NotIn, "in", "not in"), ast.NotIn: (ast.In, "not in", "in")}
_TRANSPOSING_CALLS = ("swapaxes", "transpose", "moveaxis")
_ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Call)
_DISPLAYS = (ast.Tuple, ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)
_SKIP_COMMENT = re.compile(r"#\s*mutate:\s*skip\b\s*(.*)$")


@dataclass(frozen=True)
class Mutant:
    """One mutant: ``source`` is the whole mutated file; ``line`` is 1-based in the original."""

    id: str
    kind: str
    function: str
    line: int
    description: str
    original: str
    source: str
    filename: str = "<source>"
    skip_reason: str | None = None  # set by a ``# mutate: skip`` comment on the line

    def diff(self, context: int = 1) -> str:
        """The unified diff from the original source to this mutant."""
        lines = difflib.unified_diff(self.original.splitlines(keepends=True), self.source.splitlines(keepends=True),
                                     f"a/{self.filename}", f"b/{self.filename}", n=context)
        return "".join(lines)


class _Source:
    """Character offsets from ast positions (whose columns count UTF-8 bytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]


def _is_int(node: ast.AST) -> bool:
    """An int literal, possibly negated (``-1`` is a unary minus on 1)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int


def _is_guard(node: ast.AST) -> bool:
    """An input-validation ``if``: no ``else``, and its body ends in a raise (after building the message, say)."""
    return isinstance(node, ast.If) and not node.orelse and isinstance(node.body[-1], ast.Raise)


class _Generator:
    def __init__(self, source: str, filename: str, include_guards: bool) -> None:
        self.src = _Source(source)
        self.filename = filename
        self.include_guards = include_guards
        self.skips = {i + 1: (m.group(1).strip() or "marked '# mutate: skip'")
                      for i, line in enumerate(self.src.lines) if (m := _SKIP_COMMENT.search(line))}

    # --- walking -------------------------------------------------------------------------
    def functions(self, tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
        def visit(body: Sequence[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield prefix + node.name, node
                elif isinstance(node, ast.ClassDef):
                    yield from visit(node.body, f"{prefix}{node.name}.")
        yield from visit(tree.body, "")

    def walk(self, node: ast.AST, path: str) -> Iterator[tuple[ast.AST, str, str | None]]:
        """(node, path, keyword name when the node is a keyword's value) below ``node``."""
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns", "decorator_list", "type_comment") or (
                    field == "args" and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
                continue
            children = value if isinstance(value, list) else [value]
            for i, child in enumerate(children):
                if not isinstance(child, ast.AST):
                    continue
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and field == "body" and i == 0 \
                        and isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant) \
                        and isinstance(child.value.value, str):
                    continue  # the docstring
                if isinstance(child, (ast.Raise, ast.Assert, ast.JoinedStr)):
                    continue
                if _is_guard(child) and not self.include_guards:
                    continue
                child_path = f"{path}.{field}" + (f"[{i}]" if isinstance(value, list) else "")
                keyword = node.arg if isinstance(node, ast.keyword) else None
                if keyword in ("axis", "keepdims") and (_is_int(child) or isinstance(child, ast.Constant)):
                    yield child, child_path, keyword  # its own kind only: not walked into
                    continue
                yield child, child_path, keyword
                yield from self.walk(child, child_path)

    # --- edits ---------------------------------------------------------------------------
    def between(self, left: ast.AST, right: ast.AST, pattern: str, replacement: str) -> tuple[int, int, str]:
        """Replace the operator matching ``pattern`` in the text between two nodes."""
        start, end = self.src.span(left)[1], self.src.span(right)[0]
        match = re.search(pattern, self.src.text[start:end])
        if match is None:
            raise LookupError(f"no {pattern!r} between the operands at line {left.lineno}")
        return start + match.start(), start + match.end(), replacement

    def replace(self, node: ast.AST, text: str) -> tuple[int, int, str]:
        start, end = self.src.span(node)
        return start, end, text

    def wrapped(self, node: ast.AST) -> str:
        text = self.src.segment(node)
        bracketed = isinstance(node, _DISPLAYS) and text[:1] in "([{"
        return text if isinstance(node, _ATOMS) or bracketed else f"({text})"

    def mutations(self, node: ast.AST, keyword: str | None) -> Iterator[tuple[str, str, tuple[int, int, str]]]:
        """(kind, variant, edit) for every mutant of this node."""
        seg = self.src.segment
        if keyword == "axis" and _is_int(node):
            value = ast.literal_eval(node)
            new = value - 1 if value < 0 else value + 1
            yield "axis", "", self.replace(node, str(new))
            return
        if keyword == "keepdims" and isinstance(node, ast.Constant):
            if node.value is True:
                yield "keepdims", "", self.replace(node, "False")
            return
        if isinstance(node, ast.BinOp):
            op, symbol = type(node.op), _SYMBOL.get(type(node.op), "?")
            if op in _ARITH:
                new = _SYMBOL[_ARITH[op]]
                yield "arith", "", self.between(node.left, node.right, re.escape(symbol), new)
            if op in (ast.Add, ast.Sub):
                yield "drop_term", "left", self.replace(node, self.wrapped(node.left))
            if op is ast.Add:
                yield "drop_term", "right", self.replace(node, self.wrapped(node.right))
        elif isinstance(node, ast.AugAssign):
            op, symbol = type(node.op), _SYMBOL.get(type(node.op), "?") + "="
            if op in _ARITH:
                new = _SYMBOL[_ARITH[op]] + "="
                edit = self.between(node.target, node.value, re.escape(symbol), new)
                yield "arith", "", edit
            if op in (ast.Add, ast.Sub):
                yield "drop_term", "statement", self.replace(node, "pass")
            yield "augassign", "", self.between(node.target, node.value, re.escape(symbol), "=")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            yield "sign", "remove", self.replace(node, seg(node)[1:].lstrip())
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                new_op, old, new = _COMPARE[type(op)]
                pattern = r"\s*".join(re.escape(word) for word in old.split()) + r"(?![=<>])"
                if old in ("<", ">"):
                    pattern = re.escape(old) + r"(?!=)"
                yield "compare", str(i), self.between(operands[i], operands[i + 1], pattern, new)
        elif isinstance(node, ast.BoolOp):
            old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            start, end = self.src.span(node)
            pieces, last = [], start
            for left, right in zip(node.values, node.values[1:]):
                a, b, _ = self.between(left, right, rf"\b{old}\b", new)
                pieces.append(self.src.text[last:a])
                last = b
            yield "boolop", "", (start, end, new.join([*pieces, self.src.text[last:end]]))
        elif isinstance(node, ast.Constant) and not isinstance(node.value, (str, bytes)) and node.value is not None \
                and node.value is not Ellipsis:
            value = node.value
            if isinstance(value, bool):
                new = repr(not value)
            elif isinstance(value, int):
                new = "1" if value == 0 else "0" if value == 1 else str(value + 1)
            elif isinstance(value, float):
                new = "1.0" if value == 0.0 else repr(value * 1.001)
            else:
                return
            yield "constant", "", self.replace(node, new)
        elif isinstance(node, ast.Attribute) and node.attr in ("T", "mT"):
            yield "transpose", "", self.replace(node, self.wrapped(node.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in _TRANSPOSING_CALLS:
            receiver = node.func.value
            if isinstance(receiver, ast.Name) and receiver.id in ("np", "numpy"):
                if node.args:
                    yield "transpose", "", self.replace(node, self.wrapped(node.args[0]))
            else:
                yield "transpose", "", self.replace(node, self.wrapped(receiver))
        yield from self.sign_added(node)
        yield from self.condition(node)

    def sign_added(self, node: ast.AST) -> Iterator[tuple[str, str, tuple[int, int, str]]]:
        """Negate an assigned value, or each returned value."""
        def negatable(value: ast.AST | None) -> bool:
            if isinstance(value, ast.Call):  # not a constructor: ``-Cache(...)`` is a TypeError, not a sign flip
                name = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", "")
                return not name[:1].isupper()
            return isinstance(value, (ast.BinOp, ast.Name, ast.Attribute, ast.Subscript))
        values: list[tuple[str, ast.AST]] = []
        if isinstance(node, ast.Assign) and negatable(node.value):
            values = [("value", node.value)]
        elif isinstance(node, ast.Return) and node.value is not None:
            elements = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            values = [(f"return[{i}]", v) for i, v in enumerate(elements) if negatable(v)]
        for variant, value in values:
            yield "sign", f"add:{variant}", self.replace(value, f"-{self.wrapped(value)}")

    def condition(self, node: ast.AST) -> Iterator[tuple[str, str, tuple[int, int, str]]]:
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            yield "condition", "", self.replace(node.test, f"not {self.wrapped(node.test)}")


def _describe(source: str, context: tuple[int, int], start: int, end: int, text: str) -> str:
    """``before -> after`` for an edit, in the words of its node on the edit's line(s), shortened."""
    def flat(piece: str) -> str:
        return " ".join(piece.split())
    lo = max(context[0], source.rfind("\n", 0, start) + 1)
    hi = source.find("\n", end)
    hi = min(context[1], len(source) if hi == -1 else hi)
    if hi - lo < 16:  # a constant or an operator alone says little: show its line
        lo = source.rfind("\n", 0, start) + 1
        while source[lo] in " \t":
            lo += 1
        hi = len(source) if source.find("\n", end) == -1 else source.find("\n", end)
    left, right, old, new = flat(source[lo:start]), flat(source[end:hi]), flat(source[start:end]), flat(text)
    left = left if len(left) <= 30 else "..." + left[-27:]
    right = right if len(right) <= 30 else right[:27] + "..."
    old = old if len(old) <= 40 else old[:18] + "..." + old[-18:]
    new = new if len(new) <= 40 else new[:18] + "..." + new[-18:]
    sep_l = " " if source[lo:start][-1:].isspace() else ""
    sep_r = " " if source[end:hi][:1].isspace() else ""
    return f"`{left}{sep_l}{old}{sep_r}{right}` -> `{left}{sep_l}{new}{sep_r}{right}`"


def generate_mutants(
    source: str,
    *,
    filename: str = "<source>",
    module: str = "",
    functions: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    include_guards: bool = False,
) -> list[Mutant]:
    """Every single-point mutant of the function bodies in ``source``.

    ``functions`` restricts to the functions (or methods, ``Class.method``) of those names;
    ``kinds`` to a subset of :data:`KINDS`. ``module`` (the dotted name) enters the ids, so
    that one equivalents file can serve several modules. Mutants come in source order.
    """
    unknown = set(kinds or ()) - set(KINDS)
    if unknown:
        raise ValueError(f"kinds: unknown {sorted(unknown)}; expected some of {', '.join(KINDS)}")
    tree = ast.parse(source, filename)
    gen = _Generator(source, filename, include_guards)
    found = dict(gen.functions(tree))
    wanted = list(found) if functions is None else list(functions)
    missing = [name for name in wanted if name not in found and not any(q.endswith("." + name) for q in found)]
    if missing:
        raise ValueError(f"functions: {missing} not found in {filename}; it defines {', '.join(found) or 'none'}")
    mutants: list[Mutant] = []
    seen: set[str] = set()
    for qualname, function in found.items():
        if qualname not in wanted and qualname.rsplit(".", 1)[-1] not in wanted:
            continue
        for node, path, keyword in gen.walk(function, ""):
            for kind, variant, (start, end, text) in gen.mutations(node, keyword):
                if kinds is not None and kind not in kinds:
                    continue
                mutated = source[:start] + text + source[end:]
                if mutated == source:
                    continue
                ast.parse(mutated, filename)  # a generator bug must not pass as a killed mutant
                key = f"{module}|{qualname}|{path}|{kind}|{variant}"
                mutant_id = hashlib.sha1(key.encode()).hexdigest()[:10]
                if mutant_id in seen:
                    continue
                seen.add(mutant_id)
                line = source.count("\n", 0, start) + 1
                description = _describe(source, gen.src.span(node), start, end, text)
                mutants.append(Mutant(mutant_id, kind, qualname, line, description, source, mutated, filename,
                                      gen.skips.get(line)))
    mutants.sort(key=lambda m: (m.line, KINDS.index(m.kind)))
    return mutants
