"""The OpenAPI schema and the interactive docs page, served without any CDN."""

import json

import yaml  # noqa: F401 - drf-spectacular depends on PyYAML
from django.core.management import call_command


def test_the_schema_describes_the_four_endpoints_with_seed_examples(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {
        "/api/marketing/SendMessageProcess",
        "/api/client/ClientUpdateCommunication",
        "/api/marketing/MessageStatus",
        "/api/client/ClientEvent",
    }
    send = schema["paths"]["/api/marketing/SendMessageProcess"]["post"]
    body = send["requestBody"]["content"]
    assert {"application/json", "text/json", "application/xml", "text/xml"} <= set(body)
    assert "application/x-www-form-urlencoded" in body
    properties = body["application/json"]["schema"]["properties"]
    assert properties["CommunicationType"]["maximum"] == 255
    assert properties["CardPhoneClientList"]["items"]["properties"]["Bonus"]["type"] == "number"
    example = next(iter(body["application/json"]["examples"].values()))["value"]
    assert example["CommunicationType"] == 1 and len(example["CardPhoneClientList"]) == 2
    assert (
        "<SendMessageProcessRequest"
        in next(iter(body["application/xml"]["examples"].values()))["value"]
    )
    assert "format" not in {p["name"] for p in send.get("parameters", [])}
    assert {"200", "400", "401", "404", "413", "415", "422", "429"} <= set(send["responses"])


def test_the_schema_is_valid_openapi(db, capsys):
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json")
    assert json.loads(capsys.readouterr().out)["info"]["title"] == "Cascade partner API"


def test_the_docs_page_loads_its_assets_from_our_own_static_files(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "https://" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
