"""Recipients per second each backend submits to its simulator, in the largest batch allowed.

    python -m bench.providers [--recipients N]

Each backend talks HTTP (or SMTP) over loopback to its simulator, exactly as
in production; the simulator and the backend share this process and its two
cores, so the figure is a floor for a real gateway's round trip.
"""

import argparse
import time
from types import SimpleNamespace

from bench.common import machine, print_result, setup_django

ACCOUNTS = {
    # backend: (simulator URL suffix, credentials, options, senders)
    "pulse": ("/api/v1", {"token": "test-token"}, {}, {"sms": "Shop"}),
    "cascade_gateway": (
        "",
        {"login": "demo", "password": "demo-pass"},
        {"flavour": "json"},
        {"viber": "Shop", "sms": "Shop"},
    ),
    "bsg": ("/rest", {"api_key": "live_test"}, {}, {"viber": "Shop", "sms": "Shop"}),
}
CHANNEL = {"pulse": "sms", "cascade_gateway": "viber", "bsg": "viber", "smtp": "email"}


def outgoing(backend_name: str, count: int, run: str):
    from providers.base import OutgoingMessage

    channel = CHANNEL[backend_name]
    return [
        OutgoingMessage(
            delivery_id=index,
            idempotency_key=f"{run}{index}",
            channel=channel,
            phone=f"7916{index:07d}",
            email=f"client{index}@example.com",
            title="Weekend sale",
            text="Weekend sale: -20% on everything with your card!",
            html="<p>Weekend sale</p>",
            sms_text="Weekend sale -20%",
        )
        for index in range(count)
    ]


def run_backend(name: str, recipients: int) -> tuple[float, int, int]:
    from providers.registry import backend_class
    from providers.simulators import simulator_class
    from providers.simulators.base import SimulatorConfig

    backend_cls = backend_class(name)
    if name == "smtp":
        simulator = simulator_class("smtp")().start()
        account = SimpleNamespace(
            pk=None,
            name="bench",
            base_url="",
            timeout_seconds=30,
            sender_names={},
            options={},
            credentials={
                "host": "127.0.0.1",
                "port": simulator.port,
                "from_email": "bench@example.com",
            },
            callback_secrets=[],
        )
    else:
        simulator = simulator_class(name)(
            config=SimulatorConfig(delivery_delay=3600, send_callbacks=False)
        ).start()
        suffix, credentials, options, senders = ACCOUNTS[name]
        account = SimpleNamespace(
            pk=None,
            name="bench",
            base_url=simulator.url + suffix,
            credentials=credentials,
            options=options,
            sender_names=senders,
            timeout_seconds=30,
            callback_secrets=[],
            channels=list(backend_cls.channels),
            max_batch=backend_cls.max_batch,
        )
    backend = backend_cls(account)
    batch_size = backend_cls.max_batch
    messages = outgoing(name, recipients, run=str(int(time.time())))
    try:
        started = time.perf_counter()
        accepted = 0
        for start in range(0, len(messages), batch_size):
            results = backend.send(messages[start : start + batch_size])
            accepted += sum(1 for result in results if result.accepted)
        elapsed = time.perf_counter() - started
    finally:
        simulator.stop()
    return recipients / elapsed, accepted, batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=5000)
    args = parser.parse_args()
    setup_django()
    print(f"bench.providers on {machine()}, {args.recipients} recipients per backend")
    result = {}
    for name in ("pulse", "cascade_gateway", "bsg", "smtp"):
        rate, accepted, batch_size = run_backend(name, args.recipients)
        print(
            f"{name:16} batch {batch_size:4}  {rate:9.0f} recipients/s  accepted {accepted}/{args.recipients}"
        )
        result[name] = round(rate)
    print_result(result)


if __name__ == "__main__":
    main()
