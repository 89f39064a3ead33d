// The console's fetch (issue 17), as the CLI fetches (docs/KEYS.md §4.2): a
// fetch key drawn here; the access statement signed here and recorded by the
// leader; every holder asked for its share, sealed to the fetch key; the data
// key rebuilt from k shares whose commitment holds; the sealed chunks streamed
// from this node and opened here; the clip kept only if its SHA-256 is the
// deposited one. No node sees the data key or a plaintext byte.
//
// A holder is another origin. A browser sends its client certificate across
// origins only with credentials and never on a CORS preflight (which would
// fail the mutual-TLS handshake), so a holder is asked with a "simple"
// request: POST, text/plain, no custom header, the session token in the body
// (`POST /console/items/{id}/share`, api/console/fetch.rs).
import { hpkeOpen, combine } from "./console-seal.js";

const C = window.CustodyConsole;
const te = new TextEncoder();
const { concat: cat, hex } = CustodyVerify;
const fromHex = (s) => Uint8Array.from(s.match(/../g) || [], (h) => parseInt(h, 16));
const be64 = (n) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
};
const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));

// Every k-subset of `all` that contains `last`.
function subsetsWith(all, last, k) {
  const rest = all.filter((s) => s !== last);
  const out = [];
  const pick = (from, chosen) => {
    if (chosen.length === k - 1) return out.push([...chosen, last]);
    for (let i = from; i < rest.length; i++) pick(i + 1, [...chosen, rest[i]]);
  };
  pick(0, []);
  return out;
}

// Asks every holder; resolves with the data key once k shares rebuild one whose commitment
// is the deposited one (a holder answering garbage is outvoted), or fails when none can.
async function dataKey(view, item, fetchKey, pair, token) {
  const itemBytes = fromHex(item);
  const info = te.encode("custody/share-release/v1");
  const opened = [];
  const failures = [];
  const origin = (h) => (h.addr ? h.addr.replace(/\/+$/, "") : null);
  return new Promise((resolve, reject) => {
    let pending = view.holders.length;
    let done = false;
    const settle = () => {
      if (--pending === 0 && !done) reject(new Error(`fewer than ${view.threshold} holders released a share that opens the item: ${failures.join("; ")}`));
    };
    for (const h of view.holders) {
      (async () => {
        if (!origin(h)) throw new Error("not a member now");
        // A simple request: the body is text/plain, the client certificate goes with the credentials.
        const r = await fetch(`${origin(h)}/console/items/${item}/share`, {
          method: "POST",
          credentials: "include",
          body: JSON.stringify({ token, access_leaf: view.access_leaf, fetch_key: fetchKey }),
        });
        if (!r.ok) throw new Error(await C.problemText(r));
        const rel = await r.json();
        if (rel.node !== h.node || rel.x !== h.x) throw new Error(`answered for node ${rel.node}, x ${rel.x}`);
        const aad = cat(te.encode(view.cluster_id), Uint8Array.of(0), itemBytes, be64(h.node), Uint8Array.of(h.x), be64(view.access_leaf));
        const share = await hpkeOpen(pair.privateKey, pair.pub, info, aad, fromHex(rel.envelope));
        if (share.length !== 33 || share[0] === 0) throw new Error("the share is not 33 bytes with x in 1..255");
        return share;
      })().then(
        async (share) => {
          if (done) return;
          opened.push(share);
          if (opened.length >= view.threshold) {
            for (const set of subsetsWith(opened, share, view.threshold)) {
              if (new Set(set.map((s) => s[0])).size !== set.length) continue;
              const dk = combine(set);
              const commitment = hex(await sha256(cat(te.encode("custody/key-commitment/v1\0"), itemBytes, dk)));
              if (commitment === view.key_commitment && !done) {
                done = true;
                opened.forEach((s) => s.fill(0));
                return resolve(dk);
              }
              dk.fill(0);
            }
          }
          settle();
        },
        (e) => {
          failures.push(`node ${h.node}: ${e.message || e}`);
          settle();
        },
      );
    }
  });
}

// Records the access, rebuilds the key, streams and opens the chunks. `progress(phase, done, total)`.
export async function fetchClip(item, request, key, progress) {
  const token = sessionStorage.getItem("custody-token");
  if (!token) throw new Error("no session token in this tab: log in again");
  const who = await (await fetch("/console/whoami")).json();
  // The fetch key: X25519, drawn here, its private half never extractable.
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  pair.pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const fetchKey = hex(pair.pub);
  const statement = { item, request, fetcher: who.user, fetch_key: fetchKey };
  const signature = C.b64(await crypto.subtle.sign({ name: "Ed25519" }, key, cat(te.encode("custody/access/v1\n"), te.encode(C.canonical(statement)))));
  const view = await C.api("POST", `/v1/items/${item}/access`, { request, fetch_key: fetchKey, signature });
  progress("opening", 0, view.size);
  const dk = await dataKey(view, item, fetchKey, pair, token);
  const aes = await crypto.subtle.importKey("raw", dk, "AES-GCM", false, ["decrypt"]);
  dk.fill(0);

  const r = await fetch(`/v1/items/${item}/sealed?access=${view.access_leaf}`, { headers: { authorization: `Bearer ${token}` } });
  if (!r.ok) throw new Error(await C.problemText(r));
  const reader = r.body.getReader();
  const cs = view.chunk_size, count = view.chunks, size = view.size;
  const itemBytes = fromHex(item), prefix = fromHex(view.nonce_prefix);
  const clipHash = new CustodyVerify.Sha256();
  const parts = [];
  let queue = [], queued = 0, index = 0, received = 0;
  const sealedLen = (i) => (i < count - 1 ? cs : size - (count - 1) * cs) + 16;
  const take = (n) => {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const head = queue[0];
      const m = Math.min(head.length, n - at);
      out.set(head.subarray(0, m), at);
      at += m;
      if (m === head.length) queue.shift();
      else queue[0] = head.subarray(m);
    }
    queued -= n;
    return out;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (value) {
      queue.push(value);
      queued += value.length;
      received += value.length;
    }
    while (index < count && queued >= sealedLen(index)) {
      const ct = take(sealedLen(index));
      const ad = cat(te.encode("custody/chunk/v1\0"), itemBytes, be64(index), be64(count));
      let plain;
      try {
        plain = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: cat(prefix, be64(index)), additionalData: ad }, aes, ct));
      } catch (_) {
        throw new Error(`chunk ${index} does not open: the clip is discarded`);
      }
      clipHash.update(plain);
      parts.push(new Blob([plain]));
      index++;
      progress("downloading", Math.min(index * cs, size), size);
    }
    if (done) break;
  }
  if (index !== count || queued !== 0) throw new Error(`the node sent ${received} sealed bytes, not the item's ${count} chunks: the clip is discarded`);
  const digest = hex(clipHash.finish());
  if (digest !== view.sha256) throw new Error(`the opened clip's SHA-256 ${digest} is not the deposited ${view.sha256}: the clip is discarded`);
  return { blob: new Blob(parts, { type: "application/octet-stream" }), sha256: digest, size, access_leaf: view.access_leaf };
}

function fetchPage(table) {
  const bar = document.getElementById("fetch-progress");
  const label = document.getElementById("fetch-phase");
  const error = document.getElementById("sign-error");
  for (const b of document.querySelectorAll("button.fetch")) {
    b.addEventListener("click", async () => {
      error.hidden = true;
      document.getElementById("fetched").hidden = true;
      document.querySelectorAll("button.fetch").forEach((x) => (x.disabled = true));
      try {
        const key = await C.signingKey();
        const started = performance.now();
        bar.hidden = false;
        const got = await fetchClip(table.dataset.item, b.dataset.request, key, (phase, done, total) => {
          bar.max = total || 1;
          bar.value = done;
          label.textContent = `${table.dataset[phase]} ${(done / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`;
        });
        const seconds = (performance.now() - started) / 1000;
        const save = document.getElementById("save");
        save.href = URL.createObjectURL(got.blob);
        save.download = `custody-${table.dataset.item}.bin`;
        document.getElementById("fetched-size").textContent = `${got.size} B`;
        document.getElementById("fetched-sha256").textContent = got.sha256;
        document.getElementById("fetched-rate").textContent = `${(got.size / 1e6 / seconds).toFixed(1)} MB/s`;
        const out = document.getElementById("fetched");
        Object.assign(out.dataset, { sha256: got.sha256, seconds: String(seconds), access: String(got.access_leaf) });
        out.hidden = false;
      } catch (e) {
        error.textContent = e.message || String(e);
        error.hidden = false;
      } finally {
        document.querySelectorAll("button.fetch").forEach((x) => (x.disabled = false));
      }
    });
  }
  table.dataset.ready = "true";
}

const table = document.getElementById("grants");
if (table) fetchPage(table);
