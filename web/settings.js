// Settings that survive a reload (localStorage). The session id is deliberately NOT stored here:
// every tab is its own session.

const KEY = "swaprtc.settings.v1";

export const DEFAULTS = Object.freeze({
  many_faces: false,
  strength: 1,
  enhance: false,
  show_stats: true,
  device_id: "",
  quality: "480",
});

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // Disabled storage (privacy mode): settings just don't persist.
  }
}

function clean(raw) {
  const s = { ...DEFAULTS };
  if (raw && typeof raw === "object") {
    if (typeof raw.many_faces === "boolean") s.many_faces = raw.many_faces;
    if (typeof raw.enhance === "boolean") s.enhance = raw.enhance;
    if (typeof raw.show_stats === "boolean") s.show_stats = raw.show_stats;
    if (typeof raw.strength === "number" && raw.strength >= 0 && raw.strength <= 1) s.strength = raw.strength;
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

/** The subset the server understands on the DataChannel. */
export function controlMessage(settings, enhanceSupported) {
  return {
    type: "settings",
    many_faces: settings.many_faces,
    strength: settings.strength,
    enhance: enhanceSupported && settings.enhance,
    show_stats: settings.show_stats,
  };
}

export const QUALITY = {
  480: { width: { ideal: 640 }, height: { ideal: 480 } },
  720: { width: { ideal: 1280 }, height: { ideal: 720 } },
  1080: { width: { ideal: 1920 }, height: { ideal: 1080 } },
};
