"""Speech synthesis: TextChunk in, AudioChunks of at most TTS_MAX_CHUNK_MS out."""
