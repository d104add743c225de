"""System checks on provider accounts (run by `migrate` and `check --database default`).

A claim must end within its lease, or the sweeper takes its rows back while they are
still being sent. Dispatch sizes each claim so that every request timing out in turn
still fits (campaigns.claims.claim_size); an account whose single request may wait
longer than that cannot be made safe by any claim size, so it is refused here.
"""

from django.core.checks import Error, Tags, register
from django.db import DatabaseError
from django.utils.translation import gettext_lazy as _

from providers.limits import request_time_limit
from providers.models import ProviderAccount


@register(Tags.database)
def account_timeouts_fit_the_lease(app_configs=None, **kwargs):
    limit = request_time_limit()
    try:
        accounts = list(
            ProviderAccount.objects.filter(enabled=True, timeout_seconds__gt=limit).values_list(
                "pk", "name", "timeout_seconds"
            )
        )
    except DatabaseError:  # before the first migrate there is no table to look at
        return []
    return [
        Error(
            _(
                "Provider account %(name)s waits up to %(timeout)s s for an answer, longer than "
                "a claim may take (%(limit)g s: 80%% of CASCADE_CLAIM_LEASE_SECONDS or of half "
                "Q_TIMEOUT, the smaller)."
            )
            % {"name": name, "timeout": timeout, "limit": limit},
            hint=_(
                "Lower its timeout_seconds, or raise CASCADE_CLAIM_LEASE_SECONDS and Q_TIMEOUT."
            ),
            obj=f"ProviderAccount {pk}",
            id="providers.E001",
        )
        for pk, name, timeout in accounts
    ]
