"""REPRO_* variables: parsed with units when needed; a bad value is one line naming it."""

from __future__ import annotations

import pytest

from orchestrator import settings
from orchestrator.errors import UsageError
from orchestrator.units import parse_duration, parse_size
from tests.helpers import repro


@pytest.mark.parametrize("name, value, getter, expected", [
    ("REPRO_INPUT_STORE_LIMIT", "2g", settings.input_store_limit, 2 << 30),
    ("REPRO_OUTPUT_LIMIT", "512m", settings.output_limit, 512 << 20),
    ("REPRO_RUN_OUTPUT_LIMIT", "1024", settings.run_output_limit, 1024),
    ("REPRO_STOP_GRACE", "5s", settings.stop_grace, 5.0),
    ("REPRO_STOP_GRACE", "2m", settings.stop_grace, 120.0),
    ("REPRO_MAX_OUTPUTS", "20", settings.max_outputs, 20),
    ("REPRO_ARCHIVE_IMAGES", "off", settings.archive_images, False),
])
def test_variables_take_units(monkeypatch, name, value, getter, expected):
    monkeypatch.setenv(name, value)
    assert getter() == expected


@pytest.mark.parametrize("name, value, getter, message", [
    ("REPRO_INPUT_STORE_LIMIT", "lots", settings.input_store_limit,
     "REPRO_INPUT_STORE_LIMIT 'lots' must be like"),
    ("REPRO_STOP_GRACE", "soon", settings.stop_grace, "REPRO_STOP_GRACE 'soon' must be"),
    ("REPRO_MAX_OUTPUTS", "-3", settings.max_outputs, "REPRO_MAX_OUTPUTS '-3' must be"),
    ("REPRO_ARCHIVE_IMAGES", "maybe", settings.archive_images, "REPRO_ARCHIVE_IMAGES 'maybe'"),
])
def test_a_bad_value_names_the_variable(monkeypatch, name, value, getter, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=message):
        getter()


def test_defaults(monkeypatch):
    for name in ("REPRO_INPUT_STORE_LIMIT", "REPRO_STOP_GRACE", "REPRO_TMP_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert settings.input_store_limit() == 1 << 30 and settings.stop_grace() == 10.0
    assert settings.tmp_size(256 << 20) == 256 << 20


def test_units():
    assert parse_size("1m") == 1 << 20 and parse_size("2GiB") == 2 << 30
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    for bad in ("-1", "1x", ""):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        parse_duration(0)


@pytest.mark.process
def test_a_bad_variable_is_one_line_at_the_cli_not_an_internal_error(tmp_path):
    """Appendix A 2: REPRO_INPUT_STORE_LIMIT=2g was `internal error: ValueError`."""
    p = repro("launch", "nowhere.yaml", env={"REPRO_HOME": str(tmp_path / "h"),
                                             "REPRO_STOP_GRACE": "5s",
                                             "REPRO_INPUT_STORE_LIMIT": "2g"})
    assert p.returncode == 2 and "no such spec file" in p.stderr  # parsed fine, lazily
    p = repro("export", "x", "--bundle", str(tmp_path / "b"), "--max-input-size", "1m",
              env={"REPRO_HOME": str(tmp_path / "h")})
    assert "memory must be at least" not in p.stderr  # Appendix A 1: a size, not memory


@pytest.mark.process
def test_the_user_comes_from_repro_user_then_git_then_the_login(monkeypatch, tmp_path):
    from orchestrator import settings

    monkeypatch.setenv("REPRO_USER", "alice@example.com")
    assert settings.user() == "alice@example.com"
    monkeypatch.delenv("REPRO_USER")
    monkeypatch.setenv("HOME", str(tmp_path))  # git's global config lives here now
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (tmp_path / ".gitconfig").write_text("[user]\n\temail = bob@example.com\n")
    assert settings.user() == "bob@example.com"
    (tmp_path / ".gitconfig").write_text("")
    import getpass

    assert settings.user() == getpass.getuser()
