"""The OpenAPI document describes the hub's security as configured."""

from __future__ import annotations

from ssehub.hub import HubSettings, openapi_document

from .support import SECRET


def test_auth_on_lists_schemes_requirements_and_refusals() -> None:
    settings = HubSettings(auth="jwt", jwt_key=SECRET, auth_query_token=True)
    document = openapi_document(settings)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["bearerFormat"] == "JWT"
    assert schemes["cookie"]["name"] == "ssehub_token"
    assert schemes["query"]["name"] == "token"
    assert {name for item in document["security"] for name in item} == set(schemes)
    for path, method in (("/events", "get"), ("/publish", "post")):
        responses = document["paths"][path][method]["responses"]
        assert {"401", "403", "429"} <= set(responses)
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "401" in document["paths"]["/status"]["get"]["responses"]
    private = document["components"]["schemas"]["PublishEvent"]["properties"]["private"]
    assert private["type"] == "boolean"
    assert "Authentication is on" in document["info"]["description"]


def test_auth_off_has_no_schemes_but_documents_limits() -> None:
    document = openapi_document(HubSettings(max_last_event_id_length=100))
    assert "securitySchemes" not in document["components"]
    assert "security" not in document
    events = document["paths"]["/events"]["get"]
    assert "429" in events["responses"]
    assert "401" not in events["responses"]
    lengths = {p["name"]: p["schema"].get("maxLength") for p in events["parameters"]}
    assert lengths["Last-Event-ID"] == 100
    assert "Authentication is not enabled." in document["info"]["description"]
