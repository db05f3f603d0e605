"""RFC 6570 URI templates (levels 1 to 4) as topic matchers for Mercure's topic selectors.

A Mercure subscriber may select topics with a URI template such as
``https://example.com/books/{id}`` (draft-dunglas-mercure-07 §3, "Topic selectors"): a topic
matches when some values of the variables expand the template to exactly that topic. This
module turns a template into a regular expression that accepts those expansions, and
:class:`UriTemplateMatcher` is the ``TopicMatcher`` the broker takes (``key`` and
``matches``).

What each expression accepts (RFC 6570 §3.2; ``U`` is an unreserved character or a
percent-encoded octet, ``R`` adds the reserved characters):

==============  ============================  ===================================
expression      expands to                    accepted
==============  ============================  ===================================
``{x}``         ``v`` or ``v1,v2``            ``U*`` items separated by ``,``
``{+x}``        reserved characters kept      ``R*``
``{#x}``        ``#`` then like ``+``         nothing, or ``#R*``
``{.x}``        ``.v`` per value              ``(.U*)*`` (``U`` without ``.``)
``{/x}``        ``/v`` per value              ``(/U*)*``
``{;x}``        ``;x=v`` per variable         ``(;name(=U*)?)*``
``{?x}``        ``?x=v&y=w``                  nothing, or ``?name=U*(&name=U*)*``
``{&x}``        ``&x=v`` per variable         ``(&name=U*)*``
==============  ============================  ===================================

A variable may be undefined (RFC 6570 §2.3), so every expression also accepts the empty
string. Prefix modifiers (``{x:3}``) bound the value's length; explode modifiers (``{x*}``) are
take any number of items (a plain variable one item per variable of the expression).

Matching cost is linear: Python's ``re`` backtracks, so an ambiguous expression (``{a}{b}``, or
``{a}-{b}`` where ``-`` can be part of a value) could take time exponential in the topic's
length. Two rules make every expression unambiguous: two expressions must be separated by a
literal unless the second one starts with its own operator character (``{/topic}{/subscriber}``
is fine, ``{a}{b}`` is refused), and a value never contains the first character of what
follows its expression (``{+path}/meta`` matches ``files/meta`` with ``path=files``, never
``a/b/meta``). Compiled templates are cached (:func:`compile_template`, bounded LRU).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

__all__ = [
    "MAX_TEMPLATE_EXPRESSIONS",
    "InvalidTemplate",
    "UriTemplateMatcher",
    "compile_template",
    "is_template",
]

MAX_TEMPLATE_EXPRESSIONS: Final = 16
"""Expressions per template: real templates have a few; the bound keeps one regex small."""

_CACHE_SIZE: Final = 4096
"""Compiled templates kept (LRU): many subscribers share a few selectors."""

_UNRESERVED: Final = "A-Za-z0-9\\-._~"
_RESERVED: Final = ":/?#\\[\\]@!$&'()*+,;="
_VARNAME: Final = re.compile(
    r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*"
)
_EXPRESSION: Final = re.compile(r"\{([^{}]*)\}")
_OPERATORS: Final = "+#./;?&"
_PREFIXED: Final = "#./;?&"  # operators whose expansion starts with their own character
_LITERAL_FORBIDDEN: Final = re.compile(r"[\x00-\x20\"'<>\\^`{|}\x7f]")


class InvalidTemplate(ValueError):
    """A topic selector that looks like a URI template but is not a valid one."""


def is_template(selector: str) -> bool:
    """Return whether ``selector`` is a URI template (it has a ``{...}`` expression)."""
    return "{" in selector or "}" in selector


def _chars(base: str, exclude: str) -> str:
    """A regex alternative: one character of class ``base`` (minus ``exclude``) or ``%XX``."""
    excluded = "".join(re.escape(c) for c in exclude if c)
    klass = f"[{base}]" if not excluded else f"(?![{excluded}])[{base}]"
    percent = "%[0-9A-Fa-f]{2}" if "%" not in exclude else None
    return klass if percent is None else f"(?:{klass}|{percent})"


def _value(base: str, exclude: str, prefix: int | None) -> str:
    repeat = "*" if prefix is None else f"{{0,{prefix}}}"
    return f"(?:{_chars(base, exclude)}){repeat}"


def _expression(body: str, stop: str) -> str:
    """The regex of one expression; ``stop`` is the first character of what follows it."""
    operator = body[:1] if body[:1] in _OPERATORS else ""
    varlist = body[len(operator) :]
    if not varlist:
        raise InvalidTemplate("an expression has no variable")
    prefix: int | None = None
    explode = False
    varspecs = varlist.split(",")
    for varspec in varspecs:
        name, colon, length = varspec.partition(":")
        if not colon and name.endswith("*"):
            name, explode = name[:-1], True
        if _VARNAME.fullmatch(name) is None:
            raise InvalidTemplate("a variable name has characters RFC 6570 §2.3 does not allow")
        if colon:
            if not (length.isdigit() and 0 < int(length) < 10000 and length[0] != "0"):
                raise InvalidTemplate("a prefix modifier must be 1-9999 (RFC 6570 §2.4.1)")
            prefix = max(prefix or 0, int(length))
    # One separated item per variable, any number for an exploded list (RFC 6570 §3.2.1).
    times = "*" if explode else f"{{0,{len(varspecs)}}}"
    if operator in ("+", "#"):
        reserved = _value(_UNRESERVED + _RESERVED, stop, None)
        return reserved if operator == "+" else f"(?:\\#{reserved})?"
    if operator == "":
        item = _value(_UNRESERVED, stop + ",", prefix)
        return f"(?:{item}(?:,{item})*)?"
    item = _value(_UNRESERVED, stop + operator, prefix)
    if operator in ("/", "."):
        return f"(?:{re.escape(operator)}{item}(?:,{item})*){times}"
    name = f"(?:{_chars(_UNRESERVED, stop + '=' + operator)})+"
    pair = f"{name}(?:={item}(?:,{item})*)?"
    if operator == ";":
        return f"(?:;{pair}){times}"
    if operator == "&":
        return f"(?:&{pair}){times}"
    return (
        f"(?:\\?{pair}(?:&{pair}){{0,{len(varspecs) - 1}}})?"
        if not explode
        else (f"(?:\\?{pair}(?:&{pair})*)?")
    )


@lru_cache(maxsize=_CACHE_SIZE)
def compile_template(template: str) -> re.Pattern[str]:
    """Compile ``template`` into a regex whose full matches are its expansions.

    Args:
        template: an RFC 6570 template (levels 1-4).

    Returns:
        The compiled regex (cached: the same template compiles once).

    Raises:
        InvalidTemplate: unbalanced braces, an empty or invalid expression, two expressions
            without a literal between them, a literal with a character a URI cannot have, or
            more than :data:`MAX_TEMPLATE_EXPRESSIONS` expressions.
    """
    parts: list[str] = []
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
    for index, literal in enumerate(literals):
        if "{" in literal or "}" in literal:
            raise InvalidTemplate("unbalanced '{' or '}'")
        if _LITERAL_FORBIDDEN.search(literal) is not None:
            raise InvalidTemplate("a literal has a character a URI cannot have (RFC 6570 §2.1)")
        if 0 < index < len(literals) - 1 and not literal and bodies[index][:1] not in _PREFIXED:
            # Adjacent expressions are unambiguous only when the second starts with its own
            # operator character ("{/topic}{/subscriber}"); "{a}{b}" is refused.
            raise InvalidTemplate("two expressions must be separated by a literal")
    for index, body in enumerate(bodies):
        parts.append(re.escape(literals[index]))
        after = literals[index + 1][:1]
        if not after and index + 1 < len(bodies):
            after = bodies[index + 1][:1]  # the next expression's operator character
        parts.append(_expression(body, after))
    parts.append(re.escape(literals[-1]))
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
