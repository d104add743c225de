"""Where a partner request's Python time goes: cProfile over SendMessageProcess, in-process.

    python -m bench.api_profile [--requests 2000] [--format json|xml] [--top 30]

The same settings and fixture as bench.api (PostgreSQL from DATABASE_URL or a
throw-away cluster), but the requests go straight into Django's WSGI handler
with a ready environ, as gunicorn's worker calls it, so the profile is Django
and Cascade, not an HTTP client. Prints the functions with the most cumulative
time (the layers: middleware, view, parsing, queries) and the most own time
(the leaves), then one JSON line with the mean milliseconds per request with
and without the profiler.
"""

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import time
import warnings

from bench.api import BODIES, MEDIA_TYPES, OK_REGEX, PATH, create_fixture
from bench.common import print_result


def environ_for(body: bytes, media_type: str) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": PATH,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": media_type,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_ACCEPT": media_type,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--format", default="json", choices=sorted(BODIES))
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    temp_pg = None
    try:
        if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            from bench.pg import TempPostgres

            temp_pg = TempPostgres()
            os.environ["DATABASE_URL"] = temp_pg.start()
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(40),
            ALLOWED_HOSTS="127.0.0.1",
            SECURE_SSL_REDIRECT="0",
            CASCADE_API_REQUESTS_PER_MINUTE=str(10**9),
            LOG_LEVEL="WARNING",
        )
        warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
        import django

        django.setup()
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        call_command("migrate", verbosity=0)
        fixture = create_fixture()
        application = get_wsgi_application()
        media_type = MEDIA_TYPES[args.format]
        ok = OK_REGEX[args.format]

        def one(call: int, label: str) -> None:
            text = f"profile-{label}-{fixture['stamp']}-{call}"
            body = BODIES[args.format](fixture["operator_id"], fixture["token"], text).encode()
            status = []
            response = application(
                environ_for(body, media_type), lambda s, headers, *_: status.append(s)
            )
            content = b"".join(response)
            response.close()
            if not status[0].startswith("200") or not ok.search(content):
                raise SystemExit(f"answered {status[0]}: {content[:300]!r}")

        for call in range(200):  # warm-up: imports, connections, first-time caches
            one(call, "warm")
        started = time.perf_counter()
        for call in range(args.requests):
            one(call, "plain")
        plain_ms = (time.perf_counter() - started) * 1000 / args.requests

        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for call in range(args.requests):
            one(call, "profiled")
        profiler.disable()
        profiled_ms = (time.perf_counter() - started) * 1000 / args.requests

        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
            stats.print_stats(args.top)
            print(f"--- by {order} ---")
            print(out.getvalue().split("\n", 6)[-1].rstrip())
    finally:
        if temp_pg:
            temp_pg.stop()
    print_result(
        {
            "format": args.format,
            "requests": args.requests,
            "ms_per_request": round(plain_ms, 2),
            "ms_per_request_profiled": round(profiled_ms, 2),
        }
    )


if __name__ == "__main__":
    main()
