"""What can go wrong in a bot, and what the framework does about it
(the Python side of the Rust framework's ``BotError``).

A handler may raise anything: :class:`UsageError` is sent back to the user
as is; every other exception (a :class:`BotError`, a binding's
``MicrobotError``, a bug) is logged and the user is told "Sorry, that did
not work."
"""


class BotError(Exception):
    """Base of the framework's own errors."""


class UsageError(BotError):
    """The user used a command wrongly; ``str(error)`` is sent back to them
    as is (say what the command expects)."""


class BadCommandName(BotError):
    """A command was registered under a name that is not 1 to 32 ASCII
    letters, digits or ``_`` (a mistake in the bot's code); raised when the
    :class:`~microbot_bot.Bot` is made."""

    def __init__(self, name: str) -> None:
        super().__init__(f"bad command name {name!r}: use 1 to 32 ASCII letters, digits or _")
        #: The refused name.
        self.name = name


class StateError(BotError):
    """The bot's own state (for example its saved file) failed; the text
    says what and where."""
