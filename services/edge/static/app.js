// The voice agent's browser client: microphone -> WebRTC -> edge, events back on
// the "events" data channel. No build step. window.voiceAgent exposes what
// happened so browser tests can read it.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const talk = $("talk");
  const stateEl = $("state");
  const errorEl = $("error");
  const log = $("log");
  const remote = $("remote");

  const agent = {
    voiceHeld: () => voiceHeld, // the page is holding the agent's voice (barge-in)
    events: [], // every data-channel event, with receivedAt (performance.now() ms)
    state: "idle", // idle | connecting | listening | thinking | speaking
    connected: false,
    error: "",
    sessionStartedAt: null,
    pc: null,
    start,
    stop,
  };
  window.voiceAgent = agent;

  let stream = null;
  const turns = new Map(); // turn_id -> {user, agent, latency} elements
  // A user who goes on after a pause continues the same utterance under a new
  // turn id (user_started_speaking.continues): both ids share one row.
  const continued = new Map(); // turn_id -> the turn_id whose row it uses

  function setState(state) {
    agent.state = state;
    stateEl.textContent = state;
    stateEl.dataset.state = state;
  }

  function showError(message) {
    agent.error = message;
    errorEl.textContent = message;
  }

  function turnRow(id) {
    const turnId = continued.has(id) ? continued.get(id) : id;
    let row = turns.get(turnId);
    if (!row) {
      const make = (cls, who) => {
        const div = document.createElement("div");
        div.className = `turn ${cls}`;
        div.hidden = true;
        div.innerHTML = `<span class="who">${who}</span><span class="text"></span>`;
        log.appendChild(div);
        return div;
      };
      const user = make("user", "You");
      const reply = make("agent", "Agent");
      const latency = document.createElement("p");
      latency.className = "latency";
      latency.hidden = true;
      log.appendChild(latency);
      row = { user, agent: reply, latency };
      turns.set(turnId, row);
    }
    return row;
  }

  function setText(el, text, partial) {
    el.hidden = false;
    const span = el.querySelector(".text");
    span.textContent = text;
    span.classList.toggle("partial", partial);
  }

  function appendText(el, delta) {
    el.hidden = false;
    el.querySelector(".text").textContent += delta;
  }

  // The edge stops the agent's voice at once on an interruption, but what it sent just
  // before still sits in the browser's jitter buffer and playout path (~200 ms). The data
  // channel is not buffered, so the page silences the voice the moment the edge says so,
  // and lets it through again when the agent resumes or its next reply starts. It
  // disables the received track rather than muting the <audio> element: every consumer
  // of the track (a recorder, a level meter) then hears what the user hears.
  let voiceHeld = false;
  function holdVoice(held) {
    if (voiceHeld === held) return;
    voiceHeld = held;
    const tracks = remote.srcObject ? remote.srcObject.getAudioTracks() : [];
    tracks.forEach((track) => (track.enabled = !held));
    agent.events.push({ type: "voice_held", held, receivedAt: performance.now() });
  }

  function fmt(ms) {
    return ms < 0 ? "–" : `${Math.round(ms)} ms`;
  }

  const handlers = {
    transcript: (e) => setText(turnRow(e.turn_id).user, e.text, !e.final),
    agent_text: (e) => appendText(turnRow(e.turn_id).agent, e.text),
    state: (e) => setState(e.state),
    user_started_speaking: (e) => {
      if (e.continues) continued.set(e.turn_id, continued.get(e.continues) ?? e.continues);
      const row = turnRow(e.turn_id);
      if (!row.user.querySelector(".text").textContent) setText(row.user, "…", true);
    },
    user_stopped_speaking: () => {},
    agent_started_speaking: () => holdVoice(false),
    // The user talks over the agent: its voice is held while the edge finds out
    // whether that was words (a cut) or a cough / "mhm" (it goes on where it stopped).
    agent_paused: () => {
      setState("paused");
      holdVoice(true);
    },
    agent_resumed: () => {
      setState("speaking");
      holdVoice(false);
    },
    interrupted: () => holdVoice(true),
    agent_stopped_speaking: (e) => {
      const agent = turnRow(e.turn_id).agent;
      // The greeting is not written by the LLM, so no agent_text came for it: show what was heard.
      if (!agent.querySelector(".text").textContent && e.heard_text) appendText(agent, e.heard_text);
      agent.classList.toggle("interrupted", e.interrupted);
    },
    latency: (e) => {
      const el = turnRow(e.turn_id).latency;
      el.hidden = false;
      el.textContent =
        `after you stopped: transcript ${fmt(e.stt_final_ms)} · first word ${fmt(e.llm_first_token_ms)}` +
        ` · first audio ${fmt(e.tts_first_audio_ms)} · playing ${fmt(e.first_audio_out_ms)}`;
    },
  };

  function onEvent(raw) {
    let event;
    try {
      event = JSON.parse(raw);
    } catch {
      return;
    }
    event.receivedAt = performance.now();
    agent.events.push(event);
    const handle = handlers[event.type];
    if (handle) handle(event);
    log.scrollTop = log.scrollHeight;
  }

  function iceGatheringComplete(pc, timeoutMs = 5000) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== "complete") return;
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, timeoutMs); // send what we have rather than hang
    });
  }

  async function postOffer(pc) {
    const response = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const reason = body && body.error ? body.error : response.statusText;
      throw new Error(`The edge refused the call (${response.status}): ${reason}`);
    }
    return body;
  }

  async function start() {
    showError("");
    talk.disabled = true;
    setState("connecting");
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      fail(`Microphone unavailable: ${err.message || err.name}. Allow the microphone and try again.`);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: [] });
    agent.pc = pc;
    const channel = pc.createDataChannel("events");
    channel.onmessage = (m) => onEvent(m.data);
    stream.getAudioTracks().forEach((track) => pc.addTrack(track, stream));
    pc.ontrack = (e) => {
      remote.srcObject = e.streams[0] || new MediaStream([e.track]);
      remote.play().catch(() => {}); // autoplay may need the click we already had
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") {
        agent.connected = true;
        agent.sessionStartedAt = performance.now();
        if (agent.state === "connecting") setState("listening");
      } else if (pc.connectionState === "failed") {
        fail("The connection to the edge failed (no network path for WebRTC).");
      } else if (pc.connectionState === "disconnected" || pc.connectionState === "closed") {
        agent.connected = false;
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGatheringComplete(pc);
      const answer = await postOffer(pc);
      await pc.setRemoteDescription(answer);
    } catch (err) {
      fail(err.message || String(err));
      return;
    }
    talk.textContent = "Stop";
    talk.classList.add("on");
    talk.disabled = false;
  }

  function stop() {
    if (agent.pc) agent.pc.close();
    agent.pc = null;
    agent.connected = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    remote.srcObject = null;
    voiceHeld = false;
    talk.textContent = "Talk";
    talk.classList.remove("on");
    talk.disabled = false;
    setState("idle");
  }

  function fail(message) {
    stop();
    showError(message);
  }

  talk.addEventListener("click", () => (agent.pc ? stop() : start()));
})();
