"""The Russian catalog is complete: every marked string translated, none stale, none fuzzy.

makemessages runs over a copy of the sources (so the committed catalog is not
touched) and merges the committed translations in; whatever is then empty,
fuzzy, new or gone is a string someone marked (or unmarked) without updating
locale/ru/LC_MESSAGES/django.po. To fix: `make messages-ru` writes the new
entries into the catalog; translate them.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = ROOT / "locale" / "ru" / "LC_MESSAGES"
DOMAINS = ("django", "djangojs")
MSGATTRIB = shutil.which("msgattrib") or "msgattrib"
MSGFMT = shutil.which("msgfmt") or "msgfmt"
SOURCES = ("clients", "campaigns", "providers", "config", "templates", "locale", "static/cascade")

pytestmark = pytest.mark.skipif(shutil.which("msgattrib") is None, reason="needs GNU gettext")


def entries(po: Path, *flags: str) -> set[tuple[str, str]]:
    """(msgctxt, msgid) of the catalog's entries, the header left out (msgattrib selects)."""
    text = subprocess.run(
        [MSGATTRIB, "--no-wrap", *flags, str(po)], capture_output=True, text=True, check=True
    ).stdout
    found, context = set(), ""
    for line in text.splitlines():
        if line.startswith("msgctxt "):
            context = line[len("msgctxt ") :]
        elif line.startswith("msgid "):
            msgid = line[len("msgid ") :]
            if msgid != '""':
                found.add((context, msgid))
            context = ""
    return found


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """The sources' catalogs, as makemessages writes them now (both domains)."""
    copy = tmp_path_factory.mktemp("sources")
    for name in SOURCES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "manage.py", copy / "manage.py")
    for domain in DOMAINS:
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "makemessages",
                "-d",
                domain,
                "-l",
                "ru",
                "--no-location",
                "--no-obsolete",
                "-v",
                "0",
            ],
            cwd=copy,
            env={"PATH": "/usr/bin:/bin", "SECRET_KEY": "x", "DEBUG": "1", "LANGUAGE_CODE": "en"},
            check=True,
            capture_output=True,
        )
    return copy / "locale" / "ru" / "LC_MESSAGES"


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_marked_string_is_missing_from_the_catalog(regenerated, domain):
    missing = entries(regenerated / f"{domain}.po") - entries(CATALOGS / f"{domain}.po")
    assert sorted(missing) == []


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_catalog_has_no_string_the_code_no_longer_marks(regenerated, domain):
    obsolete = entries(CATALOGS / f"{domain}.po") - entries(regenerated / f"{domain}.po")
    assert sorted(obsolete) == []


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_entry_is_translated_and_none_is_fuzzy(domain):
    assert sorted(entries(CATALOGS / f"{domain}.po", "--untranslated")) == []
    assert sorted(entries(CATALOGS / f"{domain}.po", "--only-fuzzy")) == []


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_catalog_compiles_and_russian_plurals_have_four_forms(domain):
    catalog = CATALOGS / f"{domain}.po"
    result = subprocess.run(
        [MSGFMT, "--check", "-o", "/dev/null", str(catalog)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    header = catalog.read_text()
    assert '"Language: ru\\n"' in header and "nplurals=4" in header
