// The benchmark's page driver: opens the edge's page in Debian's headless Chromium with a
// fake microphone that plays a WAV once, presses Talk, and measures in the page with
// WebAudio the loudness of the microphone stream (getUserMedia) and of the agent's voice
// (the remote WebRTC track) in short blocks, each stamped in epoch milliseconds
// (performance.timeOrigin + performance.now()), comparable with the servers' time.time().
//
// usage: node page.mjs <page-url> <wav> <out.json> <seconds>
// Writes JSON: {timeOrigin, blockMs, mic: [[epochMs, rms], ...], remote: [...] (as played),
//               received: [...] (as received, before the page's barge-in hold),
//               events: window.voiceAgent.events (receivedAt in performance.now() ms),
//               error, console}.
// playwright-core comes from tests/browser/node_modules (installed by `make test-deps`);
// the launcher is shared with the browser tests.
import { writeFileSync } from 'node:fs';
import { launchWithMicrophone } from '../tests/browser/chromium.mjs';
import { installTaps } from '../tests/browser/taps.mjs';

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

// Sub-blocks of 256 samples (about 5 ms at 48 kHz): onsets and ends are found to ~5 ms.
await installTaps(page, { subBlock: 256, epoch: true });

await page.goto(url);
await page.getByRole('button', { name: /talk/i }).click();
await page.waitForTimeout(seconds * 1000);

// Chromium's own account of its receive jitter buffer (NetEq) for the agent's voice:
// cumulative seconds and counts, averaged over the call by the analysis.
const jitterBuffer = await page.evaluate(async () => {
  const found = [];
  for (const pc of window.__taps.pcs) {
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
  blockMs: window.__taps.blockMs,
  mic: window.__taps.mic,
  remote: window.__taps.remote,
  received: window.__taps.received,
  events: (window.voiceAgent && window.voiceAgent.events) || [],
  error: (window.voiceAgent && window.voiceAgent.error) || '',
}));
result.jitterBuffer = jitterBuffer;
result.console = consoleLines;
writeFileSync(outPath, JSON.stringify(result));
// Hang up like the user would (Stop): closing the browser alone leaves the edge to
// notice through ICE consent, ~30 s later, and the call's last turn ends meanwhile.
await page.evaluate(() => window.voiceAgent && window.voiceAgent.stop());
await browser.close();
