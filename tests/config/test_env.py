import pytest

from config.env import ImproperlyConfiguredEnv, env_bool, env_float, env_int, env_list


def test_env_bool_reads_common_spellings(monkeypatch):
    for raw, expected in [("1", True), ("yes", True), ("ON", True), ("0", False), ("false", False)]:
        monkeypatch.setenv("FLAG", raw)
        assert env_bool("FLAG") is expected


def test_env_bool_uses_default_when_unset(monkeypatch):
    monkeypatch.delenv("FLAG", raising=False)
    assert env_bool("FLAG", True) is True


def test_env_bool_fails_loudly_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfiguredEnv, match="FLAG"):
        env_bool("FLAG")


def test_env_int_rejects_text_and_values_below_minimum(monkeypatch):
    monkeypatch.setenv("WORKERS", "two")
    with pytest.raises(ImproperlyConfiguredEnv, match="WORKERS must be an integer"):
        env_int("WORKERS", 1)
    monkeypatch.setenv("WORKERS", "0")
    with pytest.raises(ImproperlyConfiguredEnv, match="at least 1"):
        env_int("WORKERS", 1, minimum=1)
    monkeypatch.setenv("WORKERS", "4")
    assert env_int("WORKERS", 1, minimum=1) == 4


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("HOSTS", "a.example.com, b.example.com,,")
    assert env_list("HOSTS", []) == ["a.example.com", "b.example.com"]


@pytest.mark.parametrize("raw", ["fast", "nan", "inf", "-0.5"])
def test_env_float_rejects_text_non_finite_and_values_below_minimum(monkeypatch, raw):
    monkeypatch.setenv("DRAIN_SECONDS", raw)
    with pytest.raises(ImproperlyConfiguredEnv, match="DRAIN_SECONDS"):
        env_float("DRAIN_SECONDS", 1.0, minimum=0)


def test_env_float_reads_numbers_and_falls_back_when_empty(monkeypatch):
    monkeypatch.setenv("DRAIN_SECONDS", "0.25")
    assert env_float("DRAIN_SECONDS", 1.0, minimum=0) == 0.25
    monkeypatch.setenv("DRAIN_SECONDS", " ")
    assert env_float("DRAIN_SECONDS", 1.0) == 1.0
