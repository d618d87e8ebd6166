"""The turns service: the conversation manager (state machine, history, greeting, cancels)."""
