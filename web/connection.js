// One WebRTC connection attempt to the server: peer connection, `control` DataChannel, pings.
// Reconnecting is the caller's job: a failed Connection is closed and a new one is made.

import { postOffer } from "./api.js";

const PING_MS = 2000;
const SILENCE_MS = 10000; // The server sends stats every second; this much silence means trouble.
const DISCONNECTED_GRACE_MS = 5000; // "disconnected" often recovers by itself; "failed" never does.
const GATHER_TIMEOUT_MS = 3000;

/** The server sends RTCIceServer objects (docs/API.md); anything else is ignored. */
function iceServersFrom(list) {
  return Array.isArray(list) ? list.filter((s) => s && typeof s === "object" && s.urls) : [];
}

/** Put the server's codec first; keep the others (and rtx/red/fec) so negotiation can still succeed. */
function preferCodec(transceiver, codec) {
  if (!codec || typeof transceiver.setCodecPreferences !== "function") return;
  const caps = RTCRtpReceiver.getCapabilities?.("video");
  if (!caps) return;
  const want = `video/${String(codec).toLowerCase()}`;
  const rank = (c) => {
    if (c.mimeType.toLowerCase() !== want) return 2;
    // aiortc's H264 is constrained baseline with packetization-mode=1.
    if (want === "video/h264") {
      const fmtp = c.sdpFmtpLine ?? "";
      return /packetization-mode=1/.test(fmtp) && /profile-level-id=42[e0]01f/i.test(fmtp) ? 0 : 1;
    }
    return 0;
  };
  const sorted = [...caps.codecs].sort((a, b) => rank(a) - rank(b));
  if (sorted.length && rank(sorted[0]) < 2) {
    try {
      transceiver.setCodecPreferences(sorted);
    } catch {
      // Unsupported combination: leave the browser's default order.
    }
  }
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, GATHER_TIMEOUT_MS); // Use what was gathered so far.
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class Connection {
  /**
   * @param {object} o
   * @param {MediaStream} o.stream local camera stream
   * @param {(stream: MediaStream) => void} o.onTrack
   * @param {(state: string) => void} o.onState
   * @param {(msg: object) => void} o.onMessage
   * @param {() => void} o.onOpen DataChannel open: send settings now
   * @param {(reason: string) => void} o.onFailed called at most once
   */
  constructor(o) {
    this.o = o;
    this.pc = null;
    this.dc = null;
    this.sender = null;
    this.closed = false;
    this.failedOnce = false;
    this.timers = [];
    this.lastMessageAt = 0;
    this.disconnectTimer = null;
    this.rttMs = null;
    this.lastOut = null;
  }

  /**
   * Negotiates and returns the answer (with the server's session_id).
   * @param {string} sessionId
   * @param {object} info /api/info (ice_servers, codec, max_bitrate)
   */
  async open(sessionId, info) {
    // Closed before it opened (Stop while the session was being prepared): no peer connection.
    if (this.closed) throw new Error("closed");
    const { stream } = this.o;
    const pc = new RTCPeerConnection({ iceServers: iceServersFrom(info.ice_servers) });
    this.pc = pc;

    const dc = pc.createDataChannel("control", { ordered: true });
    this.dc = dc;
    dc.onopen = () => {
      this.lastMessageAt = performance.now();
      this.o.onOpen?.();
      this.startTimers();
    };
    dc.onmessage = (ev) => this.handleMessage(ev.data);
    dc.onclose = () => this.fail("control channel closed");

    const track = stream.getVideoTracks()[0];
    const maxBitrate = Number(info.max_bitrate); // --max-bitrate, from /api/info
    const transceiver = pc.addTransceiver(track, {
      direction: "sendrecv",
      streams: [stream],
      sendEncodings: [{ maxBitrate }],
    });
    this.sender = transceiver.sender;
    preferCodec(transceiver, info.codec);

    pc.ontrack = (ev) => this.o.onTrack(ev.streams?.[0] ?? new MediaStream([ev.track]));
    pc.onconnectionstatechange = () => this.handleState(pc.connectionState);

    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc); // aiortc does not trickle: the offer must carry the candidates.
    if (this.closed) throw new Error("closed");
    const answer = await postOffer(sessionId, pc.localDescription);
    if (this.closed) throw new Error("closed");
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    this.raiseBitrate(maxBitrate);
    return answer;
  }

  async raiseBitrate(maxBitrate) {
    // Chrome starts low and ramps up slowly; the model wants a sharp picture from the first frame.
    try {
      const p = this.sender.getParameters();
      if (!p.encodings?.length) p.encodings = [{}];
      p.encodings[0].maxBitrate = maxBitrate;
      p.degradationPreference = "maintain-resolution";
      await this.sender.setParameters(p);
    } catch {
      try {
        const p = this.sender.getParameters();
        if (p.encodings?.length) {
          p.encodings[0].maxBitrate = maxBitrate;
          await this.sender.setParameters(p);
        }
      } catch {
        // Older browsers: the server-side SDP hints still apply.
      }
    }
  }

  /** What the browser itself measures: negotiated codec and the bitrate it really sends. */
  async mediaStats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    let out = null;
    report.forEach((r) => {
      if (r.type === "outbound-rtp" && r.kind === "video") out = r;
    });
    if (!out) return null;
    const codec = out.codecId ? report.get(out.codecId)?.mimeType?.split("/")[1]?.toLowerCase() : undefined;
    let kbps = null;
    if (this.lastOut && out.timestamp > this.lastOut.timestamp) {
      kbps = (8 * (out.bytesSent - this.lastOut.bytesSent)) / (out.timestamp - this.lastOut.timestamp);
    }
    this.lastOut = { bytesSent: out.bytesSent, timestamp: out.timestamp };
    return { codec, sendKbps: kbps, width: out.frameWidth, height: out.frameHeight, fps: out.framesPerSecond };
  }

  async replaceTrack(track) {
    if (this.sender) await this.sender.replaceTrack(track);
  }

  send(message) {
    if (this.dc?.readyState === "open") {
      this.dc.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  handleMessage(data) {
    this.lastMessageAt = performance.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg?.type === "pong" && typeof msg.t === "number") {
      this.rttMs = Date.now() - msg.t;
    }
    this.o.onMessage(msg);
  }

  handleState(state) {
    this.o.onState(state);
    if (state === "connected") {
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = null;
    } else if (state === "failed" || state === "closed") {
      this.fail(`connection ${state}`);
    } else if (state === "disconnected" && !this.disconnectTimer) {
      this.disconnectTimer = setTimeout(() => this.fail("connection lost"), DISCONNECTED_GRACE_MS);
    }
  }

  startTimers() {
    this.timers.push(setInterval(() => {
      this.send({ type: "ping", t: Date.now() });
      if (performance.now() - this.lastMessageAt > SILENCE_MS) this.fail("server went silent");
    }, PING_MS));
  }

  fail(reason) {
    if (this.closed || this.failedOnce) return;
    this.failedOnce = true;
    this.o.onFailed?.(reason);
  }

  close() {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    clearTimeout(this.disconnectTimer);
    if (this.dc) {
      this.dc.onclose = null;
      this.dc.onmessage = null;
    }
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.ontrack = null;
      this.pc.close();
    }
  }
}
