"""The Python bot framework (microbot_bot) and its two sample bots against
the live server, with a second Python account playing the user: the echo
bot through every kind of handler (/start, /help, /echo, unknown and
mistyped commands, a command for another bot, a plain message, an edit, a
reaction, a file, a group join), a custom router (own /start, a failing
handler), and the reminder bot keeping a reminder across a stop and a
restart on the same store, and the runnable example of docs/BINDINGS.md
as its own process."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import microbot_uniffi as mb
from conftest import is_message, store_path, wait_for
from microbot_bot import Bot, PacingConfig, Router, UsageError
from microbot_bot.samples import echo
from microbot_bot.samples.reminder import ReminderBot

#: Fast pacing for tests (the pacing itself is unit-tested).
QUICK = PacingConfig(50, 50, 50, 50)


def from_bot(user, bot_name, timeout=30.0):
    """The next message from the bot (skipping other events)."""
    return wait_for(user, is_message(bot_name), timeout)


def text_from_bot(user, bot_name):
    return from_bot(user, bot_name).text


def no_message_from(user, bot_name, seconds):
    """Fails if the bot writes within `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        event = user.next_event(max(int(left * 1000), 1))
        assert not is_message(bot_name)(event), f"unexpected {event!r}"


def test_echo_bot_answers_every_kind_of_event(new_account, tmp_path):
    alice = new_account("alice")
    # Online first, so its prekeys are published before anyone writes to it.
    bot_account = new_account("echobot")
    name = bot_account.username()
    bot = Bot(bot_account, echo.router(), QUICK)
    bot.start()
    try:
        alice.send_text(name, "/start")
        start = text_from_bot(alice, name)
        assert start.startswith(echo.ABOUT) and "/help" in start, start

        alice.send_text(name, "/help")
        help_text = text_from_bot(alice, name)
        for line in ["/echo <text> — say <text> back", "/file <text>", "/start", "/help"]:
            assert line in help_text, help_text

        alice.send_text(name, "/echo  hello  there ")
        assert text_from_bot(alice, name) == "hello  there"
        alice.send_text(name, f'/ECHO@{name.upper()} "quoted"')
        assert text_from_bot(alice, name) == '"quoted"'
        alice.send_text(name, "/echo")
        assert text_from_bot(alice, name) == "Usage: /echo <text>"
        alice.send_text(name, "/frobnicate")
        assert text_from_bot(alice, name) == "I don't know /frobnicate. Send /help for the commands."
        alice.send_text(name, '/echo "open')
        assert text_from_bot(alice, name) == "a quoted argument is not closed. Send /help for the commands."
        # A command for another bot is not answered; the next message is.
        alice.send_text(name, "/echo@otherbot hi")
        plain = alice.send_text(name, "just text")
        assert text_from_bot(alice, name) == "just text"

        alice.edit(name, plain, "edited text")
        assert text_from_bot(alice, name) == "You edited a message: edited text"
        alice.react(name, plain, "👍", False)
        assert text_from_bot(alice, name) == "You reacted 👍"
        alice.react(name, plain, "👍", True)  # a withdrawn reaction is not answered

        alice.send_text(name, "/file the file's words")
        got = from_bot(alice, name)
        assert got.file_name is not None and got.file_size == len("the file's words"), got
        dest = tmp_path / "got.txt"
        alice.download_attachment(got.message_id, str(dest))
        assert dest.read_bytes() == b"the file's words"

        group = alice.create_group("club", [name])
        greeting = from_bot(alice, name)
        assert greeting.conversation == group
        assert greeting.text.startswith("Hello, group!"), greeting
        alice.send_text(group, "/echo@" + name + " in the group")
        got = from_bot(alice, name)
        assert (got.conversation, got.text) == (group, "in the group")
    finally:
        bot.stop()


def test_a_custom_router_overrides_start_and_reports_failures(new_account):
    alice = new_account("alice")
    bot_account = new_account("dicebot")
    name = bot_account.username()
    router = Router("Dice bot: I roll dice.")

    @router.command("start", "", "say hello")
    def start(ctx, call):
        ctx.reply(f"Hello {ctx.author}, send /roll 6.")

    @router.command("roll", "<sides>", "roll a die with <sides> sides")
    def roll(ctx, call):
        if not call.args or not call.args[0].isdigit() or int(call.args[0]) < 2:
            raise UsageError("Usage: /roll <sides>, for example /roll 6")
        ctx.react("🎲")
        ctx.reply(f"🎲 {1 + time.time_ns() % int(call.args[0])}")

    @router.command("boom", "", "fail")
    def boom(ctx, call):
        raise RuntimeError("a bug in the handler")

    bot = Bot(bot_account, router, QUICK)
    bot.start()
    try:
        alice.send_text(name, "/start")
        assert text_from_bot(alice, name) == f"Hello {alice.username()}, send /roll 6."
        alice.send_text(name, "/help")
        assert "/start — say hello" in text_from_bot(alice, name)
        alice.send_text(name, "/roll x")
        assert text_from_bot(alice, name) == "Usage: /roll <sides>, for example /roll 6"
        rolled = alice.send_text(name, "/roll 6")
        reaction = wait_for(alice, lambda e: isinstance(e, mb.Event.REACTION))
        assert (reaction.message_id, reaction.emoji) == (rolled, "🎲")
        value = text_from_bot(alice, name)
        assert value.startswith("🎲 ") and 1 <= int(value.split()[1]) <= 6, value
        alice.send_text(name, "/boom")
        assert text_from_bot(alice, name) == "Sorry, that did not work."
        # A plain message has no handler here: no answer, and the bot lives on.
        alice.send_text(name, "anyone?")
        no_message_from(alice, name, 2.0)
        alice.send_text(name, "/roll 2")
        assert text_from_bot(alice, name).startswith("🎲 ")
    finally:
        bot.stop()


def test_reminder_bot_keeps_its_reminders_across_a_restart(new_account, tmp_path):
    alice = new_account("alice")
    bot_account = new_account("remindbot")
    name = bot_account.username()
    state = tmp_path / "reminders.json"

    bot = ReminderBot(bot_account, state, QUICK)
    bot.start()
    try:
        alice.send_text(name, "/remind soon tea")
        assert text_from_bot(alice, name) == "a delay looks like 90s, 5m, 1h30m or 2d."
        alice.send_text(name, "/remind 5m")
        assert text_from_bot(alice, name).startswith("Usage: /remind")
        set_at = time.monotonic()
        alice.send_text(name, "/remind 12s tea time")
        assert text_from_bot(alice, name) == "Reminder 1 set for 12s."
        alice.send_text(name, "/remind 1h30m call home")
        assert text_from_bot(alice, name) == "Reminder 2 set for 1h 30m."
        alice.send_text(name, "/reminders")
        listed = text_from_bot(alice, name)
        assert listed.startswith("1: tea time (in ") and "\n2: call home (in 1h 29m" in listed, listed
        alice.send_text(name, "/cancel 2")
        assert text_from_bot(alice, name) == "Reminder 2 cancelled."
        alice.send_text(name, "/cancel 2")
        assert text_from_bot(alice, name) == "There is no reminder 2 here."
        alice.send_text(name, "/cancel two")
        assert text_from_bot(alice, name) == "Usage: /cancel <id> (see /reminders)"
    finally:
        # The bot goes down before the reminder is due, and stays down past it.
        bot.stop()
    due = set_at + 12
    assert time.monotonic() < due, "the machine is too slow for this test: the bot stopped after the reminder was due"
    stored = json.loads(state.read_text())
    assert [(r["id"], r["text"], r["author"]) for r in stored["reminders"]] == [(1, "tea time", alice.username())]
    no_message_from(alice, name, due - time.monotonic() + 1)

    # Back up (same store, same file): the overdue reminder fires once.
    # The old handle lets the store go first (one handle per store).
    bot_account.close()
    reopened = mb.Account.open(str(store_path(tmp_path, name)), None)
    bot = ReminderBot(reopened, state, QUICK)
    bot.start()
    try:
        fired = from_bot(alice, name)
        assert (fired.text, fired.conversation) == ("⏰ Reminder: tea time", f"u:{name}")
        alice.send_text(name, "/reminders")
        assert text_from_bot(alice, name) == "No reminders here."
        assert json.loads(state.read_text())["reminders"] == []
        no_message_from(alice, name, 2.0)
    finally:
        bot.stop()


def test_the_guide_example_runs_as_written(new_account, tmp_path):
    """The dice bot of docs/BINDINGS.md, taken from the guide, in a child
    process on a store enrolled here; Ctrl-C (SIGINT) stops it cleanly."""
    guide = (Path(__file__).parents[3] / "docs" / "BINDINGS.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "Dice bot" in b]
    assert len(blocks) == 1, "docs/BINDINGS.md has no dice bot example"
    script = tmp_path / "dicebot.py"
    script.write_text(blocks[0])

    alice = new_account("alice")
    bot_account = new_account("dicebot")
    name = bot_account.username()
    # The child process is the bot's device from now on: one handle per store.
    bot_account.close()
    child = subprocess.Popen(
        [sys.executable, str(script), str(store_path(tmp_path, name))],
        env={**os.environ, "MICROBOT_PASSPHRASE": "",
             # As the guide says: the binding's directory and this one (microbot_bot).
             "PYTHONPATH": os.pathsep.join([os.environ["PYTHONPATH"], str(Path(__file__).parent)])},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        alice.send_text(name, "/roll")
        assert text_from_bot(alice, name) == "Usage: /roll <sides>, for example /roll 6"
        rolled = alice.send_text(name, "/roll 6")
        reaction = wait_for(alice, lambda e: isinstance(e, mb.Event.REACTION))
        assert (reaction.message_id, reaction.emoji) == (rolled, "🎲")
        value = text_from_bot(alice, name)
        assert value.startswith("🎲 ") and 1 <= int(value.split()[1]) <= 6, value
        alice.send_text(name, "/help")
        assert text_from_bot(alice, name) == (
            "Dice bot: I roll dice.\n\nCommands:\n/help — this list\n"
            "/roll <sides> — roll a die with <sides> sides\n/start — what this bot is"
        )
        group = alice.create_group("dice club", [name])
        greeting = from_bot(alice, name)
        assert (greeting.conversation, greeting.text) == (group, "Hello! Send /roll 6.")
        child.send_signal(signal.SIGINT)
        output, _ = child.communicate(timeout=30)
        assert child.returncode == 0, output.decode(errors="replace")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
