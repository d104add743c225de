"""One-click unsubscribe (RFC 8058): signed links, headers and footer, consent history."""

import pytest
from django.test import Client as HttpClient

from campaigns import unsubscribe
from campaigns.models import Campaign, Message, MessageTemplate
from clients.models import Client, ConsentChange, Operator
from providers.backends.smtp import Backend as SmtpBackend
from providers.base import OutgoingMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def message():
    operator = Operator.objects.create(name="Shop")
    client = Client.objects.create(
        operator=operator, email="a@example.com", allow_email=True, phone="79160000001"
    )
    template = MessageTemplate.objects.create(operator=operator, name="T", text="Hi")
    campaign = Campaign.objects.create(
        operator=operator, name="Sale", template=template, channels=["email"]
    )
    return Message.objects.create(
        operator=operator, campaign=campaign, client=client, recipient_key="client:1"
    )


def test_a_post_to_the_signed_link_turns_email_consent_off_with_history(message):
    url = unsubscribe.url_for(message.pk)
    path = "/u/" + url.rsplit("/u/", 1)[1]
    http = HttpClient(enforce_csrf_checks=True)
    page = http.get(path)
    assert page.status_code == 200 and b"Unsubscribe from promotional email?" in page.content
    assert Client.objects.get().allow_email is True  # a mail scanner's GET changes nothing
    one_click = http.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert one_click.status_code == 200 and b"You are unsubscribed" in one_click.content
    assert Client.objects.get().allow_email is False
    change = ConsentChange.objects.get(flag="allow_email")
    assert (change.old_value, change.new_value, change.source) == (True, False, "unsubscribe")
    assert str(message.pk) in change.reason
    assert http.post(path).status_code == 200  # twice: nothing more changes
    assert ConsentChange.objects.filter(flag="allow_email").count() == 1


def test_a_tampered_or_foreign_token_is_refused(message):
    token = unsubscribe.token_for(message.pk)
    http = HttpClient()
    other_id = token.replace(f"{message.pk}:", f"{message.pk + 1}:", 1)
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), other_id, "nothing"):
        assert http.post(f"/u/{bad}").status_code == 404
    assert Client.objects.get().allow_email is True
    assert not ConsentChange.objects.exists()


def test_the_email_carries_the_list_unsubscribe_headers_and_a_footer():
    backend = SmtpBackend.__new__(SmtpBackend)
    outgoing = OutgoingMessage(
        delivery_id=1,
        idempotency_key="100",
        channel="email",
        email="a@example.com",
        title="Sale",
        text="Hi",
        html="<p>Hi</p>",
        unsubscribe_url="https://cascade.example/u/1:abc",
    )
    _id, email = backend.build(outgoing, "shop@example.com")
    assert email.extra_headers["List-Unsubscribe"] == "<https://cascade.example/u/1:abc>"
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.body.endswith("Unsubscribe: https://cascade.example/u/1:abc")
    assert 'href="https://cascade.example/u/1:abc"' in email.alternatives[0][0]
