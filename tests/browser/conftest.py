"""Browser tests: Playwright drives Debian's Chromium against pytest-django's live_server.

Playwright cannot download a browser offline, so every launch names
/usr/bin/chromium (`make test` installs it when it is missing). The tests run
as root, where Chromium's sandbox refuses to start: hence --no-sandbox.

Data must be committed for the live server's thread to see it, so the tests
use `pytest.mark.django_db(transaction=True)`.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

import pytest
from django.utils import translation
from playwright.sync_api import Browser, Page, expect, sync_playwright

from providers.models import ChannelRoute, ProviderAccount
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
FAILURES = Path(tempfile.gettempdir()) / "cascade-browser-failures"
TIMEOUT_MS = 15_000
VIEWPORT = {"width": 1280, "height": 900}

ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"

expect.set_options(timeout=TIMEOUT_MS)


def _is_browser_test(item: pytest.Item | None) -> bool:
    return item is not None and HERE in Path(item.path).resolve().parents


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium; "
        "`make test` installs it)"
    )
    for item in items:
        if _is_browser_test(item):
            item.add_marker(skip)


class Chromium:
    """One Chromium for the whole session, started by the first browser test and stopped
    right after the last one (see pytest_runtest_teardown below).

    Playwright's sync API runs an asyncio event loop in the main thread (the
    test's code runs on a greenlet beside it), so while it runs Django sees a
    running loop and raises SynchronousOnlyOperation for every ORM call: the
    test's own, its fixtures', and pytest-django's flush after the test. Those
    calls never run *inside* the loop, so allowing them is safe, and
    DJANGO_ALLOW_ASYNC_UNSAFE=true (read at call time) does that. It is set for
    exactly as long as Playwright runs, not for the whole session: subprocesses
    copy the environment, and `manage.py check --deploy` rightly fails when it
    finds the variable (tests/config/test_settings.py). An explicit value is
    kept. Stopping Playwright early also lets later tests use asyncio again.
    """

    def __init__(self) -> None:
        self._playwright = None
        self._browser: Browser | None = None
        self._saved_env: str | None = None

    def get(self) -> Browser:
        if self._browser is None:
            self._saved_env = os.environ.get(ASYNC_UNSAFE)
            os.environ.setdefault(ASYNC_UNSAFE, "true")
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
            )
        return self._browser

    def stop(self) -> None:
        if self._browser is not None:
            self._browser.close()
            self._playwright.stop()
            self._browser = self._playwright = None
            if self._saved_env is None:
                os.environ.pop(ASYNC_UNSAFE, None)
            else:
                os.environ[ASYNC_UNSAFE] = self._saved_env


_chromium = Chromium()


@pytest.fixture(scope="session")
def chromium():
    yield _chromium
    _chromium.stop()


@pytest.hookimpl(trylast=True)  # after every fixture's teardown, the database flush too
def pytest_runtest_teardown(item, nextitem):
    if not _is_browser_test(nextitem):
        _chromium.stop()


_page_errors = pytest.StashKey[list]()  # JavaScript errors of a test's page


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, save what the browser showed and name the file in the report."""
    report = yield
    page = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and page is not None and not page.is_closed():
        FAILURES.mkdir(parents=True, exist_ok=True)
        path = FAILURES / (re.sub(r"[^\w.-]+", "_", item.name) + ".png")
        try:
            page.screenshot(path=path, full_page=True)
        except Exception as error:  # the browser may be what broke
            report.sections.append(("browser", f"No screenshot: {error}"))
        else:
            report.sections.append(("browser", f"Screenshot: {path}\nURL: {page.url}"))
        errors = item.stash.get(_page_errors, [])
        if errors:
            report.sections.append(("browser JavaScript errors", "\n".join(errors)))
    return report


class AnsweringCount:
    """Wraps the live server's WSGI app and counts the requests it is still answering.

    Closing the browser stops new requests (a dashboard polls every few seconds)
    but not one the server's thread is in the middle of. pytest-django's flush
    after the test TRUNCATEs every table; a request still reading them deadlocks
    with it on PostgreSQL, the flush fails and the next test finds the last
    one's rows (a CI run failed so). The page fixture waits for the count to
    reach zero after closing the browser, before the flush.
    """

    def __init__(self, app) -> None:
        self.app = app
        self.answering = 0
        self.changed = threading.Condition()

    def __call__(self, environ, start_response):
        with self.changed:
            self.answering += 1
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._done()
            raise
        return _ClosingBody(body, self._done)

    def _done(self) -> None:
        with self.changed:
            self.answering -= 1
            self.changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.answering == 0, timeout)


class _ClosingBody:
    """A WSGI body that reports when the server has closed it (Django's
    request_finished, which closes the thread's database connection, runs then)."""

    def __init__(self, body, on_close) -> None:
        self.body = body
        self.on_close = on_close

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.on_close()


def answering_count(live_server) -> AnsweringCount:
    httpd = live_server.thread.httpd
    app = httpd.get_app()
    if not isinstance(app, AnsweringCount):
        app = AnsweringCount(app)
        httpd.set_app(app)
    return app


@pytest.fixture
def page(chromium, request, live_server) -> Page:
    """A fresh browser context (no cookies) per test, 1280 x 900."""
    answering = answering_count(live_server)
    context = chromium.get().new_context(viewport=VIEWPORT, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = request.node.stash.setdefault(_page_errors, [])
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert answering.wait_idle(TIMEOUT_MS / 1000), "the live server is still answering"


def sign_in(page: Page, live_server, username: str, language: str = "en") -> None:
    """Sign in through the real login form; the persona's password is pw-<username>.

    In `language`: the browser asks for it (a cookie, as the header's switcher
    sets), and the form must come in it.
    """
    page.context.add_cookies(
        [{"name": "django_language", "value": language, "url": live_server.url}]
    )
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.locator("html")).to_have_attribute("lang", language)
    page.get_by_label(said(language, "Username")).fill(username)
    page.get_by_label(said(language, "Password")).fill(f"pw-{username}")
    page.get_by_role("button", name=said(language, "Sign in")).click()
    expect(page.locator("header .user")).to_have_text(username)


def said(language: str, text: str, **values) -> str:
    """What the pages say for `text` in `language`, from the committed catalog.

    A Russian journey also checks that Russian is what it got: an English word
    left where a translation belongs fails here, not quietly on the page.
    """
    with translation.override(language):
        words = translation.gettext(text)
    if language == "ru" and any("a" <= ch.lower() <= "z" for ch in text):
        assert words != text, f"no Russian for {text!r}"
    return words % values if values else words


@pytest.fixture(params=["ru", "en"])
def language(request) -> str:
    """A journey runs in Russian (the default language) and in English."""
    return request.param


@pytest.fixture
def login():
    """`login(page, live_server, username)`: sign in as a persona through the login form."""
    return sign_in


@pytest.fixture
def screenshot(tmp_path):
    """`screenshot(page, "builder")` takes a page's picture for the README.

    Into docs/screenshots/ with CASCADE_SCREENSHOTS=1 (how the README's are
    refreshed), else into the test's temp dir, so a plain `make test` leaves
    the working tree clean.
    """

    def take(page: Page, name: str, *, full_page: bool = True) -> Path:
        folder = SCREENSHOTS if os.environ.get("CASCADE_SCREENSHOTS") == "1" else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=path, full_page=full_page, animations="disabled")
        return path

    return take


@pytest.fixture
def delivering_gateway():
    """A cascade gateway simulator that delivers every message, a little later."""
    sim = CascadeGatewaySimulator(
        config=SimulatorConfig(delivery_delay=0.3, outcome_mix={"delivered": 1.0}),
        identical_window=0,
    ).start()
    yield sim
    sim.stop()


def route_sms_through(operator, sim):
    """The operator's SMS go to this simulator, through one cascade gateway account."""
    account = ProviderAccount.objects.create(
        operator=operator,
        name="Cascade gateway",
        backend="cascade_gateway",
        base_url=sim.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["sms"],
        options={"flavour": "json", "identical_request_seconds": 0},
        sender_names={"sms": "Sunrise"},
    )
    ChannelRoute.objects.create(operator=operator, channel="sms", account=account, priority=1)
    return account
