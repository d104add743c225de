"""The dispatch pipeline end to end against running simulators, driven step by step.

No qcluster here: the tests call the same functions the tasks call (fan-out,
dispatch, sweep) so each step can be asserted; the qcluster runs are in the
benchmark and chaos suites.
"""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import claims, counters, dispatch, fanout, outcomes, services
from campaigns.models import Campaign, Delivery, Message
from clients.models import Client
from providers.models import ChannelRoute, ProviderAccount
from tests.campaigns.driving import campaign_for, drive, make_clients

pytestmark = pytest.mark.usefixtures("no_background_tasks")


def test_fan_out_skips_recipients_without_consent_or_address_with_the_reason(setup):
    operator = setup["operator"]
    make_clients(operator, 3, allow_sms=True)
    Client.objects.create(operator=operator, phone="79160000099", allow_sms=False)
    Client.objects.create(operator=operator, phone="", email="x@example.com", allow_sms=True)
    campaign = campaign_for(setup, ["viber", "sms"])
    result = fanout.fan_out(campaign.pk)
    assert (result.messages, result.queued, result.skipped) == (5, 3, 2)
    skipped = Delivery.objects.filter(campaign=campaign, status="skipped")
    assert sorted(skipped.values_list("error_code", flat=True)) == ["no_address", "no_consent"]
    assert Message.objects.filter(campaign=campaign, status="skipped").count() == 2
    # Running it again creates nothing new.
    fanout.fan_out(campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(fanned_out_at=None)
    fanout.fan_out(campaign.pk)
    assert Message.objects.filter(campaign=campaign).count() == 5
    assert Delivery.objects.filter(campaign=campaign).count() == 5
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


@pytest.mark.parametrize("flag", ["allow_sms", "allow_email"])
def test_each_consent_flag_is_respected_both_ways(setup, flag):
    operator = setup["operator"]
    channel = "sms" if flag == "allow_sms" else "email"
    ChannelRoute.objects.get_or_create(
        operator=operator, channel="email", account=setup["pulse"], priority=1
    )
    Client.objects.create(
        operator=operator, phone="79160000001", email="a@example.com", **{flag: True}
    )
    Client.objects.create(
        operator=operator, phone="79160000002", email="b@example.com", **{flag: False}
    )
    campaign = campaign_for(setup, [channel])
    fanout.fan_out(campaign.pk)
    statuses = dict(
        Delivery.objects.filter(campaign=campaign).values_list("message__phone", "status")
    )
    assert statuses == {"79160000001": "queued", "79160000002": "skipped"}


def test_a_campaign_is_sent_rendered_and_reaches_final_statuses(setup):
    make_clients(setup["operator"], 20, allow_sms=True)
    ChannelRoute.objects.filter(channel="sms").update(account=setup["gateway"])
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)
    assert drive(campaign, [setup["gateway"]])
    sim = setup["gateway_sim"]
    assert sim.stats()["accepted"] == 20 and sim.stats()["duplicate_keys"] == {}
    assert any("SMS: hi C3" in str(m["request"]) for m in sim_messages(sim))
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        "delivered"
    }
    assert Message.objects.filter(campaign=campaign, status="delivered").count() == 20
    services.sweep_once()
    campaign.refresh_from_db()
    assert campaign.state == "done"
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)
    cost = counters.recost(campaign.pk)
    assert cost and all(amount > 0 for amount in cost.values())


def sim_messages(sim):
    with sim.lock:
        return [{"request": m.request, "key": m.key} for m in sim.messages.values()]


def test_viber_undeliverable_falls_through_to_sms(setup):
    make_clients(setup["operator"], 10, allow_sms=True)
    setup["gateway_sim"].config.outcome_mix = {"undeliverable": 1.0}
    campaign = campaign_for(setup, ["viber", "sms"])
    ChannelRoute.objects.filter(channel="sms").update(account=setup["pulse"])
    fanout.fan_out(campaign.pk)
    deadline = time.monotonic() + 15
    while (
        time.monotonic() < deadline
        and Delivery.objects.filter(campaign=campaign, channel="sms").count() < 10
    ):
        dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
        time.sleep(0.1)
        services.sweep_once()
    dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=2)
    viber = Delivery.objects.filter(campaign=campaign, channel="viber")
    sms = Delivery.objects.filter(campaign=campaign, channel="sms")
    assert set(viber.values_list("status", flat=True)) == {"undeliverable"}
    assert sms.count() == 10 and set(sms.values_list("status", flat=True)) == {"sent"}
    assert setup["pulse_sim"].stats()["accepted"] == 10
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def test_native_cascade_goes_in_one_request_and_maps_back(setup):
    make_clients(setup["operator"], 5, allow_sms=True)
    ChannelRoute.objects.filter(channel="sms").update(account=setup["gateway"])
    sim = setup["gateway_sim"]
    sim.config.outcome_mix = {"undeliverable": 1.0}
    campaign = campaign_for(setup, ["viber", "sms"])
    fanout.fan_out(campaign.pk)
    dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
    requests_after_send = sim.stats()["requests"]
    assert requests_after_send == 1  # five recipients, both channels, one request
    native = list(
        Delivery.objects.filter(campaign=campaign).values_list("native_channels", flat=True)
    )
    assert native == [["sms"]] * 5
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and Message.objects.filter(campaign=campaign, status="in_progress").exists()
    ):
        time.sleep(0.1)
        services.sweep_once()
    legs = Delivery.objects.filter(campaign=campaign, channel="sms")
    assert legs.count() == 5
    assert set(
        Delivery.objects.filter(campaign=campaign, channel="viber").values_list("status", flat=True)
    ) == {"undeliverable"}
    assert set(legs.values_list("status", flat=True)) <= {
        "undeliverable",
        "delivered",
        "read",
        "expired",
    }
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def test_repeated_5xx_fails_over_to_the_second_account(setup, monkeypatch):
    operator = setup["operator"]
    make_clients(operator, 3, allow_sms=True)
    ChannelRoute.objects.create(
        operator=operator, channel="sms", account=setup["gateway"], priority=2
    )
    setup["pulse_sim"].config.error_rate = 1.0
    setup["pulse_sim"].config.error_status = 503  # turned away: safe to send elsewhere
    monkeypatch.setattr(outcomes, "backoff", lambda attempts: 0)
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)
    for _ in range(outcomes.FAILOVER_AFTER_ATTEMPTS + 1):
        dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=1)
    dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert set(deliveries.values_list("account_id", flat=True)) == {setup["gateway"].pk}
    assert set(deliveries.values_list("status", flat=True)) == {"sent"}
    assert setup["gateway_sim"].stats()["accepted"] == 3


def test_pause_stops_claims_resume_restarts_cancel_cancels_the_rest(setup):
    make_clients(setup["operator"], 30, allow_sms=True)
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)
    services.pause(campaign_id=campaign.pk)
    assert dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=1) == 0
    services.resume(campaign_id=campaign.pk)
    setup["pulse"].max_batch = 10
    setup["pulse"].save()
    claims.claim(setup["pulse"].pk, 10)  # ten in flight, as if a worker were sending them
    services.cancel(campaign_id=campaign.pk)
    statuses = Counter_of(campaign)
    assert statuses == {"submitting": 10, "cancelled": 20}
    assert dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=1) == 0
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)
    with pytest.raises(services.TransitionError):
        services.resume(campaign_id=campaign.pk)


def Counter_of(campaign):
    from collections import Counter

    return dict(
        Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite (the embedded demo database) splits bulk writes by its parameter limit",
)
def test_query_count_per_batch_is_constant(setup, monkeypatch):
    operator = setup["operator"]
    make_clients(operator, 510, allow_sms=True)
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)

    def queries_for(size):
        ids = claims.claim(setup["pulse"].pk, size)
        assert len(ids) == size
        with CaptureQueriesContext(connection) as captured:
            dispatch.send_batch(setup["pulse"], ids)
        return len(captured)

    assert queries_for(10) == queries_for(500)


def test_rate_limit_is_respected(setup):
    make_clients(setup["operator"], 30, allow_sms=True)
    pulse = setup["pulse"]
    pulse.rate_limit_per_second = 10
    pulse.save()
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)
    started = time.monotonic()
    assert dispatch.dispatch_account(pulse.pk, budget_seconds=10) == 30
    elapsed = time.monotonic() - started
    # A full bucket allows 10 at once, then 10 a second: 30 messages need ~2 s.
    assert elapsed >= 1.8
    with setup["pulse_sim"].lock:
        times = sorted(when for when, _ in setup["pulse_sim"].accept_log)
    for index in range(len(times) - 20):
        assert times[index + 20] - times[index] >= 1.8  # never more than 20 in under two seconds


def test_admin_actions_launch_pause_and_cancel(
    client, alice, setup, monkeypatch, django_capture_on_commit_callbacks
):
    launched = []
    monkeypatch.setattr("campaigns.queue.enqueue_fan_out", launched.append)
    campaign = Campaign.objects.create(
        operator=setup["operator"], name="Draft", template=setup["template"], channels=["sms"]
    )
    client.force_login(alice)
    url = "/admin/campaigns/campaign/"

    def act(action):
        return client.post(url, {"action": action, "_selected_action": [campaign.pk]}, follow=True)

    with django_capture_on_commit_callbacks(execute=True):
        page = act("launch")
    campaign.refresh_from_db()
    assert campaign.state == "running" and launched == [campaign.pk]
    assert b"Launched 1 campaign" in page.content
    act("pause")
    campaign.refresh_from_db()
    assert campaign.state == "paused"
    page = act("launch")
    assert b"cannot become running" in page.content
    act("cancel")
    campaign.refresh_from_db()
    assert campaign.state == "cancelled"


def test_a_step_past_its_ttl_expires_and_falls_through(setup):
    make_clients(setup["operator"], 4, allow_sms=True)
    # The gateway never settles the Viber step within its TTL; SMS goes by 1-pulse.
    setup["gateway_sim"].config.delivery_delay = 3600
    campaign = campaign_for(setup, ["viber", "sms"])
    fanout.fan_out(campaign.pk)
    dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
    Delivery.objects.filter(campaign=campaign, channel="viber").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    services.sweep_once()
    viber = Delivery.objects.filter(campaign=campaign, channel="viber")
    assert set(viber.values_list("status", flat=True)) == {"expired"}
    sms = Delivery.objects.filter(campaign=campaign, channel="sms")
    assert sms.count() == 4 and set(sms.values_list("status", flat=True)) == {"queued"}
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def test_delivered_but_unread_falls_through_when_read_is_final(setup):
    make_clients(setup["operator"], 3, allow_sms=True)
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}
    campaign = campaign_for(setup, ["viber", "sms"], read_is_final=True)
    fanout.fan_out(campaign.pk)
    dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
    deadline = time.monotonic() + 10
    viber = Delivery.objects.filter(campaign=campaign, channel="viber")
    while time.monotonic() < deadline and viber.exclude(status="delivered").exists():
        time.sleep(0.1)
        services.sweep_once()
    assert set(viber.values_list("status", flat=True)) == {"delivered"}
    assert not Delivery.objects.filter(campaign=campaign, channel="sms").exists()
    viber.update(expires_at=timezone.now() - timedelta(seconds=1))
    services.sweep_once()
    sms = Delivery.objects.filter(campaign=campaign, channel="sms")
    assert sms.count() == 3
    # Read is final: the same campaign without that option would have stopped at delivered.
    Campaign.objects.filter(pk=campaign.pk).update(read_is_final=False)
    services.sweep_once()
    assert Delivery.objects.filter(campaign=campaign, channel="sms").count() == 3


def test_polling_asks_about_each_delivery_at_most_once_a_minute(setup, monkeypatch):
    monkeypatch.setattr(services, "POLL_INTERVAL_SECONDS", 60)
    make_clients(setup["operator"], 5, allow_sms=True)
    setup["gateway_sim"].config.delivery_delay = 3600  # stays "send" (in progress)
    campaign = campaign_for(setup, ["viber"])
    fanout.fan_out(campaign.pk)
    dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
    before = setup["gateway_sim"].stats()["requests"]
    for _ in range(3):
        services.poll_statuses(timezone.now())
    assert setup["gateway_sim"].stats()["requests"] - before == 1


def test_a_report_that_beats_the_submit_answer_is_neither_undone_nor_counted_twice(
    setup, monkeypatch
):
    from campaigns.statuses import apply_status_events
    from providers.backends import pulse
    from providers.base import StatusEvent

    make_clients(setup["operator"], 6, allow_sms=True)
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)
    original_send = pulse.Backend.send

    def send_then_report_early(self, batch):
        results = original_send(self, batch)
        # The gateway's callback lands while our answer is still on its way back.
        apply_status_events(
            account_id=self.account.pk,
            events=[
                StatusEvent("delivered", "delivered", idempotency_key=m.idempotency_key)
                for m in batch
            ],
            source="callback",
        )
        return results

    monkeypatch.setattr(pulse.Backend, "send", send_then_report_early)
    dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=2)
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert set(deliveries.values_list("status", flat=True)) == {"delivered"}
    assert all(d.delivered_at and d.provider_message_id for d in deliveries)
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def sent_to(sim, phone_or_email):
    with sim.lock:
        return [m.key for m in sim.messages.values() if phone_or_email in str(m.request)]


def test_consent_withdrawn_while_paused_is_honoured_at_send_time(setup):
    from clients.services import change_consent

    make_clients(setup["operator"], 3, allow_sms=True)
    withdrawn = Client.objects.get(phone="79160000001")
    campaign = campaign_for(setup, ["viber", "sms"])
    fanout.fan_out(campaign.pk)  # all three queued: they had consented
    services.pause(campaign_id=campaign.pk)
    change_consent(client_id=withdrawn.pk, flags={"allow_sms": False}, source="admin")
    services.resume(campaign_id=campaign.pk)
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}
    assert drive(campaign, [setup["gateway"], setup["pulse"]])
    for sim in (setup["gateway_sim"], setup["pulse_sim"]):
        assert sent_to(sim, "79160000001") == []
    assert len(sent_to(setup["gateway_sim"], "7916000000")) == 2
    skipped = Delivery.objects.get(message__client=withdrawn)  # no SMS step was made either
    assert (skipped.channel, skipped.status, skipped.error_code) == (
        "viber",
        "skipped",
        "no_consent",
    )
    assert Message.objects.get(client=withdrawn).status == "skipped"
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def test_a_step_skipped_at_send_time_falls_through_to_a_channel_still_allowed(setup):
    from clients.services import change_consent

    ChannelRoute.objects.create(
        operator=setup["operator"], channel="email", account=setup["pulse"], priority=1
    )
    client = Client.objects.create(
        operator=setup["operator"],
        phone="79160000007",
        email="still@example.com",
        allow_sms=True,
        allow_email=True,
    )
    campaign = campaign_for(setup, ["viber", "email"])
    fanout.fan_out(campaign.pk)
    change_consent(client_id=client.pk, flags={"allow_sms": False}, source="admin")
    dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
    dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=2)
    assert sent_to(setup["gateway_sim"], "79160000007") == []
    assert len(sent_to(setup["pulse_sim"], "still@example.com")) == 1
    steps = dict(Delivery.objects.filter(campaign=campaign).values_list("channel", "status"))
    assert steps == {"viber": "skipped", "email": "sent"}
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


@pytest.mark.parametrize(
    "fault", ["error_after_store_rate", "timeout_after_store_rate", "drop_after_store_rate"]
)
def test_a_lost_answer_from_1_pulse_is_waited_for_not_resent(setup, monkeypatch, fault):
    make_clients(setup["operator"], 3, allow_sms=True)
    ProviderAccount.objects.filter(pk=setup["pulse"].pk).update(timeout_seconds=1)
    sim = setup["pulse_sim"]
    sim.config.timeout_seconds = 1.5
    setattr(sim.config, fault, 1.0)  # 1-pulse stores the messages, then the answer is lost
    monkeypatch.setattr(outcomes, "backoff", lambda attempts: 0)
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)
    dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=5)
    setattr(sim.config, fault, 0.0)
    for _ in range(3):
        dispatch.dispatch_account(setup["pulse"].pk, budget_seconds=1)
        services.sweep_once()
    stats = sim.stats()
    assert stats["accepted"] == 3 and stats["duplicate_keys"] == {}  # counted on receipt
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert set(deliveries.values_list("status", flat=True)) == {"unknown"}
    assert "not resent" in deliveries.first().error_message
    # No report ever comes: the TTL ends the wait, still without a resend.
    deliveries.update(expires_at=timezone.now() - timedelta(seconds=1))
    services.sweep_once()
    assert set(deliveries.values_list("status", flat=True)) == {"expired"}
    assert sim.stats()["duplicate_keys"] == {}
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def test_an_smtp_connection_reset_mid_batch_sends_each_email_once(setup):
    from providers.simulators.smtp import SmtpSimulator

    smtp = SmtpSimulator().start()
    try:
        mail = ProviderAccount.objects.create(
            operator=setup["operator"],
            name="Mail",
            backend="smtp",
            credentials={"host": "127.0.0.1", "port": smtp.port, "from_email": "news@shop.ru"},
            channels=["email"],
            max_batch=50,
        )
        ChannelRoute.objects.create(
            operator=setup["operator"], channel="email", account=mail, priority=1
        )
        for n in range(4):
            Client.objects.create(
                operator=setup["operator"], email=f"c{n}@example.com", allow_email=True
            )
        smtp.reset_after_mails = {2}
        campaign = campaign_for(setup, ["email"])
        fanout.fan_out(campaign.pk)
        dispatch.dispatch_account(mail.pk, budget_seconds=2)
        statuses = sorted(
            Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)
        )
        assert statuses == ["delivered", "queued", "queued", "unknown"]
        Delivery.objects.filter(status="queued").update(next_attempt_at=timezone.now())  # backoff
        dispatch.dispatch_account(mail.pk, budget_seconds=2)
        stats = smtp.stats()
        assert stats["duplicate_keys"] == {} and stats["accepted"] == 4
        statuses = sorted(
            Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)
        )
        assert statuses == ["delivered", "delivered", "delivered", "unknown"]
        assert counters.counts(campaign.pk) == counters.recount(campaign.pk)
    finally:
        smtp.stop()


def test_a_channel_without_a_route_is_skipped_with_no_route_not_a_crash(setup):
    ChannelRoute.objects.all().delete()
    make_clients(setup["operator"], 2, allow_sms=True)
    campaign = campaign_for(setup, ["sms"])
    result = fanout.fan_out(campaign.pk)
    assert (result.messages, result.skipped) == (2, 2)
    assert set(Delivery.objects.filter(campaign=campaign).values_list("error_code", flat=True)) == {
        "no_route"
    }
