"""Topic patterns: '*' is the only wildcard and matches across '/'."""

from __future__ import annotations

import pytest

from ssehub.hub._patterns import TopicPatterns


@pytest.mark.parametrize(
    ("patterns", "topic", "granted"),
    [
        (["*"], "anything/at/all", True),
        (["orders/*"], "orders/1", True),
        (["orders/*"], "orders/1/items", True),
        (["orders/*"], "orders", False),
        (["orders/*"], "orders-archive/1", False),
        (["users/42"], "users/420", False),
        (["a.b"], "axb", False),  # '.' is literal
        (["a?b"], "a?b", True),  # '?' is literal
        (["*/private"], "users/1/private", True),
        ([], "x", False),
    ],
)
def test_matching(patterns: list[str], topic: str, granted: bool) -> None:
    assert TopicPatterns(patterns).matches(topic) is granted


@pytest.mark.parametrize("bad", ["", "with space", "x" * 257, "new\nline"])
def test_invalid_patterns(bad: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        TopicPatterns([bad])


def test_too_many_patterns() -> None:
    with pytest.raises(ValueError, match="at most"):
        TopicPatterns([f"t{i}" for i in range(257)])


@pytest.mark.parametrize(
    ("grants", "pattern", "covered"),
    [
        (["*"], "anything/*", True),
        (["**"], "a*b", True),
        (["orders/*"], "orders/*", True),
        (["orders/*"], "orders/**", True),  # runs of * are one *
        (["orders/*"], "orders/1/*", True),
        (["orders/*"], "orders/*/items", True),
        (["a*b*"], "a*b*c", True),  # the prefix may hold * itself
        (["orders/*"], "orders*", False),
        (["orders/*"], "*", False),
        (["orders/1"], "orders/*", False),
        (["orders/*/items"], "orders/*/items", True),
        (["orders/*/items"], "orders/1/*", False),
        (["*/items"], "orders/*/items", False),  # covered in fact: the rule is conservative
        (["orders/*"], "orders/1", True),  # no *: one topic, matched as usual
        (["orders/*"], "orders", False),
        ([], "a*", False),
    ],
)
def test_covers(grants: list[str], pattern: str, covered: bool) -> None:
    assert TopicPatterns(grants).covers(pattern) is covered


@pytest.mark.parametrize("pattern", ["orders/*", "orders/1/*", "orders/*/items", "a*b*c"])
def test_covers_is_sound(pattern: str) -> None:
    # Whatever a covered pattern matches, the grant matches too.
    from ssehub.broker import TopicPattern

    grants = TopicPatterns(["orders/*", "a*b*"])
    assert grants.covers(pattern)
    compiled = TopicPattern(pattern)
    samples = ["orders/1", "orders/1/items", "orders//items", "a-b-c", "abc", "abxc", "orders/x/y"]
    for topic in samples:
        if compiled.matches(topic):
            assert grants.matches(topic), topic
