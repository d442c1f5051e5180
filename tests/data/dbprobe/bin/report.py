"""A script of the app's own in bin/: uploaded, run by ``silver run LOC report.py``."""

import os

from silverlining.secret import get_secret

print("db", os.environ.get("CONFIG_PG_DBNAME"))
print("secret", get_secret())
