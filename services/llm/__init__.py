"""The llm service: LlmRequest -> cancellable token stream and speakable TextChunks."""
