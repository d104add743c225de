"""The pages' scripts run under the Content-Security-Policy (config/middleware.py).

Chromium refuses whatever the policy forbids and says so on the console; each test
collects those lines and expects none, and checks that what the scripts do still
happens: the operator switcher, the builder's live count, the dashboard's polling,
the import's in-place answer, the admin, and the API docs' Swagger UI.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def refused(page):
    """What Chromium refused under the policy, as its console tells."""
    lines: list[str] = []
    page.on(
        "console",
        lambda message: (
            lines.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return lines


def test_the_pages_scripts_run_under_the_policy(page, live_server, login, refused, alice, world):
    login(page, live_server, "alice")
    # The switcher submits its form on change (app.js): alice works in every operator.
    page.goto(f"{live_server.url}/campaigns/")
    with page.expect_navigation():
        page.locator("#operator-switch").select_option(label=world["operator"].name)
    expect(page.locator("#operator-switch option:checked")).to_have_text(world["operator"].name)

    # The builder counts the audience as it is set, and swaps segment and list fields.
    page.goto(f"{live_server.url}/campaigns/new/")
    expect(page.locator("#audience-count")).not_to_contain_text("Counting")
    page.locator("input[name=audience_kind][value=list]").check()
    expect(page.locator("#segment-fields")).to_be_hidden()
    expect(page.locator("#list-fields")).to_be_visible()

    # The dashboard asks for its numbers.
    campaign = world["campaign"]
    with page.expect_response(re.compile(rf"/campaigns/{campaign.pk}/stats\.json$")) as stats:
        page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    assert stats.value.ok

    assert not refused, refused


def test_the_import_answers_in_place_under_the_policy(
    page, live_server, login, refused, alice, world, tmp_path
):
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/campaigns/")
    with page.expect_navigation():
        page.locator("#operator-switch").select_option(label=world["operator"].name)
    upload = tmp_path / "clients.csv"
    upload.write_text("phone,first_name\n79165550101,Ivan\n79165550102,Olga\n")
    page.goto(f"{live_server.url}/clients/import/")
    page.evaluate("window.sameDocument = true")
    page.get_by_label("File").set_input_files(upload)
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-result")).to_contain_text("Imported clients.csv")
    # Shown by client-import.js in the same document, not by a plain form post.
    assert page.evaluate("window.sameDocument") is True
    assert not refused, refused


def test_the_admin_and_the_api_docs_work_under_the_policy(
    page, live_server, login, refused, alice, world
):
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/admin/clients/client/{world['client'].pk}/change/")
    expect(page.locator("#client_form")).to_be_visible()
    page.goto(f"{live_server.url}/admin/clients/client/")
    # The changelist's action bar: "select all" checks every row (admin/js/actions.js).
    page.locator("#action-toggle").check()
    expect(page.locator("tr.selected")).not_to_have_count(0)

    response = page.goto(f"{live_server.url}/api/docs/")
    policy = response.headers["content-security-policy"].split(";")
    script_src = next(rule for rule in policy if rule.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src  # the starter script comes from ?script
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Cascade partner API")
    expect(page.locator(".opblock").first).to_be_visible()
    assert not refused, refused
