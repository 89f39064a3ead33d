// The console's script (issue 17). Logging in: the CLI's signed challenge
// (custody/login/v1, auth::login_message) signed here with WebCrypto Ed25519.
// The signing key is the user's key file (hex of the 32-byte seed), imported
// non-extractable; optionally kept in IndexedDB, still non-extractable. It is
// never sent anywhere. Every rule is the vault's: this script only signs.
"use strict";

const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
const enc = new TextEncoder();

// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): WebCrypto imports no raw private key.
const PKCS8_ED25519 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

async function importSeedHex(text) {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error("not a signing key: expected 64 hex digits (the key file the CLI uses)");
  const seed = hex.match(/../g).map((h) => parseInt(h, 16));
  return crypto.subtle.importKey("pkcs8", new Uint8Array([...PKCS8_ED25519, ...seed]), { name: "Ed25519" }, false, ["sign"]);
}

// IndexedDB: one store, keys by user name; values are non-extractable CryptoKeys.
function db() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open("custody-console", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("keys");
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function storeKey(user, key) {
  const d = await db();
  await new Promise((res, rej) => {
    const tx = d.transaction("keys", "readwrite");
    tx.objectStore("keys").put(key, user);
    tx.oncomplete = res;
    tx.onerror = () => rej(tx.error);
  });
}
async function storedKey(user) {
  const d = await db();
  return new Promise((res) => {
    const r = d.transaction("keys").objectStore("keys").get(user);
    r.onsuccess = () => res(r.result || null);
    r.onerror = () => res(null);
  });
}

async function problemText(resp) {
  try {
    const p = await resp.json();
    return `${p.title}: ${p.detail}`;
  } catch (_) {
    return `HTTP ${resp.status}`;
  }
}

// Signs the login challenge for this connection's certificate and opens the console's session.
async function logIn(key) {
  const who = await (await fetch("/console/whoami")).json();
  const time_ms = Date.now();
  const message = `custody/login/v1\n${who.user}\n${who.thumbprint}\n${time_ms}\n`;
  const signature = b64(await crypto.subtle.sign({ name: "Ed25519" }, key, enc.encode(message)));
  const r = await fetch("/v1/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: who.user, time_ms, signature }) });
  if (!r.ok) throw new Error(await problemText(r));
  const s = await r.json();
  sessionStorage.setItem("custody-token", s.token);
  const c = await fetch("/console/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: s.token }) });
  if (!c.ok) throw new Error(await problemText(c));
  return who.user;
}

async function loginPage() {
  const box = document.getElementById("login");
  const error = document.getElementById("login-error");
  const show = (e) => {
    error.textContent = e.message || String(e);
    error.hidden = false;
  };
  const who = await (await fetch("/console/whoami")).json().catch(() => null);
  const stored = who && (await storedKey(who.user).catch(() => null));
  if (stored) {
    document.getElementById("stored").hidden = false;
    document.getElementById("login-stored").addEventListener("click", () =>
      logIn(stored).then(() => location.assign("/console/items"), show),
    );
  }
  document.getElementById("login-file").addEventListener("click", async () => {
    error.hidden = true;
    try {
      const file = document.getElementById("key-file").files[0];
      if (!file) throw new Error("choose your signing key file");
      const key = await importSeedHex(await file.text());
      const user = await logIn(key);
      if (document.getElementById("remember").checked) await storeKey(user, key);
      location.assign("/console/items");
    } catch (e) {
      show(e);
    }
  });
  box.dataset.ready = "true";
}

// RFC 8785 for what the console signs: objects of strings, safe integers,
// booleans and arrays (an access request); the same bytes as the CLI's.
function canonical(v) {
  if (v === null || typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new Error("only safe integers are signed");
    return String(v);
  }
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
}
// The bytes every signer of a request signs (approval::AccessRequest::signing_bytes).
const requestBytes = (r) => enc.encode("custody/access-request/v1\n" + canonical(r));

// The key that signs on this page: the one kept in this browser, or the chosen file.
async function signingKey() {
  const who = await (await fetch("/console/whoami")).json();
  const stored = await storedKey(who.user).catch(() => null);
  if (stored) return stored;
  const file = document.getElementById("sign-key").files[0];
  if (!file) throw new Error("choose your signing key file");
  return importSeedHex(await file.text());
}
async function api(method, path, body) {
  const token = sessionStorage.getItem("custody-token");
  if (!token) throw new Error("no session token in this tab: log in again");
  const r = await fetch(path, { method, headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: body && JSON.stringify(body) });
  if (!r.ok) {
    let p = null;
    try {
      p = await r.json();
    } catch (_) {}
    if (p && p.type === "urn:custody:not-leader") throw new Error(`${p.detail}: open the console on the leader${p.leader ? ` (${p.leader}/console)` : ""}`);
    throw new Error(p ? `${p.title}: ${p.detail}` : `HTTP ${r.status}`);
  }
  return r.json();
}
function signError(e) {
  const p = document.getElementById("sign-error");
  p.textContent = e.message || String(e);
  p.hidden = false;
}
async function keyPicker() {
  const who = await (await fetch("/console/whoami")).json();
  if (await storedKey(who.user).catch(() => null)) document.getElementById("key-stored").hidden = false;
}

function requestPage(form) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    document.getElementById("sign-error").hidden = true;
    try {
      const f = new FormData(form);
      const others = String(f.get("with")).split(",").map((s) => s.trim()).filter(Boolean);
      const nonce = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
      const request = {
        item: form.dataset.item,
        action: String(f.get("action")),
        purpose: String(f.get("purpose")),
        approval_doc: String(f.get("approval_doc")),
        participants: [form.dataset.user, ...others],
        emergency: f.get("emergency") === "on",
        expires_at_ms: Date.now() + Number(f.get("hours")) * 3600 * 1000,
        nonce,
        max_fetches: Number(f.get("max_fetches")),
      };
      const key = await signingKey();
      const signature = b64(await crypto.subtle.sign({ name: "Ed25519" }, key, requestBytes(request)));
      const status = await api("POST", "/v1/requests", { request, signature });
      const link = document.getElementById("filed-link");
      link.textContent = `${status.request} (${status.status})`;
      document.getElementById("filed").hidden = false;
      document.getElementById("filed").dataset.request = status.request;
    } catch (e) {
      signError(e);
    }
  });
}

function queuePage() {
  for (const b of document.querySelectorAll("button.sign-request")) {
    b.addEventListener("click", async () => {
      document.getElementById("sign-error").hidden = true;
      try {
        const rec = await api("GET", `/v1/requests/${b.dataset.request}`);
        const key = await signingKey();
        const signature = b64(await crypto.subtle.sign({ name: "Ed25519" }, key, requestBytes(rec.request)));
        await api("POST", `/v1/requests/${b.dataset.request}/approvals`, { signature });
        location.reload();
      } catch (e) {
        signError(e);
      }
    });
  }
}

// ---- The registry (docs/KEYS.md §5): a change is signed by the administrator who files it
// and by a second one; the bytes are `custody/registry-change/v1\n` ‖ the proposal as RFC 8785.
const ROLE_ORDER = ["officer", "approver", "emergency-approver", "court", "admin"]; // the vault's set order
const changeBytes = (p) => enc.encode("custody/registry-change/v1\n" + canonical(p));
const nonceHex = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

async function fileChange(change) {
  const proposal = { change, nonce: nonceHex(), expires_at_ms: Date.now() + 7 * 86400 * 1000 };
  const key = await signingKey();
  const signature = b64(await crypto.subtle.sign({ name: "Ed25519" }, key, changeBytes(proposal)));
  const status = await api("POST", "/v1/registry/changes", { proposal, signature });
  const p = document.getElementById("change-filed");
  p.textContent = `${status.change} (${status.status})`;
  p.dataset.change = status.change;
  p.dataset.status = status.status;
  p.hidden = false;
}

function registryPage() {
  const guard = (f) => async (ev) => {
    ev.preventDefault();
    document.getElementById("sign-error").hidden = true;
    try {
      await f(new FormData(ev.target));
    } catch (e) {
      signError(e);
    }
  };
  document.getElementById("add-person").addEventListener("submit", guard((f) => fileChange({
    change: "add_person",
    person: {
      name: String(f.get("name")), badge: String(f.get("badge")), unit: String(f.get("unit")),
      roles: f.getAll("roles").map(String).sort((a, b) => ROLE_ORDER.indexOf(a) - ROLE_ORDER.indexOf(b)),
      public_key: String(f.get("public_key")).trim(), revoked: false,
    },
  })));
  document.getElementById("revoke-person").addEventListener("submit", guard((f) => fileChange({ change: "revoke_person", name: String(f.get("name")) })));
  for (const b of document.querySelectorAll("button.sign-change")) {
    b.addEventListener("click", async () => {
      document.getElementById("sign-error").hidden = true;
      try {
        const pending = await api("GET", `/v1/registry/changes/${b.dataset.change}`);
        const key = await signingKey();
        const signature = b64(await crypto.subtle.sign({ name: "Ed25519" }, key, changeBytes(pending.proposal)));
        await api("POST", `/v1/registry/changes/${b.dataset.change}/approvals`, { signature });
        location.reload();
      } catch (e) {
        signError(e);
      }
    });
  }
}

// For console-seal.js (an ES module).
window.CustodyConsole = { canonical, b64, signingKey, api, problemText };

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("login")) loginPage();
  if (document.getElementById("key-picker")) keyPicker();
  const form = document.getElementById("request-form");
  if (form) requestPage(form);
  if (document.getElementById("queue")) queuePage();
  if (document.getElementById("add-person")) registryPage();
});
