"""The settings module read in fresh processes with production-like environments."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 20 + "production-like-secret-key-with-enough-entropy-0123456789",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "cascade.example.com",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "STATIC_MANIFEST": "1",
}


def run_manage(*args, env_overrides):
    env = {key: value for key, value in os.environ.items() if key not in PRODUCTION_ENV}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_deploy_is_clean_with_production_values():
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING", env_overrides=PRODUCTION_ENV
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_it_refuses_to_start_without_secret_key_when_debug_is_off():
    env = dict(PRODUCTION_ENV, SECRET_KEY="")
    result = run_manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_bad_boolean_stops_the_process_with_the_variable_name():
    env = dict(PRODUCTION_ENV, DEBUG="perhaps")
    result = run_manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_postgres_url_gets_persistent_connections():
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings';"
        "from django.conf import settings; d=settings.DATABASES['default'];"
        "print(d['ENGINE'], d['CONN_MAX_AGE'], settings.Q_CLUSTER.get('orm'), settings.Q_CLUSTER.get('redis'))"
    )
    env = {key: value for key, value in os.environ.items() if key not in PRODUCTION_ENV}
    env.update(PRODUCTION_ENV, DATABASE_URL="postgres://u:p@db.example.com:5432/cascade")
    env.pop("REDIS_URL", None)
    env.pop("CONN_MAX_AGE", None)  # the test run itself sets it to 0 (tests/settings_env.py)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    engine, conn_max_age, orm, redis = result.stdout.split()
    assert engine == "django.db.backends.postgresql"
    assert int(conn_max_age) > 0
    assert (orm, redis) == ("default", "None")

    env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split()[2:] == ["None", "redis://127.0.0.1:6379/0"]
