"""The two sample bots of docs/BINDINGS.md, the Python twins of the Rust
ones in ``bots/src/samples`` (same commands, same answers, same reminder
file format):

- :mod:`microbot_bot.samples.echo`: says back what it is sent, and shows
  every kind of handler.
- :mod:`microbot_bot.samples.reminder`: ``/remind 10m tea``, reminders
  kept in a file so they survive restarts.
"""
