"""Reply pacing, as in the Rust framework: a bot answering a busy group
must not run into the server's send limit (``rate_send_per_account``,
SPEC.md §12.12) and have its outbox stall. Each conversation gets a token
bucket, and the bot as a whole another; a reply that finds a bucket empty
*waits* for its token instead of being dropped. The arithmetic
(:class:`Bucket`) is pure and takes the time as an argument;
:class:`Pacer` adds the clock, a lock and the wait.
"""

import math
import threading
import time
from dataclasses import dataclass
from typing import Dict, Optional

#: Most conversations whose buckets are remembered; the oldest half is
#: forgotten beyond this (a forgotten conversation starts full again).
MAX_BUCKETS = 4096
#: Longest single wait, in seconds.
MAX_WAIT = 3600.0


@dataclass(frozen=True)
class PacingConfig:
    """How fast a bot may send. The defaults — 1 reply/s per conversation
    (bursts of 5) and 10/s overall (bursts of 20) — stay below the
    reference server's default send limit."""

    #: Replies per second in one conversation, sustained.
    per_conversation_per_sec: float = 1.0
    #: Replies one conversation may get at once.
    per_conversation_burst: float = 5.0
    #: Replies per second over all conversations, sustained.
    overall_per_sec: float = 10.0
    #: Replies at once over all conversations.
    overall_burst: float = 20.0


class Bucket:
    """A token bucket: ``capacity`` tokens (at least 1), refilled at
    ``rate`` per second (0 or less: never refills). Times are seconds on a
    monotonic clock."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = max(float(capacity), 1.0)
        self.tokens = self.capacity
        self.rate = max(float(rate), 0.0)
        #: When the bucket was last brought up to date.
        self.at = now

    def take(self, now: float) -> float:
        """Takes a token at ``now``; returns how many seconds the caller
        must wait before acting (0 when a token was there, ``math.inf``
        when the bucket never refills). The token is taken either way:
        later callers queue behind this one."""
        elapsed = max(now - self.at, 0.0)
        self.at = max(self.at, now)
        self.tokens = min(self.tokens + elapsed * self.rate, self.capacity)
        self.tokens -= 1.0
        if self.tokens >= 0.0:
            return 0.0
        if self.rate <= 0.0:
            return math.inf
        return -self.tokens / self.rate


class Pacer:
    """The buckets of one bot; safe to use from several threads."""

    def __init__(self, config: Optional[PacingConfig] = None) -> None:
        self.config = config or PacingConfig()
        self._lock = threading.Lock()
        self._overall = Bucket(self.config.overall_burst, self.config.overall_per_sec, time.monotonic())
        self._conversations: Dict[str, Bucket] = {}

    def delay(self, conversation: str, now: float) -> float:
        """How many seconds a reply to ``conversation`` must wait from ``now``
        (taking its tokens)."""
        with self._lock:
            if len(self._conversations) >= MAX_BUCKETS and conversation not in self._conversations:
                by_age = sorted(self._conversations.items(), key=lambda kv: kv[1].at)
                for key, _ in by_age[: MAX_BUCKETS // 2]:
                    del self._conversations[key]
            own = self._conversations.get(conversation)
            if own is None:
                own = Bucket(self.config.per_conversation_burst, self.config.per_conversation_per_sec, now)
                self._conversations[conversation] = own
            return max(own.take(now), self._overall.take(now))

    def remembered(self) -> int:
        """How many conversations have a bucket now."""
        with self._lock:
            return len(self._conversations)

    def wait(self, conversation: str) -> None:
        """Blocks this thread until a reply to ``conversation`` may go (at
        most :data:`MAX_WAIT` seconds)."""
        delay = self.delay(conversation, time.monotonic())
        if delay > 0.0:
            time.sleep(min(delay, MAX_WAIT))
