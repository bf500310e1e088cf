"""Which handler answers what: commands by name (with ``/help`` written
from their descriptions and a default ``/start``), and one handler each
for plain messages, edits, reactions and group joins. The same table and
the same texts as the Rust framework's ``Router``.

Handlers are plain functions called on a worker thread of the bot:

- a command: ``handler(ctx, invocation)`` (:class:`~microbot_bot.command.Invocation`);
- a message: ``handler(ctx, message)``, the binding's ``Event.MESSAGE``
  (``text``, ``file_name``, ``file_size``, ``message_id``...);
- an edit: ``handler(ctx, edit)`` (:class:`Edit`);
- a reaction: ``handler(ctx, reaction)`` (:class:`Reaction`);
- a group join: ``handler(ctx, joined)``, the list of usernames that joined.

Their return value is ignored; what they raise is handled as
:mod:`microbot_bot.errors` says.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .command import ascii_lower, is_valid_name
from .errors import BadCommandName

#: A handler: ``(ctx, value) -> None``.
Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Edit:
    """An edit of a message the bot can see."""

    #: The edited message (32 hex digits).
    message_id: str
    #: Its text now.
    text: str


@dataclass(frozen=True)
class Reaction:
    """A reaction added or withdrawn."""

    #: The message reacted to (32 hex digits).
    message_id: str
    #: The emoji.
    emoji: str
    #: True when the reaction was withdrawn.
    removed: bool


@dataclass(frozen=True)
class CommandEntry:
    """One registered command."""

    #: The arguments, as in ``"<delay> <text>"``.
    usage: str
    #: What it does, for ``/help``.
    description: str
    #: Its handler.
    handler: Handler


_BUILT_IN = (("start", "", "what this bot is"), ("help", "", "this list"))


class Router:
    """The bot's routing table, built once before :class:`~microbot_bot.Bot`.

    Every ``command``/``on_*`` method works two ways: given the handler it
    registers it and returns the router (to chain calls); without it, it
    returns a decorator::

        router = Router("Dice bot: I roll dice.")

        @router.command("roll", "<sides>", "roll a die with <sides> sides")
        def roll(ctx, call): ...

        router.on_message(lambda ctx, message: ctx.reply(message.text))
    """

    def __init__(self, about: str) -> None:
        """An empty table; ``about`` is the first line of ``/start`` and ``/help``."""
        self.about = about
        self.commands: Dict[str, CommandEntry] = {}
        self.message_handler: Optional[Handler] = None
        self.edit_handler: Optional[Handler] = None
        self.reaction_handler: Optional[Handler] = None
        self.group_join_handler: Optional[Handler] = None

    def _register(self, handler: Optional[Handler], store: Callable[[Handler], None]):
        if handler is not None:
            store(handler)
            return self

        def decorator(function: Handler) -> Handler:
            store(function)
            return function

        return decorator

    def command(self, name: str, usage: str, description: str, handler: Optional[Handler] = None):
        """Runs ``handler(ctx, invocation)`` for ``/name …`` (names match
        ASCII case-insensitively; ``usage`` lists the arguments, as in
        ``"<delay> <text>"``, and with ``description`` makes the command's
        line in ``/help``). Registering ``start`` or ``help`` replaces the
        built-in answer. An invalid name is refused when the bot is made
        (:class:`~microbot_bot.errors.BadCommandName`)."""

        def store(function: Handler) -> None:
            self.commands[ascii_lower(name)] = CommandEntry(usage, description, function)

        return self._register(handler, store)

    def on_message(self, handler: Optional[Handler] = None):
        """Runs ``handler(ctx, message)`` for every message that is not a
        command (texts and files, in direct chats and groups)."""
        return self._register(handler, lambda f: setattr(self, "message_handler", f))

    def on_edit(self, handler: Optional[Handler] = None):
        """Runs ``handler(ctx, edit)`` when someone edits a message."""
        return self._register(handler, lambda f: setattr(self, "edit_handler", f))

    def on_reaction(self, handler: Optional[Handler] = None):
        """Runs ``handler(ctx, reaction)`` when someone adds or withdraws a reaction."""
        return self._register(handler, lambda f: setattr(self, "reaction_handler", f))

    def on_group_join(self, handler: Optional[Handler] = None):
        """Runs ``handler(ctx, joined)`` when the bot is added to a group
        (``joined`` holds the bot's own username) or members join a group it
        is in; ``ctx.author`` is whoever added them when known, else ``""``."""
        return self._register(handler, lambda f: setattr(self, "group_join_handler", f))

    def help_text(self) -> str:
        """The answer to ``/help``: the about line, then one line per
        command (built-ins included), sorted by name."""
        lines: Dict[str, Tuple[str, str]] = {name: (usage, desc) for name, usage, desc in _BUILT_IN}
        for name, entry in self.commands.items():
            lines[name] = (entry.usage, entry.description)
        text: List[str] = [f"{self.about}\n\nCommands:"]
        # Rust's BTreeMap<&str> orders by bytes; UTF-8 byte order is code point order.
        for name in sorted(lines):
            usage, description = lines[name]
            text.append(f"\n/{name}" + (f" {usage}" if usage else "") + f" — {description}")
        return "".join(text)

    def start_text(self) -> str:
        """The answer to ``/start`` unless the bot registers its own."""
        return f"{self.about}\nSend /help for what I can do."

    def check(self) -> None:
        """Raises :class:`~microbot_bot.errors.BadCommandName` for the first
        registered name that is not 1 to 32 ASCII letters, digits or ``_``."""
        for name in sorted(self.commands):
            if not is_valid_name(name):
                raise BadCommandName(name)
