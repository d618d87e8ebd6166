"""Plumbing shared by every service: bus adapter, config, HTTP probes, telemetry."""
