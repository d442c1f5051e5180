"""``service.postgis``: PostgreSQL with the PostGIS extension, same ``CONFIG_PG_*``.

Development settings are read as ``postgis.KEY``, falling back to
``postgresql.KEY``, so one ``[devel]`` section can serve both. On a node it
is the app's PostgreSQL database (the same one, if the app also asks for
``postgresql``) with ``CREATE EXTENSION postgis`` done by the superuser.
"""

from __future__ import annotations

from silverlining.services.postgresql import PostgresqlService


class PostgisService(PostgresqlService):
    name = "postgis"
    setting_prefixes = ("postgis", "postgresql")
    packages = ("postgresql", "postgresql-client", "postgresql-postgis")
    extensions = ("postgis",)


SERVICE = PostgisService()
