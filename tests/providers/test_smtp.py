"""The SMTP backend against a real SMTP server (aiosmtpd) on loopback."""

from types import SimpleNamespace

import pytest

from providers.backends.smtp import Backend
from providers.base import ConfigurationError, OutgoingMessage, ProviderError
from providers.simulators.smtp import SmtpSimulator


@pytest.fixture
def smtp_server():
    server = SmtpSimulator().start()
    yield server
    server.stop()


def account_for(server, **credentials):
    values = {"host": "127.0.0.1", "port": server.port, "from_email": "news@shop.example"}
    values.update(credentials)
    return SimpleNamespace(
        pk=None, name="Mail", credentials=values, sender_names={}, timeout_seconds=5, base_url=""
    )


def message(index, **fields):
    values = {
        "delivery_id": index,
        "idempotency_key": f"k{index}",
        "channel": "email",
        "email": f"client{index}@example.com",
        "title": "Weekend sale",
        "text": "Plain text",
        "html": "<p>HTML <b>text</b></p>",
    }
    values.update(fields)
    return OutgoingMessage(**values)


def test_it_sends_plain_and_html_alternatives(smtp_server):
    results = Backend(account_for(smtp_server)).send([message(1), message(2)])
    assert [r.accepted for r in results] == [True, True]
    assert [r.status for r in results] == ["delivered", "delivered"]
    assert len(smtp_server.received) == 2
    mail = smtp_server.received[0]
    assert mail.recipients == ["client1@example.com"]
    assert mail.message["Subject"] == "Weekend sale"
    assert mail.message["X-Cascade-Key"] == "k1"
    assert mail.message["Message-ID"].strip("<>") == results[0].provider_message_id
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in mail.message.walk()
        if not part.is_multipart()
    }
    assert parts == {"text/plain": "Plain text", "text/html": "<p>HTML <b>text</b></p>"}


def test_one_refused_recipient_does_not_sink_the_batch(smtp_server):
    smtp_server.refused_recipients.add("client2@example.com")
    smtp_server.deferred_recipients.add("client3@example.com")
    results = Backend(account_for(smtp_server)).send([message(1), message(2), message(3)])
    assert [r.accepted for r in results] == [True, False, False]
    assert (results[1].error_code, results[1].permanent) == ("550", True)
    assert (results[2].error_code, results[2].permanent) == ("451", False)
    assert [mail.recipients for mail in smtp_server.received] == [["client1@example.com"]]


def test_a_message_without_address_fails_permanently(smtp_server):
    result = Backend(account_for(smtp_server)).send([message(1, email="")])[0]
    assert not result.accepted and result.permanent and result.error_code == "no_address"


def test_an_unreachable_server_is_a_transient_error():
    closed = SimpleNamespace(port=9)  # discard port: nothing listens on loopback
    with pytest.raises(ProviderError) as error:
        Backend(account_for(closed)).send([message(1)])
    assert error.value.permanent is False


def test_missing_settings_name_the_setting_to_add(smtp_server):
    account = account_for(smtp_server)
    account.credentials.pop("from_email")
    with pytest.raises(ConfigurationError, match="from_email"):
        Backend(account).send([message(1)])


def test_a_connection_reset_mid_batch_keeps_what_was_accepted(smtp_server):
    smtp_server.reset_after_mails = {2}  # the second mail is stored, then the line drops
    results = Backend(account_for(smtp_server)).send([message(n) for n in (1, 2, 3, 4)])
    assert [(r.accepted, r.permanent, r.may_have_reached) for r in results] == [
        (True, True, False),  # accepted before the reset: recorded, not resent
        (False, False, True),  # on the wire when it dropped: the server may have it
        (False, False, False),  # never sent: safe to send again
        (False, False, False),
    ]
    assert [mail.message["X-Cascade-Key"] for mail in smtp_server.received] == ["k1", "k2"]
    assert "connection lost" in results[2].error_message


def test_a_reset_rate_stores_then_drops_and_the_stats_count_every_receipt(smtp_server):
    smtp_server.reset_rate = 1.0  # every mail: stored, then the line drops
    backend = Backend(account_for(smtp_server))
    first = backend.send([message(1), message(2)])
    with pytest.raises(ProviderError) as again:  # a batch of one fails as a whole
        backend.send([message(1)])  # the same key a second time, as a blind resend would
    assert [r.may_have_reached for r in first] + [again.value.may_have_reached] == [
        True,
        False,
        True,
    ]
    stats = smtp_server.stats()
    assert stats["faulted_after_store"] == 2
    assert stats["accepted"] == 2 and stats["duplicate_sends"] == {"k1": 2}
