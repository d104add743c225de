"""campaigns.partner: the send service behind SendMessageProcess, beyond what the API tests show."""

import threading

import pytest
from django.db import connection

from campaigns import partner
from campaigns.models import Delivery, Message, PartnerSend
from clients.services import issue_credential
from providers.models import ChannelRoute, ProviderAccount
from tests.conftest import make_client


def test_the_digest_leaves_the_credential_out():
    request = {"Client": 1, "TextMessage": "Hi"}
    assert partner.request_digest({**request, "Token": 123456789012345678, "Operator": 3}) == (
        partner.request_digest(request)
    )


def test_the_digest_ignores_key_order_and_format_details():
    a = partner.request_digest({"Client": 1, "TextMessage": "Hi", "Files": []})
    b = partner.request_digest({"TextMessage": "Hi", "Files": [], "Client": 1})
    assert a == b
    assert a != partner.request_digest({"Client": 2, "TextMessage": "Hi", "Files": []})


@pytest.mark.django_db(transaction=True)
def test_two_identical_requests_at_the_same_moment_send_once(sunrise, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's; SQLite serializes writers itself")
    monkeypatch.setattr("campaigns.queue.kick_account", lambda account_id: None)
    account = ProviderAccount.objects.create(
        operator=sunrise, name="Gateway", backend="cascade_gateway", channels=["sms"]
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=account)
    client = make_client(sunrise, allow_sms=True)
    credential = issue_credential(operator=sunrise, name="POS").credential
    request = {"CommunicationType": 1, "Client": client.pk, "TextMessage": "Once"}
    barrier = threading.Barrier(4)
    answers = []

    def call():
        barrier.wait()
        try:
            answers.append(
                partner.send_message_process(credential=credential, request=request).partner_send.pk
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 4 and len(set(answers)) == 1
    assert Message.objects.count() == 1 and Delivery.objects.count() == 1
    assert PartnerSend.objects.count() == 1
