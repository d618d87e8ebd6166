"""Settings of the turns service, from TURNS_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings
from services.common.persona import DEFAULT_SYSTEM_PROMPT
from services.turns.conversation import ConversationConfig

# A persona, so a small open model does not introduce itself as made by OpenAI,
# and a style for speech: what is said aloud must not be lists or markdown.
SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT
GREETING = "Hello! I'm Ava. What would you like to talk about?"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TURNS_", extra="ignore")

    http_port: int = 8092
    system_prompt: str = SYSTEM_PROMPT
    greeting: str = GREETING
    greeting_enabled: bool = True
    greeting_interruptible: bool = True
    max_tokens: int = Field(default=150, ge=1)
    history_max_messages: int = Field(default=20, ge=1)
    reply_timeout_s: float = Field(default=20.0, gt=0)
    session_idle_timeout_s: float = Field(default=1800.0, gt=0)
    prime_llm: bool = True
    prime_every_partial: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        # Same as Settings(): mypy without the pydantic plugin reads the base's
        # Field(default, validation_alias=...) as required constructor arguments.
        return cls.model_validate({})

    def conversation(self) -> ConversationConfig:
        return ConversationConfig(
            system_prompt=self.system_prompt,
            greeting=self.greeting,
            greeting_enabled=self.greeting_enabled,
            greeting_interruptible=self.greeting_interruptible,
            max_tokens=self.max_tokens,
            history_max_messages=self.history_max_messages,
            reply_timeout_s=self.reply_timeout_s,
            session_idle_timeout_s=self.session_idle_timeout_s,
            prime_llm=self.prime_llm,
            prime_every_partial=self.prime_every_partial,
        )
