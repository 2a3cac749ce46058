"""The public surface, checked mechanically."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
from conveyor import ConfigurationError, Conveyor
from conveyor.backends.sqlite.backend import parse_sqlite_url, sqlite_has_wal_reset_bug


def test_all_is_sorted_and_every_name_exists() -> None:
    assert conveyor.__all__ == sorted(conveyor.__all__)
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name


def test_building_an_app_touches_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = Conveyor()
    assert app.url == "sqlite:///conveyor.db"
    assert not (tmp_path / "conveyor.db").exists()


def test_conveyor_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "sqlite:///from-env.db")
    assert Conveyor().url == "sqlite:///from-env.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [("mysql://x", "unknown backend URL"), ("redis://localhost", "unknown backend URL")],
)
def test_bad_urls_fail_at_construction(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Conveyor(url)


@pytest.mark.parametrize(
    "settings", [{"lease": 0}, {"poll_interval": 5, "lease": 2}, {"default_priority": 12}]
)
def test_bad_settings_fail_at_construction(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Conveyor("sqlite:///x.db", **settings)  # type: ignore[arg-type]


def test_duplicate_task_names_are_refused() -> None:
    app = Conveyor("sqlite:///x.db")

    @app.task(name="send")
    def a() -> None: ...

    with pytest.raises(ConfigurationError, match="already registered"):

        @app.task(name="send")
        def b() -> None: ...


def test_sqlite_urls() -> None:
    assert parse_sqlite_url("sqlite:///jobs.db") == ("jobs.db", {})
    assert parse_sqlite_url("sqlite:////var/lib/jobs.db") == ("/var/lib/jobs.db", {})
    assert parse_sqlite_url("sqlite:///j.db?synchronous=normal")[1] == {"synchronous": "normal"}
    with pytest.raises(ConfigurationError):
        parse_sqlite_url("sqlite://host/jobs.db")


@pytest.mark.parametrize(
    ("version", "affected"),
    [("3.40.1", True), ("3.44.5", True), ("3.44.6", False), ("3.50.6", True),
     ("3.50.7", False), ("3.51.2", True), ("3.51.3", False), ("3.52.0", False)],
)
def test_wal_reset_bug_versions(version: str, affected: bool) -> None:
    assert sqlite_has_wal_reset_bug(version) is affected
