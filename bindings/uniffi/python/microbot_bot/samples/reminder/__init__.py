"""The reminder bot: ``/remind <delay> <text>`` sets a reminder in this
chat, ``/reminders`` lists them, ``/cancel <id>`` removes one. Reminders
live in a file (:mod:`.book`, the Rust sample's format), so they fire after
a restart too; one overdue while the bot was down fires as soon as it is
back. A reminder is queued in the account's outbox before it is removed
from the file: a crash between the two can repeat it once, never lose it.

The Python twin of ``bots/src/samples/reminder``: same commands, same
answers. A scheduler thread waits for the next due reminder beside the
bot's loop; both share the book under one lock.
"""

import logging
import os
import re
import threading
import time
from typing import Optional

from ...bot import Bot
from ...command import split_once_white, trim
from ...errors import StateError, UsageError
from ...pacing import PacingConfig
from ...router import Router
from .book import MAX_TEXT_LEN, BadText, Book, BookError, Full, Reminder
from .delay import DelayError, describe, parse_delay

#: The first line of ``/start`` and ``/help``.
ABOUT = "Reminder bot: I remind you of things later, even if I restart."
#: Longest the scheduler sleeps before looking at the book again, seconds.
MAX_SLEEP = 3600.0

log = logging.getLogger("microbot_bot.reminder")
_ID = re.compile(r"\+?[0-9]{1,20}")


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def _state_error(error: BookError) -> Exception:
    if isinstance(error, Full):
        return UsageError("You have too many reminders here; /cancel some first.")
    if isinstance(error, BadText):
        return UsageError(f"A reminder text is 1 to {MAX_TEXT_LEN} bytes.")
    return StateError(str(error))


class ReminderBot:
    """The reminder bot on ``account`` with its reminders in
    ``state_file``. Raises :class:`~microbot_bot.errors.StateError` when
    the file cannot be read."""

    def __init__(self, account, state_file: "os.PathLike[str] | str",
                 pacing: Optional[PacingConfig] = None) -> None:
        try:
            self._book = Book(state_file)
        except BookError as error:
            raise StateError(str(error)) from None
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self.bot = Bot(account, self.router(), pacing)
        self._sender = self.bot.context(f"u:{self.bot.username}")
        self._scheduler: Optional[threading.Thread] = None
        self._runner: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None

    def router(self) -> Router:
        """The routing table: ``/remind``, ``/reminders``, ``/cancel``."""
        return (
            Router(ABOUT)
            .command("remind", "<delay> <text>",
                     "remind this chat of <text> after <delay> (90s, 5m, 1h30m, 2d)", self._remind)
            .command("reminders", "", "list the reminders of this chat", self._list)
            .command("cancel", "<id>", "cancel a reminder of this chat", self._cancel)
        )

    def _remind(self, ctx, call) -> None:
        usage = UsageError("Usage: /remind <delay> <text>, for example /remind 10m tea")
        if not call.args:
            raise usage
        try:
            delay = parse_delay(call.args[0])
        except DelayError as error:
            raise UsageError(f"{error}.") from None
        split = split_once_white(call.rest)
        text = trim(split[1]) if split else ""
        if not text:
            raise usage
        due = now_ms() + delay * 1000
        with self._changed:
            try:
                reminder = self._book.add(ctx.conversation, ctx.author, due, text)
            except BookError as error:
                raise _state_error(error) from None
            self._changed.notify_all()
        ctx.reply(f"Reminder {reminder.id} set for {describe(delay)}.")

    def _list(self, ctx, _call) -> None:
        with self._changed:
            pending = self._book.in_conversation(ctx.conversation)
        if not pending:
            ctx.reply("No reminders here.")
            return
        now = now_ms()
        ctx.reply("\n".join(
            f"{r.id}: {r.text} (in {describe(max(r.due_ms - now, 0) // 1000)})" for r in pending
        ))

    def _cancel(self, ctx, call) -> None:
        reminder_id = None
        if call.args and _ID.fullmatch(call.args[0]):
            reminder_id = int(call.args[0])
        if reminder_id is None or reminder_id >= 2**64:
            raise UsageError("Usage: /cancel <id> (see /reminders)")
        with self._changed:
            try:
                removed = self._book.remove(ctx.conversation, reminder_id)
            except BookError as error:
                raise _state_error(error) from None
            self._changed.notify_all()
        ctx.reply(f"Reminder {reminder_id} cancelled." if removed
                  else f"There is no reminder {reminder_id} here.")

    def _due(self) -> Optional[Reminder]:
        """Waits for the next due reminder; ``None`` once stopped."""
        with self._changed:
            while not self._stopped.is_set():
                reminder = self._book.next_due()
                if reminder is None:
                    self._changed.wait()
                    continue
                wait = (reminder.due_ms - now_ms()) / 1000
                if wait > 0:
                    self._changed.wait(min(wait, MAX_SLEEP))
                    continue
                return reminder
        return None

    def _fire_when_due(self) -> None:
        """The scheduler thread: sends each reminder as it falls due, then
        removes it from the book."""
        while True:
            reminder = self._due()
            if reminder is None:
                return
            try:
                self._sender.send_to(reminder.conversation, f"⏰ Reminder: {reminder.text}")
            except Exception as error:  # noqa: BLE001 - say so once and drop it rather than retry forever
                log.warning("reminder %d cannot be sent; dropped: %s", reminder.id, error)
            with self._changed:
                try:
                    self._book.remove(reminder.conversation, reminder.id)
                    continue
                except BookError as error:
                    log.error("cannot save the reminder file: %s", error)
            # The file cannot be written: wait before the next try instead
            # of spinning; the reminder stays and may repeat once it works.
            self._stopped.wait(1.0)

    def run(self, stop: Optional[threading.Event] = None) -> None:
        """Runs the bot and its scheduler until ``stop`` is set (or
        :meth:`stop` is called)."""
        self._scheduler = threading.Thread(target=self._fire_when_due, name="microbot-reminders", daemon=True)
        self._scheduler.start()
        try:
            self.bot.run(stop)
        finally:
            with self._changed:
                self._stopped.set()
                self._changed.notify_all()
            self._scheduler.join()

    def start(self) -> None:
        """Runs :meth:`run` on a new thread."""
        if self._runner is not None:
            raise RuntimeError("this bot was started already")
        self._runner = threading.Thread(target=self._run_catching, name="microbot-reminder-bot", daemon=True)
        self._runner.start()

    def _run_catching(self) -> None:
        try:
            self.run()
        except BaseException as error:  # handed to stop()
            self._failure = error

    def stop(self, timeout: Optional[float] = 30.0) -> None:
        """Stops the bot started with :meth:`start`, waiting up to
        ``timeout`` seconds; raises what it raised, or ``TimeoutError``."""
        self.bot.stop()
        if self._runner is None:
            return
        self._runner.join(timeout)
        if self._runner.is_alive():
            raise TimeoutError("the reminder bot did not stop in time")
        if self._failure is not None:
            raise self._failure


def run(account, state_file: "os.PathLike[str] | str", stop: Optional[threading.Event] = None,
        pacing: Optional[PacingConfig] = None) -> None:
    """Runs the reminder bot on ``account`` with its reminders in
    ``state_file`` until ``stop`` is set. Raises
    :class:`~microbot_bot.errors.StateError` when the file cannot be read."""
    ReminderBot(account, state_file, pacing).run(stop)
