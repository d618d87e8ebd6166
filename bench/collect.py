"""One benchmark run's raw data: the microphone WAV, the agent, the page, the traces.

Everything lands in the run's folder: ``microphone.wav``, ``plan.json`` (where each
utterance sits in the WAV), ``page.json`` (what the page measured), ``traces.jsonl``
(the services' spans) and ``stack.log``. ``python -m bench --analyze <folder>`` reads
them again without a new run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

from bench.agent import AgentStack
from bench.microphone import load_librivox, plan, write_wav

BENCH_DIR = Path(__file__).resolve().parent
PAGE_DRIVER = BENCH_DIR / "page.mjs"
PAGE_MARGIN_S = 3.0  # the page keeps listening this long after the WAV ends


def collect(run_dir: Path, lead_in_s: float, gap_s: float, utterance_count: int | None) -> None:
    if not shutil.which("node"):
        raise SystemExit("node not found: install Debian nodejs (make test-deps)")
    utterances = load_librivox()[:utterance_count]
    mic_plan, samples = plan(utterances, lead_in_s, gap_s)
    wav = run_dir / "microphone.wav"
    write_wav(wav, samples)
    (run_dir / "plan.json").write_text(json.dumps(dataclasses.asdict(mic_plan), indent=1))

    agent = AgentStack(run_dir)
    print(f"starting the agent (log: {agent.log_path}) ...", flush=True)
    try:
        agent.start()
        seconds = mic_plan.duration_s + PAGE_MARGIN_S
        print(f"the page talks for {seconds:.0f} s ({len(utterances)} utterances) ...", flush=True)
        out = run_dir / "page.json"
        page = subprocess.run(
            ["node", str(PAGE_DRIVER), agent.edge_url, str(wav), str(out), f"{seconds:.1f}"],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        if page.returncode != 0:
            raise RuntimeError(f"the page driver failed ({page.returncode}):\n{page.stderr[-3000:]}")
    finally:
        # Ctrl-C the agent: each service flushes its batched spans as it exits.
        agent.stop()
