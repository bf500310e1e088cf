"""The pure parts of the Python bot framework (microbot_bot), checked
against the same cases as the Rust framework's unit tests: command
parsing, /help, pacing buckets, reminder delays and the reminder file."""

import json
import math

import pytest

from microbot_bot import BadCommandName, Bot, Router, parse
from microbot_bot import command as c
from microbot_bot.pacing import MAX_BUCKETS, Bucket, Pacer, PacingConfig
from microbot_bot.samples.reminder import book as b
from microbot_bot.samples.reminder.delay import MAX_DELAY, Malformed, OutOfRange, describe, parse_delay


def ok(text):
    return parse(text, "echobot")


def test_names_arguments_and_rest():
    i = ok('/Remind 10m  buy "oat milk" now')
    assert i.name == "remind"
    assert i.args == ("10m", "buy", "oat milk", "now")
    assert i.rest == '10m  buy "oat milk" now'
    assert ok("/start").args == ()
    assert ok("  /help\n").name == "help"
    assert ok(r'/say "a \"b\" \\ c"').args == (r'a "b" \ c',)
    assert ok(r'/say "a\n"').args == (r"a\n",)
    assert ok('/say ""').args == ("",)
    # Unicode white space separates, as in Rust; U+001F does not.
    assert ok("/say\u3000a\u00a0b").args == ("a", "b")
    assert ok("/say a\x1fb").args == ("a\x1fb",)


def test_addressed_commands_are_ours_only_when_they_name_us():
    assert ok("/help@EchoBot").name == "help"
    with pytest.raises(c.ForAnotherBot):
        parse("/help@otherbot", "echobot")


@pytest.mark.parametrize("text,error", [
    ("hello", c.NotACommand), ("", c.NotACommand), ("/", c.BadName), ("/ x", c.BadName),
    ("/a-b", c.BadName), ("/é", c.BadName), ("/" + "a" * 33, c.BadName),
    ('/say "open', c.UnterminatedQuote), ('/say "open\\', c.UnterminatedQuote),
    ("/x " + "a " * 65, c.TooManyArguments),
])
def test_mistakes_are_typed(text, error):
    with pytest.raises(error) as raised:
        parse(text, "b")
    assert isinstance(raised.value, c.CommandError)


def test_error_texts_are_the_rust_ones():
    assert str(c.UnterminatedQuote()) == "a quoted argument is not closed"
    assert str(c.BadName()) == "a command name is 1 to 32 letters, digits or _"
    assert str(c.TooManyArguments()) == "more than 64 arguments"
    assert len(parse("/x " + "a " * 64, "b").args) == 64


def test_help_lists_built_ins_and_commands_in_order():
    router = (Router("Echo bot.")
              .command("echo", "<text>", "say it back", lambda ctx, call: None)
              .command("Zap", "", "zap", lambda ctx, call: None))
    assert router.help_text() == (
        "Echo bot.\n\nCommands:\n/echo <text> — say it back\n/help — this list\n"
        "/start — what this bot is\n/zap — zap"
    )
    assert router.start_text() == "Echo bot.\nSend /help for what I can do."
    router.check()

    @router.command("roll", "<sides>", "roll")
    def roll(ctx, call):
        return "rolled"

    assert roll(None, None) == "rolled" and "roll" in router.commands


@pytest.mark.parametrize("name", ["", "a b", "é", "x" * 33])
def test_bad_names_are_refused_at_start(name):
    router = Router("x").command(name, "", "", lambda ctx, call: None)
    with pytest.raises(BadCommandName):
        router.check()

    class Account:
        def username(self):
            return "bot"

    with pytest.raises(BadCommandName):
        Bot(Account(), router)


def test_a_bucket_allows_its_burst_then_spaces_by_its_rate():
    bucket = Bucket(3, 2, 100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.0) == pytest.approx(1.0)
    # After a second two tokens came back, both already promised.
    assert bucket.take(101.0) == pytest.approx(0.5)
    # Long idle: full again, no more than the capacity.
    assert [bucket.take(160.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(160.0) > 0
    assert Bucket(1, 0, 0.0).take(0.0) == 0.0
    assert Bucket(1, 0, 0.0).take(0.0) == 0.0 and math.isinf(_drained(Bucket(1, 0, 0.0)))


def _drained(bucket):
    bucket.take(0.0)
    return bucket.take(0.0)


def test_conversations_are_paced_apart_and_together():
    pacer = Pacer(PacingConfig(per_conversation_per_sec=1, per_conversation_burst=2,
                               overall_per_sec=100, overall_burst=3))
    now = 1000.0
    assert pacer.delay("u:a", now) == 0.0
    assert pacer.delay("u:a", now) == 0.0
    assert pacer.delay("u:a", now) == pytest.approx(1.0)
    # Another conversation has its own bucket but shares the overall one.
    assert pacer.delay("u:b", now) > 0


def test_the_bucket_map_stays_bounded():
    pacer = Pacer()
    for i in range(MAX_BUCKETS * 2):
        pacer.delay(f"u:{i}", 5.0)
    assert pacer.remembered() <= MAX_BUCKETS


def test_delays_units_sums_and_refusals():
    assert parse_delay("90s") == 90
    assert parse_delay("5m") == 300
    assert parse_delay("1h30m") == 5400
    assert parse_delay("2D") == 172_800
    assert parse_delay("366d") == MAX_DELAY
    for bad in ["", "5", "m", "5x", "1h30", "-5m", "5 m", "٣s", "1s" * 20]:
        with pytest.raises(Malformed):
            parse_delay(bad)
    for bad in ["0s", "367d", "99999999999999999999s", "18446744073709551615d"]:
        with pytest.raises(OutOfRange):
            parse_delay(bad)
    assert str(Malformed()) == "a delay looks like 90s, 5m, 1h30m or 2d"
    assert (describe(0), describe(90), describe(86_400 + 7200)) == ("0s", "1m 30s", "1d 2h")


def test_the_book_survives_reopening_and_refuses_what_it_cannot_read(tmp_path):
    path = tmp_path / "reminders.json"
    book = b.Book(path)
    first = book.add("u:alice", "alice", 2_000, "tea")
    second = book.add("u:alice", "alice", 1_000, "walk")
    book.add("u:bob", "bob", 500, "call")
    assert book.remove("u:bob", first.id) is False
    book = b.Book(path)
    assert [r.id for r in book.in_conversation("u:alice")] == [second.id, first.id]
    assert book.next_due().text == "call"
    stored = json.loads(path.read_text())
    assert stored["version"] == 1 and stored["next_id"] == 4
    assert not (tmp_path / "reminders.json.tmp").exists()

    for junk in [b"{", b"[]", b'{"version":2,"next_id":1,"reminders":[]}',
                 b'{"version":1,"next_id":1,"reminders":[{"id":1,"conversation":"u:a",'
                 b'"author":"a","due_ms":0,"text":"x"}]}',
                 b'{"version":1,"next_id":5,"reminders":[{"id":1,"conversation":"u:a",'
                 b'"author":"a","due_ms":"soon","text":"x"}]}',
                 b'{"version":true,"next_id":1,"reminders":[]}', b"\xff"]:
        path.write_bytes(junk)
        with pytest.raises(b.Corrupt):
            b.Book(path)


def test_the_book_reads_the_rust_bots_file(tmp_path):
    # What the Rust sample writes (serde_json::to_vec_pretty of its state).
    path = tmp_path / "rust.json"
    path.write_text('{\n  "version": 1,\n  "next_id": 3,\n  "reminders": [\n    {\n'
                    '      "id": 2,\n      "conversation": "u:alice",\n      "author": "alice",\n'
                    '      "due_ms": 1000,\n      "text": "tea"\n    }\n  ]\n}')
    book = b.Book(path)
    assert book.next_due() == b.Reminder(2, "u:alice", "alice", 1000, "tea")
    assert book.add("u:alice", "alice", 5, "walk").id == 3


def test_book_limits_hold(tmp_path):
    book = b.Book(tmp_path / "r.json")
    with pytest.raises(b.BadText):
        book.add("u:a", "a", 1, "")
    with pytest.raises(b.BadText):
        book.add("u:a", "a", 1, "é" * (b.MAX_TEXT_LEN // 2 + 1))
    for i in range(b.MAX_PER_CONVERSATION):
        book.add("u:a", "a", i, "t")
    with pytest.raises(b.Full):
        book.add("u:a", "a", 1, "t")
    assert book.add("u:b", "b", 1, "t")


def test_a_failed_write_leaves_the_book_unchanged(tmp_path):
    path = tmp_path / "r.json"
    book = b.Book(path)
    book.add("u:a", "a", 1, "kept")
    # The temporary file's place is taken by a directory: the write fails.
    (tmp_path / "r.json.tmp").mkdir()
    with pytest.raises(b.BookIoError):
        book.add("u:a", "a", 2, "lost")
    with pytest.raises(b.BookIoError):
        book.remove("u:a", 1)
    assert [r.text for r in book.in_conversation("u:a")] == ["kept"]
    assert [r.text for r in b.Book(path).in_conversation("u:a")] == ["kept"]


class FakeAccount:
    """Stands in for a microbot_uniffi.Account in routing tests: records
    what the bot sends."""

    def __init__(self, username):
        self.name = username
        self.sent = []

    def username(self):
        return self.name

    def send_text(self, conversation, text):
        self.sent.append((conversation, text))
        return f"{len(self.sent):032x}"


def run_routed(bot, event):
    routed = bot.route(event)
    if routed is None:
        return None
    ctx, work = routed
    work()
    return ctx


def test_routing_group_joins_and_own_events():
    import microbot_uniffi as mb
    from microbot_bot.samples import echo

    account = FakeAccount("echobot")
    bot = Bot(account, echo.router(), PacingConfig(50, 50, 50, 50))
    group = "g:" + "ab" * 16
    ctx = run_routed(bot, mb.Event.GROUP_CHANGED(group, 3, mb.GroupUpdate.MEMBERS_ADDED(["carol", "dan"])))
    assert (ctx.author, ctx.message_id) == ("", None)
    assert account.sent == [(group, "Welcome, carol, dan!")]
    ctx = run_routed(bot, mb.Event.GROUP_CHANGED(group, 1, mb.GroupUpdate.CREATED("alice", "club")))
    assert ctx.author == "alice"
    assert account.sent[-1] == (group, "Hello, group! Send /help for what I can do.")
    # Other group changes, the bot's own messages, edits and reactions: nothing.
    message_id = "00" * 16
    for event in [
        mb.Event.GROUP_CHANGED(group, 4, mb.GroupUpdate.MEMBERS_REMOVED(["dan"])),
        mb.Event.GROUP_CHANGED(group, 5, mb.GroupUpdate.RENAMED("new")),
        mb.Event.MESSAGE(group, "echobot", message_id, 0, "/help", None, None),
        mb.Event.EDITED(group, "echobot", message_id, "x"),
        mb.Event.REACTION(group, "echobot", message_id, "👍", False),
        mb.Event.MESSAGE(group, "alice", message_id, 0, "/help@otherbot", None, None),
    ]:
        assert bot.route(event) is None, event
    assert len(account.sent) == 2
    # A file: thanked, not echoed.
    run_routed(bot, mb.Event.MESSAGE("u:alice", "alice", message_id, 0, "", "a.txt", 3))
    assert account.sent[-1] == ("u:alice", "Thanks for the file.")
