"""The voice-to-voice latency benchmark: `make bench` or `python -m bench`."""
