"""The waterfall chart: one row per turn, the steps stacked from the end of the user's
speech to the first reply audio in the page, the 600 ms target marked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.breakdown import STEPS, TurnResult

COLORS = {
    "mic_to_edge": "#8da0cb",
    "end_of_turn": "#bdbdbd",
    "stt_final": "#66c2a5",
    "llm_first_token": "#fc8d62",
    "llm_first_chunk": "#fdbf6f",
    "tts_first_audio": "#e78ac3",
    "edge_playout": "#a6d854",
    "edge_to_browser": "#ffd92f",
}


@dataclass(frozen=True)
class Segment:
    step: str
    left: float  # ms after the end of speech at the microphone
    width: float


@dataclass(frozen=True)
class Row:
    label: str
    segments: list[Segment]
    voice_to_voice_ms: float | None
    bus_ms: float | None


def layout_row(steps: dict[str, float | None]) -> list[Segment]:
    """Segments laid end to end. A step that is not measured takes no room; a negative
    step (work started before the previous milestone) is drawn with no width and the
    next segment starts where the drawing got to, so the row never runs backwards."""
    segments: list[Segment] = []
    reached = 0.0  # where the drawing is
    total = 0.0  # where the milestones are
    for step, _, _ in STEPS:
        value = steps.get(step)
        if value is None:
            continue
        total += value
        right = max(reached, total)
        segments.append(Segment(step, reached, right - reached))
        reached = right
    return segments


def layout(turns: Sequence[TurnResult]) -> list[Row]:
    rows = []
    for turn in turns:
        turn_id = "-" if turn.turn_id is None else str(turn.turn_id)
        label = f"turn {turn_id} ({turn.utterance[-4:]})"
        rows.append(Row(label, layout_row(turn.steps), turn.voice_to_voice_ms, turn.bus_ms))
    return rows


def render(
    rows: Sequence[Row], path: Path, title: str, target_ms: float = 600.0, target_p90_ms: float = 900.0
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.5 * max(1, len(rows))))
    widest = max([target_p90_ms * 1.2] + [s.left + s.width for r in rows for s in r.segments])
    for y, row in enumerate(rows):
        for seg in row.segments:
            if seg.width > 0:
                ax.barh(y, seg.width, left=seg.left, height=0.6, color=COLORS[seg.step], edgecolor="white")
        end = max([0.0] + [s.left + s.width for s in row.segments])
        v2v = f"{row.voice_to_voice_ms:.0f} ms" if row.voice_to_voice_ms is not None else "no reply"
        bus = f", bus {row.bus_ms:.1f} ms" if row.bus_ms is not None else ""
        ax.text(end + widest * 0.01, y, v2v + bus, va="center", fontsize=8)
    targets = [
        ax.axvline(x, color="#d62728", linestyle=style, linewidth=1.2, label=f"{text} {x:.0f} ms")
        for x, text, style in ((target_ms, "p50 target", "--"), (target_p90_ms, "p90 target", ":"))
    ]
    ax.set_yticks(range(len(rows)), [r.label for r in rows])
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlim(0, widest * 1.2)
    ax.set_xlabel("ms after the end of the user's speech at the microphone")
    ax.set_title(title, fontsize=10)
    steps = [Patch(color=COLORS[step], label=step.replace("_", " ")) for step, _, _ in STEPS]
    ax.legend(handles=[*steps, *targets], loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=5, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
