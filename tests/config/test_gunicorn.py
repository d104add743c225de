"""config/gunicorn.py: the settings gunicorn reads, and its access log without secrets."""

import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config

CONFIG = Path(__file__).resolve().parents[2] / "config" / "gunicorn.py"


def test_the_access_log_writes_webhook_secrets_as_stars(capsys):
    settings = runpy.run_path(str(CONFIG))
    config = Config()
    config.set("accesslog", "-")
    logger = settings["logger_class"](config)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/providers/webhooks/pulse/7/s3cret-value-0123456789/?id=1&status=delivered",
        "PATH_INFO": "/providers/webhooks/pulse/7/s3cret-value-0123456789/",
        "QUERY_STRING": "id=1&status=delivered",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="200 OK", sent=2, headers=[])
    request = SimpleNamespace(headers=[])
    logger.access(response, request, environ, timedelta(milliseconds=3))  # to stdout ("-")
    written = capsys.readouterr().out
    assert "/providers/webhooks/pulse/7/***" in written
    assert "s3cret-value" not in written
    assert "status=delivered" in written
