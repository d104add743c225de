import pytest

from providers.status import FINAL_STATUSES, STATUS_RANK, DeliveryStatus, can_move, is_final


def test_every_status_has_a_rank():
    assert set(STATUS_RANK) == set(DeliveryStatus.values)


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("queued", "submitting", True),
        ("submitting", "sent", True),
        ("sent", "delivered", True),
        ("delivered", "read", True),
        ("sent", "undeliverable", True),
        ("unknown", "sent", True),
        ("delivered", "sent", False),  # a late 'sent' never overwrites 'delivered'
        ("read", "delivered", False),
        ("undeliverable", "delivered", False),  # finals are sticky
        ("delivered", "undeliverable", False),
        ("cancelled", "sent", False),
        ("sent", "sent", False),
        ("sent", "queued", False),
    ],
)
def test_transitions_are_monotonic(current, new, allowed):
    assert can_move(current, new) is allowed


def test_final_statuses_are_the_documented_ones():
    assert {s.value for s in FINAL_STATUSES} == {
        "delivered",
        "read",
        "undeliverable",
        "expired",
        "rejected",
        "failed",
        "skipped",
        "cancelled",
    }
    assert not is_final(DeliveryStatus.SENT)
