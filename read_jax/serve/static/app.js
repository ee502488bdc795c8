// The page of scripts/serve.py: microphone (or an audio file) → 16 kHz PCM16 chunks over WS /v1/stream →
// frame blocks back, shown through MediaSource (fmp4) or drawn on a canvas (raw). Protocol: docs/serving.md.
// A server with an API key answers 401: the page then asks for the key, keeps it in sessionStorage (this tab
// only), sends it as "Authorization: Bearer" on fetches and as the "bearer.<key>" subprotocol on the WebSocket
// (a browser cannot set headers there; the server never echoes it).
"use strict";
const RATE = 16000, CHUNK = 320;  // 20 ms chunks
const KEY_STORE = "read_jax.api_key";
const $ = (id) => document.getElementById(id);
let ws = null, stopAudio = null;
let apiKey = sessionStorage.getItem(KEY_STORE) || "";
const stats = { frames: 0, clips: 0 };
window.readStats = stats;  // read by tests/test_serve_browser.py

function setStatus(text) { $("status").textContent = text; }

// The server's live mode (clip, rolling or causal), from /v1/info and each session's ready message.
function showMode(mode) { $("mode").textContent = mode || "–"; stats.mode = mode; }

function authHeaders() { return apiKey ? { Authorization: `Bearer ${apiKey}` } : {}; }

// Whether the server takes us (and the default portrait for the preview); shows the key field on a 401.
async function probe() {
  const r = await fetch("/v1/portrait", { headers: authHeaders() });
  if (r.status === 401) {
    $("key-row").hidden = false;
    setStatus(apiKey ? "the API key was refused" : "enter the API key");
    stats.needsKey = true;
    return false;
  }
  $("key-row").hidden = true;
  stats.needsKey = false;
  if (r.ok) $("portrait-preview").src = URL.createObjectURL(await r.blob());
  const info = await fetch("/v1/info", { headers: authHeaders() });
  if (info.ok) showMode((await info.json()).mode);
  setStatus("idle");
  return true;
}

function useKey() {
  apiKey = $("api-key").value.trim();
  if (!/^[A-Za-z0-9._~-]{16,256}$/.test(apiKey)) { setStatus("that is not a key this server could take"); return; }
  sessionStorage.setItem(KEY_STORE, apiKey);
  probe();
}

async function portraitBase64() {
  const file = $("portrait").files[0];
  const blob = file || await (await fetch("/v1/portrait", { headers: authHeaders() })).blob();
  const buf = new Uint8Array(await blob.arrayBuffer());
  let s = "";
  for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode.apply(null, buf.subarray(i, i + 0x8000));
  return btoa(s);
}

// Float samples at the context's rate → PCM16 at 16 kHz (linear interpolation), sent in CHUNK-sample messages.
function makeSender(inRate) {
  const step = inRate / RATE;
  let pos = 0, pending = [];
  return (input) => {
    for (; pos < input.length - 1; pos += step) {
      const i = Math.floor(pos), f = pos - i;
      const v = input[i] * (1 - f) + input[i + 1] * f;
      pending.push(Math.max(-32768, Math.min(32767, Math.round(v * 32767))));
    }
    pos -= input.length;
    while (pending.length >= CHUNK && ws && ws.readyState === 1) {
      ws.send(new Int16Array(pending.splice(0, CHUNK)).buffer);
    }
  };
}

async function startAudio() {
  const ctx = new AudioContext();
  const file = $("audio-file").files[0];
  let source;
  if (file) {
    const buffer = await ctx.decodeAudioData(await file.arrayBuffer());
    source = ctx.createBufferSource();
    source.buffer = buffer;
    source.onended = () => stop();
  } else {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
    source = ctx.createMediaStreamSource(stream);
  }
  const sender = makeSender(ctx.sampleRate);
  const proc = ctx.createScriptProcessor(2048, 1, 1);  // AudioWorklet needs a second file and a secure origin
  proc.onaudioprocess = (e) => sender(e.inputBuffer.getChannelData(0));
  source.connect(proc);
  proc.connect(ctx.destination);
  if (source.start) source.start();
  return () => { try { source.disconnect(); proc.disconnect(); } catch (e) {} ctx.close(); };
}

function makeSink(ready) {
  if (ready.format === "fmp4" && window.MediaSource && MediaSource.isTypeSupported(ready.mime)) {
    const video = $("video"), ms = new MediaSource(), queue = [];
    let sb = null;
    video.src = URL.createObjectURL(ms);
    const pump = () => { if (sb && !sb.updating && queue.length) sb.appendBuffer(queue.shift()); };
    ms.addEventListener("sourceopen", () => {
      sb = ms.addSourceBuffer(ready.mime);
      sb.mode = "segments";
      sb.addEventListener("updateend", () => {
        pump();
        if (video.paused && video.buffered.length) video.play().catch(() => {});
      });
      pump();
    });
    return (payload) => { queue.push(payload); pump(); };
  }
  const canvas = $("canvas"), g = canvas.getContext("2d");
  const w = ready.width, h = ready.height, img = g.createImageData(w, h), tmp = document.createElement("canvas");
  tmp.width = w; tmp.height = h;
  return (payload, clip) => {
    const rgb = new Uint8Array(payload);
    let k = 0;
    const show = () => {  // one frame every 40 ms, the block's frames in order
      if (k >= clip.frames) return;
      const src = rgb.subarray(k * w * h * 3, (k + 1) * w * h * 3);
      for (let i = 0, j = 0; i < src.length; i += 3, j += 4) {
        img.data[j] = src[i]; img.data[j + 1] = src[i + 1]; img.data[j + 2] = src[i + 2]; img.data[j + 3] = 255;
      }
      tmp.getContext("2d").putImageData(img, 0, 0);
      g.drawImage(tmp, 0, 0, canvas.width, canvas.height);
      k += 1;
      setTimeout(show, 1000 / ready.fps);
    };
    show();
  };
}

async function start() {
  if (!await probe()) return;
  $("start").disabled = true; $("stop").disabled = false; $("interrupt").disabled = false;
  stats.frames = 0; stats.clips = 0;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/v1/stream`, apiKey ? ["read.v1", `bearer.${apiKey}`] : ["read.v1"]);
  ws.binaryType = "arraybuffer";
  let sink = null, pendingClip = null, opened = false;
  ws.onopen = async () => {
    opened = true;
    setStatus("starting");
    ws.send(JSON.stringify({ type: "start", portrait: await portraitBase64(), sample_rate: RATE,
                             format: $("format").value, seed: 0 }));
  };
  ws.onmessage = async (e) => {
    if (typeof e.data !== "string") {
      sink(e.data, pendingClip);
      stats.frames += pendingClip.frames; stats.clips += 1;
      $("frames").textContent = stats.frames; $("clips").textContent = stats.clips;
      return;
    }
    const msg = JSON.parse(e.data);
    if (msg.type === "ready") {
      sink = makeSink(msg);
      stats.format = msg.format;
      showMode(msg.mode);
      setStatus("streaming");
      stopAudio = await startAudio();
    } else if (msg.type === "clip") {
      pendingClip = msg;
      if (msg.latency !== null) { $("latency").textContent = msg.latency.toFixed(2); stats.latency = msg.latency; }
    } else if (msg.type === "interrupted") {
      stats.interrupts = (stats.interrupts || 0) + 1;
      setStatus(`streaming (interrupted: ${msg.dropped_seconds.toFixed(2)} s of audio dropped)`);
    } else if (msg.type === "done") {
      setStatus(`done: ${msg.frames} frames`);
    } else if (msg.type === "error") {
      setStatus(`error: ${msg.message}`);
      stats.error = msg.message;
    }
  };
  ws.onclose = (e) => {
    const why = opened ? `${$("status").textContent} (closed ${e.code})` : "refused (the key, the page's origin or the server)";
    setStatus(why); stats.closed = e.code; finish();
  };
}

function finish() {
  if (stopAudio) { stopAudio(); stopAudio = null; }
  $("start").disabled = false; $("stop").disabled = true; $("interrupt").disabled = true;
}

function stop() {
  if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "end" }));
  if (stopAudio) { stopAudio(); stopAudio = null; }
}

$("start").onclick = () => start().catch((e) => { setStatus(`error: ${e}`); finish(); });
$("stop").onclick = stop;
$("interrupt").onclick = () => { if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "interrupt" })); };
$("key-use").onclick = useKey;
$("api-key").onkeydown = (e) => { if (e.key === "Enter") useKey(); };
probe().catch((e) => setStatus(`error: ${e}`));
