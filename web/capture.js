// Getting the swapped video out of the page: PNG snapshots, WebM clips, picture-in-picture and
// fullscreen. The server burns its "AI-generated" label into the frames, so it is in all of them.

const RECORD_TYPES = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"];

/** `swaprtc-20261201-013502.png`: sortable and unique enough for a person's downloads folder. */
export function fileName(ext, date = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
  return `swaprtc-${day}-${time}.${ext}`;
}

export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has its own reference to the data; the URL is not needed once it started.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The current frame at the video's own resolution (not the size it is shown at). */
export function snapshot(video) {
  const { videoWidth: w, videoHeight: h } = video;
  if (!w || !h) return Promise.reject(Object.assign(new Error("no picture yet"), { code: "snapshot_failed" }));
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(video, 0, 0, w, h);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(Object.assign(new Error("encoding failed"),
      { code: "snapshot_failed" }))), "image/png");
  });
}

export function canRecord() {
  return typeof MediaRecorder === "function" && RECORD_TYPES.some((t) => MediaRecorder.isTypeSupported(t));
}

/** One WebM recording of a stream; `stop()` resolves with the whole clip. */
export class Recorder {
  constructor(stream) {
    const mimeType = RECORD_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    this.chunks = [];
    this.startedAt = performance.now();
    this.recorder = new MediaRecorder(stream, { mimeType, videoBitsPerSecond: 4_000_000 });
    this.recorder.addEventListener("dataavailable", (e) => {
      if (e.data?.size) this.chunks.push(e.data);
    });
    this.done = new Promise((resolve, reject) => {
      this.recorder.addEventListener("stop", () => resolve(new Blob(this.chunks, { type: "video/webm" })));
      this.recorder.addEventListener("error", (e) => reject(e.error ?? new Error("recording failed")));
    });
    // Chunks every second: a clip cut short (the stream ended) still keeps what was recorded.
    this.recorder.start(1000);
  }

  get seconds() {
    return (performance.now() - this.startedAt) / 1000;
  }

  get active() {
    return this.recorder.state !== "inactive";
  }

  stop() {
    if (this.active) this.recorder.stop();
    return this.done;
  }
}

export function canPictureInPicture(video) {
  return Boolean(document.pictureInPictureEnabled && !video.disablePictureInPicture
    && typeof video.requestPictureInPicture === "function");
}

export async function togglePictureInPicture(video) {
  if (document.pictureInPictureElement) await document.exitPictureInPicture();
  else await video.requestPictureInPicture();
}

export function canFullscreen(element) {
  return Boolean(document.fullscreenEnabled && typeof element.requestFullscreen === "function");
}

export async function toggleFullscreen(element) {
  if (document.fullscreenElement) await document.exitFullscreen();
  else await element.requestFullscreen({ navigationUI: "hide" });
}
