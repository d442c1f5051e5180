"""PostgreSQL's clients are called straight, skipping Debian's Perl wrapper."""

from __future__ import annotations

from silverlining.services import postgresql


def test_the_newest_installed_client_is_called(monkeypatch, tmp_path):
    monkeypatch.setattr(postgresql, "PG_LIB", str(tmp_path))
    assert postgresql.pg_bin("psql") == "psql"          # not installed yet: the wrapper
    for version in ("9", "15", "17", "9.6"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "psql").touch()
    assert postgresql.pg_bin("psql") == str(tmp_path / "17" / "bin" / "psql")
    assert postgresql.pg_bin("pg_isready") == "pg_isready"
