"""How long a request may wait on a gateway: what the lease and the task queue allow.

Shared by dispatch (claim sizes), the system check and the admin (account timeouts);
a leaf, so that models, checks and the engine can all import it.
"""

from django.conf import settings

# Of a claim's time, what its requests may spend waiting on the gateway; the rest is
# for reading and writing the rows.
CLAIM_TIME_FOR_REQUESTS = 0.8


def request_time_limit() -> float:
    """The longest one request may wait: within the lease and the dispatcher's task."""
    return CLAIM_TIME_FOR_REQUESTS * min(
        settings.CASCADE_CLAIM_LEASE_SECONDS, settings.Q_CLUSTER["timeout"] / 2
    )
