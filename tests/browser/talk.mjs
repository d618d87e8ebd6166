// Opens the edge's page in Debian's headless Chromium with a fake microphone that plays a
// WAV file once, presses Talk, and records in the page with WebAudio both the microphone
// (to find when speech ends) and the agent's voice on the remote track (as played, and
// as received before the page's barge-in hold).
//
// usage: node talk.mjs <page-url> <wav> <out.json> <seconds>
// Writes JSON: events (the page's window.voiceAgent.events), mic, remote and received level
// timelines ([ms since page origin, rms] per 20 ms-ish block) and the remote audio as
// base64 PCM16 mono at remoteSampleRate.
import { writeFileSync } from 'node:fs';
import { launchWithMicrophone } from './chromium.mjs';
import { installTaps } from './taps.mjs';

const [url, wav, outPath, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || '20');

const browser = await launchWithMicrophone(wav);

const page = await browser.newPage();
const consoleLines = [];
page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));

await installTaps(page, { keepRemotePcm: true });

await page.goto(url);
await page.getByRole('button', { name: /talk/i }).click();
await page.waitForTimeout(seconds * 1000);

const result = await page.evaluate(() => {
  const rec = window.__taps;
  const total = rec.remotePcm.reduce((n, a) => n + a.length, 0);
  const all = new Int16Array(total);
  let offset = 0;
  for (const chunk of rec.remotePcm) { all.set(chunk, offset); offset += chunk.length; }
  let binary = '';
  const bytes = new Uint8Array(all.buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return {
    events: (window.voiceAgent && window.voiceAgent.events) || [],
    mic: rec.mic,
    remote: rec.remote,
    received: rec.received,
    voiceHeld: window.voiceAgent.voiceHeld(),
    remoteSampleRate: rec.remoteSampleRate,
    remotePcmBase64: btoa(binary),
  };
});
result.console = consoleLines;
writeFileSync(outPath, JSON.stringify(result));
// Hang up like the user would (Stop): closing the browser alone leaves the edge to
// notice through ICE consent, ~30 s later, and the call's last turn ends meanwhile.
await page.evaluate(() => window.voiceAgent && window.voiceAgent.stop());
await browser.close();
