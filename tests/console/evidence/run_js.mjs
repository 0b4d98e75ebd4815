// Runs the browser's evidence verifier under Node on every bundle file given, against one
// directory at one time; prints {"<file>": {"ok": ..., "reason": ..., "detail": ...}, ...}.
//   node run_js.mjs <directory.json> <now ISO 8601> <bundle.json>...
import { readFile } from "node:fs/promises";
import { verifyBundle } from "../../../gateway/console/static/js/evidence-verify.js";

const [directoryFile, nowText, ...bundles] = process.argv.slice(2);
const directory = await readFile(directoryFile);
const now = new Date(nowText);
const out = {};
for (const file of bundles) {
  const result = await verifyBundle(await readFile(file), directory, { now });
  out[file] = result.ok ? { ok: true, reason: null, report: result.report } : result;
}
process.stdout.write(JSON.stringify(out));
