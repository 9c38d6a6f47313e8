// Settings that survive a reload (localStorage). The session id is deliberately NOT stored here:
// every tab is its own session.

const KEY = "swaprtc.settings.v1";

/** Swap controls the engine may support (`/api/info` `controls`), with their kind and range. */
export const SWAP_CONTROLS = Object.freeze({
  mouth_mask: { kind: "bool" },
  mouth_mask_blur: { kind: "unit" },
  mouth_mask_padding: { kind: "unit" },
  color_correction: { kind: "bool" },
  enhance: { kind: "bool" },
  enhance_blend: { kind: "unit" },
  enhance_every: { kind: "int", min: 1, max: 8 },
  shape: { kind: "unit" },
});

export const DEFAULTS = Object.freeze({
  many_faces: false,
  strength: 1,
  enhance: false,
  show_stats: true,
  mirror: true,
  device_id: "",
  quality: "480",
  mouth_mask: false,
  mouth_mask_blur: 0.3,
  mouth_mask_padding: 0.1,
  color_correction: false,
  enhance_blend: 0.8,
  enhance_every: 1,
  shape: 1, // the server's default too (SwapOptions): measured best on the quality set
});

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // Disabled storage (privacy mode): settings just don't persist.
  }
}

function valid(key, value) {
  const spec = SWAP_CONTROLS[key];
  if (spec?.kind === "unit" || key === "strength") {
    return typeof value === "number" && value >= 0 && value <= 1;
  }
  if (spec?.kind === "int") return Number.isInteger(value) && value >= spec.min && value <= spec.max;
  return typeof value === "boolean";
}

function clean(raw) {
  const s = { ...DEFAULTS };
  if (raw && typeof raw === "object") {
    for (const key of ["many_faces", "show_stats", "mirror", "strength", ...Object.keys(SWAP_CONTROLS)]) {
      if (valid(key, raw[key])) s[key] = raw[key];
    }
    if (typeof raw.device_id === "string") s.device_id = raw.device_id;
    if (["480", "720", "1080"].includes(raw.quality)) s.quality = raw.quality;
  }
  return s;
}

export function loadSettings() {
  try {
    return clean(JSON.parse(storage()?.getItem(KEY) ?? "null"));
  } catch {
    return { ...DEFAULTS };
  }
}

export function saveSettings(settings) {
  try {
    storage()?.setItem(KEY, JSON.stringify(clean(settings)));
  } catch {
    // Quota or privacy mode: keep working with in-memory settings.
  }
}

/**
 * The subset the server understands on the DataChannel: the basic keys, plus the swap controls
 * the engine lists in `/api/info` `controls` (`supported`; keys it does not list are never sent).
 */
export function controlMessage(settings, supported) {
  const message = {
    type: "settings",
    many_faces: settings.many_faces,
    strength: settings.strength,
    enhance: supported.has("enhance") && settings.enhance,
    show_stats: settings.show_stats,
  };
  for (const key of Object.keys(SWAP_CONTROLS)) {
    if (key !== "enhance" && supported.has(key)) message[key] = settings[key];
  }
  return message;
}

export const QUALITY = {
  480: { width: { ideal: 640 }, height: { ideal: 480 } },
  720: { width: { ideal: 1280 }, height: { ideal: 720 } },
  1080: { width: { ideal: 1920 }, height: { ideal: 1080 } },
};
