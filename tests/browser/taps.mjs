// WebAudio taps on the page's microphone stream (getUserMedia) and on the agent's voice
// (the remote WebRTC track), installed before the page's own code runs: they observe,
// they change nothing. Shared by the browser tests (talk.mjs) and the benchmark
// (bench/page.mjs).
//
// In the page, window.__taps = {mic, remote, received, blockMs, remotePcm, remoteSampleRate, pcs}:
// mic, remote and received are [[start ms, rms], ...] per sub-block of `subBlock` samples, in
// performance.now() ms, or epoch ms with `epoch` (comparable with the servers'
// time.time()); remotePcm (with `keepRemotePcm`) the remote audio as Int16Array blocks;
// pcs the page's RTCPeerConnections, for getStats.
// remote is the agent's voice as the page plays it: silent while the page holds it (the
// page disables the track). received taps a clone of the track, which the page's hold
// does not touch: the audio as it arrived from the edge.
// Both taps go through the same kind of graph, so its own delay cancels in
// "remote onset - microphone end".
export async function installTaps(page, { subBlock = 1024, keepRemotePcm = false, epoch = false } = {}) {
  await page.addInitScript(({ subBlock, keepRemotePcm, epoch }) => {
    const rec = { mic: [], remote: [], received: [], blockMs: 0, remotePcm: [], remoteSampleRate: 0, pcs: [] };
    window.__taps = rec;
    const now = () => (epoch ? performance.timeOrigin : 0) + performance.now();
    const tap = (stream, timeline, keepPcm) => {
      const ctx = new AudioContext();
      const source = ctx.createMediaStreamSource(stream);
      const proc = ctx.createScriptProcessor(1024, 1, 1);
      const sink = ctx.createGain();
      sink.gain.value = 0;
      rec.blockMs = (subBlock / ctx.sampleRate) * 1000;
      if (keepPcm) rec.remoteSampleRate = ctx.sampleRate;
      proc.onaudioprocess = (ev) => {
        const data = ev.inputBuffer.getChannelData(0);
        // The buffer ended "now"; its first sample is one buffer earlier.
        const startMs = now() - (data.length / ctx.sampleRate) * 1000;
        for (let offset = 0; offset < data.length; offset += subBlock) {
          let sum = 0;
          const stop = Math.min(offset + subBlock, data.length);
          for (let i = offset; i < stop; i++) sum += data[i] * data[i];
          const at = startMs + (offset / ctx.sampleRate) * 1000;
          timeline.push([Math.round(at * 10) / 10, Math.round(Math.sqrt(sum / (stop - offset)) * 1e5) / 1e5]);
        }
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
    // The page attaches the remote stream to its <audio> element too: Chromium feeds
    // remote WebRTC audio to WebAudio only then.
    const Original = window.RTCPeerConnection;
    window.RTCPeerConnection = class extends Original {
      constructor(...args) {
        super(...args);
        rec.pcs.push(this);
        this.addEventListener('track', (ev) => {
          tap(ev.streams[0] || new MediaStream([ev.track]), rec.remote, keepRemotePcm);
          tap(new MediaStream([ev.track.clone()]), rec.received, false);
        });
      }
    };
  }, { subBlock, keepRemotePcm, epoch });
}
