"""The local development server (``silver serve``) and the local virtualenv.

``environ`` and ``venvhook`` are stdlib only (``bin/python`` imports them);
the rest runs only on the developer's machine.
"""
