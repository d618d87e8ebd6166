"""The run's result: JSON for machines, a table for people, against the targets."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.breakdown import STEPS, TurnResult, hops_counted
from bench.bus_floor import describe as describe_bus_floor
from bench.interims import table_lines as interim_lines
from bench.stats import summarize, verdict

TARGET_P50_MS = 600.0
TARGET_P90_MS = 900.0
TARGET_BUS_MS = 3.0
ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def summary(turns: Sequence[TurnResult]) -> dict[str, Any]:
    v2v = summarize(t.voice_to_voice_ms for t in turns)
    bus = summarize(t.bus_ms for t in turns)
    return {
        "voice_to_voice_ms": v2v.as_dict(),
        "targets": {"voice_to_voice_p50_ms": TARGET_P50_MS, "voice_to_voice_p90_ms": TARGET_P90_MS},
        "voice_to_voice_p50": verdict(v2v.p50, TARGET_P50_MS),
        "voice_to_voice_p90": verdict(v2v.p90, TARGET_P90_MS),
        "steps_ms": {step: summarize(t.steps.get(step) for t in turns).as_dict() for step, _, _ in STEPS},
        "bus_ms": bus.as_dict(),
        "bus_target_ms_per_turn": TARGET_BUS_MS,
        "bus_turns_within_target": sum(
            1 for t in turns if t.bus_ms is not None and t.bus_ms <= TARGET_BUS_MS
        ),
        "bus_turns_measured": bus.count,
        "bus_hops_counted": hops_counted(turns),
    }


def turn_record(turn: TurnResult) -> dict[str, Any]:
    start = turn.milestones.get("mic_speech_end")
    return {
        "utterance": turn.utterance,
        "turn_id": turn.turn_id,
        "split_turns": turn.split_turns,
        "voice_to_voice_ms": turn.voice_to_voice_ms,
        "steps_ms": turn.steps,
        "bus_ms": turn.bus_ms,
        "bus_within_target": None if turn.bus_ms is None else turn.bus_ms <= TARGET_BUS_MS,
        "hops": [dataclasses.asdict(h) for h in turn.hops],
        "milestones_epoch_ms": turn.milestones,
        "milestones_after_mic_speech_end_ms": {
            k: (None if v is None or start is None else round(v - start, 1))
            for k, v in turn.milestones.items()
        },
        "notes": turn.notes,
    }


def result(turns: Sequence[TurnResult], run: dict[str, Any]) -> dict[str, Any]:
    """The whole result; the machine as ``run`` recorded it at the start (else as it is now)."""
    return {
        "run": {k: v for k, v in run.items() if k != "machine"},
        "machine": run.get("machine") or machine_info(),
        "steps": {step: {"ends_at": milestone, "covers": text} for step, milestone, text in STEPS},
        "summary": summary(turns),
        "turns": [turn_record(t) for t in turns],
    }


def fmt_ms(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(data: dict[str, Any]) -> str:
    s = data["summary"]
    v2v = s["voice_to_voice_ms"]
    lines = [
        f"voice-to-voice over {v2v['count']} turns (end of speech at the microphone -> first reply audio "
        "in the page)",
        f"  p50 {fmt_ms(v2v['p50']):>6} ms   target <= {TARGET_P50_MS:.0f} ms   {s['voice_to_voice_p50']}",
        f"  p90 {fmt_ms(v2v['p90']):>6} ms   target <= {TARGET_P90_MS:.0f} ms   {s['voice_to_voice_p90']}",
        "",
        f"{'turn':>5} {'utterance':>6} {'v2v ms':>8} {'bus ms':>8}  bus <= {TARGET_BUS_MS:.0f} ms",
    ]
    for turn in data["turns"]:
        bus = turn["bus_ms"]
        within = "n/a" if bus is None else ("PASS" if bus <= TARGET_BUS_MS else "MISS")
        lines.append(
            f"{fmt_ms(turn['turn_id']):>5} {turn['utterance'][-4:]:>6} {fmt_ms(turn['voice_to_voice_ms']):>8}"
            f" {fmt_ms(bus, 2):>8}  {within}"
        )
    bus = s["bus_ms"]
    lines += [
        f"bus total per turn: p50 {fmt_ms(bus['p50'], 2)} ms, p90 {fmt_ms(bus['p90'], 2)} ms; "
        f"{s['bus_turns_within_target']}/{s['bus_turns_measured']} turns within {TARGET_BUS_MS:.0f} ms",
        "  hops counted: " + ("; ".join(s["bus_hops_counted"]) or "none"),
        *bus_floor_lines(data.get("run", {}).get("bus_floor")),
        "",
        f"{'step':<18} {'p50 ms':>8} {'p90 ms':>8} {'n':>3}",
    ]
    for step, _, _ in STEPS:
        figures = s["steps_ms"][step]
        lines.append(
            f"{step:<18} {fmt_ms(figures['p50']):>8} {fmt_ms(figures['p90']):>8} {figures['count']:>3}"
        )
    jitter = data.get("chromium_jitter_buffer")
    if jitter:
        lines.append(
            f"Chromium's receive jitter buffer (call average): {jitter['delay_ms']:.0f} ms, "
            f"target {jitter['target_ms']:.0f} ms, minimum {jitter['minimum_ms']:.0f} ms"
        )
    lines += interim_lines(data.get("interims"))
    return "\n".join(lines)


def bus_floor_lines(floor: dict[str, Any] | None) -> list[str]:
    """The machine's floor for those hops, measured before the run (none in older runs)."""
    if not floor:
        return []
    if "error" in floor:
        return [f"  this machine's bus floor: not measured ({floor['error']})"]
    return ["  " + describe_bus_floor(floor)]


def command_line() -> str:
    return " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]])
