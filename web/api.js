// HTTP calls to the swaprtc server (docs/API.md) and readable texts for its error codes.

const FRIENDLY = {
  not_an_image: "That file is not an image the server can read. Try a JPG, PNG or WebP photo.",
  unsupported_format: "This image format is not supported. Use a JPG, PNG or WebP photo.",
  too_large: "That file is too large. Use a smaller photo.",
  too_many_pixels: "That image has too many pixels. Use a smaller photo.",
  no_face: "No face was found in that photo. Use a clear, front-facing photo of one person.",
  missing_image: "No image was sent. Choose a photo and try again.",
  unknown_session: "Your session has expired. Reconnecting…",
  too_many_sessions: "The server is busy (too many sessions at once). Try again in a moment.",
  bad_offer: "The browser and the server could not agree on how to connect.",
  bad_json: "The server did not understand the request.",
  already_connected: "This session is already connected.",
  model_error: "The server's face models are not available.",
  network: "Could not reach the server. Check that it is running.",
  camera_denied: "Camera access was denied. Allow the camera in the browser's site settings.",
  camera_missing: "No camera was found.",
  camera_busy: "The camera is in use by another application.",
  camera_failed: "The camera could not be started.",
  connect_failed: "The connection to the server failed.",
  bad_face_index: "That face is no longer in the photo. Upload the photo again.",
  too_many_sources: "There are too many sources already. Remove one first.",
  unknown_source: "That source is gone (the session was renewed). Add its photo again.",
  no_face_here: "There is no face at that spot. Click on a face in the swapped video.",
  recording_failed: "The recording could not be made in this browser.",
  snapshot_failed: "There is no swapped picture to save yet.",
  unauthorized: "This server needs an access token. Reload the page to enter it.",
  bad_origin: "The server refused a request from this page's address.",
  rate_limited: "Too many requests from your address. Wait a moment and try again.",
  busy: "The server is busy with other uploads. Try again in a moment.",
  request_timeout: "The upload took too long. Check your connection and try again.",
};

// The access token (swaprtc serve --token): asked once, kept for this tab only.
const TOKEN_KEY = "swaprtc.token";
let askToken = async () => window.prompt("This swaprtc server needs an access token:");
let asking = null; // one question at a time, shared by concurrent calls

/** Replace how the page asks for the token (a function returning a string, or null to give up). */
export function setTokenPrompt(ask) {
  askToken = ask;
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function newToken(rejected) {
  if (sessionStorage.getItem(TOKEN_KEY) === rejected) sessionStorage.removeItem(TOKEN_KEY);
  if (!asking) {
    asking = Promise.resolve(sessionStorage.getItem(TOKEN_KEY) ?? askToken()).finally(() => {
      asking = null;
    });
  }
  const token = ((await asking) ?? "").trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  return token;
}

export function friendlyText(code, fallback) {
  return FRIENDLY[code] ?? fallback ?? "Something went wrong.";
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }

  get friendly() {
    return friendlyText(this.code, this.message);
  }
}

async function send(method, path, body, h) {
  try {
    return await fetch(path, { method, body, headers: { ...h, ...authHeaders() }, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "network", String(err?.message ?? err));
  }
}

async function call(method, path, { sessionId, body, headers = {} } = {}) {
  const h = { ...headers };
  if (sessionId) h["X-Session-Id"] = sessionId;
  let response = await send(method, path, body, h);
  if (response.status === 401) {
    // The server wants a token: ask for it (once per tab) and try again with it.
    const rejected = sessionStorage.getItem(TOKEN_KEY);
    if (await newToken(rejected)) response = await send(method, path, body, h);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const e = data?.error ?? {};
    throw new ApiError(response.status, e.code ?? `http_${response.status}`,
      e.message ?? `HTTP ${response.status} ${response.statusText}`);
  }
  return data ?? {};
}

export function getInfo() {
  return call("GET", "/api/info");
}

export function createSession() {
  return call("POST", "/api/session");
}

export function deleteSession(sessionId) {
  return call("DELETE", "/api/session", { sessionId });
}

/** Best effort while the page is going away: a keepalive fetch outlives the document. */
export function deleteSessionOnUnload(sessionId) {
  try {
    fetch(`/api/session?session=${encodeURIComponent(sessionId)}`, {
      method: "DELETE", keepalive: true, headers: { "X-Session-Id": sessionId, ...authHeaders() },
    }).catch(() => {});
  } catch {
    // Nothing more can be done while unloading.
  }
}

/** `name` picks one of several named sources ("default" when absent); `face` a face in the photo. */
export function uploadSource(sessionId, file, { name, face } = {}) {
  const form = new FormData();
  form.append("image", file, file.name || "source");
  if (name) form.append("name", name);
  if (Number.isInteger(face)) form.append("face", String(face));
  return call("POST", "/api/source", { sessionId, body: form });
}

/** Re-pick a face of a source's last photo (the server keeps it in memory for the session). */
export function selectFace(sessionId, name, face) {
  return call("POST", "/api/source/select", {
    sessionId,
    body: JSON.stringify({ name, face }),
    headers: { "Content-Type": "application/json" },
  });
}

export function listSources(sessionId) {
  return call("GET", "/api/sources", { sessionId });
}

/** No name removes every source of the session. */
export function deleteSource(sessionId, name) {
  const query = name ? `?name=${encodeURIComponent(name)}` : "";
  return call("DELETE", `/api/source${query}`, { sessionId });
}

export function postOffer(sessionId, description) {
  return call("POST", "/api/offer", {
    body: JSON.stringify({ sdp: description.sdp, type: description.type, session_id: sessionId }),
    headers: { "Content-Type": "application/json" },
  });
}
