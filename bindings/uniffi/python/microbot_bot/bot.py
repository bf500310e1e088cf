"""The bot's loop, as the Rust framework's: connect, read the account's
events, route each to its handler on a worker thread (a slow handler does
not hold up the others; at most :data:`MAX_RUNNING_HANDLERS` at once, the
loop waits for a free one beyond that), answer ``/start``, ``/help``,
unknown and mistyped commands itself, and stop cleanly.

Threads: :meth:`Bot.run` blocks the calling thread, which pulls events
with ``Account.next_event``; handlers run on a thread pool. The binding's
methods release the GIL while they block, so the threads really overlap.
"""

import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Tuple

import microbot_uniffi as mb

from .command import CommandError, ForAnotherBot, Invocation, NotACommand, parse
from .context import Context
from .errors import UsageError
from .pacing import Pacer, PacingConfig
from .router import Edit, Reaction, Router

#: Handlers running at once at the most.
MAX_RUNNING_HANDLERS = 64
#: How long one ``next_event`` call waits, in milliseconds: the longest a
#: stop request waits for the loop to notice it.
POLL_MS = 200

log = logging.getLogger("microbot_bot")

#: A routed event: the context and the work to do.
Routed = Tuple[Context, Callable[[], object]]


class Bot:
    """A bot: an account (``microbot_uniffi.Account``, enrolled or opened
    by the caller, connected or not) and a :class:`~microbot_bot.router.Router`.

    Raises :class:`~microbot_bot.errors.BadCommandName` when a registered
    command name is not valid.
    """

    def __init__(self, account, router: Router, pacing: Optional[PacingConfig] = None) -> None:
        router.check()
        self._account = account
        self._router = router
        self._pacer = Pacer(pacing)
        self._me = account.username()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None

    @property
    def account(self):
        """The bot's account."""
        return self._account

    @property
    def username(self) -> str:
        """The bot's username."""
        return self._me

    def context(self, conversation: str) -> Context:
        """A context for sending on the bot's own initiative (a reminder
        firing, a scheduled post) into ``conversation``."""
        return Context(self._account, self._pacer, conversation, self._me, None)

    def run(self, stop: Optional[threading.Event] = None) -> None:
        """Connects and answers events until ``stop`` is set (or
        :meth:`stop` is called); then waits for the running handlers and
        disconnects. Handler failures are logged and, for
        :class:`~microbot_bot.errors.UsageError`, told to the user."""
        stop = stop or self._stop
        self._account.connect()
        free = threading.BoundedSemaphore(MAX_RUNNING_HANDLERS)
        try:
            with ThreadPoolExecutor(MAX_RUNNING_HANDLERS, thread_name_prefix="microbot-bot") as pool:
                while not stop.is_set() and not self._stop.is_set():
                    event = self._account.next_event(POLL_MS)
                    if event is None:
                        continue
                    routed = self.route(event)
                    if routed is None:
                        continue
                    free.acquire()
                    future = pool.submit(_report, *routed)
                    future.add_done_callback(lambda _: free.release())
        finally:
            self._account.disconnect()

    def start(self) -> None:
        """Runs :meth:`run` on a new thread (``microbot-bot-loop``)."""
        if self._thread is not None:
            raise RuntimeError("this bot was started already")

        def loop() -> None:
            try:
                self.run()
            except BaseException as error:  # handed to stop()
                self._failure = error

        self._thread = threading.Thread(target=loop, name="microbot-bot-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = 30.0) -> None:
        """Asks the loop to stop and, when it runs on :meth:`start`'s thread,
        waits up to ``timeout`` seconds for it; raises what the loop raised,
        or ``TimeoutError``."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the bot did not stop in time")
        if self._failure is not None:
            raise self._failure

    def route(self, event) -> Optional[Routed]:
        """The work ``event`` calls for, with its context, or ``None``.
        The bot's own messages, edits and reactions (copies from its other
        devices) are not routed."""
        me = self._me

        def context(conversation: str, author: str, message_id: Optional[str]) -> Context:
            return Context(self._account, self._pacer, conversation, author, message_id)

        router = self._router
        if isinstance(event, mb.Event.MESSAGE) and event.author != me:
            ctx = context(event.conversation, event.author, event.message_id)
            try:
                invocation = parse(event.text, me)
            except NotACommand:
                if router.message_handler is None:
                    return None
                return ctx, functools.partial(router.message_handler, ctx, event)
            except ForAnotherBot:
                return None
            except CommandError as error:
                return ctx, functools.partial(ctx.reply, f"{error}. Send /help for the commands.")
            return ctx, self._command(ctx, invocation)
        if isinstance(event, mb.Event.EDITED) and event.author != me:
            if router.edit_handler is None:
                return None
            ctx = context(event.conversation, event.author, event.message_id)
            return ctx, functools.partial(router.edit_handler, ctx, Edit(event.message_id, event.text))
        # The binding names the reacting account `_from` (`from` is a keyword).
        if isinstance(event, mb.Event.REACTION) and event._from != me:
            if router.reaction_handler is None:
                return None
            ctx = context(event.conversation, event._from, event.message_id)
            reaction = Reaction(event.message_id, event.emoji, event.removed)
            return ctx, functools.partial(router.reaction_handler, ctx, reaction)
        if isinstance(event, mb.Event.GROUP_CHANGED):
            if router.group_join_handler is None:
                return None
            update = event.update
            if isinstance(update, mb.GroupUpdate.CREATED):
                by, joined = update.by, [me]
            elif isinstance(update, mb.GroupUpdate.MEMBERS_ADDED):
                by, joined = "", list(update.usernames)
            else:
                return None
            ctx = context(event.conversation, by, None)
            return ctx, functools.partial(router.group_join_handler, ctx, joined)
        return None

    def _command(self, ctx: Context, invocation: Invocation) -> Callable[[], object]:
        entry = self._router.commands.get(invocation.name)
        if entry is not None:
            return functools.partial(entry.handler, ctx, invocation)
        if invocation.name == "start":
            text = self._router.start_text()
        elif invocation.name == "help":
            text = self._router.help_text()
        else:
            text = f"I don't know /{invocation.name}. Send /help for the commands."
        return functools.partial(ctx.reply, text)


def _report(ctx: Context, work: Callable[[], object]) -> None:
    """Runs a handler; a usage error goes back to the user, any other
    failure to the log (its type and text, never the message's) and a short
    apology to the user."""
    try:
        work()
    except UsageError as usage:
        try:
            ctx.reply(str(usage))
        except Exception as error:  # noqa: BLE001 - a bot must keep running
            log.warning("cannot send a usage hint: %s", error)
    except Exception as failure:  # noqa: BLE001 - a handler's bug must not stop the bot
        log.warning("a bot handler failed: %s: %s", type(failure).__name__, failure)
        try:
            ctx.reply("Sorry, that did not work.")
        except Exception as error:  # noqa: BLE001
            log.warning("cannot tell the user: %s", error)
