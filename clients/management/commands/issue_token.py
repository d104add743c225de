"""Print a new partner credential, so partners and scripts can start without the admin."""

from django.core.management.base import BaseCommand, CommandError

from clients.models import ApiCredential, Operator
from clients.services import issue_credential


class Command(BaseCommand):
    help = "Issue a partner API Token (or, with --site-code, a widget SiteCode) for an operator."

    def add_arguments(self, parser):
        parser.add_argument("--operator", type=int, required=True, help="Operator id.")
        parser.add_argument(
            "--site-code", action="store_true", help="Issue a SiteCode for a widget instead."
        )
        parser.add_argument("--name", default="", help="Who holds it (shown in the admin).")

    def handle(self, *args, operator, site_code, name, **options):
        try:
            operator_row = Operator.objects.get(pk=operator)
        except Operator.DoesNotExist as error:
            raise CommandError(f"No operator with id {operator}.") from error
        kind = ApiCredential.Kind.SITE_CODE if site_code else ApiCredential.Kind.TOKEN
        issued = issue_credential(
            operator=operator_row,
            name=name or f"issued by manage.py issue_token ({kind})",
            kind=kind,
        )
        field = "SiteCode" if site_code else "Token"
        # The secret is shown once: only its digest is stored.
        self.stdout.write(f"Operator={operator_row.pk}\n{field}={issued.secret}\n")
