"""The asyncio scoring worker (`qscore worker`)."""
