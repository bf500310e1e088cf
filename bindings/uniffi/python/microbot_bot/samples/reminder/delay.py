"""``/remind`` delays: one or more ``<number><unit>`` parts, units ``s``,
``m``, ``h``, ``d`` (``90s``, ``5m``, ``1h30m``, ``2d``), at least 1 s and
at most 366 days — the Rust sample's grammar, limits and messages."""

#: The longest delay accepted, in seconds.
MAX_DELAY = 366 * 24 * 3600
_U64_MAX = 2**64 - 1
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class DelayError(ValueError):
    """Why a delay was not understood; ``str(error)`` is the Rust text."""


class Malformed(DelayError):
    """Not ``<number><unit>`` parts."""

    def __init__(self) -> None:
        super().__init__("a delay looks like 90s, 5m, 1h30m or 2d")


class OutOfRange(DelayError):
    """Zero, or beyond :data:`MAX_DELAY`."""

    def __init__(self) -> None:
        super().__init__("a delay is from 1s to 366d")


def parse_delay(text: str) -> int:
    """The delay ``text`` names, in whole seconds; raises :class:`Malformed`
    or :class:`OutOfRange`."""
    if not text or len(text.encode("utf-8")) > 32:
        raise Malformed()
    total = 0
    number = None
    for c in text:
        if "0" <= c <= "9":
            number = (number or 0) * 10 + (ord(c) - ord("0"))
            if number > _U64_MAX:
                raise OutOfRange()
            continue
        unit = _UNITS.get(c.lower() if c.isascii() else c)
        if unit is None:
            raise Malformed()
        if number is None:
            raise Malformed()
        total += number * unit
        number = None
        if total > _U64_MAX:
            raise OutOfRange()
    if number is not None:
        raise Malformed()
    if total == 0 or total > MAX_DELAY:
        raise OutOfRange()
    return total


def describe(seconds: float) -> str:
    """``90s`` → ``1m 30s``, ``1d 2h``...: a duration rounded down to whole
    seconds (``0s`` for less than one)."""
    secs = max(int(seconds), 0)
    parts = [
        f"{n}{unit}"
        for n, unit in ((secs // 86_400, "d"), (secs // 3600 % 24, "h"), (secs // 60 % 60, "m"), (secs % 60, "s"))
        if n > 0
    ]
    return " ".join(parts) if parts else "0s"
