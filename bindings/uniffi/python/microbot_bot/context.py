"""What a handler gets: the conversation it answers in, who wrote, and
ways to answer, each waiting for its pacing token first
(:mod:`microbot_bot.pacing`). Conversations are the binding's keys:
``u:<username>`` or ``g:<group id hex>``."""

import os
from typing import Optional

from .errors import UsageError
from .pacing import Pacer


class Context:
    """The situation a handler answers. Safe to keep and use from another
    thread (the reminder bot's scheduler sends through one)."""

    def __init__(self, account, pacer: Pacer, conversation: str, author: str,
                 message_id: Optional[str]) -> None:
        self._account = account
        self._pacer = pacer
        self._conversation = conversation
        self._author = author
        self._message_id = message_id

    @property
    def account(self):
        """The bot's ``microbot_uniffi.Account`` (groups, files, safety numbers...)."""
        return self._account

    @property
    def conversation(self) -> str:
        """The conversation the event happened in; replies go there."""
        return self._conversation

    @property
    def author(self) -> str:
        """Who wrote the message, edited, reacted, or (for a group join) who
        added the members (``""`` when unknown)."""
        return self._author

    @property
    def message_id(self) -> Optional[str]:
        """The message the event is about (32 hex digits), when there is one."""
        return self._message_id

    def reply(self, text: str) -> str:
        """Sends ``text`` to this conversation once the pacing allows;
        returns the message id. Raises the binding's ``MicrobotError``
        (``Send`` for an empty or too long text...)."""
        return self.send_to(self._conversation, text)

    def send_to(self, conversation: str, text: str) -> str:
        """Sends ``text`` to ``conversation`` (for example a reminder to the
        chat it was set in) once the pacing allows; returns the message id."""
        self._pacer.wait(conversation)
        return self._account.send_text(conversation, text)

    def reply_file(self, path: "os.PathLike[str] | str", caption: Optional[str] = None) -> str:
        """Encrypts, uploads and sends the file at ``path`` (with an optional
        caption) to this conversation; returns the message id. Blocks until
        the upload is done; raises ``MicrobotError.Attachment`` (unreadable
        file, not connected, too large...)."""
        self._pacer.wait(self._conversation)
        return self._account.send_file(self._conversation, os.fspath(path), caption)

    def react(self, emoji: str) -> None:
        """Reacts to the event's message with ``emoji``; raises
        :class:`~microbot_bot.errors.UsageError` when there is no message
        (a group join)."""
        if self._message_id is None:
            raise UsageError("nothing to react to")
        self._pacer.wait(self._conversation)
        self._account.react(self._conversation, self._message_id, emoji, False)
