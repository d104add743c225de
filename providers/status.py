"""The one normalized delivery status vocabulary every backend maps into."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    QUEUED = "queued", _("Queued")
    SUBMITTING = "submitting", _("Submitting")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")
    UNDELIVERABLE = "undeliverable", _("Undeliverable")
    EXPIRED = "expired", _("Expired")
    REJECTED = "rejected", _("Rejected")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")
    CANCELLED = "cancelled", _("Cancelled")
    UNKNOWN = "unknown", _("Unknown")


FINAL_STATUSES = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.READ,
        DeliveryStatus.UNDELIVERABLE,
        DeliveryStatus.EXPIRED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.FAILED,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.CANCELLED,
    }
)

# Statuses after which the cascade moves to the next channel.
FAILURE_STATUSES = frozenset(
    {
        DeliveryStatus.UNDELIVERABLE,
        DeliveryStatus.EXPIRED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.FAILED,
    }
)

# Progress order: a status may only move to a higher rank, so a late 'sent'
# callback never overwrites 'delivered'. 'delivered' may still become 'read';
# failures share the top rank with 'read' so nothing moves past them.
STATUS_RANK: dict[str, int] = {
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.UNKNOWN: 1,
    DeliveryStatus.QUEUED: 2,
    DeliveryStatus.SUBMITTING: 3,
    DeliveryStatus.SENT: 4,
    DeliveryStatus.DELIVERED: 5,
    DeliveryStatus.READ: 6,
    DeliveryStatus.UNDELIVERABLE: 6,
    DeliveryStatus.EXPIRED: 6,
    DeliveryStatus.REJECTED: 6,
    DeliveryStatus.FAILED: 6,
    DeliveryStatus.SKIPPED: 6,
    DeliveryStatus.CANCELLED: 6,
}


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def can_move(current: str, new: str) -> bool:
    """Whether a delivery in `current` may take `new` (monotonic, finals are sticky).

    The only move out of a final status is delivered -> read.
    """
    if current == new:
        return False
    if current == DeliveryStatus.DELIVERED:
        return new == DeliveryStatus.READ
    if current in FINAL_STATUSES:
        return False
    return STATUS_RANK[new] > STATUS_RANK[current]
