// The faces found in a source photo (POST /api/source `faces`): thumbnails to pick from, and the
// server's warnings about the chosen one (turned, occluded, small, blurred).

const WARNING_TITLE = {
  turned: "Turned away",
  occluded: "Partly covered",
  small: "Small",
  blurred: "Blurred",
};

/** The face the server chose, from either the new (`faces`, `selected`) or the old response. */
export function chosenFace(result) {
  const faces = Array.isArray(result?.faces) ? result.faces : [];
  return faces.find((f) => f.index === result.selected) ?? faces[0] ?? null;
}

/**
 * One button per face when the photo has several; `onPick(index)` when another one is clicked.
 * A photo with one face needs no choice, so the list stays hidden.
 */
export function renderFaces(container, result, onPick) {
  const faces = Array.isArray(result?.faces) ? result.faces : [];
  container.replaceChildren();
  container.hidden = faces.length < 2;
  if (faces.length < 2) return;
  for (const face of faces) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "face";
    button.dataset.index = String(face.index);
    button.dataset.testid = "source-face";
    const chosen = face.index === result.selected;
    button.setAttribute("aria-pressed", String(chosen));
    const warned = face.warnings?.length ? ` (${face.warnings.map((w) => WARNING_TITLE[w.code] ?? w.code).join(", ").toLowerCase()})` : "";
    button.setAttribute("aria-label", `Face ${face.index + 1}${warned}${chosen ? ", in use" : ""}`);
    button.title = button.getAttribute("aria-label");
    const img = document.createElement("img");
    img.alt = "";
    if (face.thumbnail) img.src = face.thumbnail;
    button.append(img);
    if (face.warnings?.length) button.classList.add("warned");
    button.addEventListener("click", () => {
      if (!chosen) onPick(face.index);
    });
    container.append(button);
  }
}

/** The chosen face's warnings, each with its reason; hidden when there are none. */
export function renderWarnings(list, result) {
  const warnings = chosenFace(result)?.warnings ?? [];
  list.replaceChildren(...warnings.map((w) => {
    const li = document.createElement("li");
    li.dataset.code = w.code;
    const title = document.createElement("strong");
    title.textContent = `${WARNING_TITLE[w.code] ?? w.code}: `;
    li.append(title, w.message ?? "");
    return li;
  }));
  list.hidden = warnings.length === 0;
}

/** What the status line says after a photo was accepted. */
export function sourceSummary(result) {
  const faces = Array.isArray(result?.faces) ? result.faces.length : result?.faces_found ?? 1;
  if (faces > 1 && Array.isArray(result?.faces)) {
    return `${faces} faces found: face ${(result.selected ?? 0) + 1} is used. Click another to use it instead.`;
  }
  if (faces > 1) return `Source face set. ${faces} faces were found; the largest one is used.`;
  return "Source face set.";
}
