"""The barge-in scenario: the user talks over the agent, measured in the page.

The microphone asks for a long story, waits until the agent is into its reply, then
talks over it with a LibriVox sentence; again for each interruption. Then, once per
sound, it asks again and plays over the reply a sound that must not cut the agent: a
burst of noise, a cough, an "okay, okay" backchannel (twice each). One sound per reply:
the default model's replies are often a sentence or two long.

From the page's WebAudio timelines and events, per stimulus played while the
agent's voice was on the remote track:

- a real interruption: the onset of the interrupting speech at the microphone to
  the end of the last loud block of the agent's voice on the remote track as the page
  plays it (the reply silent there). The page holds the voice (disables the track) as
  soon as the edge's pause or cut reaches it over the data channel, before Chromium has
  played out what the edge sent earlier. Beside it, the same onset to the end of the
  voice as it arrived from the edge (a clone of the track the hold does not touch):
  what the edge's stop alone would give;
- a false one (noise, cough, backchannel): whether the agent's reply was cut
  (an ``interrupted`` event, or its end with ``interrupted: true``) — target 0.

Plan building needs the project's TTS (for the prompt and the backchannel); the
analysis is pure functions of the page's data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import page_audio
from bench.microphone import SAMPLE_RATE, Placed, Utterance, loud_span
from bench.page_audio import Event, Timeline
from bench.page_audio import loud_span as loud_blocks
from bench.stats import summarize, verdict

PROMPT = "Please tell me a long story about a brave knight and a dragon."
# Said in the project's own voice. Not "Yeah, yeah.": Whisper tiny heard that as "here
# here" or "here." (words: a real cut) in 8 of 80 decodes of its prefixes through Opus at
# 16-48 kb/s, and a fresh-clone run of tests/test_e2e_barge_in.py failed on it twice.
# "Okay, okay.": 0 of 112 ("Right, right.": 0 of 88; "Mm-hmm.": "in a month", 22 of 64).
BACKCHANNEL = "Okay, okay."
FALSE_KINDS = ("noise", "cough", "backchannel")
INTO_THE_REPLY_S = 3.0  # after the prompt ends: the reply has started (v2v ~1.5 s) and plays on
AFTER_INTERRUPTION_S = 4.0  # the cut and its events reach the page
AFTER_FALSE_S = 5.0  # longer than a false interruption may pause the reply (1.5 s) + the window
INTERRUPT_DECISION_MS = 300.0  # EDGE_INTERRUPT_SPEECH_MS: no cut can come sooner
ENDED_ITSELF_MS = 300.0  # a reply ending this soon after the onset was over before any cut
AFTER_STOP_EVENT_MS = 400.0  # audio sent before the stop still crosses Chromium's jitter buffer
FALSE_WINDOW_MS = 3000.0  # a cut this long after a false stimulus ended is its doing


@dataclass(frozen=True)
class Stimulus:
    kind: str  # "prompt", "interrupt", or one of FALSE_KINDS
    placed: Placed


@dataclass(frozen=True)
class Trial:
    """One stimulus as the page saw it."""

    kind: str
    name: str
    onset: float | None  # epoch ms of its first loud block at the microphone
    playing_turn: int | None  # the agent's reply on the remote track at the onset
    cut: bool  # that reply was cut off by the user
    paused: bool  # the agent paused for it (a false interruption it resumed from)
    stop_ms: float | None  # onset -> the reply's voice silent on the remote track as played
    note: str = ""
    received_stop_ms: float | None = None  # onset -> silent as received from the edge (no page hold)


def noise_burst(seconds: float = 0.4, level: float = 5000.0, seed: int = 7) -> np.ndarray:
    """Broadband noise with a fast attack and decay: a door, a clap, a knock."""
    n = int(seconds * SAMPLE_RATE)
    envelope = np.exp(-np.linspace(0, 6, n))
    noise = np.random.default_rng(seed).normal(0, level, n) * envelope
    return noise.clip(-32768, 32767).astype(np.int16)


def cough(level: float = 9000.0, seed: int = 11) -> np.ndarray:
    """Two short bursts of low-passed noise 80 ms apart, as a cough sounds."""
    rng = np.random.default_rng(seed)
    burst_n = int(0.14 * SAMPLE_RATE)
    kernel = np.ones(6) / 6  # a crude low-pass: a cough has little energy up high
    bursts = []
    for scale in (1.0, 0.6):
        raw = np.convolve(rng.normal(0, level * scale, burst_n), kernel, mode="same")
        bursts.append(raw * np.exp(-np.linspace(0, 5, burst_n)))
    gap = np.zeros(int(0.08 * SAMPLE_RATE))
    return np.concatenate([bursts[0], gap, bursts[1]]).clip(-32768, 32767).astype(np.int16)


class _Layout:
    """Appends recordings and silences, remembering where each stimulus sits."""

    def __init__(self, lead_in_s: float) -> None:
        self.pieces = [np.zeros(round(lead_in_s * SAMPLE_RATE), dtype=np.int16)]
        self.position = self.pieces[0].size
        self.stimuli: list[Stimulus] = []

    def add(self, kind: str, name: str, pcm: np.ndarray, then_s: float) -> None:
        start = self.position / SAMPLE_RATE
        loud_start, loud_end = loud_span(pcm)
        self.position += pcm.size
        placed = Placed(
            name, "", round(start, 3), round(self.position / SAMPLE_RATE, 3),
            round(start + loud_start, 3), round(start + loud_end, 3),
        )  # fmt: skip
        self.stimuli.append(Stimulus(kind, placed))
        silence = np.zeros(round(then_s * SAMPLE_RATE), dtype=np.int16)
        self.pieces += [pcm, silence]
        self.position += silence.size


def build(
    interruptions: Sequence[Utterance],
    prompt: np.ndarray,
    backchannel: np.ndarray,
    lead_in_s: float = 5.0,
) -> list[tuple[list[Stimulus], np.ndarray]]:
    """The scenario's calls: per call its two stimuli (the prompt, then the one over the
    reply) and the microphone's samples (16 kHz PCM16). Each trial is a call of its own,
    so every reply starts from a fresh history: the default model, shown its own reply
    cut short, tends to say just that fragment again."""
    sounds: list[tuple[str, str, np.ndarray, float]] = [
        ("interrupt", u.name, u.pcm, AFTER_INTERRUPTION_S) for u in interruptions
    ]
    for round_ in (1, 2):
        sounds += [
            ("noise", f"noise-{round_}", noise_burst(seed=round_), AFTER_FALSE_S),
            ("cough", f"cough-{round_}", cough(seed=10 + round_), AFTER_FALSE_S),
            ("backchannel", f"backchannel-{round_}", backchannel, AFTER_FALSE_S),
        ]
    calls = []
    for kind, name, sound, then_s in sounds:
        layout = _Layout(lead_in_s)
        layout.add("prompt", "story", prompt, INTO_THE_REPLY_S)
        layout.add(kind, name, sound, then_s)
        calls.append((layout.stimuli, np.concatenate(layout.pieces)))
    return calls


@dataclass(frozen=True)
class Voice:
    """The agent's voice in the page: as played (``remote``) and as received (``received``)."""

    remote: Timeline
    received: Timeline
    block_ms: float


def trials(stimuli: Sequence[Stimulus], mic: Timeline, voice: Voice, events: Sequence[Event]) -> list[Trial]:
    """Each stimulus with what it did to the agent. ``events`` carry ``at`` in epoch ms."""
    return [
        _trial(stimulus, onset, voice, events)
        for stimulus, onset in zip(stimuli, onsets(stimuli, mic), strict=True)
    ]


def onsets(stimuli: Sequence[Stimulus], mic: Timeline) -> list[float | None]:
    """Where each stimulus begins at the microphone (epoch ms), or None if not found."""
    return page_audio.onsets([s.placed for s in stimuli], mic)


def _trial(stimulus: Stimulus, onset: float | None, voice: Voice, events: Sequence[Event]) -> Trial:
    kind, name = stimulus.kind, stimulus.placed.name
    if onset is None:
        return Trial(kind, name, None, None, False, False, None, "not heard at the microphone")
    turn = _playing_turn(onset, events)
    if turn is None:
        return Trial(kind, name, onset, None, False, False, None, "the agent was not speaking")
    ended = _event(events, "agent_stopped_speaking", turn, after=onset)
    cut = ended is not None and bool(ended.get("interrupted"))
    paused = _event(events, "agent_paused", turn, after=onset) is not None
    if kind in FALSE_KINDS:
        limit = onset + (stimulus.placed.speech_end_s - stimulus.placed.speech_start_s) * 1000
        cut = bool(cut and ended is not None and ended["at"] <= limit + FALSE_WINDOW_MS)
        return Trial(kind, name, onset, turn, cut, paused, None)
    if not cut or ended is None:
        if ended is not None and ended["at"] - onset < ENDED_ITSELF_MS + INTERRUPT_DECISION_MS:
            return Trial(kind, name, onset, None, False, paused, None, "the reply ended on its own")
        return Trial(kind, name, onset, turn, False, paused, None, "the reply was not cut")
    until = ended["at"] + AFTER_STOP_EVENT_MS
    played = loud_blocks(voice.remote, onset, until, voice.block_ms)
    if played is None:  # between two chunks at the onset, and cut before the next
        return Trial(kind, name, onset, turn, True, paused, None, "no agent voice after the onset")
    received = loud_blocks(voice.received, onset, until, voice.block_ms)
    return Trial(
        kind,
        name,
        onset,
        turn,
        True,
        paused,
        round(played[1] - onset, 1),
        received_stop_ms=None if received is None else round(received[1] - onset, 1),
    )


def _playing_turn(onset: float, events: Sequence[Event]) -> int | None:
    """The reply the agent was speaking at ``onset``: started, not yet stopped (its
    voice may be in a gap between two chunks; the edge counts that as speaking too)."""
    started = [e for e in events if e.get("type") == "agent_started_speaking" and e["at"] <= onset]
    if not started:
        return None
    turn = int(started[-1]["turn_id"])
    stopped = [e for e in events if e.get("type") == "agent_stopped_speaking" and e.get("turn_id") == turn]
    return None if any(e["at"] <= onset for e in stopped) else turn


def _event(events: Sequence[Event], kind: str, turn: int, after: float) -> Event | None:
    return next(
        (e for e in events if e.get("type") == kind and e.get("turn_id") == turn and e["at"] >= after), None
    )


def summary(found: Sequence[Trial], interrupt_speech_ms: float) -> dict[str, Any]:
    """p50/p90 of the stop time against its target, and the false interruptions."""
    target = interrupt_speech_ms + 150.0
    real = [t for t in found if t.kind not in FALSE_KINDS and t.playing_turn is not None]
    false = [t for t in found if t.kind in FALSE_KINDS and t.playing_turn is not None]
    stop = summarize(t.stop_ms for t in real)
    received = summarize(t.received_stop_ms for t in real)
    false_count = sum(t.cut for t in false)
    return {
        "stop_ms": stop.as_dict(),
        "stop_target_p90_ms": target,
        "stop_p90": verdict(stop.p90, target),
        "received_stop_ms": received.as_dict(),
        "interruptions_tried": len(real),
        "interruptions_missed": sum(not t.cut for t in real),
        "false_tried": len(false),
        "false_interruptions": false_count,
        "false_paused": sum(t.paused for t in false),
        "false_interruptions_verdict": "n/a" if not false else ("PASS" if false_count == 0 else "MISS"),
    }


def table(data: dict[str, Any]) -> str:
    s = data["summary"]
    stop = s["stop_ms"]
    received = s.get("received_stop_ms") or {"p50": None, "p90": None}
    lines = [
        f"barge-in: interrupting speech onset at the microphone -> agent silent, "
        f"over {stop['count']} interruptions ({s['interruptions_missed']} not cut)",
        f"  on the remote track, as played  p50 {_ms(stop['p50']):>6} ms   p90 {_ms(stop['p90']):>6} ms   "
        f"target p90 <= {s['stop_target_p90_ms']:.0f} ms   {s['stop_p90']}",
        f"  as received from the edge       p50 {_ms(received['p50']):>6} ms   "
        f"p90 {_ms(received['p90']):>6} ms   (without the page's hold: the edge's stop alone)",
        f"false interruptions: {s['false_interruptions']} of {s['false_tried']} noise/cough/backchannel "
        f"over the agent's voice (paused and resumed: {s['false_paused']})   target 0   "
        f"{s['false_interruptions_verdict']}",
        "",
        f"{'kind':<12} {'stimulus':<14} {'turn':>5} {'cut':>5} {'paused':>6} {'stop ms':>8} "
        f"{'recv':>6}  note",
    ]
    for t in data["trials"]:
        lines.append(
            f"{t['kind']:<12} {t['name'][-14:]:<14} {_ms(t['playing_turn']):>5} {t['cut']!s:>5} "
            f"{t['paused']!s:>6} {_ms(t['stop_ms']):>8} {_ms(t.get('received_stop_ms')):>6}  {t['note']}"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
