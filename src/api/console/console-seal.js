// The console's deposit (issue 17): the clip is sealed in the browser exactly
// as the CLI seals it (docs/KEYS.md §4.1), so no node sees the plaintext or
// the data key. The HPKE opening and Shamir combining here serve the fetch
// (console-fetch.js, §4.2). AES-256-GCM, SHA-256, X25519, HMAC and Ed25519 are WebCrypto's;
// ChaCha20-Poly1305 (the share envelopes' HPKE AEAD), which WebCrypto lacks, is
// @noble/ciphers (vendor/noble-ciphers, VENDORED.md). HPKE (RFC 9180, base
// mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) and Shamir
// over GF(256) (polynomial 0x11d, as `blahaj`) are written here; a deposit made
// with them opens with the CLI's fetch (tests/it/console.rs).
import { chacha20poly1305 } from "./vendor/noble-ciphers/chacha.js";

const C = window.CustodyConsole;
const te = new TextEncoder();
// The court's page script (verify.js, loaded before this module) lends its byte helpers and streamed SHA-256.
const { concat: cat, hex } = CustodyVerify;
const fromHex = (s) => Uint8Array.from(s.match(/../g) || [], (h) => parseInt(h, 16));
const random = (n) => crypto.getRandomValues(new Uint8Array(n));
const be64 = (n) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
};
const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));

// ---- Shamir over GF(256), x^8 + x^4 + x^3 + x^2 + 1 (0x11d), generator 2: blahaj's field.
const EXP = new Uint8Array(510), LOG = new Uint8Array(256);
for (let i = 0, x = 1; i < 255; i++) {
  EXP[i] = EXP[i + 255] = x;
  LOG[x] = i;
  x <<= 1;
  if (x & 0x100) x ^= 0x11d;
}
const mul = (a, b) => (a && b ? EXP[LOG[a] + LOG[b]] : 0);
// Shares x = 1..n of `secret`, any k of which rebuild it: `x ‖ y` (33 bytes for a 32-byte secret).
export function split(secret, k, n) {
  const coeffs = Array.from(secret, () => random(k - 1)); // per byte: a_1 .. a_{k-1}
  const shares = [];
  for (let x = 1; x <= n; x++) {
    const y = secret.map((s, j) => {
      let acc = 0;
      for (let i = k - 2; i >= 0; i--) acc = mul(acc, x) ^ coeffs[j][i];
      return mul(acc, x) ^ s;
    });
    shares.push(cat(Uint8Array.of(x), y));
  }
  coeffs.forEach((c) => c.fill(0));
  return shares;
}

const div = (a, b) => (a ? EXP[LOG[a] + 255 - LOG[b]] : 0); // b ≠ 0
// The secret of k shares `x ‖ y` with distinct x: Lagrange interpolation at 0 (subtraction is XOR).
export function combine(shares) {
  const xs = shares.map((s) => s[0]);
  if (xs.some((x) => x === 0) || new Set(xs).size !== xs.length) throw new Error("shares need distinct x in 1..255");
  const out = new Uint8Array(shares[0].length - 1);
  shares.forEach((s, i) => {
    let l = 1;
    xs.forEach((xm, m) => {
      if (m !== i) l = mul(l, div(xm, xm ^ xs[i]));
    });
    for (let j = 0; j < out.length; j++) out[j] ^= mul(l, s[j + 1]);
  });
  return out;
}

// ---- HPKE (RFC 9180), base mode, single shot.
const KEM_SUITE = cat(te.encode("KEM"), Uint8Array.of(0x00, 0x20));
const HPKE_SUITE = cat(te.encode("HPKE"), Uint8Array.of(0x00, 0x20, 0x00, 0x01, 0x00, 0x03));
async function hmac(key, data) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, data));
}
// HKDF-Extract with an empty salt is HMAC under 32 zero bytes (RFC 5869 §2.2).
const extract = (salt, ikm) => hmac(salt.length ? salt : new Uint8Array(32), ikm);
const expand32 = async (prk, info, len) => (await hmac(prk, cat(info, Uint8Array.of(1)))).slice(0, len); // len ≤ 32: one block
const labeledExtract = (suite, salt, label, ikm) => extract(salt, cat(te.encode("HPKE-v1"), suite, te.encode(label), ikm));
const labeledExpand = (suite, prk, label, info, len) =>
  expand32(prk, cat(Uint8Array.of(len >> 8, len & 255), te.encode("HPKE-v1"), suite, te.encode(label), info), len);
// The key and base nonce of a base-mode context (RFC 9180 §4.1, §5.1) from the DH output.
async function keySchedule(dh, enc, pkR, info) {
  const eaePrk = await labeledExtract(KEM_SUITE, new Uint8Array(0), "eae_prk", dh);
  const shared = await labeledExpand(KEM_SUITE, eaePrk, "shared_secret", cat(enc, pkR), 32);
  const pskIdHash = await labeledExtract(HPKE_SUITE, new Uint8Array(0), "psk_id_hash", new Uint8Array(0));
  const infoHash = await labeledExtract(HPKE_SUITE, new Uint8Array(0), "info_hash", info);
  const context = cat(Uint8Array.of(0), pskIdHash, infoHash);
  const secret = await labeledExtract(HPKE_SUITE, shared, "secret", new Uint8Array(0));
  const key = await labeledExpand(HPKE_SUITE, secret, "key", context, 32);
  const nonce = await labeledExpand(HPKE_SUITE, secret, "base_nonce", context, 12);
  [shared, secret].forEach((b) => b.fill(0));
  return { key, nonce };
}
// Seals `plaintext` to the X25519 public key `pkR`: `enc (32) ‖ ciphertext`.
export async function hpkeSeal(pkR, info, aad, plaintext) {
  const eph = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const enc = new Uint8Array(await crypto.subtle.exportKey("raw", eph.publicKey));
  const peer = await crypto.subtle.importKey("raw", pkR, { name: "X25519" }, false, []);
  const dh = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: peer }, eph.privateKey, 256));
  const { key, nonce } = await keySchedule(dh, enc, pkR, info);
  const ct = chacha20poly1305(key, nonce, aad).encrypt(plaintext);
  [dh, key].forEach((b) => b.fill(0));
  return cat(enc, ct);
}
// Opens `enc (32) ‖ ciphertext` sealed to our key pair (`skR` a WebCrypto X25519 private key, `pkR` its
// raw public key); throws when the envelope was not sealed to it, for this info and aad.
export async function hpkeOpen(skR, pkR, info, aad, envelope) {
  if (envelope.length < 32 + 16) throw new Error("an HPKE envelope is at least 48 bytes");
  const enc = envelope.slice(0, 32);
  const peer = await crypto.subtle.importKey("raw", enc, { name: "X25519" }, false, []);
  const dh = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: peer }, skR, 256));
  const { key, nonce } = await keySchedule(dh, enc, pkR, info);
  try {
    return chacha20poly1305(key, nonce, aad).decrypt(envelope.slice(32));
  } finally {
    [dh, key].forEach((b) => b.fill(0));
  }
}

// ---- The deposit (docs/KEYS.md §4.1). `progress(phase, done, total)`.
async function sealAndSend(file, meta, key, progress) {
  const h = await C.api("GET", "/v1/holders");
  const n = h.holders.length, k = h.threshold, cs = h.chunk_size;
  const item = random(16), dk = random(32), prefix = random(4);
  const count = file.size === 0 ? 1 : Math.ceil(file.size / cs);
  const aes = await crypto.subtle.importKey("raw", dk, "AES-GCM", false, ["encrypt"]);
  const clipHash = new CustodyVerify.Sha256();
  const sealed = [], chunks = [], digests = [];
  for (let i = 0; i < count; i++) {
    const plain = new Uint8Array(await file.slice(i * cs, (i + 1) * cs).arrayBuffer());
    clipHash.update(plain);
    const ad = cat(te.encode("custody/chunk/v1\0"), item, be64(i), be64(count));
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: cat(prefix, be64(i)), additionalData: ad }, aes, plain));
    const d = await sha256(ct);
    sealed.push(new Blob([ct]));
    chunks.push({ name: hex(d), size: ct.length });
    digests.push(d);
    progress("seal", Math.min((i + 1) * cs, file.size), file.size);
  }
  const shares = split(dk, k, n);
  const holders = [];
  for (const [i, holder] of h.holders.entries()) {
    const x = i + 1;
    const aad = cat(te.encode(h.cluster_id), Uint8Array.of(0), item, be64(holder.node), Uint8Array.of(x));
    const envelope = await hpkeSeal(fromHex(holder.share_key), te.encode("custody/share/v1"), aad, shares[i]);
    holders.push({ node: holder.node, x, share_key: holder.share_key, envelope: hex(envelope) });
  }
  shares.forEach((s) => s.fill(0));
  const commitment = hex(await sha256(cat(te.encode("custody/key-commitment/v1\0"), item, dk)));
  dk.fill(0);
  const statement = {
    item: hex(item), sha256: hex(clipHash.finish()), size: file.size, chunk_size: cs, chunks: count,
    chunks_sha256: hex(await sha256(cat(...digests))), nonce_prefix: hex(prefix),
    holders: holders.map(({ node, x, share_key }) => ({ node, x, share_key })), threshold: k, key_commitment: commitment,
    case: meta.case, system: meta.system, retention: meta.retention, depositor: meta.depositor,
  };
  if (meta.note) statement.note = meta.note;
  const signed = cat(te.encode("custody/deposit/v1\n"), te.encode(C.canonical(statement)));
  const signature = C.b64(await crypto.subtle.sign({ name: "Ed25519" }, key, signed));
  const manifest = {
    item: statement.item, sha256: statement.sha256, size: file.size, chunk_size: cs, chunks, nonce_prefix: statement.nonce_prefix,
    holders, threshold: k, key_commitment: commitment,
    meta: { case: meta.case, system: meta.system, retention: meta.retention, ...(meta.note ? { note: meta.note } : {}) },
    depositor: meta.depositor, signature,
  };
  const sealedBytes = chunks.reduce((s, c) => s + c.size, 0);
  const body = new Blob([...sealed, JSON.stringify(manifest)]);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/items");
    xhr.setRequestHeader("authorization", `Bearer ${sessionStorage.getItem("custody-token")}`);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.setRequestHeader("x-custody-sealed-bytes", String(sealedBytes));
    xhr.setRequestHeader("x-custody-chunk-size", String(cs));
    xhr.upload.onprogress = (e) => progress("upload", e.loaded, e.total);
    xhr.onload = () => {
      let v = null;
      try {
        v = JSON.parse(xhr.responseText);
      } catch (_) {}
      if (xhr.status >= 200 && xhr.status < 300) resolve(v);
      else reject(Object.assign(new Error(v ? `${v.title}: ${v.detail}` : `HTTP ${xhr.status}`), { type: v && v.type }));
    };
    xhr.onerror = () => reject(new Error("the upload failed (connection lost)"));
    xhr.send(body);
  });
}

// Seals and sends; sealed again for the new voters when they changed meanwhile (409 holders-changed).
export async function deposit(file, meta, key, progress) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await sealAndSend(file, meta, key, progress);
    } catch (e) {
      if (e.type !== "urn:custody:holders-changed" || attempt >= 3) throw e;
    }
  }
}

function depositPage(form) {
  const bar = document.getElementById("deposit-progress");
  const label = document.getElementById("deposit-phase");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    document.getElementById("sign-error").hidden = true;
    document.getElementById("deposited").hidden = true;
    const button = document.getElementById("deposit-button");
    button.disabled = true;
    try {
      const f = new FormData(form);
      const file = document.getElementById("clip").files[0];
      if (!file) throw new Error("choose the clip");
      const key = await C.signingKey();
      const who = await (await fetch("/console/whoami")).json();
      const meta = { case: String(f.get("case")), system: String(f.get("system")), retention: String(f.get("retention")), note: String(f.get("note") || ""), depositor: who.user };
      const started = performance.now();
      bar.hidden = false;
      const receipt = await deposit(file, meta, key, (phase, done, total) => {
        bar.max = total || 1;
        bar.value = done;
        label.textContent = `${form.dataset[phase]} ${(done / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`;
      });
      const seconds = (performance.now() - started) / 1000;
      const out = document.getElementById("deposited");
      out.dataset.item = receipt.item;
      out.dataset.seconds = String(seconds);
      const link = document.getElementById("deposited-link");
      link.href = `/console/items/${receipt.item}`;
      link.textContent = receipt.item;
      document.getElementById("deposited-rate").textContent = `${(file.size / 1e6 / seconds).toFixed(1)} MB/s`;
      out.hidden = false;
    } catch (e) {
      const p = document.getElementById("sign-error");
      p.textContent = e.message || String(e);
      p.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

const form = document.getElementById("deposit-form");
if (form) depositPage(form);
