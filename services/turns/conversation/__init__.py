"""The conversation as plain logic: messages plus ``now`` in, effects out.

No NATS here. ``Conversations`` routes each message to its ``Session``; a session
is two small state machines (the user's utterances and the agent's reply) plus a
history that keeps only what the user heard. The service adapter publishes the
returned effects.
"""

from services.turns.conversation.config import ConversationConfig
from services.turns.conversation.conversations import Conversations
from services.turns.conversation.effects import Drop, Effect, Outcome, Publish, TurnClosed
from services.turns.conversation.history import History

__all__ = [
    "ConversationConfig",
    "Conversations",
    "Drop",
    "Effect",
    "History",
    "Outcome",
    "Publish",
    "TurnClosed",
]
