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
CATALOG = ROOT / "locale" / "ru" / "LC_MESSAGES" / "django.po"
MSGATTRIB = shutil.which("msgattrib") or "msgattrib"
MSGFMT = shutil.which("msgfmt") or "msgfmt"
SOURCES = ("clients", "campaigns", "providers", "config", "templates", "locale")

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
    copy = tmp_path_factory.mktemp("sources")
    for name in SOURCES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "manage.py", copy / "manage.py")
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "makemessages",
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
    return copy / "locale" / "ru" / "LC_MESSAGES" / "django.po"


def test_no_marked_string_is_missing_from_the_catalog(regenerated):
    missing = entries(regenerated) - entries(CATALOG)
    assert sorted(missing) == []


def test_the_catalog_has_no_string_the_code_no_longer_marks(regenerated):
    obsolete = entries(CATALOG) - entries(regenerated)
    assert sorted(obsolete) == []


def test_every_entry_is_translated_and_none_is_fuzzy():
    assert sorted(entries(CATALOG, "--untranslated")) == []
    assert sorted(entries(CATALOG, "--only-fuzzy")) == []


def test_the_catalog_compiles_and_russian_plurals_have_four_forms():
    result = subprocess.run(
        [MSGFMT, "--check", "-o", "/dev/null", str(CATALOG)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    header = CATALOG.read_text()
    assert '"Language: ru\\n"' in header and "nplurals=4" in header
