"""The reminder bot's state: every pending reminder, kept in a JSON file
that is replaced atomically (written beside it as ``<name>.json.tmp``,
synced, renamed over it, directory synced) on every change, so a restart —
or a crash — loses none. The format is the Rust sample's (version 1), so
either bot can take over the other's file::

    {"version": 1, "next_id": 3,
     "reminders": [{"id": 1, "conversation": "u:alice", "author": "alice",
                    "due_ms": 1767225600000, "text": "tea"}]}

Not thread-safe by itself: the bot holds a lock around it.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

#: Pending reminders one conversation may hold.
MAX_PER_CONVERSATION = 50
#: Pending reminders the bot holds in all.
MAX_TOTAL = 10_000
#: Longest reminder text, in UTF-8 bytes.
MAX_TEXT_LEN = 1000
#: Largest state file read back (bytes); a larger one is refused.
MAX_FILE_LEN = 16 * 1024 * 1024
#: The file format's version.
VERSION = 1
_U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Reminder:
    """One pending reminder."""

    #: Its number, unique for the bot's lifetime.
    id: int
    #: The conversation key of the chat it was set in.
    conversation: str
    #: Who set it.
    author: str
    #: When it is due, milliseconds since the Unix epoch.
    due_ms: int
    #: What to say.
    text: str


class BookError(Exception):
    """Why the book refused something."""


class BookIoError(BookError):
    """The file could not be read or written."""


class Corrupt(BookError):
    """The file is not a reminder book of this version (or too large);
    nothing was changed — move it away to start empty."""


class Full(BookError):
    """This conversation, or the bot, holds as many reminders as it may."""

    def __init__(self) -> None:
        super().__init__("too many pending reminders")


class BadText(BookError):
    """The text is empty or longer than :data:`MAX_TEXT_LEN` bytes."""

    def __init__(self) -> None:
        super().__init__(f"a reminder text is 1 to {MAX_TEXT_LEN} bytes")


def _text_ok(text: str) -> bool:
    return 0 < len(text.encode("utf-8")) <= MAX_TEXT_LEN


def _u64(value) -> bool:
    return type(value) is int and 0 <= value <= _U64_MAX


def decode(data: bytes) -> Dict:
    """Decodes a book file's bytes: JSON of this version, ids below
    ``next_id`` and unique, texts within :data:`MAX_TEXT_LEN`, at most
    :data:`MAX_TOTAL` reminders. Returns ``{"next_id": int, "reminders":
    [Reminder]}``; raises ``ValueError`` saying what is wrong."""
    try:
        stored = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(stored, dict) or not {"version", "next_id", "reminders"} <= stored.keys():
        raise ValueError("not an object with version, next_id and reminders")
    if not _u64(stored["version"]) or stored["version"] != VERSION:
        raise ValueError(f"version {stored['version']!r} (this bot reads {VERSION})")
    next_id, items = stored["next_id"], stored["reminders"]
    if not _u64(next_id) or not isinstance(items, list):
        raise ValueError("next_id is not a number or reminders not a list")
    if len(items) > MAX_TOTAL:
        raise ValueError(f"more than {MAX_TOTAL} reminders")
    reminders: List[Reminder] = []
    seen = set()
    fields = ("id", "conversation", "author", "due_ms", "text")
    for item in items:
        if not isinstance(item, dict) or not set(fields) <= item.keys():
            raise ValueError("a reminder lacks a field")
        if not (_u64(item["id"]) and _u64(item["due_ms"])
                and all(isinstance(item[k], str) for k in ("conversation", "author", "text"))):
            raise ValueError("a reminder field has the wrong type")
        reminder = Reminder(*(item[k] for k in fields))
        if reminder.id >= next_id or reminder.id in seen:
            raise ValueError(f"reminder id {reminder.id} repeated or not below next_id")
        if not _text_ok(reminder.text):
            raise ValueError(f"reminder {reminder.id} has a bad text length")
        seen.add(reminder.id)
        reminders.append(reminder)
    return {"next_id": next_id, "reminders": reminders}


class Book:
    """The pending reminders and the file they live in."""

    def __init__(self, path: "os.PathLike[str] | str") -> None:
        """Reads the book at ``path`` (an absent file is an empty book);
        raises :class:`BookIoError` or :class:`Corrupt`."""
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self._next_id, self._reminders = 1, []
            return
        except OSError as error:
            raise BookIoError(f"{self.path}: {error}") from None
        if size > MAX_FILE_LEN:
            raise Corrupt(f"{self.path} is not a reminder file this bot can read: larger than {MAX_FILE_LEN} bytes")
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise BookIoError(f"{self.path}: {error}") from None
        try:
            stored = decode(data)
        except ValueError as reason:
            raise Corrupt(f"{self.path} is not a reminder file this bot can read: {reason}") from None
        self._next_id = stored["next_id"]
        self._reminders = stored["reminders"]

    def add(self, conversation: str, author: str, due_ms: int, text: str) -> Reminder:
        """Adds a reminder and saves; returns it. Raises :class:`Full`,
        :class:`BadText`, or :class:`BookIoError` (the book is then unchanged)."""
        if not _text_ok(text):
            raise BadText()
        here = sum(1 for r in self._reminders if r.conversation == conversation)
        if here >= MAX_PER_CONVERSATION or len(self._reminders) >= MAX_TOTAL:
            raise Full()
        reminder = Reminder(self._next_id, conversation, author, due_ms, text)
        self._save(self._next_id + 1, self._reminders + [reminder])
        return reminder

    def remove(self, conversation: str, reminder_id: int) -> bool:
        """Removes reminder ``reminder_id`` of ``conversation`` (and saves);
        returns whether there was one. Raises :class:`BookIoError` (the
        book is then unchanged)."""
        kept = [r for r in self._reminders if not (r.id == reminder_id and r.conversation == conversation)]
        if len(kept) == len(self._reminders):
            return False
        self._save(self._next_id, kept)
        return True

    def in_conversation(self, conversation: str) -> List[Reminder]:
        """The reminders of ``conversation``, soonest first."""
        return sorted((r for r in self._reminders if r.conversation == conversation),
                      key=lambda r: (r.due_ms, r.id))

    def next_due(self) -> Optional[Reminder]:
        """The reminder due first, if any."""
        return min(self._reminders, key=lambda r: (r.due_ms, r.id), default=None)

    def _save(self, next_id: int, reminders: List[Reminder]) -> None:
        """Writes the new state atomically, then adopts it (work on a copy,
        swap on success)."""
        data = json.dumps(
            {"version": VERSION, "next_id": next_id, "reminders": [asdict(r) for r in reminders]},
            indent=2, ensure_ascii=False,
        ).encode("utf-8")
        temporary = self.path.with_suffix(".json.tmp")
        try:
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            raise BookIoError(f"{self.path}: {error}") from None
        self._next_id, self._reminders = next_id, reminders
        # Make the rename itself durable; the new state is in place either
        # way, so a failure here is not the caller's to handle.
        try:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            pass
