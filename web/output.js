// The clean output window: only the swapped video, for OBS window capture (README, "Use it in
// Zoom, Meet or Teams"). It shows the stream of the page that opened it, so there is one camera,
// one session and one swap; that page announces new streams (reconnects) on a BroadcastChannel.

export const CHANNEL = "swaprtc-output";

const video = document.getElementById("output-video");
const note = document.getElementById("output-note");

function openerStream() {
  try {
    return window.opener?.swaprtc?.outputStream?.() ?? null;
  } catch {
    return null; // An opener from another origin: nothing to show.
  }
}

function attach() {
  const stream = openerStream();
  if (stream !== video.srcObject) {
    video.srcObject = stream;
    if (stream) video.play().catch(() => {});
  }
  note.hidden = Boolean(stream);
  if (!stream) {
    note.textContent = window.opener
      ? "Waiting for the swapped video… Press Start camera in the swaprtc page."
      : "Open this window with the Output window button of the swaprtc page.";
  }
}

new BroadcastChannel(CHANNEL).addEventListener("message", attach);
// The opener may have been reloaded or closed without a message getting through.
setInterval(attach, 2000);
attach();
