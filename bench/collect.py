"""One benchmark run's raw data: the microphone WAV, the agent, the page, the traces.

Everything lands in the run's folder: ``microphone.wav``, ``plan.json`` (where each
utterance sits in the WAV), ``page.json`` (what the page measured), ``traces.jsonl``
(the services' spans) and ``stack.log``; the barge-in scenario, on the same agent, one
call per trial, adds ``barge-in-plan.json`` and per call ``barge-in-<n>-microphone.wav``
and ``barge-in-<n>-page.json``. ``python -m bench --analyze <folder>`` reads
them again without a new run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from bench import barge_in
from bench.agent import AgentStack
from bench.microphone import load_librivox, plan, write_wav

BENCH_DIR = Path(__file__).resolve().parent
PAGE_DRIVER = BENCH_DIR / "page.mjs"
PAGE_MARGIN_S = 3.0  # the page keeps listening this long after the WAV ends


def collect(
    run_dir: Path,
    lead_in_s: float,
    gap_s: float,
    utterance_count: int | None,
    scenarios: set[str],
    rounds: int = 1,
) -> None:
    if not shutil.which("node"):
        raise SystemExit("node not found: install Debian nodejs (make test-deps)")
    agent = AgentStack(run_dir)
    print(f"starting the agent (log: {agent.log_path}) ...", flush=True)
    try:
        agent.start()
        if "latency" in scenarios:
            _latency(agent, run_dir, lead_in_s, gap_s, utterance_count, rounds)
        if "barge-in" in scenarios:
            _barge_in(agent, run_dir, utterance_count)
    finally:
        # Ctrl-C the agent: each service flushes its batched spans as it exits.
        agent.stop()


def _latency(
    agent: AgentStack, run_dir: Path, lead_in_s: float, gap_s: float, utterance_count: int | None, rounds: int
) -> None:
    utterances = load_librivox()[:utterance_count] * max(1, rounds)
    mic_plan, samples = plan(utterances, lead_in_s, gap_s)
    wav = run_dir / "microphone.wav"
    write_wav(wav, samples)
    (run_dir / "plan.json").write_text(json.dumps(dataclasses.asdict(mic_plan), indent=1))
    seconds = mic_plan.duration_s + PAGE_MARGIN_S
    print(f"the page talks for {seconds:.0f} s ({len(utterances)} utterances) ...", flush=True)
    _talk(agent, wav, run_dir / "page.json", seconds)


def _barge_in(agent: AgentStack, run_dir: Path, utterance_count: int | None) -> None:
    calls = barge_in.build(
        load_librivox()[:utterance_count], _voice(barge_in.PROMPT), _voice(barge_in.BACKCHANNEL)
    )
    plan_data = {
        "calls": [[{"kind": s.kind, **dataclasses.asdict(s.placed)} for s in stimuli] for stimuli, _ in calls]
    }
    (run_dir / "barge-in-plan.json").write_text(json.dumps(plan_data, indent=1))
    for number, (stimuli, samples) in enumerate(calls):
        wav = run_dir / f"barge-in-{number}-microphone.wav"
        write_wav(wav, samples)
        seconds = samples.size / 16000 + PAGE_MARGIN_S
        print(f"barge-in call {number + 1}/{len(calls)}: {stimuli[-1].kind} over the reply ...", flush=True)
        _talk(agent, wav, run_dir / f"barge-in-{number}-page.json", seconds)


def _voice(text: str) -> np.ndarray:
    """``text`` in the project's own voice at 16 kHz (the prompt is not LibriVox speech:
    it has to ask for a reply long enough to talk over)."""
    from services.tts.engine import load_piper

    voice = load_piper()
    pcm = np.frombuffer(b"".join(voice.synthesize(text)), dtype=np.int16).astype(np.float64)
    n_out = int(pcm.size * 16000 / voice.sample_rate)
    resampled = np.interp(np.linspace(0, pcm.size - 1, n_out), np.arange(pcm.size), pcm)
    return resampled.astype(np.int16)


def _talk(agent: AgentStack, wav: Path, out: Path, seconds: float) -> None:
    page = subprocess.run(
        ["node", str(PAGE_DRIVER), agent.edge_url, str(wav), str(out), f"{seconds:.1f}"],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if page.returncode != 0:
        raise RuntimeError(f"the page driver failed ({page.returncode}):\n{page.stderr[-3000:]}")
