// The page: camera, source upload, settings, stats, connection state and reconnects.

import * as api from "./api.js";
import { Connection } from "./connection.js";
import { QUALITY, controlMessage, loadSettings, saveSettings } from "./settings.js";

const RECONNECT_BASE_MS = 1000;
const RECONNECT_MAX_MS = 30000;

const STATE_TEXT = {
  idle: "Not connected",
  camera: "Starting camera…",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  failed: "Connection failed",
};

const $ = (id) => document.getElementById(id);

/**
 * What the server's engine description says about the face enhancer. Engines describe it as a
 * boolean (`supports_enhance`, `enhancer`, `enhance`) or as a sentence in `enhance` such as
 * "ignored: this engine has no enhancer".
 */
export function enhancerSupport(engine) {
  if (!engine || typeof engine !== "object") return { supported: false, note: "" };
  const name = engine.name ?? engine.engine ?? "this";
  let supported = false;
  let said = "";
  const flag = [engine.supports_enhance, engine.enhancer, engine.enhance].find((v) => typeof v === "boolean");
  if (flag !== undefined) {
    supported = flag;
  } else if (typeof engine.enhance === "string") {
    said = engine.enhance;
    supported = !/ignored|\bno\b|unsupported|not available|unavailable|disabled/i.test(said);
  } else if (Array.isArray(engine.features)) {
    supported = engine.features.includes("enhance");
  }
  const why = name === "embedded" ? " (it needs the neural engine on a GPU)" : "";
  const note = supported ? "" : `Not available with the ${name} engine${why}.`;
  return { supported, note, said };
}

function engineName(engine) {
  if (!engine) return "unknown";
  if (typeof engine === "string") return engine;
  return engine.name ?? engine.engine ?? "unknown";
}

function cameraErrorCode(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "camera_denied";
    case "NotFoundError":
    case "OverconstrainedError":
      return "camera_missing";
    case "NotReadableError":
    case "AbortError":
      return "camera_busy";
    default:
      return "camera_failed";
  }
}

function fmt(value, digits, unit = "") {
  return typeof value === "number" && Number.isFinite(value) ? `${value.toFixed(digits)}${unit}` : "–";
}

class App {
  constructor() {
    this.settings = loadSettings();
    this.info = null;
    this.enhance = { supported: false, note: "" };
    this.sessionId = null; // Per tab, in memory only: a second tab is a second session.
    this.sessionPromise = null;
    this.source = null; // { file, sessionId } — the photo is re-sent when the session changes.
    this.stream = null;
    this.conn = null;
    this.wanted = false; // The user asked for streaming; reconnects continue until Stop.
    this.attempt = 0;
    this.reconnectTimer = null;
    this.countdownTimer = null;
  }

  // ---- set-up -------------------------------------------------------------------------------

  init() {
    this.bindControls();
    this.applySettingsToControls();
    if (!navigator.mediaDevices?.getUserMedia) {
      $("insecure-banner").hidden = false;
      $("start-btn").disabled = true;
      $("camera-select").disabled = true;
    }
    this.setState("idle");
    this.loadInfo();
    window.addEventListener("pagehide", () => this.teardownForUnload());
    // Restored from the back/forward cache: the server session is gone, start clean.
    window.addEventListener("pageshow", (e) => {
      if (e.persisted) window.location.reload();
    });
    window.addEventListener("online", () => {
      if (this.wanted && this.reconnectTimer) this.reconnectNow();
    });
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this.refreshDevices());
  }

  async loadInfo() {
    try {
      this.info = await api.getInfo();
      this.applyEngine(this.info.engine);
      this.clearError("Connection");
      return this.info;
    } catch (err) {
      this.showError(err, "Connection");
      return null;
    }
  }

  applyEngine(engine) {
    const name = engineName(engine);
    $("engine-badge").textContent = `engine: ${name}`;
    $("stat-engine").textContent = name;
    this.enhance = enhancerSupport(typeof engine === "object" ? engine : { name });
    const box = $("opt-enhance");
    box.disabled = !this.enhance.supported;
    box.checked = this.enhance.supported && this.settings.enhance;
    $("enhance-note").hidden = this.enhance.supported;
    $("enhance-note").textContent = this.enhance.note;
  }

  bindControls() {
    $("start-btn").addEventListener("click", () => this.start());
    $("stop-btn").addEventListener("click", () => this.stop());
    $("camera-select").addEventListener("change", (e) => {
      this.settings.device_id = e.target.value;
      saveSettings(this.settings);
      if (this.stream) this.switchCamera();
    });
    $("quality-select").addEventListener("change", (e) => {
      this.settings.quality = e.target.value;
      saveSettings(this.settings);
      if (this.stream) this.switchCamera();
    });

    const input = $("source-input");
    $("source-choose").addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      if (input.files?.[0]) this.setSource(input.files[0]);
      input.value = ""; // Choosing the same file again must fire "change" again.
    });
    $("source-clear").addEventListener("click", () => this.clearSource());

    const zone = $("dropzone");
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (e) => {
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        zone.classList.add("over");
      });
    }
    zone.addEventListener("dragleave", (e) => {
      if (!zone.contains(e.relatedTarget)) zone.classList.remove("over");
    });
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      const file = e.dataTransfer?.files?.[0];
      if (file) this.setSource(file);
    });
    // A photo dropped next to the zone must not navigate away from the page.
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
    window.addEventListener("paste", (e) => {
      const item = [...(e.clipboardData?.items ?? [])].find((i) => i.type.startsWith("image/"));
      const file = item?.getAsFile();
      if (file) this.setSource(file);
    });

    $("opt-many-faces").addEventListener("change", (e) => this.updateSetting("many_faces", e.target.checked));
    $("opt-enhance").addEventListener("change", (e) => this.updateSetting("enhance", e.target.checked));
    $("opt-show-stats").addEventListener("change", (e) => this.updateSetting("show_stats", e.target.checked));
    $("opt-strength").addEventListener("input", (e) => {
      this.showStrength(Number(e.target.value));
      this.updateSetting("strength", Number(e.target.value));
    });
    $("error-dismiss").addEventListener("click", () => this.clearError());

    for (const video of document.querySelectorAll(".tile video")) {
      video.addEventListener("resize", () => {
        if (video.videoWidth && video.videoHeight) {
          video.closest(".tile").style.setProperty("--ar", `${video.videoWidth} / ${video.videoHeight}`);
        }
      });
    }
    const remote = $("remote-video");
    remote.addEventListener("resize", () => this.markRemoteLive());
    remote.addEventListener("playing", () => this.markRemoteLive());
  }

  applySettingsToControls() {
    const s = this.settings;
    $("opt-many-faces").checked = s.many_faces;
    $("opt-strength").value = String(s.strength);
    this.showStrength(s.strength);
    $("opt-enhance").checked = s.enhance;
    $("opt-show-stats").checked = s.show_stats;
    $("quality-select").value = s.quality;
    this.updateStatsVisibility();
  }

  showStrength(value) {
    const text = `${Math.round(value * 100)}%`;
    $("opt-strength-out").textContent = text;
    $("opt-strength").setAttribute("aria-valuetext", text);
  }

  updateSetting(key, value) {
    this.settings[key] = value;
    saveSettings(this.settings);
    if (key === "show_stats") this.updateStatsVisibility();
    this.conn?.send(controlMessage(this.settings, this.enhance.supported));
  }

  updateStatsVisibility() {
    $("stats").hidden = !(this.settings.show_stats && this.conn);
  }

  // ---- state and errors ---------------------------------------------------------------------

  setState(state, text) {
    const el = $("connection-state");
    // Screen readers hear state changes, not every tick of the reconnect countdown.
    if (el.dataset.state !== state || !$("sr-status").textContent) {
      $("sr-status").textContent = `Connection: ${STATE_TEXT[state] ?? state}`;
    }
    el.dataset.state = state;
    el.textContent = text ?? STATE_TEXT[state] ?? state;
    document.body.dataset.state = state;
  }

  showError(err, context) {
    const code = err?.code ?? "error";
    const friendly = err instanceof api.ApiError ? err.friendly : api.friendlyText(code, err?.message);
    const fromServer = (err instanceof api.ApiError && err.status > 0) || context === "Server";
    const detail = err?.message && err.message !== friendly
      ? `${fromServer ? "Server said" : "Details"}: ${err.message}` : "";
    $("error-text").textContent = context ? `${context}: ${friendly}` : friendly;
    $("error-detail").textContent = detail;
    $("error-detail").hidden = !detail;
    $("error").dataset.code = code;
    $("error").dataset.context = context ?? "";
    $("error").hidden = false;
  }

  clearError(context) {
    if (context && $("error").dataset.context !== context) return;
    $("error").hidden = true;
    $("error").dataset.code = "";
  }

  // ---- session and source -------------------------------------------------------------------

  async ensureSession() {
    if (this.sessionId) return this.sessionId;
    if (!this.sessionPromise) {
      this.sessionPromise = api.createSession().then((data) => {
        this.sessionId = data.session_id;
        if (data.engine) this.applyEngine(data.engine);
        if (data.ice_servers && this.info) this.info.ice_servers = data.ice_servers;
        return this.sessionId;
      }).finally(() => {
        this.sessionPromise = null;
      });
    }
    return this.sessionPromise;
  }

  forgetSession() {
    const old = this.sessionId;
    this.sessionId = null;
    if (old) api.deleteSession(old).catch(() => {});
  }

  async setSource(file) {
    this.clearError();
    const status = $("source-status");
    status.textContent = `Uploading ${file.name || "photo"}…`;
    $("dropzone").classList.add("busy");
    try {
      const result = await this.uploadWithRetry(file);
      this.source = { file, sessionId: this.sessionId };
      this.showSource(result);
    } catch (err) {
      status.textContent = this.source ? "The previous source is still in use." : "No source yet.";
      this.showError(err, "Source photo");
    } finally {
      $("dropzone").classList.remove("busy");
    }
  }

  async uploadWithRetry(file) {
    const sid = await this.ensureSession();
    try {
      return await api.uploadSource(sid, file);
    } catch (err) {
      if (err.code !== "unknown_session" || this.conn) throw err;
      // The server forgot an idle session: make a new one (nothing is connected to the old one).
      this.sessionId = null;
      return api.uploadSource(await this.ensureSession(), file);
    }
  }

  showSource(result) {
    const thumb = $("source-thumb");
    if (result.thumbnail) {
      thumb.src = result.thumbnail;
      thumb.alt = "Source face";
      thumb.hidden = false;
    }
    $("dropzone").classList.add("has-source");
    $("dropzone-text").textContent = "Drop another photo or";
    $("source-clear").hidden = false;
    const n = result.faces_found ?? 1;
    let text = "Source face set.";
    if (result.warning === "several_faces" || n > 1) {
      text = `Source face set. ${n} faces were found; the largest one is used.`;
    }
    $("source-status").textContent = text;
  }

  async clearSource() {
    const had = this.source;
    this.source = null;
    $("source-thumb").hidden = true;
    $("source-thumb").removeAttribute("src");
    $("dropzone").classList.remove("has-source");
    $("dropzone-text").textContent = "Drop a photo here or";
    $("source-clear").hidden = true;
    $("source-status").textContent = "No source: the video passes through unchanged.";
    $("source-choose").focus();
    if (had && this.sessionId) {
      try {
        await api.deleteSource(this.sessionId);
      } catch (err) {
        if (err.code !== "unknown_session") this.showError(err, "Remove source");
      }
    }
  }

  // ---- camera -------------------------------------------------------------------------------

  async getCamera() {
    const video = { ...QUALITY[this.settings.quality], frameRate: { ideal: 30 } };
    if (this.settings.device_id) {
      try {
        return await navigator.mediaDevices.getUserMedia({
          video: { ...video, deviceId: { exact: this.settings.device_id } }, audio: false,
        });
      } catch (err) {
        if (err?.name !== "OverconstrainedError" && err?.name !== "NotFoundError") throw err;
        // The remembered camera is gone (unplugged, other machine): use the default one.
      }
    }
    return navigator.mediaDevices.getUserMedia({ video: { ...video, facingMode: "user" }, audio: false });
  }

  async refreshDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const select = $("camera-select");
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    const current = this.stream?.getVideoTracks()[0]?.getSettings?.().deviceId ?? this.settings.device_id;
    select.replaceChildren(...devices.map((d, i) => {
      const opt = document.createElement("option");
      opt.value = d.deviceId;
      opt.textContent = d.label || `Camera ${i + 1}`;
      return opt;
    }));
    if (!devices.length) select.append(new Option("No camera found", ""));
    if (current && devices.some((d) => d.deviceId === current)) select.value = current;
  }

  showLocal(stream) {
    const local = $("local-video");
    local.srcObject = stream;
    local.play().catch(() => {});
    $("local-placeholder").hidden = true;
    document.body.classList.add("camera-on");
  }

  watchCamera(stream) {
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    track.addEventListener("ended", () => {
      if (this.stream !== stream) return; // Replaced on purpose (device switch).
      this.stop();
      this.showError({ code: "camera_failed", message: "the camera stopped (unplugged or taken by another app)" });
    });
  }

  async switchCamera() {
    try {
      const next = await this.getCamera();
      const old = this.stream;
      this.stream = next;
      this.showLocal(next);
      this.watchCamera(next);
      await this.conn?.replaceTrack(next.getVideoTracks()[0]);
      old?.getTracks().forEach((t) => t.stop());
      await this.refreshDevices();
    } catch (err) {
      this.showError({ code: cameraErrorCode(err), message: err?.message });
    }
  }

  async start() {
    this.clearError();
    $("start-btn").disabled = true;
    this.setState("camera");
    try {
      this.stream = await this.getCamera();
    } catch (err) {
      $("start-btn").disabled = false;
      this.setState("idle");
      this.showError({ code: cameraErrorCode(err), message: err?.message });
      return;
    }
    this.showLocal(this.stream);
    this.watchCamera(this.stream);
    this.refreshDevices().catch(() => {});
    $("stop-btn").disabled = false;
    this.wanted = true;
    this.attempt = 0;
    await this.connect();
  }

  stop() {
    this.wanted = false;
    this.cancelReconnect();
    this.conn?.close();
    this.conn = null;
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
    $("local-video").srcObject = null;
    $("remote-video").srcObject = null;
    $("local-placeholder").hidden = false;
    $("remote-placeholder").hidden = false;
    document.body.classList.remove("remote-live", "camera-on");
    // The server frees everything of this session; the photo is re-sent on the next start.
    this.forgetSession();
    $("start-btn").disabled = !navigator.mediaDevices?.getUserMedia;
    $("stop-btn").disabled = true;
    this.setState("idle");
    this.updateStatsVisibility();
    $("start-btn").focus();
  }

  // ---- connection ---------------------------------------------------------------------------

  async connect() {
    if (!this.wanted) return;
    this.resetStats();
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const conn = new Connection({
      stream: this.stream,
      info: this.info ?? {},
      onTrack: (stream) => {
        const remote = $("remote-video");
        remote.srcObject = stream;
        remote.play().catch(() => {});
      },
      onState: (state) => {
        if (this.conn !== conn) return;
        if (state === "connected") {
          this.attempt = 0;
          this.setState("connected");
          this.clearError("Connection");
        } else if (state === "disconnected") {
          this.setState("reconnecting", "Connection unstable…");
        }
      },
      onOpen: () => conn.send(controlMessage(this.settings, this.enhance.supported)),
      onMessage: (msg) => this.handleMessage(msg),
      onFailed: (reason) => {
        if (this.conn === conn) this.handleFailure({ code: "connect_failed", message: reason });
      },
    });
    this.conn = conn;
    this.updateStatsVisibility();
    try {
      if (!this.info) await this.loadInfo();
      conn.o.info = this.info ?? {};
      const sid = await this.ensureSession();
      if (this.source && this.source.sessionId !== sid) {
        this.showSource(await api.uploadSource(sid, this.source.file));
        this.source.sessionId = sid;
      }
      const answer = await conn.open(sid);
      if (answer.session_id && answer.session_id !== this.sessionId) this.sessionId = answer.session_id;
    } catch (err) {
      if (this.conn === conn && !conn.closed) this.handleFailure(err);
    }
  }

  handleFailure(err) {
    this.conn?.close();
    this.conn = null;
    this.updateStatsVisibility();
    if (!this.wanted) return;
    // A fresh session avoids "already connected" races with the server's clean-up of the old one.
    this.forgetSession();
    const fatal = ["no_face", "not_an_image", "unsupported_format", "too_large", "too_many_pixels"];
    if (fatal.includes(err?.code)) {
      // The stored source photo itself is bad: drop it rather than retrying forever.
      this.source = null;
      this.clearSource();
    }
    // Expired or taken sessions are recovered from silently with a fresh one.
    if (err?.code && !["unknown_session", "already_connected"].includes(err.code)) {
      this.showError(err, "Connection");
    }
    // A session that expired while the page sat idle is no failure: retry at once, with a new one.
    this.scheduleReconnect(err?.code === "unknown_session" && this.attempt === 0);
  }

  scheduleReconnect(immediately = false) {
    this.cancelReconnect();
    const base = immediately ? 0 : Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5)); // Jitter: tabs don't retry in step.
    this.attempt += 1;
    const due = performance.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((due - performance.now()) / 1000));
      this.setState("reconnecting", `Reconnecting in ${left} s (attempt ${this.attempt})`);
    };
    tick();
    this.countdownTimer = setInterval(tick, 1000);
    this.reconnectTimer = setTimeout(() => this.reconnectNow(), delay);
  }

  cancelReconnect() {
    clearTimeout(this.reconnectTimer);
    clearInterval(this.countdownTimer);
    this.reconnectTimer = null;
    this.countdownTimer = null;
  }

  reconnectNow() {
    this.cancelReconnect();
    this.connect();
  }

  handleMessage(msg) {
    if (msg.type === "stats") {
      this.showStats(msg);
      this.showMediaStats(); // Piggyback on the server's once-per-second beat.
    }
    else if (msg.type === "error") this.showError({ code: msg.code, message: msg.message }, "Server");
  }

  async showMediaStats() {
    const m = await this.conn?.mediaStats().catch(() => null);
    if (!m) return;
    if (m.codec) $("stat-codec").textContent = m.codec;
    if (typeof m.sendKbps === "number") {
      $("stat-bitrate").textContent = m.sendKbps >= 1000 ? `${(m.sendKbps / 1000).toFixed(1)} Mb/s` : `${Math.round(m.sendKbps)} kb/s`;
    }
  }

  resetStats() {
    for (const id of ["stat-fps-in", "stat-fps-out", "stat-latency", "stat-dropped", "stat-faces",
      "stat-codec", "stat-bitrate"]) {
      $(id).textContent = "–";
    }
    for (const key of ["swappedFrames", "hiddenFrames", "faces", "hidden"]) delete $("stats").dataset[key];
  }

  showStats(s) {
    $("stat-fps-in").textContent = fmt(s.fps_in, 1);
    $("stat-fps-out").textContent = fmt(s.fps_out, 1);
    $("stat-latency").textContent = fmt(s.latency_ms, 0, " ms");
    $("stat-dropped").textContent = typeof s.dropped === "number" ? String(s.dropped) : "–";
    const faces = typeof s.faces === "number" ? String(s.faces) : "–";
    $("stat-faces").textContent = s.hidden ? `${faces} (${s.hidden} hidden)` : faces;
    if (s.engine) $("stat-engine").textContent = s.engine;
    // Raw counters for tests and curious users (devtools), not shown.
    const box = $("stats");
    box.dataset.swappedFrames = String(s.swapped_frames ?? "");
    box.dataset.hiddenFrames = String(s.hidden_frames ?? "");
    box.dataset.faces = String(s.faces ?? "");
    box.dataset.hidden = String(s.hidden ?? "");
    const stages = s.stages_ms && typeof s.stages_ms === "object"
      ? Object.entries(s.stages_ms).map(([k, v]) => `${k} ${fmt(v, 1, " ms")}`).join(", ")
      : "";
    $("stats").title = stages ? `Per stage: ${stages}` : "";
  }

  markRemoteLive() {
    if ($("remote-video").videoWidth > 0) {
      $("remote-placeholder").hidden = true;
      document.body.classList.add("remote-live");
    }
  }

  teardownForUnload() {
    this.wanted = false;
    this.cancelReconnect();
    this.conn?.close();
    if (this.sessionId) api.deleteSessionOnUnload(this.sessionId);
  }
}

const app = new App();
app.init();
// Handy in the console and for tests; not an API.
window.swaprtc = app;
