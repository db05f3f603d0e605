"""Channels: listeners addressed by id, broadcast and dispatch, callback workers, HTTP routes.

A second way to use the broker, for programs that address individual listeners rather than
topics. Every channel runs its own in-memory broker; a listener is a subscription to the
channel's broadcast topic and to its own topic, so queues, overflow policies, ids and
``Last-Event-ID`` resume behave exactly as for hub subscriptions. The hub serves channels over
HTTP (``ssehub.hub._channels``) and takes commands from other processes on a socket
(``_ingest``; :class:`IngestClient` is its blocking client).
"""

from __future__ import annotations

from ._channel import DEFAULT_MAX_LISTENERS, Channel, ChannelStatistics
from ._ingest_client import IngestClient
from ._listener import Listener, ListenerState, MessageHook, MessageStream
from ._message import END_OF_STREAM, Message
from ._registry import DEFAULT_MAX_CHANNELS, ChannelRegistry
from ._workers import DEFAULT_MAX_WORKERS, CallbackListener, WorkerPool, WorkerStatistics

__all__ = [
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_MAX_LISTENERS",
    "DEFAULT_MAX_WORKERS",
    "END_OF_STREAM",
    "CallbackListener",
    "Channel",
    "ChannelRegistry",
    "ChannelStatistics",
    "IngestClient",
    "Listener",
    "ListenerState",
    "Message",
    "MessageHook",
    "MessageStream",
    "WorkerPool",
    "WorkerStatistics",
]
