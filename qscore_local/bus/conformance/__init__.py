"""Conformance run: the installed azure-servicebus SDK's own live tests against the local endpoint.

See `runner.py` (`python -m qscore_local.bus.conformance`) and docs/local-bus.md.
"""
