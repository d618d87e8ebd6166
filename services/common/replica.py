"""Who this process is among its service's replicas, and how long it may take to stop."""

from __future__ import annotations

import os
import re
import socket
from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Keep in step with terminationGracePeriodSeconds (30 in deploy/k8s): the drain gets
# this long, then stopping and closing NATS need a few seconds more.
DEFAULT_GRACE_S = 25.0


class ReplicaSettings(BaseSettings):
    """Unprefixed settings every service reads (README: Configuration / Common)."""

    model_config = SettingsConfigDict(extra="ignore")

    # Unique per replica of a service; empty = <hostname>-<pid> (the pod name on Kubernetes).
    replica_id: str = Field(default="", validation_alias="VOICE_AGENT_REPLICA_ID")
    # After SIGTERM: how long the replica drains (finishes or hands over its work).
    shutdown_grace_s: float = Field(
        default=DEFAULT_GRACE_S, ge=0, validation_alias="VOICE_AGENT_SHUTDOWN_GRACE_S"
    )


def subject_safe(value: str) -> str:
    """``value`` usable as one NATS subject token (a hostname may hold dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", value).strip("-") or "replica"


@cache
def settings() -> ReplicaSettings:
    return ReplicaSettings()


@cache
def replica_id() -> str:
    """This process's replica id: VOICE_AGENT_REPLICA_ID, else <hostname>-<pid>."""
    configured = settings().replica_id
    return subject_safe(configured or f"{socket.gethostname()}-{os.getpid()}")
