"""The Python package generated from bindings/uniffi against a live server:
two clients chat, a group of three, a file, an event listener, typed errors."""

import queue

import pytest

import microbot_uniffi as mb
from conftest import is_message, store_path, wait_for


def test_two_clients_chat(new_account):
    alice, bob = new_account("alice"), new_account("bob")
    sent = alice.send_text(bob.username(), "hello bob")
    wait_for(alice, lambda e: isinstance(e, mb.Event.SENT) and e.message_id == sent)
    got = wait_for(bob, is_message(alice.username(), "hello bob"))
    assert got.message_id == sent
    assert got.conversation == f"u:{alice.username()}"

    bob.send_text(got.conversation, "hi alice")
    wait_for(alice, is_message(bob.username(), "hi alice"))

    bob.react(got.conversation, sent, "👍", False)
    reaction = wait_for(alice, lambda e: isinstance(e, mb.Event.REACTION))
    assert (reaction.emoji, reaction.message_id, reaction.removed) == ("👍", sent, False)

    alice.edit(bob.username(), sent, "hello bob, edited")
    edited = wait_for(bob, lambda e: isinstance(e, mb.Event.EDITED))
    assert (edited.message_id, edited.text) == (sent, "hello bob, edited")

    assert alice.safety_number(bob.username()) == bob.safety_number(alice.username())


def test_group_of_three(new_account):
    alice, bob, carol = new_account("alice"), new_account("bob"), new_account("carol")
    group = alice.create_group("py group", [bob.username(), carol.username()])
    assert group.startswith("g:") and len(group) == 34
    assert sorted(alice.group_members(group)) == sorted(
        [alice.username(), bob.username(), carol.username()]
    )
    alice.send_text(group, "hello group")
    for member in (bob, carol):
        got = wait_for(member, is_message(alice.username(), "hello group"))
        assert got.conversation == group
    bob.send_text(group, "bob here")
    for member in (alice, carol):
        wait_for(member, is_message(bob.username(), "bob here"))


def test_attachment(new_account, tmp_path):
    alice, bob = new_account("alice"), new_account("bob")
    # A first message so both sides know each other, then the file.
    alice.send_text(bob.username(), "a file follows")
    wait_for(bob, is_message(alice.username(), "a file follows"))
    payload = bytes(range(256)) * 600  # 150 KiB, several chunks
    source = tmp_path / "data.bin"
    source.write_bytes(payload)
    sent = alice.send_file(bob.username(), str(source), "the data")
    got = wait_for(bob, is_message(alice.username(), "the data"))
    assert got.message_id == sent
    assert (got.file_name, got.file_size) == ("data.bin", len(payload))
    dest = tmp_path / "received.bin"
    assert bob.download_attachment(got.message_id, str(dest)) == len(payload)
    assert dest.read_bytes() == payload


def test_listener_gets_events_on_the_library_thread(new_account):
    alice, bob = new_account("alice"), new_account("bob")
    received = queue.Queue()

    class Listener(mb.EventListener):
        def on_event(self, event):
            received.put(event)

    bob.set_listener(Listener())
    with pytest.raises(mb.MicrobotError.State):
        bob.next_event(10)
    with pytest.raises(mb.MicrobotError.State):
        bob.set_listener(Listener())
    alice.send_text(bob.username(), "to the listener")
    while True:
        event = received.get(timeout=30)
        if isinstance(event, mb.Event.MESSAGE):
            assert event.text == "to the listener"
            break


def test_errors_are_typed(server, new_account):
    alice = new_account("alice")
    with pytest.raises(mb.MicrobotError.InvalidArgument):
        alice.send_text("g:not-hex", "x")
    with pytest.raises(mb.MicrobotError.InvalidArgument):
        alice.react("bob", "00", "x", False)
    with pytest.raises(mb.MicrobotError.InvalidArgument):
        mb.Server("not an address", "00" * 32)
    with pytest.raises(mb.MicrobotError.Auth):
        server.confirm_registration("nobody-here", "pw-long-enough", "000000")
    assert mb.version()


def test_one_handle_per_store_and_close_lets_it_go(new_account, tmp_path):
    account = new_account("closer")
    path = str(store_path(tmp_path, account.username()))
    with pytest.raises(mb.MicrobotError.Open, match="in use"):
        mb.Account.open(path, None)
    with pytest.raises(mb.MicrobotError.Open, match="no store at"):
        mb.Account.open(path + ".typo", None)
    account.close()
    account.close()
    with pytest.raises(mb.MicrobotError.State, match="closed"):
        account.send_text("someone", "hello")
    assert account.username().startswith("closer")
    reopened = mb.Account.open(path, None)
    assert reopened.username() == account.username()
    reopened.close()
