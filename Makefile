# Two commands do everything on a fresh Debian machine with Python 3.11:
#   make run   - the app with demo data on http://127.0.0.1:8000 (SQLite, ORM broker)
#   make test  - ruff and the whole pytest suite against a throw-away PostgreSQL
#   make test-fast - the same without the slow tests (browsers, clusters, chaos, load)
.PHONY: run test test-fast install messages messages-ru lint format

VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh

install: $(STAMP) messages

# The Russian (and any other) catalog, compiled on every run: a second at most.
messages: $(STAMP)
	bash scripts/messages.sh

# Adds newly marked strings to the Russian catalog (then translate them; tests/i18n checks).
messages-ru: $(STAMP)
	SECRET_KEY=x DEBUG=1 $(VENV)/bin/python manage.py makemessages -l ru --no-location \
		--no-obsolete --ignore=.venv --ignore=tests --ignore=bench --ignore=static \
		--ignore=docs --ignore=scripts
	SECRET_KEY=x DEBUG=1 $(VENV)/bin/python manage.py makemessages -d djangojs -l ru \
		--no-location --no-obsolete --ignore=.venv --ignore=tests --ignore=bench \
		--ignore=static/vendor --ignore=staticfiles --ignore=docs

run: $(STAMP) messages
	$(VENV)/bin/python scripts/run_dev.py

test: $(STAMP) messages
	bash scripts/test.sh $(ARGS)

test-fast: $(STAMP) messages
	bash scripts/test.sh -m "not slow" -n 2 $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
