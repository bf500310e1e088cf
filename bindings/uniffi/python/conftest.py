"""Fixtures for the Python binding tests: a live server (started by
bindings/uniffi/tests/python.rs, which passes its address and certificate
fingerprint in the environment) and accounts registered, confirmed and
enrolled with real TOTP codes computed here (RFC 6238, HMAC-SHA-1)."""

import base64
import hashlib
import hmac
import itertools
import os
import struct
import time

import pytest

import microbot_uniffi as mb

_names = itertools.count()


class Authenticator:
    """An authenticator app: a fresh 30-second step per code (the test
    server accepts +-10 steps, and refuses a code used twice)."""

    def __init__(self, secret_base32):
        padded = secret_base32 + "=" * (-len(secret_base32) % 8)
        self.key = base64.b32decode(padded)
        self.step = int(time.time()) // 30

    def fresh(self):
        self.step += 1
        mac = hmac.new(self.key, struct.pack(">Q", self.step), hashlib.sha1).digest()
        offset = mac[-1] & 0x0F
        code = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
        return f"{code:06d}"


def wait_for(account, matches, timeout=30.0):
    """The first event of `account` for which `matches` is true."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        event = account.next_event(500)
        if event is None:
            continue
        if matches(event):
            return event
        seen.append(event)
    raise AssertionError(f"no matching event within {timeout}s; saw {seen!r}")


def is_message(author, text=None):
    return lambda e: (
        isinstance(e, mb.Event.MESSAGE)
        and e.author == author
        and (text is None or e.text == text)
    )


def store_path(tmp_path, username):
    """Where `new_account` keeps the store of `username` (to reopen it)."""
    return tmp_path / f"{username}.sqlite3"


@pytest.fixture(scope="session")
def server():
    return mb.Server(os.environ["MICROBOT_TEST_ADDR"], os.environ["MICROBOT_TEST_FINGERPRINT"])


@pytest.fixture
def new_account(server, tmp_path):
    """Makes connected accounts: `new_account("alice")`."""
    made = []

    def make(prefix):
        username = f"{prefix}{os.getpid() % 10000}x{next(_names)}"
        password = f"pw-{username}-long-enough"
        registration = server.register(username, password)
        auth = Authenticator(registration.totp_secret_base32)
        server.confirm_registration(username, password, auth.fresh())
        account = mb.Account.enrol(
            server, str(store_path(tmp_path, username)), None,
            username, password, auth.fresh(), "pytest",
        )
        account.connect()
        wait_for(account, lambda e: isinstance(e, mb.Event.CONNECTION) and e.state == "connected")
        made.append(account)
        return account

    yield make
    for account in made:
        account.close()
