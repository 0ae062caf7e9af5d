"""Just enough PromQL analysis to lint dashboard and rule expressions.

This is not a PromQL parser: it tokenizes an expression and finds its vector
selectors (metric name, label matchers, range) and the function call that
directly wraps each one. That is what the lint rules need (which metrics an
expression reads, whether a counter sits inside ``rate()``, whether a
``rate()`` uses ``$__rate_interval``, whether every selector filters on
``$job`` and ``$instance``). Validity of the whole expression is checked with
``promtool`` by the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memops.errors import Refused

RATE_FUNCTIONS = frozenset({"rate", "irate", "increase"})

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "atan2", "inf", "nan"}
)
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)[a-zA-Z]*")
_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "+", "-", "*", "/", "%", "^", "<", ">", "@")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*")


class PromQLError(Refused, ValueError):
    """The expression cannot be tokenized (unbalanced braces, bad string, …)."""


@dataclass(frozen=True)
class Token:
    kind: str  # ident, number, string, matchers, range, op, "(", ")", ","
    text: str
    position: int
    matchers: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Selector:
    """One vector selector: ``name{label op "value", …}[range]``."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]
    range: str | None
    function: str | None  # the call this selector (with its range) is the argument of
    position: int
    text: str = field(compare=False)

    def has_matcher(self, label: str, op: str, value: str) -> bool:
        return (label, op, value) in self.matchers

    @property
    def metric(self) -> str | None:
        """The metric name, also when given as ``{__name__="…"}``."""
        if self.name:
            return self.name
        for label, op, value in self.matchers:
            if label == "__name__" and op == "=":
                return value
        return None


@dataclass(frozen=True)
class RateCall:
    """A ``rate``/``irate``/``increase`` call and the range it was given."""

    function: str
    argument: str
    range: str | None
    position: int


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char.isspace():
            i += 1
        elif char == "#":
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif char in "\"'`":
            end = _string_end(expr, i)
            tokens.append(Token("string", expr[i:end], i))
            i = end
        elif char == "{":
            end, matchers = _matchers(expr, i)
            tokens.append(Token("matchers", expr[i:end], i, matchers))
            i = end
        elif char == "[":
            end = expr.find("]", i)
            if end < 0:
                raise PromQLError(f"unclosed '[' at {i}: {expr!r}")
            tokens.append(Token("range", expr[i + 1 : end].strip(), i))
            i = end + 1
        elif char in "(),":
            tokens.append(Token(char, char, i))
            i += 1
        elif match := _IDENT.match(expr, i):
            tokens.append(Token("ident", match.group(), i))
            i = match.end()
        elif match := _NUMBER.match(expr, i):
            tokens.append(Token("number", match.group(), i))
            i = match.end()
        else:
            for op in _OPERATORS:
                if expr.startswith(op, i):
                    tokens.append(Token("op", op, i))
                    i += len(op)
                    break
            else:
                raise PromQLError(f"unexpected {char!r} at {i}: {expr!r}")
    _check_parens(tokens, expr)
    return tokens


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of ``expr``, in order."""
    tokens = tokenize(expr)
    found: list[Selector] = []
    skip_group = False
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind == "ident" and token.text in _GROUPING:
            skip_group = following is not None and following.kind == "("
            continue
        if skip_group:
            if token.kind == ")":
                skip_group = False
            continue
        if token.kind == "ident":
            if token.text in _KEYWORDS or (following is not None and following.kind == "("):
                continue
            if following is not None and following.kind == "ident" and following.text in _GROUPING:
                continue  # `sum by (…) (…)`: the aggregation operator, not a metric
            preceding = tokens[index - 1] if index else None
            if preceding is not None and preceding.kind == "ident" and preceding.text == "offset":
                continue
            found.append(_selector(tokens, index, token.text))
        elif token.kind == "matchers":
            preceding = tokens[index - 1] if index else None
            if preceding is None or preceding.kind != "ident" or preceding.text in _KEYWORDS:
                found.append(_selector(tokens, index, ""))
    return found


def rate_calls(expr: str) -> list[RateCall]:
    """Every ``rate``/``irate``/``increase`` call with the range of its argument.

    ``range`` is None when the argument is not a plain ``selector[range]``
    (a subquery or an expression), which the lint rules reject.
    """
    tokens = tokenize(expr)
    calls: list[RateCall] = []
    for index, token in enumerate(tokens):
        if token.kind != "ident" or token.text not in RATE_FUNCTIONS:
            continue
        if index + 1 >= len(tokens) or tokens[index + 1].kind != "(":
            continue
        close = _closing(tokens, index + 1)
        inner = tokens[index + 2 : close]
        argument = expr[tokens[index + 1].position + 1 : tokens[close].position].strip()
        rng = None
        kinds = [t.kind for t in inner]
        plain = kinds in (["ident", "range"], ["ident", "matchers", "range"], ["matchers", "range"])
        if plain and ":" not in inner[-1].text:
            rng = inner[-1].text
        calls.append(RateCall(token.text, argument, rng, token.position))
    return calls


def metric_names(expr: str) -> set[str]:
    """Names of the metrics ``expr`` reads (selectors without a fixed name are skipped)."""
    return {name for s in selectors(expr) if (name := s.metric)}


def _selector(tokens: list[Token], index: int, name: str) -> Selector:
    """The selector whose first token (its name, or its matchers when unnamed) is at ``index``."""
    start = tokens[index].position
    cursor = index + 1 if name else index
    matchers: tuple[tuple[str, str, str], ...] = ()
    if cursor < len(tokens) and tokens[cursor].kind == "matchers":
        matchers = tokens[cursor].matchers
        cursor += 1
    rng = None
    if cursor < len(tokens) and tokens[cursor].kind == "range":
        rng = tokens[cursor].text
        cursor += 1
    function = None
    opening = index - 1
    if (
        opening >= 1
        and tokens[opening].kind == "("
        and tokens[opening - 1].kind == "ident"
        and cursor < len(tokens)
        and tokens[cursor].kind in (")", ",")
    ):
        function = tokens[opening - 1].text
    text = name + "".join(
        t.text if t.kind != "range" else f"[{t.text}]"
        for t in tokens[index + (1 if name else 0) : cursor]
    )
    return Selector(name, matchers, rng, function, start, text)


def _string_end(expr: str, start: int) -> int:
    quote = expr[start]
    i = start + 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise PromQLError(f"unterminated string at {start}: {expr!r}")


def _matchers(expr: str, start: int) -> tuple[int, tuple[tuple[str, str, str], ...]]:
    i = start + 1
    found: list[tuple[str, str, str]] = []
    while True:
        while i < len(expr) and expr[i] in " \t\n,":
            i += 1
        if i >= len(expr):
            raise PromQLError(f"unclosed '{{' at {start}: {expr!r}")
        if expr[i] == "}":
            return i + 1, tuple(found)
        match = _MATCHER.match(expr, i)
        if not match or match.end() >= len(expr) or expr[match.end()] not in "\"'`":
            raise PromQLError(f"bad label matcher at {i}: {expr!r}")
        end = _string_end(expr, match.end())
        value = expr[match.end() + 1 : end - 1]
        found.append((match.group(1), match.group(2), value))
        i = end


def _closing(tokens: list[Token], opening: int) -> int:
    depth = 0
    for index in range(opening, len(tokens)):
        if tokens[index].kind == "(":
            depth += 1
        elif tokens[index].kind == ")":
            depth -= 1
            if depth == 0:
                return index
    raise PromQLError("unbalanced parentheses")


def _check_parens(tokens: list[Token], expr: str) -> None:
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token.kind, 0)
        if depth < 0:
            raise PromQLError(f"unbalanced ')' at {token.position}: {expr!r}")
    if depth:
        raise PromQLError(f"unbalanced '(': {expr!r}")
