"""Runs nats-server and the five services as separate processes (``python -m stack``)."""

from stack.process_group import SERVICES, Stack, StackConfig

__all__ = ["SERVICES", "Stack", "StackConfig"]
