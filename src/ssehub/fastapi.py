"""FastAPI's own Server-Sent Events idiom, streamed by ssehub's ``EventSourceResponse``.

FastAPI (0.135 and later) streams events from a *path operation* that yields items and is
declared with ``response_class=fastapi.sse.EventSourceResponse``: plain items (pydantic
models, dicts, ...) are validated against the item type named in the return annotation and sent
as JSON ``data``, ``fastapi.sse.ServerSentEvent`` items control every field, and the item schema
appears in the app's OpenAPI. This module keeps that code exactly as it is and runs it on
:class:`ssehub.EventSourceResponse`: pings, ``send_timeout``, disconnect and shutdown handling,
coalesced writes, and broker subscriptions with ``Last-Event-ID`` resume. One line turns it on::

    from collections.abc import AsyncIterable

    from fastapi import APIRouter
    from fastapi.sse import EventSourceResponse
    from pydantic import BaseModel

    from ssehub.fastapi import EventSourceRoute

    router = APIRouter(route_class=EventSourceRoute)  # or app.router.route_class = ...


    class Tick(BaseModel):
        n: int


    @router.get("/ticks", response_class=EventSourceResponse)
    async def ticks() -> AsyncIterable[Tick]:
        for n in range(3):
            yield Tick(n=n)  # data: {"n":0}

Only FastAPI's public extension points are used: the ``route_class`` of a router (an
:class:`fastapi.routing.APIRoute` subclass), a path operation function with a signature, and the
route's ``responses``. :class:`EventSourceRoute` hands FastAPI, for each streaming path operation,
a coroutine with the same signature (so parameters, dependencies, validation errors and the
OpenAPI parameters are FastAPI's own) that starts the user's function and returns ssehub's
response, and documents the stream in ``responses`` (``text/event-stream`` with an
``itemSchema``, in the shape FastAPI writes). Routes that are not event streams are left to
FastAPI untouched.
"""

from __future__ import annotations

import copy
import enum
import functools
import inspect
import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Annotated, Any, ClassVar, Final, ForwardRef, get_args, get_origin

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from . import response as _response
from ._exceptions import MissingDependency
from ._frames import FrameSource

try:
    from fastapi.datastructures import DefaultPlaceholder
    from fastapi.routing import APIRoute
    from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
    from fastapi.sse import ServerSentEvent as FastAPIServerSentEvent
except ImportError as exc:  # FastAPI missing, or older than fastapi.sse (0.135)
    raise MissingDependency("fastapi>=0.135", "fastapi") from exc

from ._fastapi_items import (
    NATIVE_ITEMS,
    ItemEncoder,
    adapter_for,
    encode_async,
    encode_sync,
    item_schema,
)

__all__ = ["EventSourceResponse", "EventSourceRoute", "item_schema"]

_STREAM_ORIGINS: Final = frozenset(
    {AsyncIterable, AsyncIterator, AsyncGenerator, Iterable, Iterator, Generator}
)
"""``get_origin`` of the return annotations that name a stream's item type (the ``typing`` and
``collections.abc`` spellings share it)."""

_RESPONSE_PARAMETER: Final = "ssehub_sub_response__"
"""Name of the parameter through which FastAPI hands the wrapped path operation its ``Response``
(headers, cookies and status code set by the path operation or its dependencies), when the path
operation has no ``Response`` parameter of its own."""


class _Default(enum.Enum):
    """Marks a parameter left to the class's default."""

    CLASS = 0


_CLASS_DEFAULT: Final = _Default.CLASS


# --------------------------------------------------------------------------- the response


class EventSourceResponse(_response.EventSourceResponse):
    """:class:`ssehub.EventSourceResponse` that encodes items by FastAPI's SSE rules.

    :class:`EventSourceRoute` creates one for every streaming path operation, with the item type
    of its return annotation; declare a subclass as the route's ``response_class`` to change the
    defaults of its streams::

        class Feed(EventSourceResponse):
            DEFAULT_PING_INTERVAL = 5
            DEFAULT_SEND_TIMEOUT = 30

    It can also be built directly (``return EventSourceResponse(gen())`` from any path
    operation). Items follow FastAPI's rules, not sse-starlette's:

    * ``fastapi.sse.ServerSentEvent``: its fields, ``data`` as JSON, ``raw_data`` as it is;
    * ssehub's :class:`~ssehub.ServerSentEvent` and a broker subscription's items: as they
      encode themselves (a subscription given as ``content`` streams its frames as they are);
    * anything else (a pydantic model, a dict, a str, a number, ...): one ``data:`` line of
      compact JSON, validated against ``item_type`` first when it is given (a ``str`` is
      therefore sent quoted, as FastAPI does).

    Args:
        content: an async or sync iterable of items, or a broker ``Subscription``.
        status_code: HTTP status. Default 200.
        headers: extra headers; ``Cache-Control`` given here replaces the default ``no-store``.
        media_type: default ``text/event-stream``.
        background: a Starlette background task run after the stream ends.
        item_type: the type plain items are validated against and serialised as (with
            pydantic, ``from_attributes`` allowed); ``None`` sends them as FastAPI's
            ``jsonable_encoder`` gives them.
        item_options: keyword arguments of pydantic's ``dump_json`` for plain items
            (``include``, ``exclude``, ``by_alias`` (default true), ``exclude_unset``,
            ``exclude_defaults``, ``exclude_none``); the route passes its ``response_model_*``
            settings.
        ping: seconds of idleness before a keep-alive comment; default
            :attr:`DEFAULT_PING_INTERVAL`, ``0`` disables.
        send_timeout: seconds one send may take before the client is dropped; default
            :attr:`DEFAULT_SEND_TIMEOUT`.
        shutdown_grace_period: seconds the content gets to end after a shutdown; default
            :attr:`DEFAULT_SHUTDOWN_GRACE_PERIOD`.
        **options: the other keyword arguments of :class:`ssehub.EventSourceResponse`
            (``sep``, ``ping_message_factory``, ``data_sender_callable``,
            ``client_close_handler_callable``, ``shutdown_event``, ``cleanup_timeout``).

    Raises:
        ConfigurationError: pydantic cannot build a schema for ``item_type``.
        ValueError, TypeError: as :class:`ssehub.EventSourceResponse`.

    While streaming, an item that fails validation or has no JSON form ends the stream with
    :class:`~ssehub.EventValidationError`, raised from the ASGI call like any content error.
    """

    DEFAULT_SEND_TIMEOUT: ClassVar[float | None] = None
    """``send_timeout`` of streams that do not pass one (``None``: wait forever)."""
    DEFAULT_SHUTDOWN_GRACE_PERIOD: ClassVar[float] = 0
    """``shutdown_grace_period`` of streams that do not pass one."""

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = "text/event-stream",
        background: BackgroundTask | None = None,
        *,
        item_type: Any = None,
        item_options: Mapping[str, Any] | None = None,
        ping: float | None = None,
        send_timeout: float | _Default | None = _CLASS_DEFAULT,
        shutdown_grace_period: float | _Default = _CLASS_DEFAULT,
        **options: Any,
    ) -> None:
        self.item_encoder = ItemEncoder(item_type, item_options)
        """The function that turns one item into its frame (FastAPI's rules)."""
        if not isinstance(content, FrameSource):
            content = self._encoded(content)
        super().__init__(
            content,
            status_code,
            headers,
            media_type,
            background,
            ping=ping,
            send_timeout=(
                self.DEFAULT_SEND_TIMEOUT if send_timeout is _CLASS_DEFAULT else send_timeout
            ),
            shutdown_grace_period=(
                self.DEFAULT_SHUTDOWN_GRACE_PERIOD
                if shutdown_grace_period is _CLASS_DEFAULT
                else shutdown_grace_period
            ),
            **options,
        )

    def _encoded(self, content: Any) -> Any:
        # Items become frames before they reach the response, which sends bytes as they are.
        if isinstance(content, AsyncIterable):
            return encode_async(content, self.item_encoder)
        if isinstance(content, Iterable) and not isinstance(content, (str, bytes, dict)):
            return encode_sync(content, self.item_encoder)
        return content  # the parent raises its TypeError for it


# --------------------------------------------------------------------------- the route


class _StreamDocs(Response):
    """The ``response_class`` FastAPI sees for a stream route: used for its OpenAPI only.

    No media type, so FastAPI adds no ``schema`` of its own next to the stream's ``itemSchema``;
    the path operation always returns a real :class:`EventSourceResponse`.
    """

    media_type = None


class EventSourceRoute(APIRoute):
    """An :class:`fastapi.routing.APIRoute` that streams FastAPI's SSE path operations with ssehub.

    Set it as the ``route_class`` of an ``APIRouter`` (or assign it to
    ``app.router.route_class`` before declaring routes on the app). Every path operation of
    that router declared with ``response_class=fastapi.sse.EventSourceResponse`` (or this
    module's :class:`EventSourceResponse`, or a subclass of it for other defaults) is then
    served by :class:`EventSourceResponse`:

    * a generator path operation (``async def`` or ``def`` with ``yield``): its items are
      streamed, validated against the item type of its return annotation
      (``AsyncIterable[Item]``, ``Iterator[Item]``, ...) and sent by FastAPI's rules;
    * any other path operation: it returns the content to stream (a broker ``Subscription``,
      an async or sync iterable), or a ``Response`` that is sent as it is. A subscription
      returned this way streams its frames as encoded once by the broker, and fetches its
      ``Last-Event-ID`` replay before the response starts.

    What FastAPI does is unchanged: parameters, dependencies (those with ``yield`` stay open
    until the stream ends), validation errors, background tasks, a ``Response`` parameter's
    headers and status code, the route's ``status_code`` and ``response_model_*`` settings, and
    the OpenAPI operation, whose 200 response is ``text/event-stream`` with the item schema
    (see :func:`item_schema`; a ``responses`` entry for that media type given on the route
    wins). Other routes of the router are plain FastAPI routes.

    Raises:
        ConfigurationError: pydantic cannot describe the item type of a stream's annotation.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        stream = _StreamEndpoint.of(endpoint, kwargs.get("response_class"))
        if stream is None:
            super().__init__(path, endpoint, **kwargs)
            return
        status_code = kwargs.get("status_code")
        options = {
            option: kwargs[f"response_model_{option}"]
            for option in (
                "include",
                "exclude",
                "by_alias",
                "exclude_unset",
                "exclude_defaults",
                "exclude_none",
            )
            if kwargs.get(f"response_model_{option}") is not None
        }
        kwargs["response_class"] = _StreamDocs
        kwargs["responses"] = _documented(
            kwargs.get("responses"),
            status_code or 200,
            stream.response_class.media_type or "text/event-stream",
            stream.item_type,
        )
        super().__init__(path, stream.build(status_code, options), **kwargs)


def _documented(
    responses: Mapping[int | str, Any] | None, status: int, media_type: str, item_type: Any
) -> dict[int | str, Any]:
    documented: dict[int | str, Any] = copy.deepcopy(dict(responses or {}))
    key: int | str = str(status) if str(status) in documented else status
    entry = documented.setdefault(key, {})
    entry.setdefault("content", {}).setdefault(media_type, {}).setdefault(
        "itemSchema", item_schema(item_type)
    )
    return documented


class _Kind(enum.Enum):
    CALL = "call"  # a generator function: calling it starts nothing
    AWAIT = "await"  # a coroutine function
    THREAD = "thread"  # a plain function: FastAPI would run it in a worker thread


class _StreamEndpoint:
    """A streaming path operation and what its wrapper needs to know about it."""

    __slots__ = ("function", "item_type", "kind", "response_class", "signature")

    def __init__(self, function: Callable[..., Any], response_class: type[Response]) -> None:
        self.function = function
        self.response_class: type[EventSourceResponse] = (
            response_class
            if issubclass(response_class, EventSourceResponse)
            else EventSourceResponse
        )
        self.signature = _evaluated_signature(function)
        self.item_type = _item_type(self.signature.return_annotation)
        self.kind = _kind(function)
        if self.item_type is not None:
            adapter_for(self.item_type)  # an unusable item type fails at declaration

    @classmethod
    def of(cls, endpoint: Callable[..., Any], response_class: Any) -> _StreamEndpoint | None:
        """The stream behind ``endpoint``, or ``None`` for a route that is not an event stream."""
        existing = getattr(endpoint, "__ssehub_stream__", None)
        if isinstance(existing, _StreamEndpoint):
            # A wrapper made for another route (a router copying its routes on include).
            return existing
        declared = (
            response_class.value
            if isinstance(response_class, DefaultPlaceholder)
            else response_class
        )
        if not (
            isinstance(declared, type)
            and issubclass(declared, (FastAPIEventSourceResponse, EventSourceResponse))
        ):
            return None
        return cls(endpoint, declared)

    def build(
        self, status_code: int | None, item_options: Mapping[str, Any]
    ) -> Callable[..., Coroutine[Any, Any, Response]]:
        """The coroutine function FastAPI calls instead of the path operation."""
        parameters = list(self.signature.parameters.values())
        own = next((p.name for p in parameters if _is_response(p.annotation)), None)
        if own is None:
            hidden = inspect.Parameter(
                _RESPONSE_PARAMETER, inspect.Parameter.KEYWORD_ONLY, annotation=Response
            )
            at = len(parameters)
            if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
                at -= 1
            parameters.insert(at, hidden)
        function, kind, response_class = self.function, self.kind, self.response_class
        item_type = self.item_type

        async def stream(**values: Any) -> Response:
            sub_response: Response = values.pop(_RESPONSE_PARAMETER) if own is None else values[own]
            if kind is _Kind.CALL:
                content = function(**values)
            elif kind is _Kind.AWAIT:
                content = await function(**values)
            else:
                content = await run_in_threadpool(function, **values)
            if isinstance(content, Response):
                return content
            response = response_class(
                content, status_code or 200, item_type=item_type, item_options=item_options
            )
            _merge(sub_response, response)
            return response

        stream.__name__ = getattr(function, "__name__", type(function).__name__)
        stream.__qualname__ = getattr(function, "__qualname__", stream.__name__)
        stream.__doc__ = function.__doc__
        stream.__module__ = getattr(function, "__module__", __name__)
        stream.__signature__ = self.signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=response_class
        )
        stream.__ssehub_stream__ = self  # type: ignore[attr-defined]
        return stream


def _merge(sub_response: Response, response: Response) -> None:
    # What FastAPI does with the Response parameter of its own SSE routes: its status code
    # (when set) wins, its headers are added; ours of the same name give way to them.
    if sub_response.status_code:
        response.status_code = sub_response.status_code
    extra = sub_response.headers.raw
    if extra:
        replaced = {name for name, _ in extra} - {b"set-cookie"}
        response.raw_headers[:] = [
            (name, value) for name, value in response.raw_headers if name not in replaced
        ] + [(name, value) for name, value in extra if name != b"content-length"]


def _is_response(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return isinstance(annotation, type) and issubclass(annotation, Response)


def _item_type(annotation: Any) -> Any:
    """The item type named by a stream's return annotation, or ``None``.

    As FastAPI: the first argument of ``AsyncIterable``/``AsyncIterator``/``AsyncGenerator``/
    ``Iterable``/``Iterator``/``Generator``; event classes are transport, not data.
    """
    if get_origin(annotation) not in _STREAM_ORIGINS:
        return None
    args = get_args(annotation)
    if not args or args[0] is Any:
        return None
    item = args[0]
    if isinstance(item, type) and issubclass(item, (FastAPIServerSentEvent, *NATIVE_ITEMS)):
        return None
    return item


def _kind(function: Callable[..., Any]) -> _Kind:
    # As FastAPI: a callable object is classified by its __call__, a decorated function by
    # what it wraps too.
    candidates: list[object] = [function, inspect.unwrap(function)]
    if not inspect.isroutine(function) and not isinstance(function, functools.partial):
        candidates.append(getattr(function, "__call__", None))  # noqa: B004
    if any(inspect.iscoroutinefunction(candidate) for candidate in candidates):
        return _Kind.AWAIT
    if any(inspect.isasyncgenfunction(c) or inspect.isgeneratorfunction(c) for c in candidates):
        return _Kind.CALL
    return _Kind.THREAD


def _evaluated_signature(function: Callable[..., Any]) -> inspect.Signature:
    """The signature of ``function`` with its string annotations evaluated as FastAPI does.

    FastAPI evaluates string annotations (``from __future__ import annotations``) in the global
    namespace of the function it is given, which for the wrapper would be this module's: so
    they are evaluated here, in the path operation's. A name that cannot be resolved is left as
    a ``ForwardRef``, as FastAPI leaves it.
    """
    if sys.version_info >= (3, 14):  # deferred annotations: read them without evaluating
        import annotationlib

        signature = inspect.signature(
            function,
            annotation_format=annotationlib.Format.FORWARDREF,  # type: ignore[call-arg,unused-ignore]
        )
    else:
        signature = inspect.signature(function)
    namespace: dict[str, Any] = getattr(inspect.unwrap(function), "__globals__", {})

    def evaluated(annotation: Any) -> Any:
        if not isinstance(annotation, str):
            return annotation
        try:
            # What typing.get_type_hints does with a string annotation.
            return eval(annotation, namespace)  # noqa: S307
        except Exception:  # noqa: BLE001 - any failure leaves it unresolved, as in FastAPI
            return ForwardRef(annotation)

    return signature.replace(
        parameters=[
            parameter.replace(annotation=evaluated(parameter.annotation))
            for parameter in signature.parameters.values()
        ],
        return_annotation=evaluated(signature.return_annotation),
    )
