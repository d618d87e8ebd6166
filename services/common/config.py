"""Settings every service shares; each service subclasses with its own prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common settings. Unprefixed environment variables (``NATS_URL``...)."""

    model_config = SettingsConfigDict(extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    http_host: str = "127.0.0.1"
    http_port: int = 0
