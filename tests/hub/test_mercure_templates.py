"""RFC 6570 templates as Mercure topic selectors: what each level matches, what is refused, and
that matching stays linear on hostile input."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssehub.broker import TopicMatcher
from ssehub.hub._mercure_selectors import (
    ExactMatcher,
    InvalidSelector,
    SelectorSet,
    broker_targets,
    parse_selectors,
)
from ssehub.hub._uri_template import InvalidTemplate, UriTemplateMatcher, compile_template


@pytest.mark.parametrize(
    ("template", "matching", "other"),
    [
        # level 1
        (
            "https://example.com/books/{id}",
            [
                "https://example.com/books/1",
                "https://example.com/books/",
                "https://example.com/books/a%20b",
            ],
            [
                "https://example.com/books/1/2",
                "https://example.com/books/1?x",
                "https://example.com/book/1",
            ],
        ),
        # level 2: reserved and fragment
        (
            "https://example.com/{+path}",
            ["https://example.com/a/b/c?x=1"],
            ["http://example.com/a"],
        ),
        ("/doc{#section}", ["/doc", "/doc#intro", "/doc#a/b"], ["/doc?x"]),
        # level 3: several variables, label, path segments, path parameters, query
        ("/map/{x,y}", ["/map/1,2", "/map/1", "/map/"], ["/map/1/2"]),
        ("/file{.ext}", ["/file", "/file.tar", "/file.tar,gz"], ["/file/x", "/file.tar.gz"]),
        ("/root{/a,b}", ["/root", "/root/x", "/root/x/y"], ["/rootx"]),
        ("/p{;x,y}", ["/p", "/p;x=1", "/p;x=1;y"], ["/p;=1"]),
        ("/search{?q,lang}", ["/search", "/search?q=a", "/search?q=a&lang=fr"], ["/search?"]),
        ("/s?fixed=1{&q}", ["/s?fixed=1", "/s?fixed=1&q=2"], ["/s?fixed=1&"]),
        # level 4: prefix and explode modifiers
        ("/u/{name:3}", ["/u/abc", "/u/ab"], ["/u/abcd"]),
        ("/l{/list*}", ["/l/a/b/c"], ["/lx"]),
        # the Mercure subscriptions topics' template: adjacent prefixed expressions
        (
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
            [
                "/.well-known/mercure/subscriptions",
                "/.well-known/mercure/subscriptions/a%2Fb/urn%3A1",
            ],
            ["/.well-known/mercure/subscriptions/a/b/c"],
        ),
    ],
)
def test_template_levels(template: str, matching: list[str], other: list[str]) -> None:
    matcher = UriTemplateMatcher(template)
    assert isinstance(matcher, TopicMatcher)
    for topic in matching:
        assert matcher.matches(topic), (template, topic)
    for topic in other:
        assert not matcher.matches(topic), (template, topic)


@pytest.mark.parametrize(
    "template",
    ["/a/{id", "/a/id}", "/a/{}", "/a/{x}{y}", "/a/{x y}", "/a/{x:0}", "/a /{x}", "/{!x}"],
)
def test_invalid_templates_are_refused(template: str) -> None:
    with pytest.raises(InvalidTemplate):
        compile_template(template)


def test_a_value_stops_at_the_next_literal() -> None:
    # The rule that keeps matching unambiguous (and linear) is documented: the value of an
    # expression never contains the first character of the literal after it.
    matcher = UriTemplateMatcher("/files/{+path}/meta")
    assert matcher.matches("/files/a/meta")
    assert not matcher.matches("/files/a/b/meta")


def test_hostile_topics_match_in_linear_time() -> None:
    matcher = UriTemplateMatcher("/{a}-{b}-{c}-{d}-{e}-{f}-{g}-{h}/x")
    topic = "/" + "a-" * 120 + "!"
    started = time.perf_counter()
    for _ in range(100):
        assert not matcher.matches(topic)
    assert time.perf_counter() - started < 1.0


def test_matchers_have_stable_keys_and_compile_once() -> None:
    one, two = UriTemplateMatcher("/b/{id}"), UriTemplateMatcher("/b/{id}")
    assert one.key == two.key == "uritemplate:/b/{id}"
    assert one == two
    assert hash(one) == hash(two)
    assert compile_template("/b/{id}") is compile_template("/b/{id}")


def test_selectors_become_broker_targets() -> None:
    targets = broker_targets(["*", "https://e.com/x", "https://e.com/{id}", "https://e.com/a*b"])
    assert targets[0] == "*"
    assert targets[1] == "https://e.com/x"
    assert isinstance(targets[2], UriTemplateMatcher)
    assert isinstance(targets[3], ExactMatcher)
    assert targets[3].matches("https://e.com/a*b")
    assert not targets[3].matches("https://e.com/ab")


def test_selectors_are_bounded() -> None:
    assert parse_selectors(["a", "a", "b"], max_count=2, max_length=10) == ["a", "b"]
    with pytest.raises(InvalidSelector, match="missing"):
        parse_selectors([], max_count=2, max_length=10)
    with pytest.raises(InvalidSelector, match="more than 2"):
        parse_selectors(["a", "b", "c"], max_count=2, max_length=10)
    with pytest.raises(InvalidSelector, match="longer than 10"):
        parse_selectors(["a" * 11], max_count=2, max_length=10)
    with pytest.raises(InvalidSelector, match="RFC 3986"):
        parse_selectors(["a b"], max_count=2, max_length=10)
    with pytest.raises(InvalidSelector, match="URI template"):
        parse_selectors(["/{a}{b}"], max_count=2, max_length=10)


def test_selector_sets_follow_the_mercure_rules() -> None:
    grants = SelectorSet(["https://e.com/books/{id}", "https://e.com/exact"])
    assert grants.matches("https://e.com/books/1")
    assert grants.matches_any(["nope", "https://e.com/exact"])
    assert not grants.matches_all(["https://e.com/books/1", "nope"])
    assert SelectorSet(["*"]).matches_all(["a", "b"])
    assert not SelectorSet([])


@pytest.mark.parametrize(
    ("template", "matching", "other"),
    [
        # named operators match their declared names only, in order, each optional
        ("{?x,y}", ["", "?x=1", "?x=1&y=2", "?y=2", "?x=", "?x=a,b"], ["?z=1", "?", "?y=2&x=1"]),
        ("{?x,y}", [], ["?x=1&", "?&y=2", "?x=1&y=2&y=3", "?x", "&y=2"]),
        (
            "https://example.com/users/42{?format}",
            ["https://example.com/users/42?format=json"],
            ["https://example.com/users/42?user=43", "https://example.com/users/42?formats=1"],
        ),
        (
            "https://e.com/x{;id}",
            ["https://e.com/x;id", "https://e.com/x;id=1"],
            ["https://e.com/x;other=1", "https://e.com/x;id=1;id=2"],
        ),
        ("/s?a=1{&x,y}", ["/s?a=1&x=1&y=2", "/s?a=1&y=2"], ["/s?a=1&z=1", "/s?a=1&y=2&x=1"]),
        ("{?x}{&y}", ["?x=1&y=2", "&y=2", "?x=1"], ["?y=2", "&x=1"]),
        ("{?x,y}{&z}", ["?x=1&y=2&z=3", "?y=2&z=3", "&z=3"], ["?z=3", "?x=1&x=2"]),
        # an exploded variable chooses its names (an associative array): any pairs
        ("{?list*}", ["?a=1&b=2", "?list=1&list=2"], ["?a", "?=1", "?a=1&"]),
        ("{;p*}.json", [";a;b=1.json", ".json"], [";a.b.json"]),
        # side-by-side expressions with one operator are one expression
        ("{/a}{/b}", ["", "/x", "/x/y"], ["/x/y/z"]),
        ("{;a*}{;b*}{;c*}{;d*}", [";x;y=1;z"], [";x;;y"]),
        ("{/a:2}{/b}", ["/abc", "/ab/cde"], ["/abc/d/e"]),
        # an expression's values stop at what may follow it
        ("{+x}{#y}", ["a/b#c/d", "#c", "a#b#c"], ["a%zz", "a b"]),
    ],
)
def test_expressions_are_exact(template: str, matching: list[str], other: list[str]) -> None:
    matcher = UriTemplateMatcher(template)
    for topic in matching:
        assert matcher.matches(topic), (template, topic)
    for topic in other:
        assert not matcher.matches(topic), (template, topic)


def test_a_name_grant_does_not_cover_other_names() -> None:
    grant = SelectorSet(["https://example.com/users/42{?v}"])
    assert grant.matches("https://example.com/users/42?v=1")
    assert not grant.matches("https://example.com/users/42?admin=1")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{#a}{#b}", "start with '#'"),
        ("{?a}{?b}", "start with '?'"),
        ("{/a}{.b}{/c}", "start with '/'"),
        ("/books{/id}/reviews", "operator character '/'"),
        ("{/a*}/x", "operator character '/'"),
        ("/{a},{b},{c}", "','"),
        ("/l{/a,b}.x{.c*}.y", "'.'"),
        ("{?a*}{&b*}", "'&'"),
        ("{?a,b}&c=1", "'&'"),
        ("{;x}=1", "'='"),
        ("{?x,x}", "repeated"),
        ("{?x}{&x}", "repeated"),
        ("{;x,xy}", "begins another"),
    ],
)
def test_ambiguous_templates_are_refused(template: str, reason: str) -> None:
    with pytest.raises(InvalidTemplate, match=reason):
        compile_template(template)
    with pytest.raises(InvalidSelector, match="invalid URI template"):
        parse_selectors([template], max_count=2, max_length=256)


@pytest.mark.parametrize(
    ("template", "topic"),
    [
        # the review's templates: accepted (one expression each once merged), matched fast
        (
            "https://example.com{/a*}{/b*}{/c*}{/d*}{/e*}{/f*}{/g*}{/h*}z",
            "https://example.com" + "/1" * 120,
        ),
        ("{;a*}{;b*}{;c*}{;d*}", ";x" * 120 + "!"),
        ("{;a*}{;b*}{;c*}{;d*}", ";x=1" * 60 + "!"),
        ("{/a*}{/b*}{/c*}", "/" + "a/" * 120 + "!"),
        ("{.a*}{.b*}{.c*}", ".a" * 120 + "!"),
        ("{a}-{b}-{c}-{d}", "a" * 250 + "!"),
        ("{+a}/{+b}/{+c}", "a/" * 120 + "!"),
        ("{/a}{/b}{/c}{/d}{/e}{/f}{/g}{/h}{/i}{/j}{/k}{/l}{/m}{/n}{/o}{/p}", "/1" * 120 + "!"),
    ],
)
def test_review_templates_match_fast(template: str, topic: str) -> None:
    matcher = UriTemplateMatcher(template)
    started = time.perf_counter()
    matcher.matches(topic)
    assert time.perf_counter() - started < 0.05


_OPERATOR = st.sampled_from(["", "+", "#", ".", "/", ";", "?", "&"])
_VARSPEC = st.sampled_from(["a", "b", "ab", "a*", "b*", "a:2", "b:3"])
_EXPRESSION_ST = st.builds(
    lambda op, specs: "{" + op + ",".join(specs) + "}",
    _OPERATOR,
    st.lists(_VARSPEC, min_size=1, max_size=3),
)
_LITERAL = st.sampled_from(["", "", "", "/", ",", ".", ";", "=", "&", "?", "#", "-", "a", "/a"])


@st.composite
def _templates(draw: st.DrawFn) -> str:
    count = draw(st.integers(min_value=1, max_value=16))
    return "".join(draw(_LITERAL) + draw(_EXPRESSION_ST) for _ in range(count)) + draw(_LITERAL)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    template=_templates(),
    chunk=st.sampled_from(
        ["/", "/1", ";x", ";x=1", "&a=1", "?a=1", "a,", ",", ".a", "#a", "a=", "=", "a"]
    ),
    tail=st.sampled_from(["!", "", "/!", "?", "&"]),
)
def test_every_accepted_template_matches_in_bounded_time(
    template: str, chunk: str, tail: str
) -> None:
    # A complexity guard, not a race: a polynomial blow-up on 256 characters takes seconds.
    try:
        matcher = UriTemplateMatcher(template)
    except InvalidTemplate:
        return
    topic = (chunk * 256)[: 256 - len(tail)] + tail
    started = time.perf_counter()
    matcher.matches(topic)
    assert time.perf_counter() - started < 0.05, template
