"""RFC 6570 templates as Mercure topic selectors: what each level matches, what is refused, and
that matching stays linear on hostile input."""

from __future__ import annotations

import time

import pytest

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
