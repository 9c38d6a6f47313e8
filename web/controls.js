// The engine's swap controls (mouth mask, colour correction, enhancer blend and cadence, shape):
// inputs marked `data-key` inside fields marked `data-control`, shown only for the keys the engine
// lists in `/api/info` `controls`.

import { SWAP_CONTROLS } from "./settings.js";

/** Sub-controls that only matter while their switch is on. */
const PARENT = {
  mouth_mask_blur: "mouth_mask",
  mouth_mask_padding: "mouth_mask",
  enhance_blend: "enhance",
  enhance_every: "enhance",
};

function ordinal(n) {
  if (n === 1) return "frame";
  const suffix = n === 2 ? "nd" : n === 3 ? "rd" : "th";
  return `${n}${suffix} frame`;
}

function shown(input) {
  const value = Number(input.value);
  return input.dataset.unit === "nth" ? ordinal(value) : `${Math.round(value * 100)}%`;
}

function read(input) {
  const kind = SWAP_CONTROLS[input.dataset.key]?.kind;
  if (kind === "bool") return input.checked;
  return kind === "int" ? Math.round(Number(input.value)) : Number(input.value);
}

export class SwapControls {
  /** @param {HTMLElement} root @param {(key: string, value: unknown) => void} onChange */
  constructor(root, onChange) {
    this.root = root;
    this.onChange = onChange;
    this.inputs = [...root.querySelectorAll("input[data-key]")];
    for (const input of this.inputs) {
      input.addEventListener(input.type === "checkbox" ? "change" : "input", () => {
        this.label(input);
        this.onChange(input.dataset.key, read(input));
        this.updateDependants();
      });
    }
  }

  label(input) {
    const out = this.root.querySelector(`output[for="${input.id}"]`);
    if (out) out.textContent = shown(input);
    if (input.type === "range") input.setAttribute("aria-valuetext", shown(input));
  }

  /** Put stored values into the inputs. */
  apply(settings) {
    for (const input of this.inputs) {
      const value = settings[input.dataset.key];
      if (input.type === "checkbox") input.checked = Boolean(value);
      else input.value = String(value);
      this.label(input);
    }
    this.updateDependants();
  }

  /** Show the fields of the keys this engine supports; `supported` null = an engine that lists none. */
  show(supported) {
    for (const field of this.root.querySelectorAll("[data-control]")) {
      const key = field.dataset.control;
      // Without a list (an older server) the basic controls and the enhancer switch, which predate
      // `controls`, stay as they are; the newer ones need the engine to name them.
      if (!supported && (key === "enhance" || !(key in SWAP_CONTROLS))) continue;
      field.hidden = !supported?.has(key);
    }
  }

  updateDependants() {
    for (const [child, parent] of Object.entries(PARENT)) {
      const input = this.inputs.find((i) => i.dataset.key === child);
      const switchInput = this.root.querySelector(`[data-control="${parent}"] input[type=checkbox]`);
      if (input && switchInput) input.disabled = !switchInput.checked || switchInput.disabled;
    }
  }
}
