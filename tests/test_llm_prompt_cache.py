"""Finding the block of history a prompt dropped, so the cache is cut, not rebuilt."""

from __future__ import annotations

from services.llm.prompt_cache import MIN_KEPT, common_prefix, dropped_block

SYSTEM = list(range(100, 110))
OLD = list(range(200, 230))  # the oldest exchange, dropped from the history
KEPT = list(range(300, 300 + MIN_KEPT + 4))
NEW = [400, 401, 402]


def test_the_dropped_exchange_is_found_after_the_shared_system_prompt() -> None:
    cached = SYSTEM + OLD + KEPT
    assert dropped_block(cached, SYSTEM + KEPT + NEW) == (len(SYSTEM), len(OLD))


def test_nothing_to_cut_when_the_prompt_only_grows_or_too_little_would_be_kept() -> None:
    cached = SYSTEM + OLD + KEPT
    assert dropped_block(cached, cached + NEW) is None  # plain prefix reuse does it
    assert dropped_block(cached, SYSTEM + KEPT[: MIN_KEPT - 1] + NEW) is None
    assert dropped_block(cached, SYSTEM + NEW) is None


def test_the_block_is_found_when_all_the_rest_is_cached() -> None:
    # A prime evaluated the same words before the history dropped its oldest message.
    # (PromptCache.fit then evaluates the last token again, for fresh logits.) Refused,
    # this cut left a spurious one to win: a run of MIN_KEPT tokens quoted earlier.
    cached = SYSTEM + OLD + KEPT[:MIN_KEPT] + OLD + KEPT
    assert dropped_block(cached, SYSTEM + KEPT) == (len(SYSTEM), len(OLD) + MIN_KEPT + len(OLD))


def test_the_longest_surviving_run_wins() -> None:
    # The dropped exchange quotes the start of what is kept: cutting up to the quote
    # would keep MIN_KEPT tokens, cutting the whole exchange keeps all of KEPT.
    old = OLD[:5] + KEPT[:MIN_KEPT] + OLD[5:]
    cached = SYSTEM + old + KEPT
    assert dropped_block(cached, SYSTEM + KEPT + NEW) == (len(SYSTEM), len(old))


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2
