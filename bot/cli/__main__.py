"""`python -m bot.cli`: the same app as the `quanbot` console script."""

from bot.cli import app

app(prog_name="quanbot")
