// The benchmark's page driver: opens the edge's page in Debian's headless Chromium with a
// fake microphone that plays a WAV once, presses Talk, and measures in the page with
// WebAudio the loudness of the microphone stream (getUserMedia) and of the agent's voice
// (the remote WebRTC track) in short blocks, each stamped in epoch milliseconds
// (performance.timeOrigin + performance.now()), comparable with the servers' time.time().
//
// usage: node page.mjs <page-url> <wav> <out.json> <seconds>
// Writes JSON: {timeOrigin, blockMs, mic: [[epochMs, rms], ...], remote: [...],
//               events: window.voiceAgent.events (receivedAt in performance.now() ms),
//               error, console}.
// playwright-core comes from tests/browser/node_modules (installed by `make test-deps`);
// the launcher is shared with the browser tests.
import { writeFileSync } from 'node:fs';
import { launchWithMicrophone } from '../tests/browser/chromium.mjs';

const [url, wav, outPath, secondsArg] = process.argv.slice(2);
if (!url || !wav || !outPath) {
  console.error('usage: node page.mjs <page-url> <wav> <out.json> <seconds>');
  process.exit(2);
}
const seconds = Number(secondsArg || '60');

const browser = await launchWithMicrophone(wav);

const page = await browser.newPage();
const consoleLines = [];
page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));

await page.addInitScript(() => {
  // Taps installed before the page's own code runs: they observe, they change nothing.
  // Each ScriptProcessor callback delivers 1024 samples; we keep the RMS of every
  // 256-sample sub-block (about 5 ms at 48 kHz) so onsets and ends are found to ~5 ms.
  // Both taps go through the same kind of graph, so its own delay cancels in
  // "remote onset - microphone end".
  const SUB = 256;
  const rec = { mic: [], remote: [], blockMs: 0, pcs: [] };
  window.__bench = rec;
  const tap = (stream, timeline) => {
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const proc = ctx.createScriptProcessor(1024, 1, 1);
    const sink = ctx.createGain();
    sink.gain.value = 0;
    rec.blockMs = (SUB / ctx.sampleRate) * 1000;
    proc.onaudioprocess = (ev) => {
      const data = ev.inputBuffer.getChannelData(0);
      // The buffer ended "now"; its first sample is one buffer earlier.
      const endMs = performance.timeOrigin + performance.now();
      const startMs = endMs - (data.length / ctx.sampleRate) * 1000;
      for (let offset = 0; offset < data.length; offset += SUB) {
        let sum = 0;
        const stop = Math.min(offset + SUB, data.length);
        for (let i = offset; i < stop; i++) sum += data[i] * data[i];
        const at = startMs + (offset / ctx.sampleRate) * 1000;
        timeline.push([Math.round(at * 10) / 10, Math.round(Math.sqrt(sum / (stop - offset)) * 1e5) / 1e5]);
      }
    };
    source.connect(proc);
    proc.connect(sink);
    sink.connect(ctx.destination);
  };
  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await getUserMedia(constraints);
    tap(stream, rec.mic);
    return stream;
  };
  // The page attaches the remote stream to its <audio> element too: Chromium feeds
  // remote WebRTC audio to WebAudio only then.
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      rec.pcs.push(this);
      this.addEventListener('track', (ev) => tap(ev.streams[0] || new MediaStream([ev.track]), rec.remote));
    }
  };
});

await page.goto(url);
await page.getByRole('button', { name: /talk/i }).click();
await page.waitForTimeout(seconds * 1000);

// Chromium's own account of its receive jitter buffer (NetEq) for the agent's voice:
// cumulative seconds and counts, averaged over the call by the analysis.
const jitterBuffer = await page.evaluate(async () => {
  const found = [];
  for (const pc of window.__bench.pcs) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        found.push({
          jitterBufferDelay: s.jitterBufferDelay,
          jitterBufferTargetDelay: s.jitterBufferTargetDelay,
          jitterBufferMinimumDelay: s.jitterBufferMinimumDelay,
          jitterBufferEmittedCount: s.jitterBufferEmittedCount,
          jitter: s.jitter,
        });
      }
    });
  }
  return found;
});

const result = await page.evaluate(() => ({
  timeOrigin: performance.timeOrigin,
  blockMs: window.__bench.blockMs,
  mic: window.__bench.mic,
  remote: window.__bench.remote,
  events: (window.voiceAgent && window.voiceAgent.events) || [],
  error: (window.voiceAgent && window.voiceAgent.error) || '',
}));
result.jitterBuffer = jitterBuffer;
result.console = consoleLines;
writeFileSync(outPath, JSON.stringify(result));
await browser.close();
