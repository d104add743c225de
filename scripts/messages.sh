#!/usr/bin/env bash
# Compiles the translation catalogs (locale/*/LC_MESSAGES/django.po -> .mo) for `make run`
# and `make test`; the .mo files are build output, not committed. Installs GNU gettext
# (msgfmt) when the machine lacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
ls locale/*/LC_MESSAGES/*.po >/dev/null 2>&1 || exit 0
if ! command -v msgfmt >/dev/null; then
    echo "msgfmt not found; installing Debian's gettext package" >&2
    apt-get update -qq && apt-get install -y -qq gettext >/dev/null
fi
SECRET_KEY=compile-messages .venv/bin/python manage.py compilemessages --ignore=.venv -v 0
