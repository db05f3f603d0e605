"""The hub's OpenAPI 3.1 description, built from the settings and the body types, and a
self-contained page that renders it.

Every request and response body is a msgspec type (:mod:`ssehub.hub._models`, the publish body
in :mod:`ssehub.hub._publish`, the channel bodies in :mod:`ssehub.channels._openapi`), and the
components here are generated from those types, the ones the hub decodes requests with. Limits
(topic pattern and length, topics per request, batch size, body size, ``Last-Event-ID`` length)
come from the settings. Every operation lists every status it can answer: the error responses
come from the one table of codes per operation (:func:`~ssehub.hub._responses.operation_codes`).
What the operations do is written here, by hand, where a generator could not say it (the SSE
framing, the reset header, the all-or-nothing batch). ``tests/hub/test_hub_openapi.py`` checks
that every route of the app is described and every described operation exists, and
``tests/hub/test_openapi_schemathesis.py`` runs schemathesis against the document.

The ``/docs`` page needs no CDN (hubs often run where there is no internet): a few lines of
inline JavaScript fetch ``openapi.json`` relative to the page, so it also works when the hub is
mounted under a prefix, and render it with ``textContent`` only (no HTML from the document).
"""

from __future__ import annotations

from typing import Any, Final

from ..__about__ import __version__
from ..channels._openapi import Name, channel_paths, channel_types
from ._auth_openapi import add_security
from ._errors import ERROR_CODES
from ._models import (
    DashboardStats,
    Error,
    Health,
    Published,
    PublishedBatch,
    Status,
    StreamEvent,
    schema_components,
    topic_type,
)
from ._publish import IDEMPOTENCY_HEADER, IdempotencyKey, publish_schemas, publish_types
from ._responses import error_responses, operation_codes
from ._settings import HubSettings

__all__ = ["DOCS_HTML", "openapi_document"]


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _schemas(settings: HubSettings) -> dict[str, Any]:
    """The components: every body type's schema, generated from the type."""
    _, components = publish_schemas(_publish_types(settings))
    models: list[Any] = [Published, PublishedBatch, Status, Health, DashboardStats, Error]
    if settings.channels:
        models += channel_types
    _, generated = schema_components([*models, StreamEvent])
    components.update(generated)
    # The codes are listed here rather than typed as a Literal: ERROR_CODES is their registry.
    components["Error"]["properties"]["error"]["enum"] = sorted(ERROR_CODES)
    return components


def _publish_types(settings: HubSettings) -> Any:
    return publish_types(
        max_topics=settings.max_topics,
        max_batch=settings.max_batch,
        max_topic_length=settings.max_topic_length,
        private=settings.auth != "none",
    )


def _events_operation(settings: HubSettings) -> dict[str, Any]:
    (topic,), _ = schema_components([topic_type(settings.max_topic_length)])
    last_event_id = {"type": "string", "maxLength": settings.max_last_event_id_length}
    return {
        "summary": "Subscribe to topics (Server-Sent Events)",
        "description": (
            "Opens a `text/event-stream`. Every event carries an `id:` line (and an `event:` "
            "line when published with one). Reconnect with the last id seen (browsers send the "
            "`Last-Event-ID` header themselves) to receive every retained event after it, "
            "exactly once, then live events. If that id cannot be resumed (malformed, unknown, "
            "or older than the history) the response has an `SSEHub-Reset` header and the "
            "stream starts with an `ssehub.reset` event whose data is "
            '`{"reason": "malformed"|"unknown"|"expired"}`. '
            f"A comment line is sent every {settings.ping:g} s while idle."
        ),
        "parameters": [
            {
                "name": "topic",
                "in": "query",
                "required": True,
                "description": "A topic; repeat for several (duplicates count against "
                f"`max_topics`, {settings.max_topics}). A topic with `*` is a pattern: `*` "
                "matches any run of characters, `/` included (`orders/*` receives `orders/1` "
                "and `orders/1/items`, not `orders`), as in the grants; resume covers every "
                "topic it matched. With authentication on, a pattern needs a grant covering "
                "all it can match (`*`, the pattern itself, or a prefix grant `p*` of it). At "
                f"most `max_patterns` ({settings.max_patterns}) patterns per subscription.",
                "schema": {
                    "type": "array",
                    "items": topic,
                    "minItems": 1,
                    "maxItems": settings.max_topics,
                },
                "style": "form",
                "explode": True,
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "Resume after this id (takes precedence over `lastEventId`).",
                "schema": last_event_id,
            },
            {
                "name": "lastEventId",
                "in": "query",
                "required": False,
                "description": "Resume after this id (for the first connection of a page).",
                "schema": last_event_id,
            },
        ],
        "responses": {
            "200": {
                "description": "The event stream: one `StreamEvent` per event.",
                "headers": {
                    "SSEHub-Reset": {
                        "description": "Present when the Last-Event-ID could not be resumed: "
                        "`malformed`, `unknown` or `expired`.",
                        "schema": {"type": "string", "enum": ["malformed", "unknown", "expired"]},
                    }
                },
                "content": {
                    "text/event-stream": {"schema": {"$ref": "#/components/schemas/StreamEvent"}}
                },
            },
        },
    }


def _publish_operation(settings: HubSettings) -> dict[str, Any]:
    body, _ = publish_schemas(_publish_types(settings))
    return {
        "summary": "Publish one event, or a batch",
        "description": (
            "A JSON object publishes one event. A JSON array publishes a batch: it is validated "
            "entirely first, then published in order, all or nothing; nothing of a rejected "
            f"batch is published. At most {settings.max_batch} events per batch and "
            f"{settings.max_body_size} bytes per body (`max_body_size`)."
        ),
        "parameters": [
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": "Names this publication: a retry with the same key within the "
                "history window stores nothing and answers the first result (its id). In a "
                "batch, event `i` without its own `idempotency_key` gets a key derived from this "
                "one and `i` (never equal to a key a client can name). After "
                'a 504 (`"outcome": "unknown"`) or a lost connection, retry with the same key.',
                "schema": schema_components([IdempotencyKey])[0][0],
            }
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {
                "description": "Published: `Published` for an object, `PublishedBatch` for an "
                "array. A repeated idempotency key answers the first publication's id.",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Published"},
                                {"$ref": "#/components/schemas/PublishedBatch"},
                            ]
                        }
                    }
                },
            },
        },
    }


def _operations_paths(settings: HubSettings) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    if settings.metrics:
        paths["/metrics"] = {
            "get": {
                "summary": "Prometheus metrics",
                "description": "Connections, subscribers, events published, delivered and "
                "dropped, slow-consumer disconnects, replays, resets, publish latency and "
                "backend health, in the Prometheus text format (no per-topic labels).",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
    if settings.dashboard:
        paths["/"] = {
            "get": {
                "summary": "The live dashboard",
                "responses": {
                    "200": {
                        "description": "A self-contained HTML page (strict CSP).",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
        paths["/dashboard/stats"] = {
            "get": {
                "summary": "Statistics for the dashboard",
                "description": "Like /status, plus per-topic event counters (`events`: "
                "events fanned out here since the topic gained its first subscriber) for "
                "rates; at most 200 topics, most subscribers first.",
                "responses": {"200": _json("The statistics.", "DashboardStats")},
            }
        }
    return paths


def _add_error_responses(paths: dict[str, Any], settings: HubSettings) -> None:
    """Add every error response each operation can answer (from the one table of codes)."""
    codes = operation_codes(settings)
    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status, response in error_responses(codes.get((path, method), ())).items():
                if status in responses:  # a status also answered with another body (503)
                    ours = response["content"]["application/json"]["schema"]
                    theirs = responses[status]["content"]["application/json"]["schema"]
                    responses[status]["content"]["application/json"]["schema"] = {
                        "anyOf": [theirs, ours]
                    }
                    responses[status]["description"] += " " + response["description"]
                else:
                    responses[status] = response
            operation["responses"] = dict(sorted(responses.items()))


def openapi_document(settings: HubSettings, *, server_url: str = "/") -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the hub configured by ``settings``.

    Args:
        settings: the hub's settings (limits appear in the document; ``docs`` decides whether
            ``/openapi.json`` and ``/docs`` are listed).
        server_url: where the hub is mounted (the request's ``root_path``, or ``/``).

    Returns:
        The document as JSON-ready dicts and lists.
    """
    paths: dict[str, Any] = {
        "/events": {"get": _events_operation(settings)},
        "/publish": {"post": _publish_operation(settings)},
        "/status": {
            "get": {
                "summary": "Topics, subscribers and counters",
                "responses": {"200": _json("The hub's status.", "Status")},
            }
        },
        "/health": {
            "get": {
                "summary": "Health, with a backend check",
                "description": "200 `ok` while serving; 200 `degraded` while the backend does "
                "not answer (Redis PING within 1 s; checked at most once a second); 503 once "
                "shutdown has started (draining), so load balancers stop routing new clients "
                "here, or while the broker is not running.",
                "responses": {
                    "200": _json("Serving (`ok` or `degraded`).", "Health"),
                    "503": _json("`draining` or `unavailable`.", "Health"),
                },
            }
        },
        "/livez": {
            "get": {
                "summary": "Liveness probe",
                "description": "Always 200 `alive`: the process serves requests. Never touches "
                "the backend, stays 200 while draining.",
                "security": [],
                "responses": {"200": _json("Alive.", "Health")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness probe",
                "description": "200 `ready` when the broker runs, the backend answers (Redis "
                "PING within 1 s, checked at most once a second) and the hub is not draining; "
                "503 otherwise.",
                "security": [],
                "responses": {
                    "200": _json("Ready.", "Health"),
                    "503": _json("`draining`, `unavailable` or `degraded`.", "Health"),
                },
            }
        },
    }
    if settings.docs:
        paths["/openapi.json"] = {
            "get": {
                "summary": "This OpenAPI document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
        paths["/docs"] = {
            "get": {
                "summary": "Human-readable API documentation",
                "responses": {
                    "200": {
                        "description": "An HTML page rendering this document.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
    # -- channels: their operations
    if settings.channels:
        (name,), _ = schema_components([Name])
        paths.update(channel_paths(settings, name))
    # -- operations: metrics and the dashboard
    paths.update(_operations_paths(settings))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "ssehub",
            "version": __version__,
            "description": "A Server-Sent Events hub: publish events to topics over HTTP, "
            "subscribe with any EventSource, resume exactly with Last-Event-ID. Every error "
            'is JSON: `{"error": "<code>", "detail": "<text>"}`. Authentication is not enabled.',
        },
        "servers": [{"url": server_url or "/"}],
        "paths": paths,
        "components": {"schemas": _schemas(settings)},
    }
    _add_error_responses(paths, settings)
    add_security(document, settings)  # -- security: schemes and requirements
    return document


DOCS_HTML: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ssehub API</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1d1d1f; }
h1 { margin-bottom: 0; }
.op { border: 1px solid #d0d0d7; border-radius: 6px; margin: 1rem 0; padding: .5rem 1rem; }
.method { font-weight: bold; text-transform: uppercase; margin-right: .5rem; color: #0b5394; }
.path { font-family: ui-monospace, monospace; font-weight: bold; }
table { border-collapse: collapse; margin: .5rem 0; }
td, th { border: 1px solid #e0e0e6; padding: .2rem .5rem; text-align: left; vertical-align: top; }
pre { background: #f5f5f7; padding: .5rem; overflow-x: auto; font-size: 13px; }
</style>
</head>
<body>
<h1 id="title">ssehub API</h1>
<p id="description"></p>
<p><a href="openapi.json">openapi.json</a></p>
<div id="ops">Loading&hellip;</div>
<script>
"use strict";
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}
function row(table, cells, tag) {
  const tr = el("tr");
  for (const cell of cells) tr.appendChild(el(tag || "td", String(cell)));
  table.appendChild(tr);
}
fetch("openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("description").textContent = doc.info.description;
  const ops = document.getElementById("ops");
  ops.textContent = "";
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const box = el("section", undefined, "op");
      const head = el("h2");
      head.appendChild(el("span", method, "method"));
      head.appendChild(el("span", path, "path"));
      box.appendChild(head);
      box.appendChild(el("p", op.summary));
      if (op.description) box.appendChild(el("p", op.description));
      if (op.parameters) {
        const table = el("table");
        row(table, ["parameter", "in", "required", "description"], "th");
        for (const p of op.parameters) row(table, [p.name, p.in, p.required ? "yes" : "no",
                                                   p.description || ""]);
        box.appendChild(table);
      }
      if (op.requestBody) {
        box.appendChild(el("h3", "Request body"));
        box.appendChild(el("pre", JSON.stringify(op.requestBody.content, null, 2)));
      }
      const table = el("table");
      row(table, ["status", "response"], "th");
      for (const [status, resp] of Object.entries(op.responses)) row(table, [status,
                                                                     resp.description]);
      box.appendChild(table);
      ops.appendChild(box);
    }
  }
  const schemas = el("section", undefined, "op");
  schemas.appendChild(el("h2", "Schemas"));
  schemas.appendChild(el("pre", JSON.stringify(doc.components.schemas, null, 2)));
  ops.appendChild(schemas);
}).catch(err => {
  document.getElementById("ops").textContent = "Could not load openapi.json: " + err;
});
</script>
</body>
</html>
"""
"""The ``/docs`` page: self-contained HTML, no external resources."""
