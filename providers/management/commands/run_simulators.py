"""Run every gateway simulator on 127.0.0.1 until Ctrl-C (used by `make run`)."""

import signal
import threading

from django.core.management.base import BaseCommand

from providers.models import ProviderAccount
from providers.simulators import SIMULATORS, simulator_class, simulator_port
from providers.simulators.base import SimulatorConfig


class Command(BaseCommand):
    help = "Start the 1-pulse, cascade gateway, BSG and SMTP simulators on loopback."

    def add_arguments(self, parser):
        parser.add_argument("--only", nargs="*", choices=list(SIMULATORS), help="Start only these.")
        parser.add_argument(
            "--delivery-delay", type=float, default=2.0, help="Seconds to final status."
        )
        parser.add_argument(
            "--undeliverable",
            type=float,
            default=0.2,
            help="Share of messages whose channel fails (they fall through the cascade).",
        )
        parser.add_argument("--read", type=float, default=0.3, help="Share read after delivery.")

    def handle(self, *args, only, delivery_delay, undeliverable, read, **options):
        started = []
        for name in only or SIMULATORS:
            cls = simulator_class(name)
            port = simulator_port(name)
            if name == "smtp":
                simulator = cls(port=port).start()
            else:
                delivered = max(0.0, 1.0 - undeliverable - read)
                config = SimulatorConfig(
                    delivery_delay=delivery_delay,
                    outcome_mix={
                        "delivered": delivered,
                        "read": read,
                        "undeliverable": undeliverable,
                    },
                )
                simulator = cls(port=port, config=config).start()
            started.append(simulator)
            self.stdout.write(f"{name} simulator on 127.0.0.1:{port}")
            if name == "cascade_gateway":
                self.forward_replies(simulator)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        for simulator in started:
            simulator.stop()

    def forward_replies(self, simulator) -> None:
        """Point the gateway's "incoming messages URL" at the accounts that use it (the demo)."""
        accounts = ProviderAccount.objects.filter(
            backend="cascade_gateway", base_url__startswith=simulator.url
        )
        for account in accounts:
            login = str((account.credentials or {}).get("login") or "")
            if login and account.replies_url():
                simulator.set_inbound_url(login, account.replies_url())
                self.stdout.write(f"  replies for login {login!r} go to account {account.pk}")
