"""Internals of :class:`ssehub.EventSourceResponse`: item encoding and the coalescing outbox."""

from __future__ import annotations

__all__: list[str] = []
