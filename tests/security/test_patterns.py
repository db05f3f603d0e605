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
