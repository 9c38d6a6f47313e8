// People in the swapped video (stats `people`) and clicks on them: a click is turned into a point
// of the OUTPUT picture, normalised to 0..1, which the server maps to the person there.

/** Where the picture really is inside a `<video>` shown with `object-fit: contain`. */
export function pictureRect(video) {
  const r = video.getBoundingClientRect();
  const vw = video.videoWidth;
  const vh = video.videoHeight;
  if (!vw || !vh || !r.width || !r.height) return null;
  const scale = Math.min(r.width / vw, r.height / vh);
  const width = vw * scale;
  const height = vh * scale;
  return { left: r.left + (r.width - width) / 2, top: r.top + (r.height - height) / 2, width, height };
}

/** A click in page coordinates as a point of the picture (0..1), or null outside the picture. */
export function pointInPicture(video, clientX, clientY) {
  const rect = pictureRect(video);
  if (!rect) return null;
  const x = (clientX - rect.left) / rect.width;
  const y = (clientY - rect.top) / rect.height;
  if (x < 0 || x > 1 || y < 0 || y > 1) return null;
  return { x, y };
}

const STATE_TEXT = { swapped: "swapped", hidden: "hidden", raw: "not swapped" };

/**
 * Outlines of the people the server sees, laid over the picture. Each is a button: clicking it
 * (or pressing Enter on it) picks the middle of that face.
 */
export function renderPeople(layer, video, people, onPick) {
  const rect = pictureRect(video);
  const tile = layer.parentElement.getBoundingClientRect();
  if (!rect || !Array.isArray(people)) {
    layer.replaceChildren();
    return;
  }
  // element.style (CSSOM), not style attributes: allowed under a strict Content-Security-Policy.
  layer.style.left = `${rect.left - tile.left}px`;
  layer.style.top = `${rect.top - tile.top}px`;
  layer.style.width = `${rect.width}px`;
  layer.style.height = `${rect.height}px`;
  // Buttons are kept per person and only moved: a click must not land on a replaced element.
  const old = new Map([...layer.children].map((b) => [b.dataset.person, b]));
  const kept = [];
  for (const [i, p] of people.entries()) {
    if (!Array.isArray(p.box) || p.box.length !== 4) continue;
    const [x1, y1, x2, y2] = p.box;
    const known = Number.isInteger(p.person); // null while the server does not follow people
    const key = known ? String(p.person) : `face-${i}`;
    let button = old.get(key);
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.dataset.person = key;
      button.dataset.testid = "person";
      button.append(document.createElement("span"));
    }
    button.className = `person ${p.state ?? ""}`;
    button.style.left = `${x1 * 100}%`;
    button.style.top = `${y1 * 100}%`;
    button.style.width = `${(x2 - x1) * 100}%`;
    button.style.height = `${(y2 - y1) * 100}%`;
    const who = p.source ? `source ${p.source}` : STATE_TEXT[p.state] ?? "";
    button.setAttribute("aria-label", `${known ? `Person ${p.person}` : "A face"}${who ? `: ${who}` : ""}`);
    button.firstChild.textContent = p.source ?? (known ? `#${p.person}` : "?");
    button.onclick = (e) => {
      e.stopPropagation();
      onPick({ x: (x1 + x2) / 2, y: (y1 + y2) / 2 });
    };
    kept.push(button);
    if (!button.isConnected) layer.append(button);
  }
  for (const button of old.values()) if (!kept.includes(button)) button.remove();
}

/** How far a point is from a face box, in face sizes (0 inside): what the server uses for clicks. */
function facesAway(box, x, y) {
  const [x1, y1, x2, y2] = box;
  const w = Math.max(x2 - x1, 1e-6);
  const h = Math.max(y2 - y1, 1e-6);
  return Math.max(Math.max(x1 - x, 0, x - x2) / w, Math.max(y1 - y, 0, y - y2) / h);
}

// A person coming back after a reconnect sits about where they were, not exactly: within one face
// size of the middle of their last box (a click counts within half a face size).
const RETURN_REACH = 1.0;

/**
 * Assignments waiting for their person after a reconnect (the new session's people are new):
 * which face of the latest stats `people` each one goes to. `waiting` maps a source name to the
 * box (0..1) where its person was last seen; people in `assigned` (ids that already have a named
 * source) are not candidates. Nearest first, each name and each person at most once.
 * Returns `[name, entry]` pairs.
 */
export function matchReturning(waiting, people, assigned) {
  const scored = [];
  for (const [name, box] of waiting) {
    const [x, y] = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2];
    for (const p of Array.isArray(people) ? people : []) {
      if (!Number.isInteger(p.person) || assigned.has(p.person)) continue;
      if (!Array.isArray(p.box) || p.box.length !== 4) continue;
      const away = facesAway(p.box, x, y);
      if (away <= RETURN_REACH) scored.push([away, name, p]);
    }
  }
  scored.sort((a, b) => a[0] - b[0]);
  const names = new Set();
  const persons = new Set();
  const pairs = [];
  for (const [, name, p] of scored) {
    if (names.has(name) || persons.has(p.person)) continue;
    names.add(name);
    persons.add(p.person);
    pairs.push([name, p]);
  }
  return pairs;
}
