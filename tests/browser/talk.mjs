// Opens the edge's page in Debian's headless Chromium with a fake microphone that plays a
// WAV file once, presses Talk, and records in the page with WebAudio both the microphone
// (to find when speech ends) and the agent's voice on the remote track.
//
// usage: node talk.mjs <page-url> <wav> <out.json> <seconds>
// Writes JSON: events (the page's window.voiceAgent.events), mic and remote level
// timelines ([ms since page origin, rms] per 20 ms-ish block) and the remote audio as
// base64 PCM16 mono at remoteSampleRate.
import { writeFileSync } from 'node:fs';
import { launchWithMicrophone } from './chromium.mjs';

const [url, wav, outPath, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || '20');

const browser = await launchWithMicrophone(wav);

const page = await browser.newPage();
const consoleLines = [];
page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));

await page.addInitScript(() => {
  // Taps set up before the page's own code runs: they observe, they change nothing.
  const rec = { mic: [], remote: [], remotePcm: [], remoteSampleRate: 0 };
  window.__voiceAgentRecording = rec;
  const tap = (stream, timeline, keepPcm) => {
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const proc = ctx.createScriptProcessor(1024, 1, 1);
    const sink = ctx.createGain();
    sink.gain.value = 0;
    if (keepPcm) rec.remoteSampleRate = ctx.sampleRate;
    proc.onaudioprocess = (ev) => {
      const data = ev.inputBuffer.getChannelData(0);
      let sum = 0;
      for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
      // The block ended "now"; its first sample is one block earlier.
      const startMs = performance.now() - (data.length / ctx.sampleRate) * 1000;
      timeline.push([startMs, Math.sqrt(sum / data.length)]);
      if (keepPcm) {
        const pcm = new Int16Array(data.length);
        for (let i = 0; i < data.length; i++) pcm[i] = Math.max(-1, Math.min(1, data[i])) * 32767;
        rec.remotePcm.push(pcm);
      }
    };
    source.connect(proc);
    proc.connect(sink);
    sink.connect(ctx.destination);
  };
  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await getUserMedia(constraints);
    tap(stream, rec.mic, false);
    return stream;
  };
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener('track', (ev) => tap(ev.streams[0] || new MediaStream([ev.track]), rec.remote, true));
    }
  };
});

await page.goto(url);
await page.getByRole('button', { name: /talk/i }).click();
await page.waitForTimeout(seconds * 1000);

const result = await page.evaluate(() => {
  const rec = window.__voiceAgentRecording;
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
    remoteSampleRate: rec.remoteSampleRate,
    remotePcmBase64: btoa(binary),
  };
});
result.console = consoleLines;
writeFileSync(outPath, JSON.stringify(result));
await browser.close();
