"""Cascade's own addition to the partner API: where a `MessageId` has got to.

LCManager had no way to ask; partners polling for delivery asked for one. The
contract is written in the same DataContract style as the LCManager methods,
in a Cascade namespace, so the same parsers, renderers and clients serve it.
"""

from config.lcmanager.schemas import ABSTRACTIONS_NAMESPACE, Contract, Field

CASCADE_NAMESPACE = "http://schemas.datacontract.org/2004/07/Cascade.PartnerApi"

MESSAGE_STATUS_REQUEST = Contract(
    root="MessageStatusRequest",
    namespace=CASCADE_NAMESPACE,
    base_namespace=ABSTRACTIONS_NAMESPACE,
    fields=(
        Field("MessageId", "integer", description="The MessageId SendMessageProcess answered."),
        Field("Operator", "integer", inherited=True, description="Operator id."),
        Field("Token", "integer", inherited=True, description="Partner token."),
        Field("SiteCode", "string", inherited=True, description="Widget site code."),
    ),
)

MESSAGE_STATUS_STEP = Contract(
    root="MessageStatusResponse.MessageStatusStep",
    namespace=CASCADE_NAMESPACE,
    fields=(
        Field("Step", "integer", description="Position in the cascade, from 0."),
        Field("Channel", "string", description="sms, email, push, viber, vk, …"),
        Field("Status", "string", description="pending … delivered, read, undeliverable, …"),
        Field("ErrorCode", "string", description="Why it failed or was skipped, if it did."),
        Field("ErrorMessage", "string", description="The same, in words."),
        Field("CreatedAt", "string", description="ISO 8601, UTC."),
        Field("SubmittedAt", "string", description="Accepted by the gateway."),
        Field("DeliveredAt", "string", description="Reported delivered."),
        Field("ReadAt", "string", description="Reported read."),
        Field("FinalAt", "string", description="Reached a final status."),
        Field("Parts", "integer", description="SMS parts billed."),
        Field("Price", "decimal", description="Cost reported by the gateway."),
        Field("Currency", "string", description="ISO 4217."),
    ),
)

MESSAGE_STATUS_TOTAL = Contract(
    root="MessageStatusResponse.MessageStatusTotal",
    namespace=CASCADE_NAMESPACE,
    fields=(
        Field("Channel", "string", description="Channel."),
        Field("Status", "string", description="Status."),
        Field("Count", "integer", description="Deliveries in that status."),
    ),
)

MESSAGE_STATUS_RESPONSE = Contract(
    root="MessageStatusResponse",
    namespace=CASCADE_NAMESPACE,
    base_namespace=ABSTRACTIONS_NAMESPACE,
    fields=(
        Field("MessageId", "integer", description="As asked."),
        Field(
            "Status",
            "string",
            description="A message's status, or a list's campaign state (running, done, …).",
        ),
        Field("Steps", "list", item=MESSAGE_STATUS_STEP, description="A message's steps."),
        Field("Totals", "list", item=MESSAGE_STATUS_TOTAL, description="A list's deliveries."),
        Field("ErrorCode", "integer", inherited=True, description="0 on success."),
        Field("Message", "string", inherited=True, description="What went wrong, if anything."),
    ),
)

CLIENT_EVENT_REQUEST = Contract(
    root="ClientEventRequest",
    namespace=CASCADE_NAMESPACE,
    base_namespace=ABSTRACTIONS_NAMESPACE,
    fields=(
        Field("Client", "integer", description="Participant (client) id."),
        Field("Event", "string", description="purchase, registration or bonus."),
        Field(
            "OccurredAt",
            "string",
            description="ISO 8601 with an offset, e.g. 2026-12-07T10:15:00+03:00; absent: now.",
        ),
        Field("Card", "integer", description="bonus: the card whose balance changed."),
        Field("Bonus", "decimal", description="bonus: the card's balance now."),
        Field(
            "BonusExpiresAt",
            "string",
            description="bonus: when the balance expires, ISO 8601; absent: it does not.",
        ),
        Field("Operator", "integer", inherited=True, description="Operator id."),
        Field("Token", "integer", inherited=True, description="Partner token."),
        Field("SiteCode", "string", inherited=True, description="Widget site code."),
    ),
)

CLIENT_EVENT_RESPONSE = Contract(
    root="ClientEventResponse",
    namespace=CASCADE_NAMESPACE,
    base_namespace=ABSTRACTIONS_NAMESPACE,
    fields=(
        Field("EventId", "integer", description="Id of the recorded event."),
        Field("ErrorCode", "integer", inherited=True, description="0 on success."),
        Field("Message", "string", inherited=True, description="What went wrong, if anything."),
    ),
)
