"""``python -m microbot_bot``: runs a sample bot on an enrolled account's
store (for example one made by ``microbot register <name>``: the store is
``<data dir>/profiles/<name>/store.sqlite3``; ``MICROBOT_PASSPHRASE`` opens
an encrypted one), like the Rust ``microbot-bot`` binary. Stops on Ctrl-C
or SIGTERM. Needs ``microbot_uniffi`` (the generated module and its
library) on the Python path."""

import argparse
import logging
import os
import signal
import sys
import threading

import microbot_uniffi as mb

from .bot import Bot
from .errors import BotError
from .samples import echo
from .samples.reminder import ReminderBot


def main(argv=None) -> int:
    """Parses the command line, runs the chosen bot; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m microbot_bot", description="Runs a Microbot sample bot")
    parser.add_argument("--store", required=True, help="the account's SDK store")
    which = parser.add_subparsers(dest="bot", required=True)
    which.add_parser("echo", help="the echo bot")
    reminder = which.add_parser("reminder", help="the reminder bot")
    reminder.add_argument("--state", required=True, help="where its reminders are kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("MICROBOT_LOG", "INFO").upper(), stream=sys.stderr)

    try:
        account = mb.Account.open(args.store, os.environ.get("MICROBOT_PASSPHRASE") or None)
    except mb.MicrobotError as error:
        reason = getattr(error, "message", error)
        print(f"microbot-bot: cannot open {args.store}: {reason}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if args.bot == "echo":
            Bot(account, echo.router()).run(stop)
        else:
            ReminderBot(account, args.state).run(stop)
    except BotError as error:
        print(f"microbot-bot: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
