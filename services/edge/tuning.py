"""The edge's settings as the configs of its pure parts (endpointing, the barge-in
decision, what a barge-in does), so those modules never import pydantic."""

from __future__ import annotations

from services.edge.barge_in import BargeInConfig
from services.edge.completeness import normalize_words
from services.edge.config import Settings
from services.edge.endpointing import EndpointConfig
from services.edge.interruption import InterruptConfig


def endpoint_config(settings: Settings) -> EndpointConfig:
    return EndpointConfig(
        threshold=settings.vad_threshold,
        neg_threshold=min(settings.vad_neg_threshold, settings.vad_threshold),
        min_speech_ms=settings.min_speech_ms,
        preroll_ms=settings.preroll_ms,
        silence_ms=settings.endpoint_silence_ms,
        silence_complete_ms=settings.endpoint_silence_complete_ms,
        silence_incomplete_ms=settings.endpoint_silence_incomplete_ms,
        trailing_words=normalize_words(settings.trailing_word_list),
        speculate_after_ms=settings.speculate_after_ms,
        max_utterance_ms=settings.max_utterance_ms,
    )


def interrupt_config(settings: Settings) -> InterruptConfig:
    return InterruptConfig(
        speech_ms=settings.interrupt_speech_ms,
        min_words=settings.interrupt_min_words,
        allowed=settings.allow_interruptions,
        threshold=settings.vad_threshold,
        neg_threshold=min(settings.vad_neg_threshold, settings.vad_threshold),
    )


def barge_in_config(settings: Settings) -> BargeInConfig:
    return BargeInConfig(
        resume_after=settings.false_interruption_timeout_ms / 1000,
        min_words=settings.interrupt_min_words,
        finish_sentence=settings.interrupt_finish_sentence,
        finish_sentence_max=settings.interrupt_finish_sentence_max_ms / 1000,
    )
