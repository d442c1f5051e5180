"""PostgreSQL's clients are called straight, skipping Debian's Perl wrapper, where that
reaches the same cluster."""

from __future__ import annotations

from silverlining.services import postgresql


def _cluster(root, version: str, port_line: str) -> None:
    conf = root / version / "main" / "postgresql.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"data_directory = '/var/lib/postgresql/{version}/main'\n"
                    f"#port = 1\n{port_line}\nmax_connections = 100\n")


def test_the_newest_installed_client_is_called(monkeypatch, tmp_path):
    lib, conf = tmp_path / "lib", tmp_path / "etc"
    monkeypatch.setattr(postgresql, "PG_LIB", str(lib))
    monkeypatch.setattr(postgresql, "PG_CONF", str(conf))
    assert postgresql.pg_bin("psql") == "psql"          # not installed yet: the wrapper
    for version in ("9", "15", "17", "9.6"):
        (lib / version / "bin").mkdir(parents=True)
        (lib / version / "bin" / "psql").touch()
    _cluster(conf, "17", "port = 5432\t\t\t\t# (change requires restart)")
    assert postgresql.pg_bin("psql") == str(lib / "17" / "bin" / "psql")
    assert postgresql.pg_bin("pg_isready") == "pg_isready"


def test_a_lone_cluster_on_another_port_keeps_the_wrapper(monkeypatch, tmp_path):
    lib, conf = tmp_path / "lib", tmp_path / "etc"
    monkeypatch.setattr(postgresql, "PG_LIB", str(lib))
    monkeypatch.setattr(postgresql, "PG_CONF", str(conf))
    (lib / "17" / "bin").mkdir(parents=True)
    (lib / "17" / "bin" / "psql").touch()
    _cluster(conf, "17", "port = 5433")
    assert postgresql.pg_bin("psql") == "psql"          # it finds the cluster's port
    _cluster(conf, "15", "")                            # no port line: 5432
    assert postgresql.pg_bin("psql") == str(lib / "17" / "bin" / "psql")
