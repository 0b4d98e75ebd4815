// SPDX-License-Identifier: EUPL-1.2
// zvg-evidence/v1 verifier, written from docs/evidence-bundle.md (not from the node's code):
// the second verifier of an evidence bundle, run in the officer's browser so that the officer
// need not trust the node that exported the bundle. An ES module without dependencies; it needs
// WebCrypto with SHA-256, ECDSA P-256 and Ed25519 (Chromium 137+, Firefox 129+, Safari 17+,
// Node 20+).
//
//   import { verifyBundle } from "./evidence-verify.js";
//   const result = await verifyBundle(bundleBytes, directoryBytes, { now: new Date() });
//   // { ok: true, report } or { ok: false, reason: "record_proof_invalid", detail: "..." }
//
// `reason` is one of REASONS: the same codes the node's verifier gives for the same bundle
// (gateway/audit/evidence.py). `detail` is for people and may differ between the two.

export const FORMAT = "zvg-evidence/v1";

export const REASONS = Object.freeze([
  "directory_invalid",
  "bundle_malformed",
  "bundle_format",
  "org_unknown",
  "checkpoint_invalid",
  "record_proof_invalid",
  "record_checkpoint_mismatch",
  "message_signature_invalid",
  "message_unproved",
  "receipt_signature_invalid",
  "receipt_mismatch",
  "receipt_proof_invalid",
  "contradiction_unproved",
  "contradiction_signature_invalid",
  "contradiction_mismatch",
]);

const MAX_DEPTH = 32;
const MAX_DIRECTORY_BYTES = 4 * 1024 * 1024;
const MAX_DIRECTORY_SIGNATURES = 32;
const DIRECTORY_TYP = "zvg-directory+jws";
const MESSAGE_TYP = "zvg-message+jws";
const MAX_CLAIMS_BYTES = 160 * 1024;
const MAX_NOTE_BYTES = 128 * 1024;
const MAX_NOTE_SIGNATURES = 100;
const MAX_KEY_NAME_BYTES = 255;
const MAX_TLOG_PROOF_BYTES = MAX_NOTE_BYTES + 8 * 1024;
const MAX_TLOG_PROOF_EXTRA_BYTES = 8 * 1024;
const MAX_TREE_SIZE = (1n << 63n) - 1n;
const MAX_TIMESTAMP = (1n << 63n) - 1n;
const MAX_INCLUSION_HASHES = 63;
const COSIGNATURE_SKEW_SECONDS = 300n;
const SIG_ED25519 = 0x01;
const SIG_COSIGNATURE_V1 = 0x04;
const EM_DASH = "\u2014";
const TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1";
const KID_PATTERN = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

const subtle = globalThis.crypto?.subtle;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Failure extends Error {
  constructor(reason, detail) {
    super(detail);
    this.reason = reason;
    this.detail = detail;
  }
}

const fail = (reason, detail) => new Failure(reason, detail);

// --------------------------------------------------------------------------- strict JSON

/** A JSON number that is not a safe integer (a fraction, an exponent, or beyond 2^53 - 1):
 * kept apart so that it is never taken for an index and never canonicalised. */
class JsonNumber {
  constructor(text) {
    this.text = text;
  }
}

const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/** Parse UTF-8 JSON strictly (§2): no byte-order mark, no duplicate member names, no lone
 * surrogates, nesting at most 32. Throws Error on anything else. */
export function parseStrictJson(bytes) {
  if (typeof bytes !== "string") {
    if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
      throw new Error("JSON starts with a byte-order mark");
    }
    bytes = strictUtf8.decode(bytes);
  }
  const text = bytes;
  let pos = 0;
  const ws = () => {
    while (pos < text.length && " \t\n\r".includes(text[pos])) pos++;
  };
  const bad = (what) => new Error(`not valid JSON (${what} at ${pos})`);
  const value = (depth) => {
    ws();
    const c = text[pos];
    if (c === "{" || c === "[") {
      if (depth >= MAX_DEPTH) throw new Error("JSON nests too deep");
      pos++;
      ws();
      if (c === "[") {
        const out = [];
        if (text[pos] === "]") return pos++, out;
        for (;;) {
          out.push(value(depth + 1));
          ws();
          if (text[pos] === ",") pos++;
          else if (text[pos] === "]") return pos++, out;
          else throw bad("array");
        }
      }
      const out = Object.create(null);
      if (text[pos] === "}") return pos++, out;
      for (;;) {
        ws();
        if (text[pos] !== '"') throw bad("member name");
        const key = string();
        if (Object.prototype.hasOwnProperty.call(out, key)) throw new Error("duplicate key in JSON object");
        ws();
        if (text[pos++] !== ":") throw bad("colon");
        out[key] = value(depth + 1);
        ws();
        if (text[pos] === ",") pos++;
        else if (text[pos] === "}") return pos++, out;
        else throw bad("object");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, pos)) return (pos += word.length), v;
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) throw bad("value");
    pos += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const n = Number(m[0]);
      if (Number.isSafeInteger(n)) return n;
    }
    return new JsonNumber(m[0]);
  };
  const string = () => {
    STRING.lastIndex = pos;
    const m = STRING.exec(text);
    if (!m) throw bad("string");
    pos += m[0].length;
    const s = JSON.parse(m[0]);
    if (!s.isWellFormed()) throw new Error("JSON string is not valid Unicode");
    return s;
  };
  const out = value(0);
  ws();
  if (pos !== text.length) throw bad("trailing text");
  return out;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonNumber);
const isInt = (v) => typeof v === "number" && Number.isSafeInteger(v);
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

/** RFC 8785 canonical JSON text of a value from parseStrictJson (safe integers only, as the
 * node writes; anything else throws). */
export function canonicalJson(value) {
  return canonical(value);
}

function canonical(v) {
  if (v === null || v === true || v === false) return String(v);
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (v instanceof JsonNumber) throw fail("bundle_malformed", "a view holds a number that is not a safe integer");
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  const keys = Object.keys(v).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
}

// --------------------------------------------------------------------------- bytes

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), (at += p.length);
  return out;
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const sha256 = async (data) => new Uint8Array(await subtle.digest("SHA-256", data));
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

function b64encode(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** Canonical standard base64 with padding (C2SP formats), or null. */
function b64decodeStrict(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  let bin;
  try {
    bin = atob(text);
  } catch {
    return null;
  }
  const out = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return b64encode(out) === text ? out : null;
}

const b64uEncode = (bytes) => b64encode(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** Canonical unpadded base64url (JOSE), or throw Error. */
function b64uDecode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new Error("not canonical base64url");
  }
  const std = text.replace(/-/g, "+").replace(/_/g, "/");
  const out = b64decodeStrict(std + "=".repeat((4 - (std.length % 4)) % 4));
  if (out === null) throw new Error("not canonical base64url");
  return out;
}

// --------------------------------------------------------------------------- keys

async function ed25519Key(raw) {
  return subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
}

async function ed25519Verify(raw, signature, data) {
  if (signature.length !== 64) return false;
  try {
    return await subtle.verify({ name: "Ed25519" }, await ed25519Key(raw), signature, data);
  } catch {
    return false;
  }
}

/** A JOSE signing key of the profile from its JWK: {alg, verify(signature, data)}. */
async function signingKey(jwk) {
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") {
    const raw = b64uDecode(jwk.x);
    if (raw.length !== 32) throw new Error("Ed25519 key is not 32 bytes");
    return { alg: "Ed25519", verify: (sig, data) => ed25519Verify(raw, sig, data) };
  }
  if (jwk.kty === "EC" && jwk.crv === "P-256") {
    if (b64uDecode(jwk.x).length !== 32 || b64uDecode(jwk.y).length !== 32) {
      throw new Error("P-256 coordinate is not 32 bytes");
    }
    const key = await subtle.importKey(
      "jwk",
      { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, ext: true },
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
    return {
      alg: "ES256",
      verify: async (sig, data) => {
        if (sig.length !== 64) return false;
        try {
          return await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, sig, data);
        } catch {
          return false;
        }
      },
    };
  }
  throw new Error("signing key outside the profile");
}

/** RFC 7638 thumbprint of a profile public JWK. */
async function thumbprint(jwk) {
  const members = jwk.kty === "EC" ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  return b64uEncode(await sha256(utf8.encode(JSON.stringify(members))));
}

// --------------------------------------------------------------------------- directory

const parseTime = (text) => {
  const t = typeof text === "string" ? Date.parse(text) : NaN;
  if (Number.isNaN(t)) throw new Error("not a time");
  return t;
};

function keyValidAt(entry, at) {
  if (!(parseTime(entry.not_before) <= at && at < parseTime(entry.not_after))) return false;
  if (entry.status === "active") return true;
  if (entry.revocation_reason === "compromised" || entry.revoked_at == null) return false;
  return at < parseTime(entry.revoked_at);
}

/** The directory, trusted on a threshold of its own authority and not expired (§3). */
export async function loadDirectory(bytes, now) {
  try {
    if (bytes.length > MAX_DIRECTORY_BYTES) throw new Error("directory too large");
    const doc = parseStrictJson(bytes);
    if (!isObject(doc) || Object.keys(doc).sort().join() !== "payload,signatures") {
      throw new Error("expected exactly payload and signatures");
    }
    if (typeof doc.payload !== "string" || !Array.isArray(doc.signatures)) throw new Error("bad shape");
    if (doc.signatures.length > MAX_DIRECTORY_SIGNATURES) throw new Error("too many signatures");
    const payload = parseStrictJson(b64uDecode(doc.payload));
    const authority = payload.authority;
    const keys = new Map();
    for (const entry of authority.keys) {
      const key = await signingKey(entry.jwk);
      if ((await thumbprint(entry.jwk)) !== entry.kid) throw new Error("authority kid is not its thumbprint");
      keys.set(entry.kid, key);
    }
    const signed = new Set();
    for (const sig of doc.signatures) {
      if (!isObject(sig) || Object.keys(sig).sort().join() !== "protected,signature") throw new Error("bad signature entry");
      const header = parseStrictJson(b64uDecode(sig.protected));
      if (!isObject(header) || Object.keys(header).sort().join() !== "alg,kid,typ" || header.typ !== DIRECTORY_TYP) {
        throw new Error("bad signature header");
      }
      if (!["ES256", "Ed25519"].includes(header.alg) || typeof header.kid !== "string") throw new Error("bad alg");
      const signature = b64uDecode(sig.signature);
      const key = keys.get(header.kid);
      if (!key || key.alg !== header.alg) continue;
      if (await key.verify(signature, utf8.encode(sig.protected + "." + doc.payload))) signed.add(header.kid);
    }
    if (!isInt(authority.threshold) || signed.size < authority.threshold) {
      throw new Error(`signed by ${signed.size} of ${authority.threshold} authority keys`);
    }
    if (parseTime(payload.expires) <= now.getTime()) throw new Error(`version ${payload.version} expired`);
    return new Directory(payload, hex(await sha256(b64uDecode(doc.payload))));
  } catch (exc) {
    if (exc instanceof Failure) throw exc;
    throw fail("directory_invalid", `directory: ${exc.message}`);
  }
}

class Directory {
  constructor(payload, digest) {
    this.payload = payload;
    this.digest = digest;
    this.version = payload.version;
    this.members = new Map(payload.members.map((m) => [m.oin, m]));
  }
  origin(org) {
    return `${this.payload.federation}.zvg/${org}/audit-log`;
  }
  witnessName(org) {
    return `${this.payload.federation}.zvg/${org}/witness`;
  }
  auditKeys(org, at) {
    const member = this.members.get(org);
    return (member ? member.keys : []).filter((e) => e.use === "audit" && keyValidAt(e, at)).map((e) => b64uDecode(e.jwk.x));
  }
  async signingKey(org, kid, at) {
    const member = this.members.get(org);
    for (const entry of member ? member.keys : []) {
      if (entry.kid === kid && entry.use === "sig" && keyValidAt(entry, at)) {
        const key = await signingKey(entry.jwk);
        return (await thumbprint(entry.jwk)) === kid ? key : null;
      }
    }
    return null;
  }
}

// --------------------------------------------------------------------------- signed notes

async function noteVerifier(name, type, publicKey) {
  const id = (await sha256(concat(utf8.encode(name + "\n"), Uint8Array.of(type), publicKey))).slice(0, 4);
  return { name, type, publicKey, id: hex(id) };
}

async function verifiers(directory, org, now) {
  const at = now.getTime();
  const logKeys = await Promise.all(directory.auditKeys(org, at).map((k) => noteVerifier(directory.origin(org), SIG_ED25519, k)));
  const cosigners = [];
  const names = new Map();
  for (const member of directory.payload.members) {
    if (member.oin === org) continue;
    const name = directory.witnessName(member.oin);
    names.set(name, member.name);
    for (const k of directory.auditKeys(member.oin, at)) cosigners.push(await noteVerifier(name, SIG_COSIGNATURE_V1, k));
  }
  return { logKeys, cosigners, names };
}

const CONTROL = /[\u0000-\u0009\u000b-\u001f]/;

function validKeyName(name) {
  const size = utf8.encode(name).length;
  return size > 0 && size <= MAX_KEY_NAME_BYTES && !name.includes("+") && !/[\s\u0085\u001c-\u001f]/.test(name) && !CONTROL.test(name);
}

function malformed(detail) {
  return new Error(detail);
}

/** Parse a signed note (c2sp.org/signed-note); returns {text: bytes, signatures: [...]}. */
function parseNote(raw) {
  if (raw.length > MAX_NOTE_BYTES) throw malformed("note too large");
  let decoded;
  try {
    decoded = strictUtf8.decode(raw);
  } catch {
    throw malformed("note is not UTF-8");
  }
  if (CONTROL.test(decoded)) throw malformed("note has a control character");
  let split = -1;
  for (let i = raw.length - 2; i >= 0; i--) {
    if (raw[i] === 0x0a && raw[i + 1] === 0x0a) {
      split = i;
      break;
    }
  }
  if (split < 0) throw malformed("note has no blank line");
  const text = raw.slice(0, split + 1);
  const block = raw.slice(split + 2);
  if (!block.length || block[block.length - 1] !== 0x0a) throw malformed("note signature block");
  const lines = strictUtf8.decode(block.slice(0, -1)).split("\n");
  if (lines.length > MAX_NOTE_SIGNATURES) throw malformed("too many signatures");
  const signatures = [];
  const seen = new Set();
  for (const line of lines) {
    if (!line.startsWith(EM_DASH + " ")) throw malformed("signature line");
    const parts = line.slice(2).split(" ");
    if (parts.length !== 2 || !validKeyName(parts[0])) throw malformed("signature line");
    const blob = b64decodeStrict(parts[1]);
    if (blob === null || blob.length <= 4) throw malformed("signature");
    if (seen.has(line)) continue;
    seen.add(line);
    signatures.push({ name: parts[0], id: hex(blob.slice(0, 4)), signature: blob.slice(4) });
  }
  return { text, signatures };
}

const COSIGNATURE_HEADER = utf8.encode("cosignature/v1\n");

async function verifyNoteSignature(verifier, text, signature) {
  if (verifier.type === SIG_COSIGNATURE_V1) {
    if (signature.length !== 72) return { ok: false };
    const timestamp = new DataView(signature.buffer, signature.byteOffset, 8).getBigUint64(0);
    if (timestamp > MAX_TIMESTAMP) return { ok: false };
    const message = concat(COSIGNATURE_HEADER, utf8.encode(`time ${timestamp}\n`), text);
    return { ok: await ed25519Verify(verifier.publicKey, signature.slice(8), message), timestamp };
  }
  return { ok: await ed25519Verify(verifier.publicKey, signature, text) };
}

function parseDecimal(text, maximum) {
  if (text.length > 19 || !/^(0|[1-9][0-9]*)$/.test(text)) return null;
  const v = BigInt(text);
  return v <= maximum ? v : null;
}

/** Open a checkpoint note (§4.3): the log's signature, then the cosignatures that count. */
async function openCheckpoint(raw, { logKeys, cosigners = [], now }) {
  const index = new Map([...logKeys, ...cosigners].map((v) => [`${v.name} ${v.id}`, v]));
  const note = parseNote(raw);
  const verified = [];
  for (const sig of note.signatures) {
    const verifier = index.get(`${sig.name} ${sig.id}`);
    if (!verifier) continue;
    const { ok, timestamp } = await verifyNoteSignature(verifier, note.text, sig.signature);
    if (!ok) throw malformed(`invalid signature for key ${sig.name}+${sig.id}`);
    verified.push({ verifier, timestamp });
  }
  if (!verified.length) throw malformed("no signature from a trusted key");
  const text = strictUtf8.decode(note.text);
  if (!text.endsWith("\n")) throw malformed("checkpoint: missing final newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length !== 3) throw malformed("checkpoint: not three lines (extensions are refused)");
  const [origin, sizeText, rootText] = lines;
  if (!origin || utf8.encode(origin).length > MAX_KEY_NAME_BYTES) throw malformed("checkpoint origin");
  const size = parseDecimal(sizeText, MAX_TREE_SIZE);
  const root = b64decodeStrict(rootText);
  if (size === null || root === null || root.length !== 32) throw malformed("checkpoint size or root");
  if (!verified.some((v) => v.verifier.type === SIG_ED25519 && v.verifier.name === origin)) {
    throw malformed("checkpoint: not signed by a log key for its origin");
  }
  const latest = BigInt(Math.floor(now.getTime() / 1000)) + COSIGNATURE_SKEW_SECONDS;
  const counted = [];
  const seen = new Set();
  for (const v of verified) {
    const key = hex(v.verifier.publicKey);
    if (v.verifier.type !== SIG_COSIGNATURE_V1 || seen.has(key)) continue;
    if (v.timestamp > latest) continue;
    seen.add(key);
    counted.push(v);
  }
  return { origin, size, root, cosignatures: counted };
}

/** Parse a c2sp.org/tlog-proof@v1 (§4.4). */
function parseTlogProof(raw) {
  if (raw.length > MAX_TLOG_PROOF_BYTES) throw malformed("tlog-proof too large");
  let pos = 0;
  const nextLine = () => {
    const end = raw.indexOf(0x0a, pos);
    if (end < 0) throw malformed("tlog-proof truncated");
    const bytes = raw.slice(pos, end);
    if (bytes.some((b) => b > 0x7f)) throw malformed("tlog-proof: non-ASCII line");
    pos = end + 1;
    return strictUtf8.decode(bytes); // ASCII, checked above: valid UTF-8 of the same text
  };
  if (nextLine() !== TLOG_PROOF_HEADER) throw malformed("tlog-proof header");
  let line = nextLine();
  let extra = null;
  if (line.startsWith("extra ")) {
    extra = b64decodeStrict(line.slice(6));
    if (!extra || !extra.length || extra.length > MAX_TLOG_PROOF_EXTRA_BYTES) throw malformed("tlog-proof extra");
    line = nextLine();
  }
  if (!line.startsWith("index ")) throw malformed("tlog-proof index line");
  const index = parseDecimal(line.slice(6), MAX_TREE_SIZE - 1n);
  if (index === null) throw malformed("tlog-proof index");
  const hashes = [];
  while ((line = nextLine()) !== "") {
    const digest = b64decodeStrict(line);
    if (digest === null || digest.length !== 32) throw malformed("tlog-proof hash");
    if (hashes.length === MAX_INCLUSION_HASHES) throw malformed("tlog-proof: too many hashes");
    hashes.push(digest);
  }
  const checkpoint = raw.slice(pos);
  parseNote(checkpoint);
  return { index, hashes, checkpoint, extra };
}

const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

/** RFC 9162 §2.1.3.2. */
async function verifyInclusion(index, size, leaf, proof, root) {
  if (!(index < size) || size > MAX_TREE_SIZE || proof.length > MAX_INCLUSION_HASHES) return false;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      if (!(fn & 1n)) {
        while (!(fn & 1n || fn === 0n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(r, root);
}

async function verifyTlogProof(raw, leaf, logKeys, now) {
  const proof = raw instanceof Uint8Array ? parseTlogProof(raw) : raw;
  const checkpoint = await openCheckpoint(proof.checkpoint, { logKeys, now });
  if (!(await verifyInclusion(proof.index, checkpoint.size, leaf, proof.hashes, checkpoint.root))) {
    throw malformed("tlog-proof: inclusion proof does not verify");
  }
  return { index: proof.index, checkpoint };
}

// --------------------------------------------------------------------------- signed claims

/** Verify a profile compact JWS (§4.5) and return its claims; throws Error otherwise. */
async function verifySignedClaims(jwsText, directory) {
  const parts = jwsText.split(".");
  if (parts.length !== 3) throw malformed("JWS is not in compact serialization");
  const header = parseStrictJson(b64uDecode(parts[0]));
  if (!isObject(header) || Object.keys(header).sort().join() !== "alg,kid,typ") throw malformed("JWS header members");
  if (!["ES256", "Ed25519"].includes(header.alg)) throw malformed("JWS alg outside the profile");
  if (header.typ !== MESSAGE_TYP) throw malformed("JWS typ");
  if (typeof header.kid !== "string" || !KID_PATTERN.test(header.kid)) throw malformed("JWS kid");
  const payload = b64uDecode(parts[1]);
  if (payload.length > MAX_CLAIMS_BYTES) throw malformed("claims too large");
  const signature = b64uDecode(parts[2]);
  const claims = parseStrictJson(payload);
  const sender = isObject(claims) && isObject(claims.sender) ? claims.sender.org : undefined;
  if (typeof sender !== "string" || typeof claims.message_id !== "string" || typeof claims.message_type !== "string") {
    throw malformed("claims lack sender, message_id or message_type");
  }
  const at = parseTime(claims.created_at);
  const key = await directory.signingKey(sender, header.kid, at);
  if (!key) throw malformed("no signing key with this kid for the sender at created_at");
  if (key.alg !== header.alg) throw malformed("JWS alg is not the sender key's algorithm");
  if (!(await key.verify(signature, utf8.encode(parts[0] + "." + parts[1])))) throw malformed("JWS signature does not verify");
  return claims;
}

// What a receipt says about one message (spec §4.6): the body of a single receipt, or the entry of
// a coalesced one (`body.entries`) that names the message and, when given, the status.
const statement = (claims, messageId, status) => {
  if (claims.message_type !== "receipt" || !isObject(claims.body)) return null;
  const body = claims.body;
  const entries = Array.isArray(body.entries) ? body.entries.filter(isObject) : [body];
  for (const entry of entries) {
    if (entry.message_id === messageId && (status == null || status === entry.status)) return entry;
  }
  return null;
};

// --------------------------------------------------------------------------- the bundle

const WANTED = {
  records: [["index", "int"], ["view", "object"], ["tlog_proof", "string"]],
  messages: [["message_id", "string"], ["inner_jws", "string"]],
  receipts: [["message_id", "string"], ["from", "string"], ["inner_jws", "string"]],
  contradictions: [["index", "int"], ["inner_jws", "string"]],
};

const typeOk = (v, t) => (t === "int" ? isInt(v) : t === "object" ? isObject(v) : typeof v === t);

function checkShape(bundle) {
  if (!isObject(bundle)) throw fail("bundle_malformed", "the bundle is not a JSON object");
  if (bundle.format !== FORMAT) throw fail("bundle_format", `not a ${FORMAT} bundle`);
  if (typeof bundle.org !== "string" || typeof bundle.checkpoint !== "string") {
    throw fail("bundle_malformed", "the bundle lacks org or checkpoint");
  }
  const lists = ["records", "messages", "receipts", "contradictions"];
  if (!lists.every((k) => !has(bundle, k) || Array.isArray(bundle[k])) || !lists.slice(0, 3).every((k) => has(bundle, k))) {
    throw fail("bundle_malformed", "records, messages, receipts must be lists");
  }
  for (const [key, members] of Object.entries(WANTED)) {
    for (const item of bundle[key] || []) {
      if (!isObject(item) || !members.every(([m, t]) => has(item, m) && typeOk(item[m], t))) {
        throw fail("bundle_malformed", `an entry of ${key} lacks a member or its type`);
      }
      if (has(item, "index") && item.index < 0) throw fail("bundle_malformed", `an entry of ${key} has an index out of range`);
      if (has(item, "inner_jws") && !/^[\u0000-\u007f]*$/.test(item.inner_jws)) {
        throw fail("bundle_malformed", `an entry of ${key} has a non-ASCII JWS`);
      }
    }
  }
}

async function signedClaims(jws, directory, reason, what) {
  try {
    return await verifySignedClaims(jws, directory);
  } catch (exc) {
    throw fail(reason, `${what}: ${exc.message}`);
  }
}

async function checkBundle(bundle, directory, now) {
  checkShape(bundle);
  const org = bundle.org;
  if (!directory.members.has(org)) throw fail("org_unknown", `${org} is not a member of directory v${directory.version}`);
  const { logKeys, cosigners, names } = await verifiers(directory, org, now);
  let checkpoint;
  try {
    checkpoint = await openCheckpoint(utf8.encode(bundle.checkpoint), { logKeys, cosigners, now });
  } catch (exc) {
    throw fail("checkpoint_invalid", `checkpoint: ${exc.message}`);
  }
  const report = {
    records: 0,
    messages: 0,
    receipts: 0,
    contradictions: 0,
    cosigners: checkpoint.cosignatures.map((c) => names.get(c.verifier.name) ?? c.verifier.name).sort(),
    checkpointSize: Number(checkpoint.size),
    origin: checkpoint.origin,
    directory: { version: directory.version, digest: directory.digest },
    lines: [],
  };
  const byMessage = new Map();
  const byIndex = new Map();
  for (const rec of bundle.records) {
    const leaf = await leafHash(utf8.encode(canonical(rec.view)));
    let proved;
    try {
      proved = await verifyTlogProof(utf8.encode(rec.tlog_proof), leaf, logKeys, now);
    } catch (exc) {
      throw fail("record_proof_invalid", `record ${rec.index}: ${exc.message}`);
    }
    if (proved.index !== BigInt(rec.index) || !equal(proved.checkpoint.root, checkpoint.root)) {
      throw fail("record_checkpoint_mismatch", `record ${rec.index}: proved against another checkpoint`);
    }
    const mid = rec.view.message_id;
    if (typeof mid === "string" && mid) {
      if (!byMessage.has(mid)) byMessage.set(mid, []);
      byMessage.get(mid).push(rec.view);
    }
    byIndex.set(rec.index, rec.view);
    report.records++;
  }
  for (const msg of bundle.messages) {
    const claims = await signedClaims(msg.inner_jws, directory, "message_signature_invalid", `message ${msg.message_id}`);
    const digest = b64uEncode(await sha256(utf8.encode(msg.inner_jws)));
    if (claims.message_id !== msg.message_id || !(byMessage.get(claims.message_id) || []).some((v) => v.digest === digest)) {
      throw fail("message_unproved", `message ${msg.message_id}: no proved record names this content`);
    }
    report.messages++;
    report.lines.push(`message ${claims.message_id}: ${claims.message_type} ${claims.purpose} signed by ${claims.sender.org}`);
  }
  for (const rc of bundle.receipts) {
    const what = `receipt for ${rc.message_id}`;
    const claims = await signedClaims(rc.inner_jws, directory, "receipt_signature_invalid", what);
    const body = statement(claims, rc.message_id, rc.status);
    if (!body || claims.sender.org !== rc.from) {
      throw fail("receipt_mismatch", `${what}: it says something else`);
    }
    if (body.proof != null) {
      const receiver = await verifiers(directory, claims.sender.org, now);
      try {
        if (typeof body.proof !== "string") throw malformed("proof is not text");
        const proof = parseTlogProof(utf8.encode(body.proof));
        if (proof.extra === null) throw malformed("its proof carries no record");
        await verifyTlogProof(proof, await leafHash(proof.extra), receiver.logKeys, now);
      } catch (exc) {
        throw fail("receipt_proof_invalid", `${what}: ${exc.message}`);
      }
    }
    report.receipts++;
    report.lines.push(`receipt ${body.status} for ${body.message_id} signed by ${claims.sender.org}`);
  }
  for (const kept of bundle.contradictions || []) {
    const view = byIndex.get(kept.index);
    const detail = view && isObject(view.detail) ? view.detail : {};
    const digest = b64uEncode(await sha256(utf8.encode(kept.inner_jws)));
    if (!view || detail.evidence_sha256 !== digest) {
      throw fail("contradiction_unproved", `contradiction ${kept.index}: no proved record names these bytes`);
    }
    const claims = await signedClaims(kept.inner_jws, directory, "contradiction_signature_invalid", `contradiction ${kept.index}`);
    const body = statement(claims, view.message_id, detail.status);
    if (!body || claims.sender.org !== view.peer) {
      throw fail("contradiction_mismatch", `contradiction ${kept.index}: it says something else`);
    }
    const what = detail.kind === "content" ? "names other content" : `contradicts its ${detail.earlier_status}`;
    report.lines.push(`contradiction: receipt ${body.status} for ${body.message_id} signed by ${claims.sender.org} ${what} (record ${kept.index})`);
    report.contradictions++;
  }
  return report;
}

/** Whether this WebCrypto has every algorithm a bundle needs (Ed25519 is the one older
 * browsers lack). Resolves to null when it does, else the name of what is missing. */
export async function missingAlgorithm() {
  if (!globalThis.crypto || !globalThis.crypto.subtle) return "WebCrypto";
  try {
    // Any 32 bytes import as an Ed25519 public key where the algorithm exists.
    await subtle.importKey("raw", new Uint8Array(32).fill(1), { name: "Ed25519" }, false, ["verify"]);
  } catch (exc) {
    if (exc && exc.name === "NotSupportedError") return "Ed25519";
  }
  return null;
}

const asBytes = (input) => (typeof input === "string" ? utf8.encode(input) : input instanceof Uint8Array ? input : new Uint8Array(input));

/**
 * Verify a zvg-evidence/v1 bundle against a federation directory, at `now`.
 * `bundle` and `directory` are the files' bytes (Uint8Array or ArrayBuffer) or text.
 * Resolves to {ok: true, report} or {ok: false, reason, detail}; never rejects for any input.
 * `reason` is one of REASONS, or `verifier_unsupported` when this WebCrypto cannot check a
 * bundle at all (see missingAlgorithm).
 */
export async function verifyBundle(bundle, directory, { now = new Date() } = {}) {
  const missing = await missingAlgorithm();
  if (missing) {
    // Not a verdict on the bundle: this browser cannot check it (docs/evidence-bundle.md §7).
    return { ok: false, reason: "verifier_unsupported", detail: `this browser's WebCrypto lacks ${missing}` };
  }
  try {
    const trusted = await loadDirectory(asBytes(directory), now);
    let parsed;
    try {
      parsed = parseStrictJson(asBytes(bundle));
    } catch (exc) {
      throw fail("bundle_malformed", `the bundle is not JSON: ${exc.message}`);
    }
    return { ok: true, report: await checkBundle(parsed, trusted, now) };
  } catch (exc) {
    if (exc instanceof Failure) return { ok: false, reason: exc.reason, detail: exc.detail };
    return { ok: false, reason: "bundle_malformed", detail: `the bundle could not be read: ${exc.message}` };
  }
}
