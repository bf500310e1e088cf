"""Parsing a command message (docs/BOTS.md), exactly as the Rust
framework's ``microbot_bot::command`` does: ``/name``, optionally
``/name@botname``, then arguments separated by white space, where an
argument in double quotes may hold white space (``\\"`` and ``\\\\``
escape inside quotes). Pure: text in, :class:`Invocation` or a
:class:`CommandError` out.

"White space" is Unicode's White_Space property, as Rust's
``char::is_whitespace`` (slightly narrower than ``str.isspace``: the
information separators U+001C..U+001F are not white space here), so a
message parses the same way in both frameworks.
"""

from dataclasses import dataclass
from typing import List, Tuple

#: Longest command name, in bytes (names are ASCII).
MAX_NAME_LEN = 32
#: Most arguments a command may carry.
MAX_ARGS = 64

#: Unicode White_Space, the set Rust's ``char::is_whitespace`` uses.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Invocation:
    """A parsed command message."""

    #: The command's name, ASCII-lowercased, without the slash (``"remind"``).
    name: str
    #: The arguments, unquoted.
    args: Tuple[str, ...]
    #: Everything after the name (and the ``@botname``), trimmed: for
    #: commands that take free text.
    rest: str


class CommandError(Exception):
    """Why a text is not a command this bot should run. The subclasses
    :class:`NotACommand` and :class:`ForAnotherBot` mean "not for us", the
    others that the user mistyped a command; ``str(error)`` is the same
    text as the Rust framework's."""


class NotACommand(CommandError):
    """The text does not start with ``/``: an ordinary message."""

    def __init__(self) -> None:
        super().__init__("not a command")


class ForAnotherBot(CommandError):
    """``/name@other``: a command for another bot in the same group; ignore it."""

    def __init__(self) -> None:
        super().__init__("a command for another bot")


class BadName(CommandError):
    """The name is empty, too long or has characters other than ASCII
    letters, digits and ``_``."""

    def __init__(self) -> None:
        super().__init__(f"a command name is 1 to {MAX_NAME_LEN} letters, digits or _")


class UnterminatedQuote(CommandError):
    """A double quote was opened and never closed."""

    def __init__(self) -> None:
        super().__init__("a quoted argument is not closed")


class TooManyArguments(CommandError):
    """More than :data:`MAX_ARGS` arguments."""

    def __init__(self) -> None:
        super().__init__(f"more than {MAX_ARGS} arguments")


def ascii_lower(text: str) -> str:
    """``text`` with ASCII letters lowercased and every other character kept
    (Rust's ``to_ascii_lowercase``)."""
    return text.translate(_ASCII_LOWER)


def trim(text: str) -> str:
    """``text`` without leading and trailing :data:`WHITE_SPACE`."""
    start, end = 0, len(text)
    while start < end and text[start] in WHITE_SPACE:
        start += 1
    while end > start and text[end - 1] in WHITE_SPACE:
        end -= 1
    return text[start:end]


def split_once_white(text: str):
    """``(before, after)`` around the first white-space character, or
    ``None`` when there is none (Rust's ``split_once(char::is_whitespace)``)."""
    for i, c in enumerate(text):
        if c in WHITE_SPACE:
            return text[:i], text[i + 1:]
    return None


def is_valid_name(name: str) -> bool:
    """Whether ``name`` may name a command: 1 to :data:`MAX_NAME_LEN` ASCII
    letters, digits or ``_``."""
    return 0 < len(name) <= MAX_NAME_LEN and all(c in _NAME_CHARS for c in name)


def parse(text: str, bot_username: str) -> Invocation:
    """Parses ``text`` as a command addressed to the bot ``bot_username``
    (a ``/name@bot_username`` suffix is accepted, ASCII case-insensitively).

    Raises a :class:`CommandError` subclass when it is not one.
    """
    start = 0
    while start < len(text) and text[start] in WHITE_SPACE:
        start += 1
    if not text.startswith("/", start):
        raise NotACommand()
    body = text[start + 1:]
    head_end = next((i for i, c in enumerate(body) if c in WHITE_SPACE), len(body))
    head, tail = body[:head_end], body[head_end:]
    name, at, target = head.partition("@")
    if at and ascii_lower(target) != ascii_lower(bot_username):
        raise ForAnotherBot()
    if not is_valid_name(name):
        raise BadName()
    rest = trim(tail)
    return Invocation(name=ascii_lower(name), args=tuple(split_args(rest)), rest=rest)


def split_args(text: str) -> List[str]:
    """Splits ``text`` into arguments: runs of non-white-space, or
    double-quoted strings with ``\\"`` and ``\\\\`` escapes (a backslash
    before anything else is kept as is).

    Raises :class:`UnterminatedQuote` or :class:`TooManyArguments`.
    """
    args: List[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in WHITE_SPACE:
            i += 1
        if i == n:
            return args
        if len(args) == MAX_ARGS:
            raise TooManyArguments()
        arg = []
        if text[i] == '"':
            i += 1
            while True:
                if i == n:
                    raise UnterminatedQuote()
                c = text[i]
                i += 1
                if c == '"':
                    break
                if c == "\\":
                    if i == n:
                        raise UnterminatedQuote()
                    escaped = text[i]
                    i += 1
                    if escaped not in ('"', "\\"):
                        arg.append("\\")
                    arg.append(escaped)
                else:
                    arg.append(c)
        else:
            while i < n and text[i] not in WHITE_SPACE:
                arg.append(text[i])
                i += 1
        args.append("".join(arg))
