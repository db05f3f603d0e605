"""A registry of named channels, each running in a task of the registry's task group.

``async with ChannelRegistry() as registry:`` owns one task group; every channel created in it
runs (its broker entered) in a task of that group, parked on an event until the channel is
removed or the registry exits. So channels can be created and removed at any time (for example
by HTTP requests) and every background task still has an owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import anyio

from .._exceptions import (
    AlreadyExists,
    BrokerClosed,
    ConfigurationError,
    LimitReached,
    UnknownChannel,
)
from ..broker.broker import Broker
from ..broker.history import HistoryBudget, HistoryPool
from ._channel import Channel
from ._listener import check_name

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup, TaskStatus

__all__ = ["DEFAULT_MAX_CHANNELS", "ChannelRegistry"]

DEFAULT_MAX_CHANNELS: Final = 1000
"""Channels per registry: bounds what clients allowed to create channels can allocate."""


class ChannelRegistry:
    """Create, get, remove and list named :class:`Channel` objects.

    Args:
        max_channels: channels at most (1000).
        **channel_options: defaults for :class:`Channel` options (``queue_size``,
            ``overflow``, ``history_size``, ``history_ttl``, ``max_listeners``, ``clock``,
            ``budget``); :meth:`create` may override them per channel. Every channel's history
            also counts in one :class:`~ssehub.broker.history.HistoryPool` of
            ``budget.history_total_bytes``, so the channels together hold at most that much.

    Attributes:
        pool: the byte budget the channels' histories share.

    Raises:
        ConfigurationError: ``max_channels`` is not positive.
    """

    def __init__(self, *, max_channels: int = DEFAULT_MAX_CHANNELS, **channel_options: Any) -> None:
        if max_channels < 1:
            raise ConfigurationError("max_channels must be >= 1")
        self.max_channels = max_channels
        self._options = channel_options
        budget = channel_options.get("budget") or HistoryBudget()
        self.pool = HistoryPool(budget.history_total_bytes)
        self._channels: dict[str, Channel] = {}
        self._stops: dict[Channel, anyio.Event] = {}
        self._task_group: TaskGroup | None = None

    def __repr__(self) -> str:
        return f"<ChannelRegistry channels={len(self._channels)}>"

    async def __aenter__(self) -> ChannelRegistry:
        if self._task_group is not None:
            raise BrokerClosed("a ChannelRegistry can be entered only once at a time")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        self._channels.clear()
        for stop in self._stops.values():
            stop.set()  # each channel task leaves its `async with` and ends
        assert task_group is not None
        # A lone error of the block or of a channel comes out as itself, not in a group.
        return await Broker._exit_task_group(task_group, exc_type, exc, tb)

    @property
    def running(self) -> bool:
        """Whether the registry is inside its ``async with`` block."""
        return self._task_group is not None

    async def create(self, name: str, **options: Any) -> Channel:
        """Create and start a channel.

        Args:
            name: the channel name (1-64 of ``A-Z a-z 0-9 _ . -``).
            **options: :class:`Channel` options overriding the registry's defaults.

        Returns:
            The running channel.

        Raises:
            BrokerClosed: the registry is not running.
            AlreadyExists: a channel with this name exists.
            LimitReached: the registry has ``max_channels`` channels.
            ConfigurationError: the name or an option is invalid.
        """
        task_group = self._task_group
        if task_group is None:
            raise BrokerClosed("the channel registry is not running (use `async with`)")
        check_name("channel name", name)
        if name in self._channels:
            raise AlreadyExists("channel", name)
        if len(self._channels) >= self.max_channels:
            raise LimitReached(
                f"the registry has its maximum of {self.max_channels} channels", self.max_channels
            )
        channel = Channel(name, **{"pool": self.pool, **self._options, **options})
        # Reserve the name before the first await, so a concurrent create() of it fails.
        self._channels[name] = channel
        stop = self._stops[channel] = anyio.Event()
        try:
            await task_group.start(self._run, channel, stop, name=f"ssehub channel {name}")
        except BaseException:
            if self._channels.get(name) is channel:
                del self._channels[name]
            self._stops.pop(channel, None)
            raise
        return channel

    async def _run(
        self, channel: Channel, stop: anyio.Event, *, task_status: TaskStatus[None]
    ) -> None:
        try:
            async with channel:
                task_status.started()
                await stop.wait()
        finally:
            self._stops.pop(channel, None)

    def get(self, name: str) -> Channel:
        """Return the channel called ``name``.

        Raises:
            UnknownChannel: there is none.
        """
        channel = self._channels.get(name)
        if channel is None:
            raise UnknownChannel(name)
        return channel

    def remove(self, name: str) -> None:
        """Remove a channel: its listeners' streams end (after what is queued) and it stops.

        Raises:
            UnknownChannel: there is none.
        """
        channel = self._channels.pop(name, None)
        if channel is None:
            raise UnknownChannel(name)
        stop = self._stops.get(channel)
        if stop is not None:
            stop.set()

    def list(self) -> list[Channel]:
        """Return every channel, sorted by name."""
        return [self._channels[name] for name in sorted(self._channels)]

    def __len__(self) -> int:
        return len(self._channels)

    def __contains__(self, name: object) -> bool:
        return name in self._channels
