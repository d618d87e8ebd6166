"""edge: WebRTC for the browser, the web page, VAD and endpointing, playout.

See services/edge/events.py for the JSON events on the ``events`` data channel
and services/edge/config.py for the ``EDGE_*`` settings.
"""
