"""The faults: nastier simulators and the schedule of what breaks when."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import requests

from bench.chaos.harness import Processes, log, retrying
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator
from providers.simulators.pulse import PulseSimulator


@dataclass
class ChaosConfig(SimulatorConfig):
    # Not knobs of the stock simulators: a share of callbacks that arrive a second
    # time (0-1 s after the first), and a share held back `callback_reorder_delay`
    # seconds so that they arrive after later ones (a "sent" after the final word).
    callback_duplicate_rate: float = 0.0
    callback_reorder_rate: float = 0.0
    callback_reorder_delay: float = 3.0


class ChaosPulseSimulator(PulseSimulator):
    """1-pulse with callbacks sent twice and out of order, from a pool of sender threads.

    1-pulse has no idempotency key, so the stock simulator records none and its
    duplicate_keys stays empty whatever we send. Our key rides in the callback URL
    (`key=`); this simulator records it as the message's key purely for counting, so
    /_sim/stats duplicate_keys shows a message we sent twice. Nothing else reads it.
    """

    name = "pulse"

    def __init__(self, *args, senders: int = 8, **kwargs):
        self._local = threading.local()
        super().__init__(*args, **kwargs)
        self.pool = ThreadPoolExecutor(senders, thread_name_prefix="pulse-callback")

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.callbacks_duplicated = 0  # second deliveries made
            self.callbacks_reordered = 0  # held-back deliveries made
            self.outstanding = 0  # callbacks handed to the pool and not finished
            self.delivered_urls: list[str] = []  # first deliveries that got HTTP 200

    def accept(self, *, key: str, callback_url: str = "", **fields):
        if not key and callback_url:
            key = parse_qs(urlsplit(callback_url).query).get("key", [""])[0]
        return super().accept(key=key, callback_url=callback_url, **fields)

    def roll(self) -> float:
        with self.lock:
            return self.rng.random()

    def backlog(self) -> int:
        """Callbacks not sent yet: in the pool's queue, or scheduled (held back, retries)."""
        with self.lock:
            return self.outstanding + len(self._callbacks)

    def submit(self, *args, kind: str = "first") -> None:
        with self.lock:
            self.outstanding += 1
        self.pool.submit(self._post, *args, kind)

    def deliver_callback(
        self, method: str, url: str, retry_delays: list[float], attempt: int = 0, **kwargs
    ) -> None:
        config = self.config
        if attempt == 0 and self.roll() < config.callback_reorder_rate:
            self.schedule(
                time.time() + config.callback_reorder_delay,
                lambda: self.submit(method, url, retry_delays, attempt, kwargs, kind="late"),
            )
            return
        self.submit(method, url, retry_delays, attempt, kwargs)

    def _post(self, method, url, retry_delays, attempt, kwargs, kind: str) -> None:
        try:
            self._post_once(method, url, retry_delays, attempt, kwargs, kind)
        finally:
            with self.lock:
                self.outstanding -= 1

    def _post_once(self, method, url, retry_delays, attempt, kwargs, kind: str) -> None:
        config = self.config
        duplicate = kind == "duplicate"
        if not duplicate and self.roll() < config.callback_drop_rate:
            ok = False
            with self.lock:
                self.callbacks_dropped += 1
        else:
            session = getattr(self._local, "session", None)
            if session is None:
                session = self._local.session = requests.Session()
            try:
                ok = session.request(method, url, timeout=10, **kwargs).status_code == 200
            except requests.RequestException:
                ok = False
            with self.lock:
                if duplicate:
                    self.callbacks_duplicated += 1
                elif ok:
                    self.callbacks_sent += 1
                    self.delivered_urls.append(url)
                else:
                    self.callbacks_failed += 1
                if kind == "late":
                    self.callbacks_reordered += 1
        if duplicate:
            return
        if ok and self.roll() < config.callback_duplicate_rate:
            self.schedule(
                time.time() + self.roll(),
                lambda: self.submit(method, url, retry_delays, attempt, kwargs, kind="duplicate"),
            )
        if not ok and attempt < len(retry_delays):
            delay = retry_delays[attempt] * config.callback_time_scale
            self.schedule(
                time.time() + delay,
                lambda: self.submit(method, url, retry_delays, attempt + 1, kwargs),
            )

    def stats(self) -> dict:
        stats = super().stats()
        with self.lock:
            stats["callbacks_duplicated"] = self.callbacks_duplicated
            stats["callbacks_reordered"] = self.callbacks_reordered
            stats["callbacks_backlog"] = self.outstanding + len(self._callbacks)
        return stats

    def stop(self) -> None:
        super().stop()
        # Callbacks still on the wire finish; none starts after this returns.
        self.pool.shutdown(wait=True, cancel_futures=True)


class CountingGatewaySimulator(CascadeGatewaySimulator):
    """The cascade gateway, counting the resubmissions it answered from an earlier message.

    It never accepts a client_id_message twice, so its duplicate_keys stays empty by
    construction; this count shows how often the engine leaned on that (a claim taken
    back after a crash and resubmitted under the same key).
    """

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.deduplicated = 0

    def accept_phone(self, login, fields, channels, phone, client_id, flavour):
        with self.lock:
            if client_id and (login, client_id) in self.client_ids:
                self.deduplicated += 1
            return super().accept_phone(login, fields, channels, phone, client_id, flavour)

    def stats(self) -> dict:
        stats = super().stats()
        with self.lock:
            stats["deduplicated"] = self.deduplicated
        return stats


def quiet_disconnects(sim):
    """A client that gave up (our 5 s timeout against the simulator's 8 s) makes the
    simulator's answer hit a closed socket; socketserver would print that traceback."""
    report = sim.server.handle_error

    def handle_error(request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            report(request, client_address)

    sim.server.handle_error = handle_error
    return sim


def track_requests(sim):
    """Keep `sim.busy_ports`: the client ports of the requests it is answering right now."""
    busy: Counter = Counter()
    lock = threading.Lock()
    base = sim.server.RequestHandlerClass

    class Tracking(base):
        def _serve(self):
            port = self.client_address[1]
            with lock:
                busy[port] += 1
            try:
                return super()._serve()
            finally:
                with lock:
                    busy[port] -= 1

        do_GET = do_POST = do_PUT = _serve

    def busy_ports() -> set[int]:
        with lock:
            return {port for port, count in busy.items() if count}

    sim.server.RequestHandlerClass = Tracking
    sim.busy_ports = busy_ports
    return sim


def group_ports(group_id: int) -> set[int]:
    """Local ports of the TCP sockets that the processes of one process group hold (Linux /proc)."""
    inodes = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(name)) != group_id:
                continue
            for fd in os.listdir(f"/proc/{name}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{name}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def sim_config(sim, **changes) -> None:
    """Turn a simulator's knobs over HTTP, as an operator of the test would."""
    response = requests.post(f"{sim.url}/_sim/config", json=changes, timeout=10)
    response.raise_for_status()


def sim_stats(sim) -> dict:
    return requests.get(f"{sim.url}/_sim/stats", timeout=30).json()


def fault_schedule(args, processes: Processes, pg, redis_server, gateway, pulse, smtp) -> list:
    """(seconds into the window, name, action), in order."""
    window = args.window

    def kill_a_cluster():
        from campaigns.models import Delivery

        # Aim: a cluster with a request on the wire (so it holds claims), waiting a
        # few seconds at most for one; the gateways are slow just now.
        deadline = time.monotonic() + 10
        victim, on_the_wire = None, 0
        while victim is None and time.monotonic() < deadline:
            busy = gateway.busy_ports() | pulse.busy_ports()
            for cluster in processes.live_clusters():
                on_the_wire = len(busy & group_ports(cluster.pid))
                if on_the_wire:
                    victim = cluster
                    break
            else:
                time.sleep(0.05)
        if victim is None:
            victim = random.Random(args.seed).choice(processes.live_clusters())
        claimed = retrying(
            Delivery.objects.filter(status="submitting").count, until=time.monotonic() + 30
        )
        Processes.kill9(victim)
        replacement = processes.start_cluster()
        log(
            f"  killed qcluster pid {victim.pid} (its whole process group) with {on_the_wire} "
            f"requests on the wire ({claimed} deliveries submitting in all); "
            f"started pid {replacement.pid}"
        )

    def restart_postgres():
        started = time.monotonic()
        pg.stop_server("fast")
        time.sleep(args.pg_down_seconds)
        pg.start_server()
        log(f"  PostgreSQL back after {time.monotonic() - started:.1f} s")

    def restart_redis():
        started = time.monotonic()
        redis_server.stop()
        time.sleep(args.redis_down_seconds)
        redis_server.start()
        log(f"  Redis back after {time.monotonic() - started:.1f} s (queue and buckets empty)")

    def slow(latency: float):
        return lambda: [sim_config(sim, latency=latency) for sim in (gateway, pulse)]

    # The gateway's bad spell first and alone, so that it meets full traffic; the
    # crash during a slow spell, so that claims are on the wire; the restarts last,
    # when SMS callbacks come in too.
    faults = [
        (
            0.05 * window,
            "1-pulse drops 20% of callbacks",
            lambda: sim_config(pulse, callback_drop_rate=0.2),
        ),
        (
            0.06 * window,
            "1-pulse stores, then loses 45% of its answers (500, timeout, reset)",
            lambda: sim_config(
                pulse,
                error_after_store_rate=0.15,
                timeout_after_store_rate=0.15,
                drop_after_store_rate=0.15,
            ),
        ),
        (
            0.08 * window,
            # Emails come late (steps both phone channels failed): the fault lasts the window.
            "SMTP server stores, then drops the connection, for 10% of the emails",
            lambda: setattr(smtp, "reset_rate", 0.1),
        ),
        (
            0.10 * window,
            "cascade gateway answers 30% HTTP 500 and 10% timeouts, 20% 500 after storing",
            lambda: sim_config(
                gateway, error_rate=0.3, timeout_rate=0.1, error_after_store_rate=0.2
            ),
        ),
        (
            0.35 * window,
            "cascade gateway answers every request again (still 20% 500 after storing)",
            lambda: sim_config(gateway, error_rate=0.0, timeout_rate=0.0),
        ),
        (
            # Longer than the rest of its spell, so that even a small run meets it.
            0.60 * window,
            "cascade gateway healthy again",
            lambda: sim_config(gateway, error_after_store_rate=0.0),
        ),
        (
            # To the end: 1-pulse's traffic (SMS steps) comes later than the first step's.
            window,
            "1-pulse answers every request again",
            lambda: sim_config(
                pulse,
                error_after_store_rate=0.0,
                timeout_after_store_rate=0.0,
                drop_after_store_rate=0.0,
            ),
        ),
    ]
    if not args.skip_kill:
        faults += [
            (0.38 * window, "both gateways slow: 1 s per answer", slow(1.0)),
            (0.40 * window, "kill -9 one qcluster, start a new one", kill_a_cluster),
            (0.48 * window, "both gateways fast again", slow(0.0)),
        ]
    if not args.skip_redis_restart:
        faults.append((0.60 * window, "restart Redis", restart_redis))
    if not args.skip_pg_restart:
        faults.append((0.80 * window, "restart PostgreSQL (fast stop, start)", restart_postgres))
    faults.append(
        (
            window,
            "1-pulse stops dropping callbacks",
            lambda: sim_config(pulse, callback_drop_rate=0.0),
        )
    )
    faults.append(
        (window, "SMTP server answers every email", lambda: setattr(smtp, "reset_rate", 0.0))
    )
    faults.append((window, "end of the fault window", lambda: None))
    return sorted(faults, key=lambda fault: fault[0])  # stable: same-time faults keep their order
