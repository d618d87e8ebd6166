"""The chunker: when the first chunk goes out, where later ones end, what is stripped."""

from __future__ import annotations

import random
import re

import pytest

from services.llm.chunker import Chunker, speakable


def tokens_of(text: str) -> list[str]:
    """Split like an LLM tokenizer does: a word with its leading space."""
    return re.findall(r"\s*\S+|\s+", text)


def chunk_all(tokens: list[str], first_words: int = 5, max_words: int = 20) -> list[str]:
    chunker = Chunker(first_words, max_words)
    chunks = [chunk for token in tokens for chunk in chunker.push(token)]
    rest = chunker.flush()
    return [*chunks, rest] if rest else chunks


def test_first_chunk_at_a_clause_after_two_words_as_soon_as_the_space_arrives() -> None:
    chunker = Chunker()
    assert chunker.push("Hello") == []
    assert chunker.push(" there") == []
    assert chunker.push(",") == []  # "there,5" is still possible: wait for the space
    assert chunker.push(" how") == ["Hello there,"]


def test_a_one_word_clause_does_not_end_the_first_chunk() -> None:
    chunker = Chunker()
    assert chunker.push("Sure,") == []
    assert chunker.push(" I") == []
    assert chunker.push(" can") == []
    assert chunker.push(" help") == ["Sure, I can"]  # not "Sure," alone at the word limit


def test_first_chunk_at_three_words_without_punctuation() -> None:
    chunker = Chunker()
    out = [c for t in tokens_of("The quick brown fox jumps over the lazy dog") for c in chunker.push(t)]
    assert out == ["The quick brown"]
    assert chunker.flush() == "fox jumps over the lazy dog"


def test_the_second_chunk_ends_within_four_times_the_first_chunks_words() -> None:
    words = [f"w{i}" for i in range(60)]
    chunks = chunk_all(tokens_of(" ".join(words) + "."), first_words=3)
    assert [len(c.split()) for c in chunks] == [3, 12, 20, 20, 5]


def test_first_chunk_words_is_configurable() -> None:
    assert chunk_all(tokens_of("one two three four five six"), first_words=5)[0] == "one two three four five"


def test_at_the_word_limit_a_short_earlier_sentence_is_cut_alone() -> None:
    assert chunk_all(tokens_of("Hi! How can I help you today?")) == ["Hi!", "How can I help you today?"]


def test_later_chunks_end_at_sentences() -> None:
    text = "Hello there, how are you doing today? I am fine. Thanks for asking!"
    assert chunk_all(tokens_of(text)) == [
        "Hello there,",
        "how are you doing today?",
        "I am fine.",
        "Thanks for asking!",
    ]


def test_later_chunks_do_not_end_at_commas() -> None:
    text = "Well, first, second, third, fourth, and fifth."
    assert chunk_all(tokens_of(text)) == ["Well, first,", "second, third, fourth, and fifth."]


def test_a_long_sentence_is_cut_at_the_word_limit() -> None:
    words = [f"w{i}" for i in range(50)]
    chunks = chunk_all(tokens_of("Start here. " + " ".join(words) + "."))
    assert chunks[0] == "Start here."
    assert [len(c.split()) for c in chunks[1:]] == [20, 20, 10]


def test_a_long_sentence_prefers_a_late_clause_boundary() -> None:
    first = " ".join(f"a{i}" for i in range(14))
    second = " ".join(f"b{i}" for i in range(14))
    chunks = chunk_all(tokens_of(f"Start here. {first}, {second}."))
    assert chunks[1] == f"{first},"
    assert chunks[2] == f"{second}."


def test_decimals_and_abbreviations_do_not_end_sentences() -> None:
    text = "Okay then. Dr. Smith measured 3.5 degrees at St. Mary's in the U.S. today, e.g. here. Done."
    assert chunk_all(tokens_of(text)) == [
        "Okay then.",
        "Dr. Smith measured 3.5 degrees at St. Mary's in the U.S. today, e.g. here.",
        "Done.",
    ]


def test_flush_returns_the_rest_and_empty_when_nothing_is_left() -> None:
    chunker = Chunker()
    assert chunker.push("Just two") == []
    assert chunker.flush() == "Just two"
    assert chunker.flush() == ""
    assert Chunker().flush() == ""


def test_markdown_list_becomes_one_chunk_per_item() -> None:
    text = (
        "Here are some tips:\n\n1. **Drink water** daily.\n2. Sleep *well*\n- Use `tools`\n### Summary\nDone."
    )
    assert chunk_all(tokens_of(text)) == [
        "Here are some tips:",
        "Drink water daily.",
        "Sleep well",
        "Use tools",
        "Summary",
        "Done.",
    ]


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**bold** and __strong__ text", "bold and strong text"),
        ("# Title", "Title"),
        ("- item one", "item one"),
        ("* item two", "item two"),
        ("• item three", "item three"),
        ("> quoted", "quoted"),
        ("above\n---\nbelow", "above below"),
        ("Run `ls -la` now", "Run ls -la now"),
        ("```python\nprint(1)\n```", "print(1)"),
        ("See [the docs](https://example.com) here", "See the docs here"),
        ("Great job 🎉🚀!", "Great job!"),
        ("I love it ❤️ 👍🏽 so much", "I love it so much"),
        ("snake_case stays", "snake_case stays"),
        ("well-known 5 - 3 = 2", "well-known 5 - 3 = 2"),
    ],
)
def test_speakable_strips_what_a_tts_would_read_out(raw: str, spoken: str) -> None:
    assert speakable(raw) == spoken


def test_a_dash_continuing_a_line_is_not_a_bullet() -> None:
    assert speakable(" - 3 apples", line_start=False) == "- 3 apples"


def test_chunks_of_only_markup_or_emoji_are_skipped() -> None:
    assert chunk_all(tokens_of("---\n🎉🎉\nHello there friend, how are you?")) == [
        "Hello there friend,",
        "how are you?",
    ]


def test_any_token_split_yields_the_same_words_and_respects_the_limits() -> None:
    text = (
        "Sure, here is a short answer. The capital of France is Paris, a city of about two million "
        "people, famous for the Eiffel Tower, the Louvre and its cafés, which many visitors love "
        "to sit in for hours on end. Anything else? I can also **recommend** museums 🎨!"
    )
    rng = random.Random(7)
    expected = speakable(text).split()
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 60)))
        tokens = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        chunks = chunk_all(tokens)
        assert " ".join(chunks).split() == expected
        assert len(chunks[0].split()) <= 5
        assert all(len(c.split()) <= 20 for c in chunks)
