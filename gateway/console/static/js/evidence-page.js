// SPDX-License-Identifier: EUPL-1.2
// The Evidence page's second check: verify a bundle in the officer's own browser with the
// JavaScript verifier (evidence-verify.js, written from the bundle specification), so the officer
// need not trust the node that exported it. Against a directory file the officer chooses, or the
// one this node trusts (/evidence/directory.json). Everything shown is set as text, never HTML.
import { verifyBundle } from "./evidence-verify.js";

const section = document.getElementById("browser-verify");
const form = document.getElementById("browser-verify-form");
const result = document.getElementById("browser-verify-result");

async function bytesOf(input) {
  const file = input.files && input.files[0];
  return file ? new Uint8Array(await file.arrayBuffer()) : null;
}

function show(ok, text) {
  result.textContent = "";
  const line = document.createElement("strong");
  line.className = ok ? "zvg-ok" : "zvg-bad";
  line.textContent = text;
  result.append(line);
  result.className = "utrecht-alert " + (ok ? "utrecht-alert--ok" : "utrecht-alert--error");
  result.hidden = false;
}

if (section && form && result) {
  section.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bundle = await bytesOf(form.elements.namedItem("bundle"));
    if (!bundle) return;
    let directory = await bytesOf(form.elements.namedItem("directory"));
    if (!directory) {
      const answer = await fetch("/evidence/directory.json", { credentials: "same-origin" });
      directory = new Uint8Array(await answer.arrayBuffer());
    }
    const outcome = await verifyBundle(bundle, directory, { now: new Date() });
    if (outcome.ok) {
      const records = outcome.report && outcome.report.records !== undefined
        ? outcome.report.records : "?";
      show(true, `✔ ${section.dataset.ok} (${records})`);
    } else {
      show(false, `✘ ${section.dataset.failed}: ${outcome.reason} — ${outcome.detail}`);
    }
  });
}
