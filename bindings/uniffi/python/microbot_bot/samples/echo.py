"""The echo bot: ``/echo <text>`` and plain messages are said back, edits
and reactions are acknowledged, ``/file <text>`` answers with a file, and
it greets groups it is added to and members who join them."""

import os
import tempfile

from ..errors import UsageError
from ..router import Router

#: The first line of ``/start`` and ``/help``.
ABOUT = "Echo bot: I say back what you send me."


def _echo(ctx, call) -> None:
    if not call.rest:
        raise UsageError("Usage: /echo <text>")
    ctx.reply(call.rest)


def _file(ctx, call) -> None:
    if not call.rest:
        raise UsageError("Usage: /file <text>")
    handle, path = tempfile.mkstemp(prefix="microbot-echo-", suffix=".txt")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(call.rest.encode("utf-8"))
        ctx.reply_file(path)
    finally:
        os.unlink(path)


def _message(ctx, message) -> None:
    if message.file_name is not None:
        ctx.reply("Thanks for the file.")
    elif message.text:
        ctx.reply(message.text)


def _edit(ctx, edit) -> None:
    ctx.reply(f"You edited a message: {edit.text}")


def _reaction(ctx, reaction) -> None:
    if not reaction.removed:
        ctx.reply(f"You reacted {reaction.emoji}")


def _group_join(ctx, joined) -> None:
    if ctx.account.username() in joined:
        ctx.reply("Hello, group! Send /help for what I can do.")
    else:
        ctx.reply(f"Welcome, {', '.join(joined)}!")


def router() -> Router:
    """The echo bot's routing table."""
    return (
        Router(ABOUT)
        .command("echo", "<text>", "say <text> back", _echo)
        .command("file", "<text>", "send <text> back as a file", _file)
        .on_message(_message)
        .on_edit(_edit)
        .on_reaction(_reaction)
        .on_group_join(_group_join)
    )
