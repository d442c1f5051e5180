"""The headers nginx sets for an app instance, and what the instance reads of them.

A module of their own: every app process loads ``_app``, which needs these names and
nothing else of the routing (``routing`` costs an app's start its imports).
"""

UPDATE_HEADER = "X-Silverlining-Update"
REAL_IP_HEADER = "X-Real-IP"
SCRIPT_NAME_HEADER = "X-Script-Name"
STATUS_LOCATION_HEADER = "X-Silver-Location"
