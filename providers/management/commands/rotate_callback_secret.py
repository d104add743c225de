"""Give an account a new callback secret and print the new callback URL, without the admin."""

from django.core.management.base import BaseCommand, CommandError

from providers import services
from providers.models import ProviderAccount


class Command(BaseCommand):
    help = (
        "Add a new callback secret to a provider account (it signs callback URLs from now on; "
        "the old ones stay valid) and print the new callback URL."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, required=True, help="Provider account id.")
        parser.add_argument(
            "--retire-old",
            action="store_true",
            help="Also drop the old secrets: callbacks signed with them get 403 at once "
            "(after a leak; otherwise retire them once the gateway uses the new URL).",
        )

    def handle(self, *args, account, retire_old, **options):
        try:
            rotated = services.add_callback_secret(account_id=account)
        except ProviderAccount.DoesNotExist as error:
            raise CommandError(f"No provider account with id {account}.") from error
        if retire_old:
            rotated = services.retire_old_callback_secrets(account_id=account)
        # The full URL is printed once, here; the admin shows only its first characters.
        self.stdout.write(f"{rotated.callback_url()}\n")
