"""Silver Lining: push-based deployment of Python web apps to your own servers.

This package must stay importable with the standard library alone: the node
side (``silverlining.node``) and the configuration and service modules are
copied to servers that have nothing but python3.
"""

__version__ = "0.1.0"
