"""Shared bits of the benchmarks: Django set-up and the closing JSON line."""

import json
import os
import platform
import sys


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_result(result: dict) -> None:
    """The last line of every benchmark is one JSON object."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def apt_install(package: str) -> None:
    """Install one Debian package, as scripts/bootstrap.sh and the test script do when one is missing."""
    import shutil
    import subprocess

    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise SystemExit(f"{package} is needed and apt-get is not available: install it")
    print(f"installing Debian's {package} package", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([apt_get, "update", "-qq"], check=True, env=env)
    subprocess.run(
        [apt_get, "install", "-y", "-qq", package], check=True, env=env, stdout=subprocess.DEVNULL
    )


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(groups: dict[str, int], postmaster: int | None) -> dict:
    """CPU seconds so far per process group, of the PostgreSQL server's processes, of the machine."""
    totals = {name: 0.0 for name in groups}
    totals["postgres"] = 0.0
    by_group = {pgid: name for name, pgid in groups.items()}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:  # gone meanwhile
            continue
        # After the command name: state, ppid, pgrp, …, utime, stime, cutime, cstime
        # (proc(5) fields 3-17). The children's times count processes that exited and
        # were reaped: a PostgreSQL backend whose connection was closed (CONN_MAX_AGE).
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
        if int(fields[2]) in by_group:
            totals[by_group[int(fields[2])]] += ticks
        elif postmaster and postmaster in (int(entry), int(fields[1])):
            totals["postgres"] += ticks
    with open("/proc/stat") as file:
        cpu = [int(value) for value in file.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    totals["machine"] = (sum(cpu[:8]) - cpu[3] - cpu[4]) / CLOCK_TICKS
    return totals
