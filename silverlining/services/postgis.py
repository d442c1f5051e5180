"""``service.postgis``: PostgreSQL with the PostGIS extension, same ``CONFIG_PG_*``.

Development settings are read as ``postgis.KEY``, falling back to
``postgresql.KEY``, so one ``[devel]`` section can serve both.
"""

from __future__ import annotations

from silverlining.services.postgresql import PostgresqlService


class PostgisService(PostgresqlService):
    name = "postgis"
    setting_prefixes = ("postgis", "postgresql")


SERVICE = PostgisService()
