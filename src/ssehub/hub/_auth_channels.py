"""The channel routes follow the topic rules: a channel named ``N`` is the topic ``channels/N``.

=====================================  ==========================================
Route                                  The principal must be granted
=====================================  ==========================================
``GET /channels`` (list)               subscribe to ``channels/*``
``POST /channels`` (create)            publish to ``channels/*``
``DELETE /channels/N``                 publish to ``channels/N``
``POST /channels/N/listeners``         subscribe to ``channels/N``
``GET /channels/N/listeners/L/events`` subscribe to ``channels/N``
``POST /channels/N/broadcast``         publish to ``channels/N``
``POST /channels/N/listeners/L/...``   publish to ``channels/N``
=====================================  ==========================================

``*`` in a pattern matches ``*`` too, so a grant of ``channels/*`` (or ``*``) covers the
whole-registry operations, while ``channels/orders`` covers only that channel. With
authentication off every request is allowed, as for topics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._auth import authentication_required, principal_of
from ._errors import HubHTTPError

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["CHANNEL_TOPIC_PREFIX", "authorize_channel"]

CHANNEL_TOPIC_PREFIX: Final = "channels/"


def authorize_channel(request: Request) -> None:
    """Check a channel route request against the principal's grants (see the table above).

    Args:
        request: the request to a channel route.

    Raises:
        HubHTTPError: ``unauthorized`` (401) without a credential, ``forbidden`` (403) when the
            credential does not grant the channel.
    """
    principal = principal_of(request.scope)
    name = request.path_params.get("channel")
    topic = CHANNEL_TOPIC_PREFIX + (name if isinstance(name, str) else "*")
    reading = request.method in {"GET", "HEAD"} or (
        request.method == "POST" and request.url.path.endswith("/listeners")
    )
    allowed = principal.may_subscribe(topic) if reading else principal.may_publish(topic)
    if allowed:
        return
    if not principal.authenticated:
        raise authentication_required("channels need a token on this hub")
    action = "read" if reading else "write to"
    raise HubHTTPError("forbidden", f"the token may not {action} {topic[:80]!r}")
