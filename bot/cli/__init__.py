"""The `quanbot` command line: one typer app mounted from the command modules beside this file.

Each command module owns a `typer.Typer` of its own and imports only `bot.cli.common` (consoles, settings,
one-line errors, logging); this module imports the command modules and mounts their apps, so nothing imports
the app back. A command parses options and calls services; it imports the heavy parts inside its function, so
`quanbot --help` and the light commands start fast. `bot.cli.evaluation` is the one module of the product
that loads `evals`.
Must not: hold business rules.
"""

from __future__ import annotations

import typer

from bot.cli import chat, db, demo, evaluation, knowledge, policies, review, run, scheduler, stats, understanding, web
from bot.cli import notify as notify_command
from bot.cli import wecom as wecom_command
from bot.cli.common import console, err_console, quiet_libraries

app = typer.Typer(help="quanbot：网格化社会治理 AI 社工（泉小智式）命令行。", no_args_is_help=True,
                  rich_markup_mode="rich", pretty_exceptions_enable=False)


@app.callback()
def _every_command() -> None:
    quiet_libraries()


# top-level commands, in the order `quanbot --help` lists them
for module in (chat, demo, evaluation, knowledge, stats, scheduler, run, understanding, web):
    app.add_typer(module.app)
app.add_typer(notify_command.app)
app.add_typer(db.app, name="db")
app.add_typer(policies.app, name="policies")
app.add_typer(review.app, name="review")
app.add_typer(web.admin_app, name="admin")
app.add_typer(wecom_command.app, name="wecom")

__all__ = ["app", "console", "err_console"]
