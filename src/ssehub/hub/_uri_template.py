"""RFC 6570 URI templates (levels 1 to 4) as topic matchers for Mercure's topic selectors.

A Mercure subscriber may select topics with a URI template such as
``https://example.com/books/{id}`` (draft-dunglas-mercure-07 §3, "Topic selectors"): a topic
matches when some values of the variables expand the template to exactly that topic. This
module turns a template into a regular expression that accepts those expansions, and
:class:`UriTemplateMatcher` is the ``TopicMatcher`` the broker takes (``key`` and
``matches``).

What each expression accepts (RFC 6570 §3.2; ``U`` is an unreserved character or a
percent-encoded octet, ``R`` adds the reserved characters; every variable may be undefined,
RFC 6570 §2.3, so each part is optional and an expression may expand to nothing):

==============  ============================  ===================================
expression      expands to                    accepted
==============  ============================  ===================================
``{x,y}``       ``v`` or ``v1,v2``            ``U*`` items separated by ``,``
``{+x}``        reserved characters kept      ``R*``
``{#x}``        ``#`` then like ``+``         nothing, or ``#R*``
``{.x,y}``      ``.v`` per variable           up to one ``.U*`` per variable
``{/x,y}``      ``/v`` per variable           up to one ``/U*`` per variable
``{;x,y}``      ``;x=v;y=w``                  ``;x``, ``;x=U*`` then ``;y...``, in order
``{?x,y}``      ``?x=v&y=w``                  ``?x=U*``, ``?x=U*&y=U*``, ``?y=U*``...
``{&x,y}``      ``&x=v&y=w``                  ``&x=U*`` then ``&y=U*``, in order
==============  ============================  ===================================

Named operators (``;``, ``?``, ``&``) match only the declared names, in order. An exploded
variable (``{x*}``) takes any number of items; in a named expression, any names (an exploded
associative array chooses them). A prefix (``{x:3}``) bounds a value's length.

Matching is linear: Python's ``re`` backtracks, so the regex is deterministic (at each
character of a topic, one way to go on) and :func:`compile_template` refuses a template where a
character could belong to two places (docs/mercure.md has the rules and examples). Side-by-side
``/ . ; &`` expressions are one (``{/a}{/b}`` is ``{/a,b}``); other side-by-side expressions
start with distinct operator characters; a literal after expressions starts with none of their
operator characters nor a character they use between items; names are unique. A value never
contains the first character of what may follow it (``{+path}/meta`` matches ``files/meta``,
never ``a/b/meta``). Compiled templates are cached (LRU).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

__all__ = [
    "CACHE_SIZE",
    "MAX_TEMPLATE_EXPRESSIONS",
    "MAX_TEMPLATE_VARIABLES",
    "InvalidTemplate",
    "UriTemplateMatcher",
    "compile_template",
    "is_template",
]

MAX_TEMPLATE_EXPRESSIONS: Final = 16
"""Expressions per template: real templates have a few; the bound keeps one regex small."""

MAX_TEMPLATE_VARIABLES: Final = 16
"""Variables per template, all expressions together: the regex grows with their square
(``{?a,b,c}`` allows each name after the others), and a client's template must cost little."""

CACHE_SIZE: Final = 1024
"""Compiled templates kept (LRU): many subscribers share a few selectors. Bounded in bytes
too: a template compiles to at most about 12 KB (see :data:`MAX_TEMPLATE_VARIABLES`), so
clients sending new templates pin at most about 12 MB."""

_UNRESERVED: Final = "A-Za-z0-9\\-._~"
_RESERVED: Final = ":/?#\\[\\]@!$&'()*+,;="
_VARNAME: Final = re.compile(
    r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*"
)
_EXPRESSION: Final = re.compile(r"\{([^{}]*)\}")
_OPERATORS: Final = "+#./;?&"
_PREFIXED: Final = frozenset("#./;?&")  # operators whose expansion starts with their own character
_MERGED: Final = frozenset("./;&")  # side by side, {/a}{/b} expands exactly as {/a,b}
_LITERAL_FORBIDDEN: Final = re.compile(r"[\x00-\x20\"'<>\\^`{|}\x7f]")
_FIRST_OF_QUERY: Final = "(?:(?<=\\?)|(?<!\\?)&)"  # "?" already matched: no separator


class InvalidTemplate(ValueError):
    """A topic selector that looks like a URI template but is not a valid one."""


class _Var(NamedTuple):
    name: str
    prefix: int | None
    explode: bool


class _Expr(NamedTuple):
    operator: str
    variables: list[_Var]

    @property
    def exploded(self) -> bool:
        return any(var.explode for var in self.variables)

    def between(self) -> set[str]:
        """The characters the expression may use between its items (where it could end)."""
        chars = set() if self.operator in ("+", "#") else {","}
        if self.operator == ";":
            chars.add("=")
        if self.exploded or len(self.variables) > 1:
            chars.update({"/": "/", ".": ".", ";": ";", "&": "&", "?": "&"}.get(self.operator, ""))
        return chars


def is_template(selector: str) -> bool:
    """Return whether ``selector`` is a URI template (it has a ``{...}`` expression)."""
    return "{" in selector or "}" in selector


def _chars(base: str, exclude: str) -> str:
    """A regex alternative: one character of class ``base`` (minus ``exclude``) or ``%XX``."""
    excluded = "".join(re.escape(c) for c in sorted(set(exclude)) if c)
    klass = f"[{base}]" if not excluded else f"(?![{excluded}])[{base}]"
    percent = "%[0-9A-Fa-f]{2}" if "%" not in exclude else None
    return klass if percent is None else f"(?:{klass}|{percent})"


def _value(base: str, exclude: str, prefix: int | None) -> str:
    repeat = "*" if prefix is None else f"{{0,{prefix}}}"
    return f"(?:{_chars(base, exclude)}){repeat}"


def _parse(body: str) -> _Expr:
    operator = body[:1] if body[:1] in _OPERATORS else ""
    varlist = body[len(operator) :]
    if not varlist:
        raise InvalidTemplate("an expression has no variable")
    variables: list[_Var] = []
    for varspec in varlist.split(","):
        name, colon, length = varspec.partition(":")
        explode = not colon and name.endswith("*")
        name = name[:-1] if explode else name
        if _VARNAME.fullmatch(name) is None:
            raise InvalidTemplate("a variable name has characters RFC 6570 §2.3 does not allow")
        if colon and not (length.isdigit() and 0 < int(length) < 10000 and length[0] != "0"):
            raise InvalidTemplate("a prefix modifier must be 1-9999 (RFC 6570 §2.4.1)")
        variables.append(_Var(name, int(length) if colon else None, explode))
    return _Expr(operator, variables)


def _list(item: str) -> str:
    return f"{item}(?:,{item})*"


def _expression(expr: _Expr, stop: str) -> str:
    """The regex of one expression; ``stop``: the characters that may start what follows."""
    operator, variables = expr
    prefixes = [var.prefix for var in variables]
    # Unnamed operators: one item class for all the variables (the largest prefix).
    prefix = None if None in prefixes else max(p for p in prefixes if p is not None)
    if operator in ("+", "#"):
        reserved = _value(_UNRESERVED + _RESERVED, stop, None)
        return reserved if operator == "+" else f"(?:\\#{reserved})?"
    if operator == "":
        return f"(?:{_list(_value(_UNRESERVED, stop + ',', prefix))})?"
    if operator in ("/", "."):
        times = "*" if expr.exploded else f"{{0,{len(variables)}}}"
        return (
            f"(?:{re.escape(operator)}{_list(_value(_UNRESERVED, stop + operator, prefix))}){times}"
        )
    ifemp = "?" if operator == ";" else ""  # ";x" for an empty value, "?x=" and "&x="
    if expr.exploded:  # any names, any number of pairs (RFC 6570 §3.2.1, composite values)
        item = _value(_UNRESERVED, stop, None)
        pair = f"(?:{_chars(_UNRESERVED, stop + '=')})+(?:={_list(item)}){ifemp}"
        if operator == "?":
            return f"(?:\\?{pair}(?:&{pair})*)?"
        return f"(?:{re.escape(operator)}{pair})*"
    separator = _FIRST_OF_QUERY if operator == "?" else re.escape(operator)
    parts = "".join(
        f"(?:{separator}{re.escape(var.name)}"
        f"(?:={_list(_value(_UNRESERVED, stop, var.prefix))}){ifemp})?"
        for var in variables
    )
    # "?" then no part is not an expansion: the lookbehind refuses a lone "?".
    return f"(?:\\?{parts}(?<!\\?))?" if operator == "?" else parts


def _runs(literals: list[str], exprs: list[_Expr]) -> list[list[_Expr]]:
    """Group side-by-side expressions (no literal between them), merging ``{/a}{/b}``."""
    runs: list[list[_Expr]] = []
    for index, expr in enumerate(exprs):
        if index == 0 or literals[index]:
            runs.append([expr])
            continue
        run, previous = runs[-1], runs[-1][-1]
        if expr.operator not in _PREFIXED:
            # "{a}{b}": where a value ends and the next one starts is anyone's guess.
            raise InvalidTemplate(
                "two expressions must be separated by a literal unless the second starts "
                "with its operator character (# . / ; ? &)"
            )
        if expr.operator == previous.operator and expr.operator in _MERGED:
            run[-1] = _Expr(previous.operator, previous.variables + expr.variables)
        elif any(other.operator == expr.operator for other in run):
            raise InvalidTemplate(
                f"two side-by-side expressions start with {expr.operator!r}: which one a "
                "part belongs to is ambiguous"
            )
        else:
            run.append(expr)
    return runs


def _check_names(exprs: list[_Expr]) -> None:
    names = [var.name for expr in exprs for var in expr.variables if not var.explode]
    if len(set(names)) != len(names):
        raise InvalidTemplate("a variable name is repeated in a named expression (; ? &)")
    if exprs[0].operator == ";" and any(a != b and b.startswith(a) for a in names for b in names):
        raise InvalidTemplate("a name of a ';' expression begins another one (';x' or ';xy')")


def _check_run(run: list[_Expr], after: str) -> None:
    """Refuse what would make ``run`` then the literal ``after`` ambiguous (see the module)."""
    if after[:1] in {expr.operator for expr in run} & _PREFIXED:
        raise InvalidTemplate(
            f"a literal after an expression starts with its operator character {after[0]!r}"
        )
    for index, expr in enumerate(run):
        if expr.operator in (";", "?", "&"):
            _check_names([expr])
        following = {other.operator for other in run[index + 1 :]}
        if expr.operator == "?" and "&" in following and not expr.exploded:
            # {?x,y}{&z}: "&" then a name says which expression goes on (names unique).
            ampersand = next(other for other in run if other.operator == "&")
            if not ampersand.exploded:
                _check_names([expr, ampersand])
                following.discard("&")
        clash = expr.between() & (following | set(after[:1]))
        if clash:
            raise InvalidTemplate(
                f"{''.join(sorted(clash))!r} after an expression that uses it between its "
                "items: where the expression ends is ambiguous"
            )


@lru_cache(maxsize=CACHE_SIZE)
def compile_template(template: str) -> re.Pattern[str]:
    """Compile ``template`` into a regex whose full matches are its expansions.

    The regex is deterministic (at each character of a topic, at most one way to go on), so
    Python's backtracking matcher runs in linear time on any topic.

    Args:
        template: an RFC 6570 template (levels 1-4).

    Returns:
        The compiled regex (cached: the same template compiles once).

    Raises:
        InvalidTemplate: unbalanced braces, an empty or invalid expression, a literal with a
            character a URI cannot have, more than :data:`MAX_TEMPLATE_EXPRESSIONS`
            expressions or :data:`MAX_TEMPLATE_VARIABLES` variables, or an ambiguous template
            (see the module's rules).
    """
    literals: list[str] = []
    bodies: list[str] = []
    position = 0
    for match in _EXPRESSION.finditer(template):
        literals.append(template[position : match.start()])
        bodies.append(match[1])
        position = match.end()
    literals.append(template[position:])
    if len(bodies) > MAX_TEMPLATE_EXPRESSIONS:
        raise InvalidTemplate(f"more than {MAX_TEMPLATE_EXPRESSIONS} expressions")
    if sum(body.count(",") + 1 for body in bodies) > MAX_TEMPLATE_VARIABLES:
        raise InvalidTemplate(f"more than {MAX_TEMPLATE_VARIABLES} variables")
    for literal in literals:
        if "{" in literal or "}" in literal:
            raise InvalidTemplate("unbalanced '{' or '}'")
        if _LITERAL_FORBIDDEN.search(literal) is not None:
            raise InvalidTemplate("a literal has a character a URI cannot have (RFC 6570 §2.1)")
    parts = [re.escape(literals[0])]
    # The literal after each run: runs start at expression 0 and after each non-empty literal.
    afters = [literal for literal in literals[1:-1] if literal] + [literals[-1]] if bodies else []
    for run, after in zip(_runs(literals, [_parse(body) for body in bodies]), afters, strict=True):
        _check_run(run, after)
        for index, expr in enumerate(run):
            stop = "".join(other.operator for other in run[index + 1 :]) + after[:1]
            parts.append(_expression(expr, stop))
        parts.append(re.escape(after))
    return re.compile("".join(parts))


class UriTemplateMatcher:
    """A topic matcher for one URI template (a ``TopicMatcher`` for :meth:`Broker.subscribe`).

    Args:
        template: the RFC 6570 template.

    Raises:
        InvalidTemplate: see :func:`compile_template`.
    """

    __slots__ = ("_regex", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        self._regex = compile_template(template)

    @property
    def key(self) -> str:
        """A stable identity: equal keys match the same topics."""
        return "uritemplate:" + self.template

    def matches(self, topic: str) -> bool:
        """Return whether some expansion of the template is exactly ``topic``."""
        return self._regex.fullmatch(topic) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UriTemplateMatcher) and other.template == self.template

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"UriTemplateMatcher({self.template!r})"
