"""Test-only settings, set before Django loads (a pytest plugin: `-p tests.settings_env`)."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
os.environ.setdefault("STATIC_MANIFEST", "0")
# The suite's pages speak English unless a test asks for Russian (tests/i18n/).
os.environ.setdefault("LANGUAGE_CODE", "en")
os.environ.setdefault("CONN_MAX_AGE", "0")  # live_server threads must not keep connections open
