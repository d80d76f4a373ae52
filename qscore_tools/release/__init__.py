"""Release tooling: requirements from the extras, images (build, smoke, publish), SBOMs, secret scan.

Nothing here runs in production; `qscore release ...` drives it.
"""
