// The page: camera, source upload, settings, stats, connection state and reconnects.

import * as api from "./api.js";
import * as capture from "./capture.js";
import { Connection } from "./connection.js";
import { SwapControls } from "./controls.js";
import { renderFaces, renderWarnings, sourceSummary } from "./faces.js";
import { matchReturning, pointInPicture, renderPeople } from "./people.js";
import { QUALITY, controlMessage, loadSettings, saveSettings } from "./settings.js";

const OUTPUT_CHANNEL = "swaprtc-output"; // output.js listens on it
const MAX_EXTRA_SOURCES = 7; // the server keeps at most 8 named sources, "default" included

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
    this.sessionEpoch = 0; // Bumped when the page gives its session up; a creation in flight is then void.
    this.sourceChain = Promise.resolve(); // Default-source uploads, one at a time (syncSource).
    this.source = null; // { file, sessionId } — the photo is re-sent when the session changes.
    this.stream = null;
    this.conn = null;
    this.wanted = false; // The user asked for streaming; reconnects continue until Stop.
    this.attempt = 0;
    this.reconnectTimer = null;
    this.countdownTimer = null;
    this.supported = new Set(); // swap controls this engine takes (`/api/info` `controls`)
    // name -> { file, face, sessionId, result, person, lastBox, waiting }: more people, more sources.
    // `person` is the server's id on the current session, `lastBox` where that person was last
    // seen (0..1), `waiting` the box of a person assigned before a reconnect and not back yet.
    this.extras = new Map();
    this.assigning = null; // name of the source the next click on the video gives to a person
    this.assignsSent = []; // assign messages not answered yet, oldest first: { source, restore }
    this.people = [];
    this.lastSwapped = null;
    this.remoteStream = null;
    this.recorder = null;
    this.recordTimer = null;
    this.outputChannel = typeof BroadcastChannel === "function" ? new BroadcastChannel(OUTPUT_CHANNEL) : null;
    this.controls = null;
  }

  // ---- set-up -------------------------------------------------------------------------------

  init() {
    this.controls = new SwapControls($("settings"), (key, value) => this.updateSetting(key, value));
    this.bindControls();
    this.bindTools();
    this.bindExtras();
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
      this.applyInfo(this.info);
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
    if (Array.isArray(this.info?.controls)) return; // The engine listed its controls: applyInfo.
    this.enhance = enhancerSupport(typeof engine === "object" ? engine : { name });
    this.supported = new Set(this.enhance.supported ? ["enhance"] : []);
    const box = $("opt-enhance");
    box.disabled = !this.enhance.supported;
    box.checked = this.enhance.supported && this.settings.enhance;
    $("enhance-note").hidden = this.enhance.supported;
    $("enhance-note").textContent = this.enhance.note;
    this.controls.show(null);
    this.controls.updateDependants();
  }

  /** Swap controls and the operator's label, from `/api/info`. */
  applyInfo(info) {
    if (Array.isArray(info.controls)) {
      this.supported = new Set(info.controls);
      this.enhance = { supported: this.supported.has("enhance"), note: "" };
      const box = $("opt-enhance");
      box.disabled = false;
      box.checked = this.settings.enhance;
      $("enhance-note").hidden = true;
      this.controls.show(this.supported);
      this.controls.updateDependants();
    }
    $("label-note").hidden = !info.label?.enabled;
    // Overlays (badge, self-view, stats) keep clear of the corner the label is burned into.
    if (info.label?.enabled) document.body.dataset.label = String(info.label.position ?? "");
    else delete document.body.dataset.label;
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
    $("opt-enhance").addEventListener("change", (e) => {
      this.updateSetting("enhance", e.target.checked);
      this.controls.updateDependants();
    });
    $("opt-mirror").addEventListener("change", (e) => {
      this.updateSetting("mirror", e.target.checked);
      this.applyMirror();
    });
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
    remote.addEventListener("click", (e) => this.assignAt(pointInPicture(remote, e.clientX, e.clientY)));
    window.addEventListener("resize", () => this.showPeople());
    window.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.assigning) this.setAssigning(null);
    });
  }

  applySettingsToControls() {
    const s = this.settings;
    $("opt-many-faces").checked = s.many_faces;
    $("opt-strength").value = String(s.strength);
    this.showStrength(s.strength);
    $("opt-enhance").checked = s.enhance;
    $("opt-show-stats").checked = s.show_stats;
    $("opt-mirror").checked = s.mirror;
    $("quality-select").value = s.quality;
    this.controls.apply(s);
    this.applyMirror();
    this.updateStatsVisibility();
  }

  applyMirror() {
    // Only the self-view: the swapped video, snapshots and clips show the picture as others see it.
    $("local-video").classList.toggle("mirrored", this.settings.mirror);
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
    this.conn?.send(controlMessage(this.settings, this.supported));
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
    this.showTileState(state, text);
  }

  /** The swapped tile says what is going on instead of going black (reconnecting, connecting). */
  showTileState(state, text) {
    const placeholder = $("remote-placeholder");
    const waiting = ["camera", "connecting", "reconnecting", "failed"].includes(state);
    $("remote-tile").dataset.state = state;
    if (waiting) {
      placeholder.textContent = text ?? STATE_TEXT[state];
      placeholder.hidden = false;
      document.body.classList.remove("remote-live");
      this.updateTools();
    } else if (state === "idle") {
      placeholder.textContent = "Start the camera to see the swapped video";
    }
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
      const epoch = this.sessionEpoch;
      const promise = api.createSession().then((data) => {
        if (epoch !== this.sessionEpoch) {
          // Given up while it was being created (Stop): free it on the server, tell the caller.
          api.deleteSession(data.session_id).catch(() => {});
          throw new api.ApiError(0, "aborted", "the session was given up while it was being created");
        }
        this.sessionId = data.session_id;
        if (data.engine) this.applyEngine(data.engine);
        if (data.ice_servers && this.info) this.info.ice_servers = data.ice_servers;
        return this.sessionId;
      }).finally(() => {
        if (this.sessionPromise === promise) this.sessionPromise = null;
      });
      this.sessionPromise = promise;
    }
    return this.sessionPromise;
  }

  forgetSession() {
    const old = this.sessionId;
    this.sessionId = null;
    this.sessionEpoch += 1;
    this.sessionPromise = null;
    // Idempotent on the server (200 even when it already ended the session): a quiet Stop.
    if (old) api.deleteSession(old).catch(() => {});
  }

  /**
   * Make the newest photo the user chose the default source of session `sid`. Uploads run one at
   * a time and each sends the photo wanted when it starts, so a photo chosen while a reconnect
   * re-uploads the previous one goes after it and wins. Resolves to the upload's answer, or null
   * when that photo is already there.
   */
  syncSource(sid) {
    const run = async () => {
      const src = this.source;
      if (!src || src.sessionId === sid) return null;
      const result = await api.uploadSource(sid, src.file, { face: src.face });
      src.sessionId = sid;
      src.face = result.selected ?? src.face;
      if (this.source === src) this.showSource(result);
      return result;
    };
    const next = this.sourceChain.then(run, run);
    this.sourceChain = next.catch(() => {});
    return next;
  }

  async setSource(file) {
    this.clearError();
    const status = $("source-status");
    status.textContent = `Uploading ${file.name || "photo"}…`;
    status.classList.remove("bad");
    $("dropzone").classList.add("busy");
    const previous = this.source;
    const wanted = { file, sessionId: null, face: undefined };
    this.source = wanted;
    try {
      await this.uploadWithRetry();
    } catch (err) {
      // The server kept the previous photo (a failed upload changes nothing there).
      if (this.source === wanted) this.source = previous;
      // Said next to the photo too: on a phone the error toast may be gone when the user looks.
      const friendly = err instanceof api.ApiError ? err.friendly : api.friendlyText(err?.code, err?.message);
      status.textContent = `${friendly} ${this.source ? "The previous source is still in use." : ""}`.trim();
      status.classList.add("bad");
      this.showError(err, "Source photo");
    } finally {
      $("dropzone").classList.remove("busy");
    }
  }

  async uploadWithRetry() {
    try {
      return await this.syncSource(await this.ensureSession());
    } catch (err) {
      // The server forgot an idle session, or Stop gave up the one being created: use a new one
      // (nothing is connected to the old one).
      if (!["unknown_session", "aborted"].includes(err.code) || this.conn) throw err;
      if (err.code === "unknown_session") this.sessionId = null;
      return this.syncSource(await this.ensureSession());
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
    $("source-status").textContent = sourceSummary(result);
    $("source-status").classList.remove("bad");
    renderFaces($("source-faces"), result, (index) => this.pickFace("default", index));
    renderWarnings($("source-warnings"), result);
  }

  /** Use another face of the photo already uploaded under `name`. */
  async pickFace(name, index) {
    const status = name === "default" ? $("source-status") : $("people-status");
    status.textContent = `Switching to face ${index + 1}…`;
    try {
      const result = await api.selectFace(this.sessionId, name, index);
      if (name === "default") {
        if (this.source) this.source.face = result.selected ?? index;
        this.showSource(result);
      } else {
        const extra = this.extras.get(name);
        if (extra) Object.assign(extra, { face: result.selected ?? index, result });
        this.renderExtras();
        status.textContent = `${name}: face ${index + 1} is used.`;
      }
    } catch (err) {
      status.textContent = "The face was not changed.";
      this.showError(err, "Source photo");
    }
  }

  async clearSource() {
    const had = this.source;
    this.source = null;
    $("source-thumb").hidden = true;
    $("source-thumb").removeAttribute("src");
    $("dropzone").classList.remove("has-source");
    $("dropzone-text").textContent = "Drop a photo here or";
    $("source-clear").hidden = true;
    $("source-faces").hidden = true;
    $("source-warnings").hidden = true;
    $("source-status").textContent = "No source: the video passes through unchanged.";
    $("source-choose").focus();
    if (had && this.sessionId) {
      try {
        await api.deleteSource(this.sessionId, "default");
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
      this.showCameraInfo();
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
    this.showCameraInfo();
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
    this.stopRecording();
    $("local-video").srcObject = null;
    $("remote-video").srcObject = null;
    this.setRemoteStream(null);
    $("local-placeholder").hidden = false;
    $("remote-placeholder").hidden = false;
    $("camera-info").hidden = true;
    document.body.classList.remove("remote-live", "camera-on");
    this.setAssigning(null);
    this.showBadge(null);
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
    this.assignsSent = []; // a new control channel: the old one's replies never come
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const conn = new Connection({
      stream: this.stream,
      onTrack: (stream) => {
        const remote = $("remote-video");
        remote.srcObject = stream;
        remote.play().catch(() => {});
        this.setRemoteStream(stream);
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
      onOpen: () => conn.send(controlMessage(this.settings, this.supported)),
      onMessage: (msg) => this.handleMessage(msg),
      onFailed: (reason) => {
        if (this.conn === conn) this.handleFailure({ code: "connect_failed", message: reason });
      },
    });
    this.conn = conn;
    this.updateStatsVisibility();
    try {
      if (!this.info) await this.loadInfo();
      if (!this.info) throw new api.ApiError(0, "network", "the server's settings (/api/info) could not be read");
      const sid = await this.ensureSession();
      if (this.conn !== conn) return; // Stopped meanwhile: open no peer connection.
      await this.syncSource(sid);
      await this.resendExtras(sid);
      if (this.conn !== conn) return;
      await conn.open(sid, this.info ?? {});
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
    } else if (msg.type === "assigned") {
      this.assigned(msg);
    } else if (msg.type === "unassigned") {
      for (const extra of this.extras.values()) if (extra.person === msg.person) extra.person = undefined;
      this.renderExtras();
      this.peopleSay(`Person ${msg.person} follows the main source again.`);
    } else if (msg.type === "error" && ["no_face_here", "unknown_source"].includes(msg.code)) {
      // Replies come in the order the assigns were sent. A restore that missed (the person moved
      // on) is tried again with the next stats, quietly.
      if (!this.assignsSent.shift()?.restore) this.assignFailed(msg);
    } else if (msg.type === "error" && msg.code === "not_assigned") {
      this.assignFailed(msg);
    } else if (msg.type === "error") {
      this.showError({ code: msg.code, message: msg.message }, "Server");
    }
  }

  async showMediaStats() {
    const m = await this.conn?.mediaStats().catch(() => null);
    if (!m) return;
    if (m.codec) $("stat-codec").textContent = m.codec;
    if (typeof m.sendKbps === "number") {
      $("stat-bitrate").textContent = m.sendKbps >= 1000 ? `${(m.sendKbps / 1000).toFixed(1)} Mb/s` : `${Math.round(m.sendKbps)} kb/s`;
    }
    if (typeof m.fps === "number") this.showCameraInfo(m);
  }

  resetStats() {
    for (const id of ["stat-fps-in", "stat-fps-out", "stat-latency", "stat-dropped", "stat-faces",
      "stat-codec", "stat-bitrate"]) {
      $(id).textContent = "–";
    }
    for (const key of ["swappedFrames", "hiddenFrames", "faces", "hidden"]) delete $("stats").dataset[key];
    this.lastSwapped = null; // The server counts from zero on every connection.
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
    this.showBadge(s);
    const reason = typeof s.hidden_reason === "string" ? s.hidden_reason : "";
    $("hidden-reason").textContent = reason;
    $("hidden-reason").hidden = !reason;
    this.people = Array.isArray(s.people) ? s.people : [];
    this.followAssigned();
    this.restoreAssignments();
    this.showPeople();
  }

  /** "Swapped" only while the server really swaps (its swapped-frame count grows). */
  showBadge(s) {
    const badge = $("swap-badge");
    let text = "Output";
    let swapping = false;
    if (s) {
      const count = typeof s.swapped_frames === "number" ? s.swapped_frames : null;
      const grew = count !== null && count > (this.lastSwapped ?? 0);
      this.lastSwapped = count;
      if (!this.source && !this.extras.size) text = "Not swapped: no source face yet";
      else if (grew) [text, swapping] = ["Swapped", true];
      else if (s.faces === 0) text = "Not swapped: no face in view";
      else if (s.hidden) text = "Not swapped: face hidden";
      else text = "Not swapped";
    } else {
      this.lastSwapped = null;
    }
    badge.textContent = text;
    badge.dataset.swapping = String(swapping);
  }

  markRemoteLive() {
    if ($("remote-video").videoWidth > 0 && this.conn) {
      $("remote-placeholder").hidden = true;
      document.body.classList.add("remote-live");
      this.updateTools();
    }
  }

  // ---- getting the video out --------------------------------------------------------------

  bindTools() {
    const remote = $("remote-video");
    $("snapshot-btn").addEventListener("click", () => this.takeSnapshot());
    $("record-btn").addEventListener("click", () => (this.recorder ? this.stopRecording() : this.startRecording()));
    $("pip-btn").addEventListener("click", () => capture.togglePictureInPicture(remote)
      .catch((err) => this.toolsSay(`Picture in picture failed: ${err?.message ?? err}`)));
    $("fullscreen-btn").addEventListener("click", () => capture.toggleFullscreen($("remote-tile"))
      .catch((err) => this.toolsSay(`Fullscreen failed: ${err?.message ?? err}`)));
    $("output-btn").addEventListener("click", () => this.openOutputWindow());
    document.addEventListener("fullscreenchange", () => {
      $("fullscreen-btn").textContent = document.fullscreenElement ? "Exit fullscreen" : "Fullscreen";
    });
    remote.addEventListener("enterpictureinpicture", () => $("pip-btn").setAttribute("aria-pressed", "true"));
    remote.addEventListener("leavepictureinpicture", () => $("pip-btn").setAttribute("aria-pressed", "false"));
    this.updateTools();
  }

  /** Buttons work only while there is a swapped picture; unsupported ones say why. */
  updateTools() {
    const live = document.body.classList.contains("remote-live");
    const remote = $("remote-video");
    const tools = [
      ["snapshot-btn", true, ""],
      ["record-btn", capture.canRecord(), "This browser cannot record video."],
      ["pip-btn", capture.canPictureInPicture(remote), "This browser has no picture in picture."],
      ["fullscreen-btn", capture.canFullscreen($("remote-tile")), "This browser has no fullscreen."],
    ];
    for (const [id, supported, why] of tools) {
      const button = $(id);
      button.disabled = !supported || (!live && !(id === "record-btn" && this.recorder));
      if (!supported) button.title = why;
    }
  }

  toolsSay(text) {
    $("tools-status").textContent = text;
    $("tools-status").hidden = !text;
  }

  async takeSnapshot() {
    try {
      const name = capture.fileName("png");
      capture.download(await capture.snapshot($("remote-video")), name);
      this.toolsSay(`Saved ${name}.`);
    } catch (err) {
      this.showError({ code: err?.code ?? "snapshot_failed", message: err?.message }, "Snapshot");
    }
  }

  startRecording() {
    if (!this.remoteStream) return;
    try {
      this.recorder = new capture.Recorder(this.remoteStream);
    } catch (err) {
      this.showError({ code: "recording_failed", message: err?.message }, "Record");
      return;
    }
    const recorder = this.recorder;
    recorder.done.catch((err) => this.showError({ code: "recording_failed", message: err?.message }, "Record"));
    $("record-btn").setAttribute("aria-pressed", "true");
    document.body.classList.add("recording");
    const tick = () => {
      const s = Math.floor(recorder.seconds);
      $("record-btn").textContent = `Stop recording ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    };
    tick();
    this.recordTimer = setInterval(tick, 500);
    this.toolsSay("Recording the swapped video…");
  }

  /** Ends the clip and downloads it (also when the stream stops or the page reconnects). */
  async stopRecording() {
    const recorder = this.recorder;
    if (!recorder) return;
    this.recorder = null;
    clearInterval(this.recordTimer);
    $("record-btn").setAttribute("aria-pressed", "false");
    $("record-btn").textContent = "Record";
    document.body.classList.remove("recording");
    this.updateTools();
    try {
      const clip = await recorder.stop();
      const name = capture.fileName("webm");
      capture.download(clip, name);
      this.toolsSay(`Saved ${name} (${recorder.seconds.toFixed(0)} s).`);
    } catch {
      // Reported by the `done` handler of startRecording.
    }
  }

  /** The remote stream changed (connected, reconnected, stopped): tell the output window. */
  setRemoteStream(stream) {
    if (this.recorder && stream !== this.remoteStream) this.stopRecording();
    this.remoteStream = stream;
    this.outputChannel?.postMessage({ type: "stream" });
    if (!stream) this.updateTools();
  }

  /** For output.html (same origin, opened by this page): what it should show. */
  outputStream() {
    return this.remoteStream;
  }

  openOutputWindow() {
    const win = window.open("output.html", "swaprtc-output", "popup,width=660,height=500");
    if (!win) {
      this.toolsSay("The browser blocked the output window: allow pop-ups for this page.");
      return;
    }
    win.focus();
    this.toolsSay("Output window opened: capture it in OBS with Window Capture (see the README).");
  }

  /** What the camera really delivers (and what is really sent), not what was asked for. */
  showCameraInfo(sent) {
    const track = this.stream?.getVideoTracks()[0];
    const info = $("camera-info");
    if (!track) return;
    const got = track.getSettings?.() ?? {};
    const want = QUALITY[this.settings.quality];
    const [ww, wh] = [want.width.ideal, want.height.ideal];
    let text = got.width ? `Camera: ${got.width} × ${got.height}` : "Camera on";
    if (got.frameRate) text += ` at ${Math.round(got.frameRate)} fps`;
    if (sent?.fps) text += `; sending ${sent.width ?? got.width} × ${sent.height ?? got.height} at ${Math.round(sent.fps)} fps`;
    const ignored = Boolean(got.width && (got.width !== ww || got.height !== wh));
    if (ignored) text += `. The camera ignored the requested ${ww} × ${wh}.`;
    info.textContent = text;
    info.dataset.ignored = String(ignored);
    info.classList.toggle("warn", ignored);
    info.hidden = false;
  }

  // ---- more people: named sources and assigning them --------------------------------------

  bindExtras() {
    const input = $("extra-input");
    $("source-add").addEventListener("click", () => {
      if (this.extras.size >= MAX_EXTRA_SOURCES) {
        this.peopleSay(`At most ${MAX_EXTRA_SOURCES} more sources: remove one first.`, true);
        return;
      }
      input.click();
    });
    input.addEventListener("change", () => {
      if (input.files?.[0]) this.addExtra(input.files[0]);
      input.value = "";
    });
  }

  peopleSay(text, bad = false) {
    $("people-status").textContent = text;
    $("people-status").classList.toggle("bad", bad);
  }

  nextExtraName() {
    const typed = $("source-name").value.trim();
    if (typed) return typed;
    let n = this.extras.size + 2;
    while (this.extras.has(`Person ${n}`)) n += 1;
    return `Person ${n}`;
  }

  async addExtra(file) {
    const name = this.nextExtraName();
    if (name === "default") {
      this.peopleSay("That name is taken by the main source face.", true);
      return;
    }
    this.peopleSay(`Uploading ${file.name || "photo"} for ${name}…`);
    try {
      const sid = await this.ensureSession();
      const result = await api.uploadSource(sid, file, { name });
      this.extras.set(name, { file, face: result.selected, sessionId: sid, result });
      $("source-name").value = "";
      this.renderExtras();
      this.setAssigning(name);
    } catch (err) {
      this.peopleSay(err instanceof api.ApiError ? err.friendly : api.friendlyText(err?.code, err?.message), true);
      this.showError(err, `Source for ${name}`);
    }
  }

  async removeExtra(name) {
    this.extras.delete(name);
    if (this.assigning === name) this.setAssigning(null);
    this.renderExtras();
    this.peopleSay(`${name} removed.`);
    if (!this.sessionId) return;
    try {
      await api.deleteSource(this.sessionId, name);
    } catch (err) {
      if (err.code !== "unknown_session") this.showError(err, "Remove source");
    }
  }

  /**
   * A new session (reconnect) knows none of them: upload them again. Its people are new too, so
   * each assignment waits for a face where its person was last seen (restoreAssignments).
   */
  async resendExtras(sid) {
    for (const [name, extra] of this.extras) {
      if (extra.sessionId === sid) continue;
      extra.result = await api.uploadSource(sid, extra.file, { name, face: extra.face });
      extra.sessionId = sid;
      if (extra.person !== undefined && extra.lastBox) extra.waiting = extra.lastBox;
      extra.person = undefined;
    }
    this.renderExtras();
  }

  /** Where each assigned person is now, so a reconnect knows where to look for them. */
  followAssigned() {
    for (const extra of this.extras.values()) {
      if (extra.person === undefined) continue;
      const seen = this.people.find((p) => p.person === extra.person && Array.isArray(p.box));
      if (seen) extra.lastBox = seen.box;
    }
  }

  /**
   * Gives each source assigned before a reconnect back to its person once a face without a named
   * source of its own is in view where that person was (people.js matchReturning). A person out
   * of view stays awaited (the page says so) until they come back or the user forgets them.
   */
  restoreAssignments() {
    const waiting = new Map();
    for (const [name, extra] of this.extras) {
      if (extra.waiting && !this.assignsSent.some((a) => a.source === name)) waiting.set(name, extra.waiting);
    }
    if (!waiting.size) return;
    const assigned = new Set([...this.extras.values()].map((e) => e.person).filter(Number.isInteger));
    for (const [name, p] of matchReturning(waiting, this.people, assigned)) {
      const [x1, y1, x2, y2] = p.box;
      this.sendAssign(name, { x: (x1 + x2) / 2, y: (y1 + y2) / 2 }, true);
    }
  }

  sendAssign(source, point, restore = false) {
    const unit = (v) => Math.min(1, Math.max(0, v)); // a face box may reach past the picture's edge
    if (!this.conn?.send({ type: "assign", source, x: unit(point.x), y: unit(point.y) })) return false;
    this.assignsSent.push({ source, restore });
    return true;
  }

  renderExtras() {
    const list = $("sources");
    list.replaceChildren();
    for (const [name, extra] of this.extras) {
      const li = document.createElement("li");
      li.className = "source";
      li.dataset.name = name;
      li.dataset.testid = "extra-source";
      const img = document.createElement("img");
      img.alt = "";
      if (extra.result?.thumbnail) img.src = extra.result.thumbnail;
      const label = document.createElement("span");
      label.className = "source-name";
      label.textContent = extra.person !== undefined ? `${name} → person ${extra.person}`
        : extra.waiting ? `${name} → waiting for their person to be in view` : name;
      li.dataset.waiting = String(Boolean(extra.waiting));
      const assign = document.createElement("button");
      assign.type = "button";
      assign.textContent = this.assigning === name ? "Cancel" : "Assign…";
      assign.dataset.testid = "assign-button";
      assign.setAttribute("aria-pressed", String(this.assigning === name));
      assign.title = `Then click the face in the swapped video that should get ${name}`;
      assign.addEventListener("click", () => this.setAssigning(this.assigning === name ? null : name));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${name}`);
      remove.addEventListener("click", () => this.removeExtra(name));
      li.append(img, label, assign);
      if (extra.person !== undefined) {
        const unassign = document.createElement("button");
        unassign.type = "button";
        unassign.textContent = "Unassign";
        unassign.title = `Person ${extra.person} follows the main source again`;
        unassign.addEventListener("click", () => this.conn?.send({ type: "unassign", person: extra.person }));
        li.append(unassign);
      } else if (extra.waiting) {
        const forget = document.createElement("button");
        forget.type = "button";
        forget.textContent = "Stop waiting";
        forget.title = `Nobody gets ${name} until you assign it again`;
        forget.addEventListener("click", () => {
          extra.waiting = null;
          this.renderExtras();
        });
        li.append(forget);
      }
      li.append(remove);
      const faces = document.createElement("div");
      faces.className = "faces";
      renderFaces(faces, extra.result, (index) => this.pickFace(name, index));
      if (!faces.hidden) li.append(faces);
      list.append(li);
    }
  }

  /** Arms (or disarms) "click a face to give it this source". */
  setAssigning(name) {
    this.assigning = name;
    document.body.classList.toggle("assigning", Boolean(name));
    const hint = $("assign-hint");
    hint.hidden = !name;
    hint.textContent = name ? `Click the face that should get ${name} (Esc to cancel)` : "";
    if (name) this.peopleSay(`Now click a face in the swapped video to give it ${name}.`);
    this.renderExtras();
    this.showPeople();
  }

  assignAt(point) {
    if (!this.assigning || !point) return;
    if (!this.sendAssign(this.assigning, point)) {
      this.peopleSay("Start the camera first: faces are assigned in the live video.", true);
    }
  }

  assigned(msg) {
    const sent = this.assignsSent.shift();
    const extra = this.extras.get(msg.source);
    if (extra) {
      extra.person = msg.person;
      extra.waiting = null;
      extra.lastBox = this.people.find((p) => p.person === msg.person)?.box ?? extra.lastBox;
    }
    for (const [name, other] of this.extras) {
      if (name !== msg.source && other.person === msg.person) other.person = undefined;
    }
    if (sent?.restore) {
      // Not the user's click: an armed "Assign…" stays armed.
      this.peopleSay(`Person ${msg.person} gets ${msg.source} again.`);
      this.renderExtras();
      return;
    }
    this.peopleSay(`Person ${msg.person} now gets ${msg.source}.`);
    this.setAssigning(null);
  }

  assignFailed(msg) {
    const text = api.friendlyText(msg.code, msg.message);
    this.peopleSay(text, true);
    $("assign-hint").textContent = text;
  }

  /** Outlines of the people while assigning, so it is clear what can be clicked. */
  showPeople() {
    const layer = $("people");
    layer.hidden = !this.assigning || !this.people.length;
    if (layer.hidden) return;
    renderPeople(layer, $("remote-video"), this.people, (point) => this.assignAt(point));
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
