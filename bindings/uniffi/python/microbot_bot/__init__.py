"""microbot_bot: bots on Microbot, in Python.

A bot is an ordinary account (enrolled like any device, so every message
stays end-to-end encrypted) whose events a :class:`Router` turns into
handler calls. This package mirrors the Rust framework (``bots/``, crate
``microbot-bot``, docs/BOTS.md) — the same command grammar, the same
``/start`` and ``/help`` texts, the same answers to mistakes, the same
pacing — over the ``microbot_uniffi`` binding. It does no cryptography:
it routes events and calls ``Account`` methods::

    import threading
    import microbot_uniffi as mb
    from microbot_bot import Bot, Router, UsageError

    router = Router("Echo bot: I say back what you send me.")

    @router.command("echo", "<text>", "say <text> back")
    def echo(ctx, call):
        if not call.rest:
            raise UsageError("Usage: /echo <text>")
        ctx.reply(call.rest)

    router.on_message(lambda ctx, message: ctx.reply(message.text))
    Bot(mb.Account.open("bot.sqlite3", None), router).run()   # Ctrl-C stops it

Modules, one job each:

- :mod:`microbot_bot.command`: ``/name@bot args "quoted arg"`` parsing (pure).
- :mod:`microbot_bot.router`: which handler answers what; ``/help`` from the descriptions.
- :mod:`microbot_bot.context`: what a handler gets and how it answers.
- :mod:`microbot_bot.pacing`: replies wait for their token instead of
  hitting the server's send limit.
- :mod:`microbot_bot.bot`: the event loop and its threads.
- :mod:`microbot_bot.errors`: what a handler may raise.
- :mod:`microbot_bot.samples`: the echo and reminder bots
  (``python -m microbot_bot --store S echo`` runs one).
"""

from .bot import MAX_RUNNING_HANDLERS, Bot
from .command import CommandError, Invocation, parse
from .context import Context
from .errors import BadCommandName, BotError, StateError, UsageError
from .pacing import PacingConfig
from .router import Edit, Reaction, Router

__all__ = [
    "MAX_RUNNING_HANDLERS",
    "BadCommandName",
    "Bot",
    "BotError",
    "CommandError",
    "Context",
    "Edit",
    "Invocation",
    "PacingConfig",
    "Reaction",
    "Router",
    "StateError",
    "UsageError",
    "parse",
]
