"""``python -m bench``: the voice-to-voice latency benchmark (``make bench`` runs it).

A run starts the agent (``python -m stack``) on free ports, lets headless Chromium's fake
microphone play LibriVox utterances into the page, measures each turn in the page and
breaks it down from the services' spans. It writes ``bench/results/<time>/result.json``
and ``waterfall.png`` and prints the figures against the targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from bench import barge_in, breakdown, bus_floor, chart, interims, page_audio, report, traces
from bench.collect import collect
from bench.microphone import Placed

SCENARIOS = ("latency", "barge-in")

RESULTS = Path(__file__).resolve().parent / "results"


def analyze(run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Read a run's raw files, write result.json and waterfall.png, return the result."""
    data = analyze_latency(run_dir, run) if (run_dir / "page.json").exists() else {"run": run}
    if (run_dir / "barge-in-plan.json").exists():
        data["barge_in"] = analyze_barge_in(run_dir, run)
    (run_dir / "result.json").write_text(json.dumps(data, indent=1))
    return data


def analyze_barge_in(run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    calls = json.loads((run_dir / "barge-in-plan.json").read_text())["calls"]
    found: list[barge_in.Trial] = []
    errors = []
    for number, saved in enumerate(calls):
        path = run_dir / f"barge-in-{number}-page.json"
        if not path.exists():
            continue
        stimuli = [barge_in.Stimulus(s.pop("kind"), Placed(**s)) for s in saved]
        page = json.loads(path.read_text())
        events = page_audio.epoch_events(page["events"], float(page["timeOrigin"]))
        # Runs from before the page's received tap have only the played voice.
        voice = barge_in.Voice(page["remote"], page.get("received", page["remote"]), float(page["blockMs"]))
        found += barge_in.trials(stimuli, page["mic"], voice, events)
        errors += [page["error"]] if page["error"] else []
    interrupt_ms = float(run.get("interrupt_speech_ms", 300))
    return {
        "summary": barge_in.summary(found, interrupt_ms),
        "trials": [dataclasses.asdict(t) for t in found],
        "page_errors": errors,
    }


def analyze_latency(run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    plan = [Placed(**u) for u in json.loads((run_dir / "plan.json").read_text())["utterances"]]
    page = json.loads((run_dir / "page.json").read_text())
    events = page_audio.epoch_events(page["events"], float(page["timeOrigin"]))
    page_turns = page_audio.page_turns(plan, page["mic"], page["remote"], events, float(page["blockMs"]))

    spans = traces.load_spans(run_dir / "traces.jsonl")
    index = traces.SpanIndex(spans)
    session = next((e["session_id"] for e in events if e.get("type") == "session"), None)
    session = session or traces.session_of(spans)
    turns = []
    for page_turn in page_turns:
        server = None
        if session is not None and page_turn.turn_id is not None:
            server = traces.server_turn(index, session, page_turn.turn_id, page_turn.latency_event)
        turns.append(breakdown.join(page_turn, server))

    data = report.result(
        turns, {**run, "session_id": session, "spans": len(spans), "page_error": page["error"]}
    )
    data["chromium_jitter_buffer"] = page_audio.jitter_buffer(page.get("jitterBuffer", []))
    data["interims"] = interims.cadence(page_turns, events).as_dict()
    v2v = data["summary"]["voice_to_voice_ms"]
    title = (
        f"voice-to-voice per turn: p50 {report.fmt_ms(v2v['p50'])} ms, p90 {report.fmt_ms(v2v['p90'])} ms "
        f"({run_dir.name}, {data['machine']['nproc']} cores)"
    )
    chart.render(
        chart.layout(turns), run_dir / "waterfall.png", title, report.TARGET_P50_MS, report.TARGET_P90_MS
    )
    return data


def measure_bus_floor() -> dict[str, Any]:
    """The machine's floor for the bus hops of a turn, measured before the agent starts
    (an idle machine: the floor, not the load); an error is recorded, not raised."""
    try:
        return bus_floor.measure_floor(bus_floor.TURN_HOPS)
    except (OSError, RuntimeError, ValueError, SystemExit) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--lead-in", type=float, default=6.0, help="silence before the first utterance (s)")
    parser.add_argument("--gap", type=float, default=11.0, help="silence after each utterance (s)")
    parser.add_argument("--utterances", type=int, default=None, help="how many LibriVox utterances (all 5)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="latency: say the utterances this many times over (more turns)"
    )
    parser.add_argument(
        "--scenario", choices=[*SCENARIOS, "all"], default="all", help="what to run (both by default)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the run folders")
    parser.add_argument(
        "--analyze", type=Path, metavar="RUN_DIR", help="re-analyze a finished run, no new run"
    )
    args = parser.parse_args()

    if args.analyze:
        run_dir = args.analyze
        saved = run_dir / "run.json"
        run: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() else {}
        run["reanalyzed_by"] = report.command_line()
    else:
        run_dir = args.results / time.strftime("%Y%m%d-%H%M%S")
        run_dir.mkdir(parents=True, exist_ok=False)
        run = {
            "command": report.command_line(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "lead_in_s": args.lead_in,
            "gap_s": args.gap,
            "rounds": args.rounds,
            "machine": report.machine_info(),  # load_average: at the start
            "scenarios": list(SCENARIOS) if args.scenario == "all" else [args.scenario],
            "interrupt_speech_ms": int(os.environ.get("EDGE_INTERRUPT_SPEECH_MS", "300")),
        }
        run["bus_floor"] = measure_bus_floor()
        (run_dir / "run.json").write_text(json.dumps(run, indent=1))
        collect(run_dir, args.lead_in, args.gap, args.utterances, set(run["scenarios"]), args.rounds)
        run["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        (run_dir / "run.json").write_text(json.dumps(run, indent=1))
    data = analyze(run_dir, run)
    measured = 0
    if "summary" in data:
        print()
        print(report.table(data))
        measured += data["summary"]["voice_to_voice_ms"]["count"]
    if "barge_in" in data:
        print()
        print(barge_in.table(data["barge_in"]))
        measured += data["barge_in"]["summary"]["stop_ms"]["count"]
    print(f"\nwrote {run_dir / 'result.json'}" + (" and waterfall.png" if "summary" in data else ""))
    return 0 if measured else 1


if __name__ == "__main__":
    raise SystemExit(main())
