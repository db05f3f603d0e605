"""Pattern subscriptions in the broker: syntax, limits, fan-out once per subscriber, presence,
the bounded match cache. Resume across matched topics is in
``tests/backends/test_backend_patterns.py`` (memory and Redis)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ssehub
from ssehub import ConfigurationError, InvalidTopic
from ssehub.broker import (
    DEFAULT_MAX_PATTERNS,
    Broker,
    EndReason,
    StoredEvent,
    TopicMatcher,
    TopicPattern,
)
from ssehub.broker.patterns import compile_glob, split_topics

pytestmark = pytest.mark.anyio


def ids(items: Sequence[object]) -> list[str]:
    return [item.id for item in items if isinstance(item, StoredEvent)]


class Suffix:
    """A third-party matcher: topics ending with a suffix."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.calls = 0

    @property
    def key(self) -> str:
        return "suffix:" + self.suffix

    def matches(self, topic: str) -> bool:
        self.calls += 1
        return topic.endswith(self.suffix)


# ------------------------------------------------------------------------------ syntax


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        (
            "orders/*",
            ["orders/1", "orders/1/items", "orders/"],
            ["orders", "order/1", "x/orders/1"],
        ),
        ("*", ["a", "orders/1", "https://x.test/b?c=d"], []),
        ("**", ["a", "b/c"], []),
        ("*/items", ["orders/1/items", "a/items"], ["a/items/1", "items"]),
        ("a*b*c", ["abc", "a-b-c", "aXXbYYc", "abbc"], ["ab", "acb", "abcd"]),
        ("a?[.]*", ["a?[.]", "a?[.]x"], ["ab[.]", "a?x"]),  # only * is a wildcard
        ("https://x.test/*/1", ["https://x.test/books/1"], ["https://x.test/books/2"]),
    ],
)
def test_pattern_matching(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    compiled = TopicPattern(pattern)
    assert isinstance(compiled, TopicMatcher)
    for topic in matching:
        assert compiled.matches(topic), topic
    for topic in not_matching:
        assert not compiled.matches(topic), topic


def test_pattern_keys_and_equality() -> None:
    assert TopicPattern("a/*").key == "glob:a/*"
    assert TopicPattern("a/**") == TopicPattern("a/*")  # the same topics match
    assert TopicPattern("a/**").pattern == "a/*"
    assert hash(TopicPattern("a/**")) == hash(TopicPattern("a/*"))
    assert TopicPattern("a/*") != TopicPattern("b/*")
    assert repr(TopicPattern("a/*")) == "TopicPattern('a/*')"
    # Compiled once per pattern string.
    assert compile_glob("x/*/y") is compile_glob("x/*/y")


@pytest.mark.parametrize("bad", ["", "a b/*", "a\n*", "x" * 257 + "*", "é/*"])
def test_invalid_patterns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        TopicPattern(bad)


def test_public_names() -> None:
    assert ssehub.TopicPattern is TopicPattern
    assert ssehub.TopicMatcher is TopicMatcher
    assert DEFAULT_MAX_PATTERNS == 8


def test_split_topics() -> None:
    exact, patterns = split_topics(
        ["a", "b/*", "a", "b/**", Suffix("/x")], limit=32, max_patterns=8
    )
    assert exact == ("a",)
    assert [m.key for m in patterns] == ["glob:b/*", "suffix:/x"]
    assert split_topics("o/*", limit=1, max_patterns=1)[1] == (TopicPattern("o/*"),)
    single = Suffix("y")
    assert split_topics(single, limit=1, max_patterns=1) == ((), (single,))


# ------------------------------------------------------------------------------ limits


async def test_limits_and_errors() -> None:
    async with Broker(max_topics_per_subscription=4, max_patterns_per_subscription=2) as broker:
        with pytest.raises(InvalidTopic, match="too many patterns"):
            broker.subscribe(["a/*", "b/*", "c/*"])
        with pytest.raises(InvalidTopic, match="too many topics"):
            broker.subscribe(["a", "b", "c", "d/*", "e/*"])  # patterns count as topics
        with pytest.raises(InvalidTopic, match="must be str or a TopicMatcher"):
            broker.subscribe([42])  # type: ignore[list-item]
        with pytest.raises(InvalidTopic, match="at least one"):
            broker.subscribe([])
        with pytest.raises(InvalidTopic):
            broker.subscribe("bad pattern/*")
        assert broker.subscriber_count() == 0  # nothing registered by a refused call
        async with broker.subscribe(["a", "b/*", "c/*"]) as sub:
            assert sub.topics == ("a",)
            assert sub.patterns == (TopicPattern("b/*"), TopicPattern("c/*"))
            assert "patterns=['glob:b/*', 'glob:c/*']" in repr(sub)
    with pytest.raises(ConfigurationError):
        Broker(max_patterns_per_subscription=-1)
    with pytest.raises(ConfigurationError):
        Broker(match_cache_size=0)
    async with Broker(max_patterns_per_subscription=0) as broker:
        with pytest.raises(InvalidTopic, match="too many patterns"):
            broker.subscribe("a/*")


# ------------------------------------------------------------------------------ fan-out


async def test_pattern_and_exact_subscribers_each_get_an_event_once() -> None:
    async with Broker() as broker:
        exact = broker.subscribe("orders/1")
        pattern = broker.subscribe("orders/*")
        both = broker.subscribe(["orders/1", "orders/*", "*/1", Suffix("1")])
        other = broker.subscribe("users/*")
        one = await broker.publish("orders/1", "one")
        two = await broker.publish("orders/2", "two")
        multi = await broker.publish(["orders/3", "orders/1", "users/1"], "multi")
        with anyio.fail_after(5):
            assert ids(exact.receive_nowait()) == [one.id, multi.id]
            assert ids(pattern.receive_nowait()) == [one.id, two.id, multi.id]
            assert ids(both.receive_nowait()) == [one.id, two.id, multi.id]
            assert ids(other.receive_nowait()) == [multi.id]
        for sub in (exact, pattern, both, other):
            sub.close()


async def test_a_topic_created_after_the_subscription_is_delivered() -> None:
    async with Broker() as broker, broker.subscribe("news/*") as sub:
        await broker.publish("news/first", "1")  # the topic did not exist at subscribe
        await broker.publish("sports/x", "not mine")
        stored = await broker.publish("news/eu/second", "2")
        with anyio.fail_after(5):
            items = await sub.receive()
        assert [i.event.data for i in items if isinstance(i, StoredEvent)] == ["1", "2"]
        assert items[-1] == stored


async def test_custom_matcher_is_matched_once_per_topic_for_all_subscribers() -> None:
    async with Broker() as broker:
        first, second = Suffix("/x"), Suffix("/x")  # equal keys: one group
        subs = [broker.subscribe([first]), broker.subscribe([second])]
        subs += [broker.subscribe(["z", Suffix("/x")]) for _ in range(10)]
        assert broker.patterns() == {"suffix:/x": 12}
        for _ in range(5):
            await broker.publish("a/x", "hit")
            await broker.publish("a/y", "miss")
        # The group's matcher (the first subscriber's) ran once per distinct topic.
        assert first.calls == 2
        assert second.calls == 0
        assert all(len(sub.receive_nowait()) == 5 for sub in subs)
        for sub in subs:
            sub.close()
        assert broker.patterns() == {}


async def test_unsubscribing_removes_the_group_and_its_cached_matches() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t/*")
        await broker.publish("t/1", "cached")
        fanout = broker._fanout
        assert fanout.cached_topics == 1
        sub.close()
        assert fanout.groups == {}
        assert fanout.cached_topics == 0
        later = broker.subscribe("t/*")
        stored = await broker.publish("t/1", "again")
        assert later.receive_nowait() == [stored]
        later.close()


async def test_presence_counts_pattern_subscribers_for_the_topics_they_match() -> None:
    async with Broker() as broker:
        exact = broker.subscribe("orders/1")
        pattern = broker.subscribe("orders/*")
        both = broker.subscribe(["orders/1", "orders/*"])
        assert broker.subscriber_count("orders/1") == 3  # both counts once
        assert broker.subscriber_count("orders/2") == 2
        assert broker.subscriber_count(["orders/2", "orders/1"]) == 3
        assert broker.subscriber_count("users/1") == 0
        assert broker.subscriber_count() == 3
        assert broker.patterns() == {"glob:orders/*": 2}
        stats = broker.statistics()
        assert (stats.topics, stats.subscribers) == (1, 3)  # topics: exact topics only
        await broker.publish("orders/2", "x")
        topics = {info.topic: info.subscribers for info in await broker.topics()}
        assert topics == {"orders/1": 2, "orders/2": 0}  # per topic: exact subscribers
        for sub in (exact, pattern, both):
            sub.close()


async def test_match_cache_stays_bounded() -> None:
    async with Broker(match_cache_size=16) as broker, broker.subscribe("even/*") as sub:
        for number in range(200):
            await broker.publish(f"{'even' if number % 2 == 0 else 'odd'}/{number}", "x")
            assert broker._fanout.cached_topics <= 16
        assert broker._fanout.cached_topics == 16
        assert len(sub.receive_nowait()) == 100


async def test_pattern_subscriber_is_shed_like_any_other() -> None:
    async with Broker(queue_size=2) as broker:
        sub = broker.subscribe("a/*")
        keep = broker.subscribe(["a/1", "a/*"])
        for number in range(3):
            await broker.publish("a/1", str(number))
        assert sub.end_reason is EndReason.SHED
        assert keep.end_reason is EndReason.SHED
        assert broker.patterns() == {}
        assert broker.subscriber_count("a/1") == 0


async def test_block_policy_waits_for_a_pattern_subscriber() -> None:
    async with Broker(queue_size=1, overflow="block") as broker:
        sub = broker.subscribe("a/*")
        await broker.publish("a/1", "first")
        published = anyio.Event()

        async def publish_second() -> None:
            await broker.publish("a/2", "second")
            published.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(publish_second)
                await anyio.wait_all_tasks_blocked()
                assert not published.is_set()  # waits for room in the pattern subscriber
                assert [i.event.data for i in sub.receive_nowait()] == ["first"]  # type: ignore[union-attr]
            assert published.is_set()
        sub.close()


class Broken:
    key = "broken:1"

    def matches(self, topic: str) -> bool:
        raise RuntimeError("a bug in a matcher")


async def test_a_failing_matcher_is_logged_and_matches_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Broker() as broker:
        broken = broker.subscribe([Broken()])
        other = broker.subscribe("a/*")
        stored = await broker.publish("a/1", "x")
        assert other.receive_nowait() == [stored]
        assert broken.receive_nowait() == []
        assert "topic matcher" in caplog.text
        broken.close()
        other.close()


@given(
    pattern=st.text(alphabet="ab*/", min_size=1, max_size=12),
    topic=st.text(alphabet="ab/", max_size=16),
)
def test_glob_matching_agrees_with_the_glob_definition(pattern: str, topic: str) -> None:
    # The definition: '*' is any run of characters, everything else is literal.
    regex = ".*".join(map(re.escape, pattern.split("*")))
    assert compile_glob(pattern)(topic) == (re.fullmatch(regex, topic) is not None)


@pytest.mark.parametrize("pattern", ["*a*a*a*a*a*a*b", "a*a*a*a*a*a*a*a*a*a*c", "*ab*ab*ab*ab*x"])
def test_glob_matching_takes_linear_time(pattern: str) -> None:
    # A backtracking regex takes seconds on these with an 80-character topic (a review found
    # it): matching runs inside the fan-out, so it must stay linear in the topic.
    matches = TopicPattern(pattern).matches
    topic = "a" * 255
    started = time.perf_counter()
    for _ in range(100):
        assert not matches(topic)
    assert time.perf_counter() - started < 0.5  # ~100 µs each at most; a blow-up is seconds
