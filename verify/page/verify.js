// The court's verifier in the browser: every check of `custody verify`
// (verify/src/bundle.rs, docs/AUDIT_FORMATS.md "What `custody verify`
// checks"), in the same order and under the same names, over WebCrypto's
// SHA-256 and Ed25519. No network: the page reads only the files a judge
// gives it. `verify/tests/vectors/bundles/` holds the cases on which this
// file and the Rust verifier must agree, check by check.
"use strict";

const CustodyVerify = (() => {
  const enc = new TextEncoder();
  const utf8 = (s) => enc.encode(s);
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const bytesEq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // ---- base64: RFC 4648 with padding, canonical (no stray bits), as Rust's STANDARD engine.
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function b64encode(b) {
    let s = "";
    for (let i = 0; i < b.length; i += 3) {
      const n = (b[i] << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
      s += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      s += i + 1 < b.length ? B64[(n >> 6) & 63] : "=";
      s += i + 2 < b.length ? B64[n & 63] : "=";
    }
    return s;
  }
  function b64decode(s) {
    if (typeof s !== "string" || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) return null;
    const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
    const out = new Uint8Array((s.length / 4) * 3 - pad);
    let o = 0;
    for (let i = 0; i < s.length; i += 4) {
      const n = [0, 1, 2, 3].reduce((acc, k) => (acc << 6) | (s[i + k] === "=" ? 0 : B64.indexOf(s[i + k])), 0);
      for (const shift of [16, 8, 0]) if (o < out.length) out[o++] = (n >> shift) & 255;
    }
    return b64encode(out) === s ? out : null; // refuses non-zero trailing bits
  }
  const b64key32 = (s) => {
    const b = b64decode(s);
    return b && b.length === 32 ? b : null;
  };

  // ---- SHA-256 (WebCrypto) and Ed25519 (WebCrypto).
  const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));
  const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));
  const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
  async function ed25519Verify(pub, msg, sig) {
    if (pub.length !== 32) return false;
    try {
      const k = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
      return await crypto.subtle.verify({ name: "Ed25519" }, k, sig, msg);
    } catch (_) {
      return false;
    }
  }

  // ---- Streamed SHA-256 of a clip (WebCrypto has no incremental digest).
  // FIPS 180-4; checked against WebCrypto's digest in tests/it/browser.rs.
  const K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  class Sha256 {
    constructor() {
      this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
      this.w = new Int32Array(64);
      this.buf = new Uint8Array(64);
      this.fill = 0;
      this.total = 0;
    }
    // Every whole 64-byte block of b[at..end), the state in locals (V8 keeps
    // them in registers; this runs at some hundreds of MB/s).
    blocks(b, at, end) {
      const w = this.w, H = this.h;
      let h0 = H[0] | 0, h1 = H[1] | 0, h2 = H[2] | 0, h3 = H[3] | 0, h4 = H[4] | 0, h5 = H[5] | 0, h6 = H[6] | 0, h7 = H[7] | 0;
      for (; at + 64 <= end; at += 64) {
        for (let i = 0; i < 16; i++) {
          const j = at + 4 * i;
          w[i] = (b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3];
        }
        for (let i = 16; i < 64; i++) {
          const x = w[i - 15], y = w[i - 2];
          const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
          const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
          w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
        }
        let a = h0, bb = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
        for (let i = 0; i < 64; i++) {
          const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
          const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
          const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
          const t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
          h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
        }
        h0 = (h0 + a) | 0; h1 = (h1 + bb) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
        h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
      }
      H[0] = h0; H[1] = h1; H[2] = h2; H[3] = h3; H[4] = h4; H[5] = h5; H[6] = h6; H[7] = h7;
    }
    update(data) {
      let i = 0;
      this.total += data.length;
      if (this.fill > 0) {
        const n = Math.min(64 - this.fill, data.length);
        this.buf.set(data.subarray(0, n), this.fill);
        this.fill += n;
        i = n;
        if (this.fill < 64) return;
        this.blocks(this.buf, 0, 64);
        this.fill = 0;
      }
      const whole = i + Math.floor((data.length - i) / 64) * 64;
      this.blocks(data, i, whole);
      i = whole;
      this.buf.set(data.subarray(i), 0);
      this.fill = data.length - i;
    }
    finish() {
      const bits = BigInt(this.total) * 8n;
      const pad = new Uint8Array(((this.fill < 56 ? 56 : 120) - this.fill) + 8);
      pad[0] = 0x80;
      for (let k = 0; k < 8; k++) pad[pad.length - 1 - k] = Number((bits >> BigInt(8 * k)) & 255n);
      this.total -= pad.length; // padding is not message
      this.update(pad);
      const out = new Uint8Array(32);
      this.h.forEach((v, k) => { out[4 * k] = v >>> 24; out[4 * k + 1] = v >>> 16; out[4 * k + 2] = v >>> 8; out[4 * k + 3] = v; });
      return out;
    }
  }
  // Hex SHA-256 of a File or Blob, read 8 MiB at a time; `progress(done, total)`.
  async function fileSha256(file, progress) {
    const h = new Sha256();
    const step = 8 << 20;
    for (let at = 0; at < file.size; at += step) {
      h.update(new Uint8Array(await file.slice(at, at + step).arrayBuffer()));
      if (progress) progress(Math.min(at + step, file.size), file.size);
    }
    return hex(h.finish());
  }

  // ---- Strict JSON (verify/src/strict.rs): a name twice in an object is refused.
  // Values: null, true/false, strings, arrays, Map (objects, in document
  // order) and Num (numbers with serde_json's integer/float distinction).
  class Num {
    constructor(text) {
      this.text = text;
      if (/^-?(0|[1-9][0-9]*)$/.test(text)) {
        const big = BigInt(text);
        if (big >= 0n && big < 1n << 64n) this.kind = "u";
        else if (big < 0n && big >= -(1n << 63n)) this.kind = "i";
        else this.kind = "f";
        this.big = big;
      } else this.kind = "f";
      this.f = Number(text);
      if (this.kind === "f" && !Number.isFinite(this.f)) throw new Error("a number that is not finite");
    }
  }
  class JsonError extends Error {}
  function parseJson(text) {
    let i = 0;
    const fail = (what) => {
      throw new JsonError(`${what} at character ${i}`);
    };
    const ws = () => {
      while (i < text.length && " \t\n\r".includes(text[i])) i++;
    };
    function str() {
      i++; // opening quote
      let out = "";
      for (;;) {
        if (i >= text.length) fail("EOF while parsing a string");
        const c = text.charCodeAt(i);
        if (c === 0x22) {
          i++;
          return out;
        }
        if (c < 0x20) fail("control character in a string");
        if (c === 0x5c) {
          const e = text[i + 1];
          i += 2;
          const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
          if (simple !== undefined) out += simple;
          else if (e === "u") {
            const u = () => {
              const h = text.slice(i, i + 4);
              if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("invalid escape");
              i += 4;
              return parseInt(h, 16);
            };
            const c1 = u();
            if (c1 >= 0xdc00 && c1 < 0xe000) fail("lone surrogate");
            if (c1 >= 0xd800 && c1 < 0xdc00) {
              if (text.slice(i, i + 2) !== "\\u") fail("lone surrogate");
              i += 2;
              const c2 = u();
              if (c2 < 0xdc00 || c2 >= 0xe000) fail("lone surrogate");
              out += String.fromCharCode(c1, c2);
            } else out += String.fromCharCode(c1);
          } else fail("invalid escape");
        } else {
          if (c >= 0xd800 && c < 0xe000) {
            const c2 = text.charCodeAt(i + 1);
            if (c >= 0xdc00 || !(c2 >= 0xdc00 && c2 < 0xe000)) fail("lone surrogate");
            out += text[i] + text[i + 1];
            i += 2;
          } else {
            out += text[i];
            i++;
          }
        }
      }
    }
    function value(depth) {
      if (depth > 128) fail("recursion limit exceeded");
      ws();
      const c = text[i];
      if (c === "{") {
        i++;
        const m = new Map();
        ws();
        if (text[i] === "}") {
          i++;
          return m;
        }
        for (;;) {
          ws();
          if (text[i] !== '"') fail("expected a member name");
          const k = str();
          if (m.has(k)) fail(`duplicate key \`${k}\``);
          ws();
          if (text[i] !== ":") fail("expected `:`");
          i++;
          m.set(k, value(depth + 1));
          ws();
          if (text[i] === ",") i++;
          else if (text[i] === "}") {
            i++;
            return m;
          } else fail("expected `,` or `}`");
        }
      }
      if (c === "[") {
        i++;
        const a = [];
        ws();
        if (text[i] === "]") {
          i++;
          return a;
        }
        for (;;) {
          a.push(value(depth + 1));
          ws();
          if (text[i] === ",") i++;
          else if (text[i] === "]") {
            i++;
            return a;
          } else fail("expected `,` or `]`");
        }
      }
      if (c === '"') return str();
      for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
        if (text.startsWith(word, i)) {
          i += word.length;
          return v;
        }
      }
      const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
      if (!m || m[0] === "" || m[0] === "-") fail("expected a value");
      i += m[0].length;
      return new Num(m[0]);
    }
    const v = value(0);
    ws();
    if (i !== text.length) fail("trailing characters");
    return v;
  }
  const decoder = new TextDecoder("utf-8", { fatal: true });
  function parseJsonBytes(bytes) {
    let text;
    try {
      text = decoder.decode(bytes);
    } catch (_) {
      throw new JsonError("invalid UTF-8");
    }
    if (text.charCodeAt(0) === 0xfeff && bytes[0] === 0xef) throw new JsonError("expected a value at character 0"); // a BOM is not JSON
    return parseJson(text);
  }

  // ---- RFC 8785 (verify/src/jcs.rs): integers within ±(2^53 − 1) only.
  function jcs(v) {
    if (v === null) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (typeof v === "string") return JSON.stringify(v);
    if (v instanceof Num) {
      if (v.kind === "f") {
        if (!Number.isInteger(v.f)) throw new Error(`number ${v.text} is not an integer`);
        if (Math.abs(v.f) > Number.MAX_SAFE_INTEGER) throw new Error(`integer ${v.text} is out of range`);
        return String(v.f === 0 ? 0 : v.f);
      }
      if (v.big > BigInt(Number.MAX_SAFE_INTEGER) || v.big < -BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`integer ${v.text} is out of range`);
      return v.big.toString();
    }
    if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
    const keys = [...v.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)); // UTF-16 code unit order
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + jcs(v.get(k))).join(",") + "}";
  }
  const canonicalBytes = (v) => utf8(jcs(v));
  // serde_json's Value equality: integers equal integers, floats floats.
  function jsonEq(a, b) {
    if (a instanceof Num && b instanceof Num) {
      if (a.kind !== b.kind) return false;
      return a.kind === "f" ? a.f === b.f : a.big === b.big;
    }
    if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, k) => jsonEq(x, b[k]));
    if (a instanceof Map && b instanceof Map) return a.size === b.size && [...a].every(([k, x]) => b.has(k) && jsonEq(x, b.get(k)));
    return a === b;
  }
  // JSON text for details (keys in document order, as serde_json prints).
  function show(v) {
    if (v instanceof Num) return v.kind === "f" ? String(v.f) : v.big.toString();
    if (Array.isArray(v)) return "[" + v.map(show).join(",") + "]";
    if (v instanceof Map) return "{" + [...v].map(([k, x]) => JSON.stringify(k) + ":" + show(x)).join(",") + "}";
    return JSON.stringify(v);
  }

  // ---- Typed reading: the shapes of verify/src/records.rs and bundle.rs.
  const U64 = (v) => v instanceof Num && v.kind === "u";
  const uint = (max) => (v) => U64(v) && v.big <= max;
  const U8 = uint(255n), U32 = uint(0xffffffffn);
  const S = (v) => typeof v === "string";
  const B = (v) => typeof v === "boolean";
  const ANY = () => true;
  const SOME = (v) => v !== null; // an Option<Value> that is present
  const arr = (t) => (v) => Array.isArray(v) && v.every(t);
  const MEMBER = (v) => U64(v) || S(v);
  const obj = (fields) => (v) => v instanceof Map && fits(v, fields, true) === null;
  // `fields`: name → type, a name ending in `?` optional (absent, never null).
  // Returns null or why `m` does not fit; `exact` refuses unknown names.
  function fits(m, fields, exact) {
    const known = new Set();
    for (const [spec, t] of Object.entries(fields)) {
      const optional = spec.endsWith("?");
      const name = optional ? spec.slice(0, -1) : spec;
      known.add(name);
      if (!m.has(name)) {
        if (!optional) return `missing field \`${name}\``;
        continue;
      }
      if (!t(m.get(name))) return `invalid type or value of \`${name}\``;
    }
    if (exact) for (const k of m.keys()) if (!known.has(k)) return `unknown field \`${k}\``;
    return null;
  }
  const HOLDER = obj({ node: U64, x: U8, share_key: S });
  const APPLIED = { by: S, "change?": S, "proposal?": SOME, "signatures?": arr(obj({ by: S, signature: S })) };
  const PERSON = {
    add: { name: S, badge: S, unit: S, roles: arr(S), public_key: S },
    revoke: { name: S },
    "set-roles": { name: S, roles: arr(S) },
    "change-key": { name: S, public_key: S },
  };
  const SYSTEM = { add: { id: S, filing: S, operator: S, location: S } };
  const NODE = { bind: { node: U64, checkpoint_key: S, session_key: S, share_key: S, certificate_sha256: S, "binding?": SOME } };
  const KINDS = {
    cluster: { cluster_id: S, origin: S, standard_retention_secs: U64, important_retention_secs: U64, dev: B },
    membership: { voters: arr(MEMBER), learners: arr(MEMBER) },
    deposit: {
      item: S, sha256: S, size: U64, chunk_size: U64, chunks: U64, chunks_sha256: S, nonce_prefix: S, holders: arr(HOLDER), threshold: U8,
      key_commitment: S, case: S, system: S, retention: S, depositor: S, "note?": S, retain_until: S, signature: S,
    },
    request: {
      item: S, request: S, action: S, officers: arr(S), purpose: S, approval_doc: S, emergency: B, expires_at: S, by: S, signature: S,
      max_fetches: U32,
    },
    approval: { item: S, request: S, signer: S, as: (v) => v === "participant" || v === "approver", signature: S },
    grant: {
      item: S, request: S, officers: arr(S), approver: S, action: S, expires_at: S, purpose: S, approval_doc: S, emergency: B, max_fetches: U32,
    },
    access: {
      item: S, request: S, officers: arr(S), purpose: S, approval_doc: S, action: S, by: S, emergency: B, fetch: U32, max_fetches: U32,
      fetch_key: S, signature: S,
    },
    retention: { item: S, from: S, to: S, retain_until: S, by: S },
    scrub: { node: U64, chunk: S, item: (v) => v === null || S(v), found: (v) => v === "corrupt" || v === "missing", repaired: B },
    reshare: { item: S, dealers: arr(U8), holders: arr(HOLDER), threshold: U8 },
    purge: { item: S, request: S, by: S, officers: arr(S), chunks: U64, shares_destroyed: U64 },
  };
  // The fields a record of this kind has (beyond v, time, kind), or why none fit.
  function recordFields(m) {
    const kind = m.get("kind");
    const tagged = (tag, table, base) => {
      const t = m.get(tag);
      if (!S(t) || !(t in table)) return `unknown or missing \`${tag}\``;
      return { [tag]: S, ...base, ...table[t] };
    };
    if (kind === "registry") {
      const subject = m.get("subject");
      if (subject === "proposal") return { subject: S, change: S, by: S, signature: S, proposal: ANY };
      const table = { person: PERSON, system: SYSTEM, node: NODE }[subject];
      if (!table) return "unknown or missing `subject`";
      const f = tagged("action", table, APPLIED);
      return typeof f === "string" ? f : { subject: S, ...f };
    }
    if (kind === "hold") return tagged("action", { hold: { item: S, reason: S, by: S }, release: { item: S, by: S } }, {});
    if (S(kind) && kind in KINDS) return KINDS[kind];
    return "unknown or missing `kind`";
  }
  // A leaf record: strict JSON, exactly a record's shape, in canonical form.
  class Rec {
    constructor(m) {
      this.m = m;
      this.kind = m.get("kind");
      this.time = m.get("time");
    }
    get(k) {
      return this.m.get(k);
    }
    item() {
      if (["cluster", "membership", "registry"].includes(this.kind)) return null;
      return this.m.get("item"); // null for a scrub of an unlisted chunk
    }
    request() {
      return ["request", "approval", "grant", "access", "purge"].includes(this.kind) ? this.m.get("request") : null;
    }
  }
  function readRecord(bytes) {
    const m = parseJsonBytes(bytes);
    if (!(m instanceof Map)) throw new Error("not a leaf record: not a JSON object");
    const f = recordFields(m);
    if (typeof f === "string") throw new Error(`not a leaf record: ${f}`);
    const why = fits(m, { v: U64, time: S, kind: S, ...f }, false);
    if (why) throw new Error(`not a leaf record: ${why}`);
    let canon;
    try {
      canon = canonicalBytes(m);
    } catch (e) {
      throw new Error(`no canonical form: ${e.message}`);
    }
    if (fits(m, { v: U64, time: S, kind: S, ...f }, true) !== null || !bytesEq(canon, bytes)) {
      throw new Error("not the canonical encoding of the record it decodes to (a field unknown to format v2, or bytes not in RFC 8785 form)");
    }
    return new Rec(m);
  }

  // ---- The bundle (bundle.rs `parse`): every field typed, none unknown.
  class UsageError extends Error {}
  const LEAF = { index: U64, leaf: S, "inclusion?": arr(S) };
  function parseBundle(bytes) {
    let v;
    try {
      v = parseJsonBytes(bytes);
    } catch (e) {
      throw new UsageError(`not a proof bundle: ${e.message}`);
    }
    const shape = {
      format: S, version: U32, checkpoint: S, item: ANY, deposit: obj(LEAF), inclusion: arr(S), trail: arr(obj(LEAF)), approvals: arr(ANY),
      registry: arr(obj(LEAF)), head: S, "timestamp?": ANY,
    };
    const why = v instanceof Map ? fits(v, shape, true) : "not a JSON object";
    if (why) throw new UsageError(`not a proof bundle: ${why}`);
    if (v.has("timestamp") && !(v.get("timestamp") === null || S(v.get("timestamp")))) throw new UsageError("not a proof bundle: invalid `timestamp`");
    if (v.get("format") !== "custody-proof-bundle") throw new UsageError(`unsupported bundle: format \`${v.get("format")}\``);
    if (v.get("version").big !== 3n) throw new UsageError(`unsupported bundle: version ${v.get("version").big}`);
    const leaf = (m) => ({ index: m.get("index").big, leaf: m.get("leaf"), inclusion: m.get("inclusion") ?? [] });
    return {
      checkpoint: v.get("checkpoint"), item: v.get("item"), deposit: leaf(v.get("deposit")), inclusion: v.get("inclusion"),
      trail: v.get("trail").map(leaf), approvals: v.get("approvals"), registry: v.get("registry").map(leaf), head: v.get("head"),
      timestamp: v.get("timestamp") ?? null,
    };
  }

  // ---- Signed notes (note.rs) and checkpoints.
  const WHITE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
  const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
  const keyNameOk = (n) => n.length > 0 && !WHITE.test(n) && !CONTROL.test(n) && !n.includes("+");
  const onlyAllowed = (s) => !/[\u0000-\u0009\u000b-\u001f]/.test(s);
  const keyId = async (name, alg, pub) => (await sha256(concat(utf8(name + "\n"), Uint8Array.of(alg), pub))).slice(0, 4);
  class VerifierKey {
    constructor(name, id, pub) {
      this.name = name;
      this.id = id;
      this.pub = pub;
    }
    toString() {
      return `${this.name}+${hex(this.id)}+${b64encode(concat(Uint8Array.of(1), this.pub))}`;
    }
    same(o) {
      return this.name === o.name && bytesEq(this.id, o.id) && bytesEq(this.pub, o.pub);
    }
  }
  // `alg` 0x01 for a node's key (note.rs), 0x04 for a witness's (cosignature.rs).
  async function parseKey(text, alg) {
    const parts = text.split("+");
    if (parts.length < 3) throw new Error("malformed verifier key: expected name+keyid+key");
    const [name, idHex] = parts;
    const key64 = parts.slice(2).join("+");
    if (!keyNameOk(name)) throw new Error(`invalid key name ${JSON.stringify(name)}`);
    if (!/^[0-9a-fA-F]{8}$/.test(idHex)) throw new Error("malformed verifier key: key id is not 8 hex digits");
    const key = b64decode(key64);
    if (!key) throw new Error("malformed verifier key: key is not base64");
    if (key.length === 0) throw new Error("malformed verifier key: Ed25519 key is not 32 bytes");
    if (key[0] !== alg) throw new Error(`unsupported signature type 0x${key[0].toString(16).padStart(2, "0")}`);
    if (key.length !== 33) throw new Error("malformed verifier key: Ed25519 key is not 32 bytes");
    const pub = key.slice(1);
    const id = await keyId(name, alg, pub);
    if (hex(id) !== idHex.toLowerCase()) throw new Error(`key id does not match the key for ${JSON.stringify(name)}`);
    return new VerifierKey(name, id, pub);
  }
  // A key file (bundle.rs `parse_keys`): one key a line, `from=N`, `until=N`.
  async function parseKeys(text) {
    const keys = [];
    const lines = text.split(/\r?\n/);
    if (lines.length && lines[lines.length - 1] === "") lines.pop();
    for (const [i, raw] of lines.entries()) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      const bad = (d) => new UsageError(`bad verifier key on line ${i + 1}: ${d}`);
      const words = line.split(/\s+/);
      let key;
      try {
        key = await parseKey(words[0], 1);
      } catch (e) {
        throw bad(e.message);
      }
      const k = { key, from: 0n, until: null };
      for (const w of words.slice(1)) {
        const eq = w.indexOf("=");
        const [n, v] = eq < 0 ? [w, null] : [w.slice(0, eq), w.slice(eq + 1)];
        if (v === null || (n !== "from" && n !== "until")) throw bad(`\`${w}\` is neither from=N nor until=N`);
        if (!/^\+?[0-9]+$/.test(v) || BigInt(v) >= 1n << 64n) throw bad(`\`${w}\`: a size is a whole number`);
        if (n === "from") k.from = BigInt(v);
        else k.until = BigInt(v);
      }
      if (k.until !== null && k.until < k.from) throw bad("until is below from");
      const o = keys.find((o) => !o.key.same(key) && (bytesEq(o.key.pub, key.pub) || (o.key.name === key.name && bytesEq(o.key.id, key.id))));
      if (o) throw bad(`${o.key} and ${key} are one key under two names, or two keys under one name and key id`);
      keys.push(k);
    }
    if (!keys.length) throw new UsageError("the key file holds no verifier keys");
    return keys;
  }
  function keysAt(keys, size) {
    const out = [];
    for (const k of keys) if (k.from <= size && (k.until === null || size <= k.until) && !out.some((o) => o.same(k.key))) out.push(k.key);
    return out;
  }
  function parseNote(note) {
    if (!onlyAllowed(note)) throw new Error("malformed note: contains a control character");
    const split = note.lastIndexOf("\n\n");
    if (split < 0) throw new Error("malformed note: no blank line before the signatures");
    const text = note.slice(0, split + 1), sigs = note.slice(split + 2);
    if (sigs === "" || !sigs.endsWith("\n")) throw new Error("malformed note: signatures missing or not ending in a newline");
    const lines = sigs.slice(0, -1).split("\n");
    if (lines.length > 100) throw new Error("malformed note: too many signatures");
    const signatures = lines.map((line) => {
      if (!line.startsWith("\u2014 ")) throw new Error("malformed note: signature line does not start with an em dash and a space");
      const rest = line.slice(2);
      const sp = rest.indexOf(" ");
      if (sp < 0) throw new Error("malformed note: signature line has no signature");
      const name = rest.slice(0, sp);
      if (!keyNameOk(name)) throw new Error("malformed note: invalid key name in signature line");
      const bytes = b64decode(rest.slice(sp + 1));
      if (!bytes) throw new Error("malformed note: signature is not canonical base64");
      if (bytes.length <= 4) throw new Error("malformed note: signature too short");
      return { name, id: bytes.slice(0, 4), sig: bytes.slice(4) };
    });
    return { text, signatures };
  }
  function decimal(s, what) {
    if (!/^(0|[1-9][0-9]*)$/.test(s)) throw new Error(`${what} \`${s}\` is not a decimal number without leading zeros`);
    const n = BigInt(s);
    if (n >= 1n << 64n) throw new Error(`${what} \`${s}\` is too large`);
    return n;
  }
  function parseCheckpoint(text) {
    const bad = (d) => new Error(`malformed checkpoint: ${d}`);
    if (!onlyAllowed(text)) throw bad("control character");
    if (!text.endsWith("\n")) throw bad("does not end in a newline");
    const lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) throw bad("fewer than three lines");
    const [origin, size, root, ...extensions] = lines;
    if (origin === "") throw bad("empty origin");
    if (size === "" || !/^[0-9]+$/.test(size)) throw bad("tree size is not a decimal number");
    if (size.length > 1 && size.startsWith("0")) throw bad("tree size has a leading zero");
    if (BigInt(size) >= 1n << 64n) throw bad("tree size out of range");
    const r = b64decode(root);
    if (!r) throw bad("root hash is not canonical base64");
    if (r.length !== 32) throw bad("root hash is not 32 bytes");
    if (extensions.some((e) => e === "")) throw bad("empty extension line");
    return { origin, size: BigInt(size), root: r };
  }
  async function verifyNote(note, keys) {
    const parsed = parseNote(note);
    const verified = [];
    for (const s of parsed.signatures) {
      const key = keys.find((k) => k.name === s.name && bytesEq(k.id, s.id));
      if (!key) continue; // an unknown signer is ignored, as signed-note requires
      if (!(s.sig.length === 64 && (await ed25519Verify(key.pub, utf8(parsed.text), s.sig)))) {
        throw new Error(`invalid signature by ${s.name} (key id ${hex(s.id)})`);
      }
      if (!verified.some((v) => v.same(key))) verified.push(key);
    }
    if (!verified.length) throw new Error("no signature from a known key");
    return { text: parsed.text, signers: verified.map((k) => k.name) };
  }
  async function verifyNoteQuorum(note, keys) {
    if (!keys.length) throw new Error("no verifier keys given");
    keys.forEach((a, i) => {
      if (keys.slice(0, i).some((b) => (b.name === a.name && bytesEq(b.id, a.id)) || bytesEq(b.pub, a.pub))) {
        throw new Error(`verifier key ${a} is listed twice`);
      }
    });
    const v = await verifyNote(note, keys);
    const needed = Math.floor(keys.length / 2) + 1;
    if (v.signers.length < needed) throw new Error(`signed by ${v.signers.length} of ${keys.length} keys; ${needed} needed`);
    return v;
  }
  async function verifyCheckpoint(note, keys) {
    const size = parseCheckpoint(parseNote(note).text).size;
    const valid = keysAt(keys, size);
    if (!valid.length) throw new Error(`no trusted key may sign a checkpoint of size ${size}`);
    const v = await verifyNoteQuorum(note, valid);
    return { cp: parseCheckpoint(v.text), signers: v.signers, valid: valid.length };
  }

  // ---- The item-head statement (heads.rs).
  function parseItemHead(text) {
    if (!text.endsWith("\n")) throw new Error("the text does not end in a newline");
    const lines = text.slice(0, -1).split("\n");
    if (lines.length !== 7) throw new Error(`${lines.length} lines, not the 7 of an item-head statement`);
    const [context, origin, item, size, root, records, head] = lines;
    if (context !== "custody/item-head/v1") throw new Error(`not an item-head statement (first line \`${context}\`)`);
    if (origin === "") throw new Error("empty origin");
    if (!/^[0-9a-f]{32}$/.test(item)) throw new Error(`item \`${item}\` is not 32 lowercase hex digits`);
    const r = b64decode(root);
    if (!r || r.length !== 32) throw new Error("the root is not 32 bytes of base64");
    const h = { origin, item, size: decimal(size, "size"), root: r, records: decimal(records, "records"), head: decimal(head, "head") };
    if (h.records === 0n || h.head >= h.size) throw new Error(`${h.records} records ending at leaf ${h.head} cannot be in a tree of size ${h.size}`);
    return h;
  }
  async function verifyItemHead(note, keys) {
    const head = parseItemHead(parseNote(note).text);
    const valid = keysAt(keys, head.size);
    if (!valid.length) throw new Error(`no trusted key may sign for size ${head.size}`);
    let v;
    try {
      v = await verifyNoteQuorum(note, valid);
    } catch (e) {
      throw new Error(`${e.message} (keys valid at size ${head.size})`);
    }
    return { head, signers: v.signers, valid: valid.length };
  }

  // ---- Merkle inclusion (RFC 9162 §2.1.3.2), sizes as BigInt.
  async function verifyInclusion(leafH, index, size, proof, root) {
    if (index >= size) throw new Error(`leaf index ${index} is not below tree size ${size}`);
    let f = index, s = size - 1n, r = leafH;
    for (const p of proof) {
      if (s === 0n) throw new Error("inclusion proof does not verify");
      if ((f & 1n) === 1n || f === s) {
        r = await nodeHash(p, r);
        if ((f & 1n) === 0n) while ((f & 1n) === 0n && f !== 0n) { f >>= 1n; s >>= 1n; }
      } else r = await nodeHash(r, p);
      f >>= 1n;
      s >>= 1n;
    }
    if (!(s === 0n && bytesEq(r, root))) throw new Error("inclusion proof does not verify");
  }
  async function inclusion(leaf, index, proof, cp) {
    const hashes = proof.map((h, i) => {
      const b = b64decode(h);
      if (!b) throw new Error(`proof hash ${i}: not base64`);
      if (b.length !== 32) throw new Error(`proof hash ${i} is not 32 bytes`);
      return b;
    });
    await verifyInclusion(await leafHash(leaf), index, cp.size, hashes, cp.root);
    return `leaf ${index} is in the tree of size ${cp.size}`;
  }
  function decodeLeaf(p) {
    const bytes = b64decode(p.leaf);
    if (!bytes) throw new Error(`leaf ${p.index}: not base64`);
    try {
      return { bytes, r: readRecord(bytes) };
    } catch (e) {
      throw new Error(`leaf ${p.index}: ${e.message}`);
    }
  }

  // ---- Times (trail.rs).
  function daysFromCivil(y, m, d) {
    y = m <= 2 ? y - 1 : y;
    const era = Math.floor(y / 400), yoe = y - era * 400;
    const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
    return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
  }
  function parseRfc3339Ms(s) {
    const m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?Z$/.exec(s);
    if (!m) return null;
    const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
    const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
    const md = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if (mo < 1 || mo > 12 || d < 1 || d > md[mo - 1] || h > 23 || mi > 59 || se > 59) return null;
    const millis = m[7] ? Number(m[7].slice(1).padEnd(3, "0").slice(0, 3)) : 0;
    const ms = (daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) * 1000 + millis;
    return ms < 0 ? null : ms;
  }
  function rfc3339Ms(ms) {
    if (ms > 253402300799999) return null;
    const t = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
    const frac = t.slice(20, 23).replace(/0+$/, "");
    return t.slice(0, 19) + (frac ? "." + frac : "") + "Z";
  }

  // ---- The trail's own consistency (trail.rs).
  const TRAIL_KINDS = ["request", "approval", "grant", "access", "hold", "retention", "scrub", "reshare", "purge"];
  const strEq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  function registered(people, name, before) {
    let key = null, at = null, roles = [];
    for (const [index, p] of people) {
      if (!(index < before && p.get("name") === name)) continue;
      const action = p.get("action");
      if (action === "add") {
        key = p.get("public_key");
        at = index;
        roles = p.get("roles");
      } else if (action === "change-key") {
        key = p.get("public_key");
        at = index;
      } else if (action === "set-roles") roles = p.get("roles");
      else if (action === "revoke") throw new Error(`${name} was revoked at leaf ${index}, before leaf ${before}`);
    }
    if (key === null) throw new Error(`no included registry record registers ${name} before leaf ${before}`);
    return { key, at, roles };
  }
  function signedRequest(signed) {
    const ctx = utf8("custody/access-request/v1\n");
    if (!bytesEq(signed.slice(0, ctx.length), ctx)) throw new Error("the signed bytes are not an access request");
    const body = signed.slice(ctx.length);
    let v;
    try {
      v = parseJsonBytes(body);
    } catch (e) {
      throw new Error(`the signed request is not strict JSON: ${e.message}`);
    }
    let canon = null;
    try {
      canon = canonicalBytes(v);
    } catch (_) {}
    if (!canon || !bytesEq(canon, body)) throw new Error("the signed request is not in canonical form (RFC 8785)");
    const shape = {
      item: S, action: S, purpose: S, approval_doc: S, participants: arr(S), "emergency?": B, expires_at_ms: U64, nonce: S, "max_fetches?": U32,
    };
    const why = v instanceof Map ? fits(v, shape, true) : "not an object";
    if (why) throw new Error(`the signed request is not a request: ${why}`);
    return {
      item: v.get("item"), action: v.get("action"), purpose: v.get("purpose"), approval_doc: v.get("approval_doc"),
      participants: v.get("participants"), emergency: v.get("emergency") ?? false, expires_at_ms: v.get("expires_at_ms").big,
      max_fetches: v.has("max_fetches") ? v.get("max_fetches").big : 1n,
    };
  }
  async function approvalSignature(a, item, about, people) {
    const why = a instanceof Map ? fits(a, { request: S, signer: S, public_key: S, signature: S, signed: S }, true) : "not an object";
    if (why) throw new Error(`not an approvals entry: ${why}`);
    const e = Object.fromEntries(a);
    const key = b64key32(e.public_key);
    if (!key) throw new Error("the public key is not 32 bytes of base64");
    const signature = b64decode(e.signature);
    if (!signature) throw new Error("the signature is not base64");
    const signed = b64decode(e.signed);
    if (!signed) throw new Error("the signed bytes are not base64");
    const req = signedRequest(signed);
    const id = hex((await sha256(signed)).slice(0, 16));
    if (id !== e.request) throw new Error(`the signed bytes are request ${id}, not ${e.request}`);
    if (req.item !== item) throw new Error("the signed request is for another item");
    if (!(await ed25519Verify(key, signed, signature))) throw new Error(`${e.signer}'s signature does not verify`);
    const named = about.find(([, r]) => {
      const [who, recorded] = r.kind === "approval" ? [r.get("signer"), r.get("signature")] : r.kind === "request" ? [r.get("by"), r.get("signature")] : [];
      return who !== undefined && r.request() === e.request && who === e.signer && recorded === e.signature;
    });
    if (!named) throw new Error(`no trail record of this item logs ${e.signer}'s signature on request ${e.request}`);
    const at = named[0];
    const reg = registered(people, e.signer, at);
    if (reg.key !== e.public_key) throw new Error(`the key given for ${e.signer} is not the one the registry gave them (leaf ${reg.at}) before leaf ${at}`);
    return {
      detail: `${e.signer} (${reg.roles.join(", ")}) signed request ${e.request} (the SHA-256 of the signed bytes) for this item with the key registered at leaf ${reg.at}; logged at leaf ${at}`,
      sig: { request: e.request, signer: e.signer, at, signed: req },
    };
  }
  function kindCheck(r) {
    if (TRAIL_KINDS.includes(r.kind)) return `kind \`${r.kind}\`, one an item's trail holds`;
    if (r.kind === "deposit") throw new Error("a deposit record in the trail: the item's deposit is the bundle's `deposit`, once");
    throw new Error(`a \`${r.kind}\` record is not about an item`);
  }
  const diffs = (pairs) => pairs.filter(([, same]) => !same).map(([f]) => f);
  const requestBefore = (at, request, about) => about.find(([i, r]) => r.kind === "request" && i < at && r.get("request") === request);
  const grantBefore = (at, request, about) => about.find(([i, r]) => r.kind === "grant" && i < at && r.get("request") === request);
  async function recordChecks(at, r, about, signed, people) {
    const logged = (request, signer) => signed.find((s) => s.request === request && s.signer === signer && s.at === at);
    const run = (name, f) => {
      try {
        return [name, true, f()];
      } catch (e) {
        return [name, false, e.message];
      }
    };
    const sigCheck = (who) => () => {
      if (!logged(r.get("request"), who)) throw new Error(`\`approvals\` holds no verified signature of ${who} on request ${r.get("request")}`);
      return `${who}'s signature on request ${r.get("request")} verified (approval signature ${who})`;
    };
    switch (r.kind) {
      case "request":
        return [run("signature", sigCheck(r.get("by"))), run("statement", () => requestStatement(r, signed))];
      case "approval": {
        const who = r.get("signer");
        return [
          run("signature", sigCheck(who)),
          run("as", () => {
            const s = logged(r.get("request"), who);
            if (!s) throw new Error("no verified signature to read the request from");
            const participant = s.signed.participants.includes(who);
            const as = r.get("as");
            if (participant && as === "participant") return `${who} is a participant of the signed request, as the record says`;
            if (!participant && as === "approver") return `${who} is not a participant of the signed request: an approver, as the record says`;
            if (participant) throw new Error(`${who} is a participant of the signed request, not an approver`);
            throw new Error(`${who} is not a participant of the signed request`);
          }),
        ];
      }
      case "grant":
        return [run("request", () => grantRequest(at, r, about)), run("signatures", () => grantSignatures(at, r, signed, people))];
      case "access": {
        const sig = await accessSignature(at, r, people).then((d) => ["signature", true, d], (e) => ["signature", false, e.message]);
        return [run("grant", () => accessGrant(at, r, about, people)), sig];
      }
      case "purge":
        return [run("grant", () => purgeGrant(at, r, about))];
      default:
        return [];
    }
  }
  function requestStatement(x, signed) {
    const s = signed.find((s) => s.request === x.get("request"));
    if (!s) throw new Error(`\`approvals\` holds no verified signature on request ${x.get("request")}`);
    const q = s.signed;
    const d = diffs([
      ["item", x.get("item") === q.item],
      ["action", x.get("action") === q.action],
      ["officers", strEq(x.get("officers"), q.participants)],
      ["purpose", x.get("purpose") === q.purpose],
      ["approval_doc", x.get("approval_doc") === q.approval_doc],
      ["emergency", x.get("emergency") === q.emergency],
      ["expires_at", x.get("expires_at") === (q.expires_at_ms > 253402300799999n ? "" : rfc3339Ms(Number(q.expires_at_ms)))],
      ["max_fetches", x.get("max_fetches").big === q.max_fetches],
      ["by (the first participant)", q.participants[0] === x.get("by")],
    ]);
    if (d.length) throw new Error(`the record's ${d.join(", ")} differ from the signed request's`);
    return "item, action, officers, purpose, approval_doc, emergency, expires_at, max_fetches and by equal the signed request's";
  }
  function grantRequest(at, g, about) {
    const found = requestBefore(at, g.get("request"), about);
    if (!found) throw new Error(`no request record of ${g.get("request")} before leaf ${at}`);
    const [i, x] = found;
    const d = diffs(["officers", "action", "expires_at", "purpose", "approval_doc", "emergency", "max_fetches"].map((f) => [f, jsonEq(g.get(f), x.get(f))]));
    if (d.length) throw new Error(`the grant's ${d.join(", ")} differ from the request record's (leaf ${i})`);
    return `grants request ${g.get("request")} of leaf ${i}: same officers, action, expires_at, purpose, approval_doc, emergency, max_fetches`;
  }
  function grantSignatures(at, g, signed, people) {
    const officers = g.get("officers"), request = g.get("request"), approver = g.get("approver");
    if (officers.length < 2) throw new Error(`${officers.length} participating officer(s); two at least`);
    const logged = (who) => {
      const ats = signed.filter((s) => s.request === request && s.signer === who && s.at < at).map((s) => s.at);
      return ats.length ? ats.reduce((a, b) => (a < b ? a : b)) : null;
    };
    const leaves = [];
    for (const o of officers) {
      const l = logged(o);
      if (l === null) throw new Error(`no verified, logged signature of officer ${o} on request ${request} before leaf ${at}`);
      if (!registered(people, o, at).roles.includes("officer")) throw new Error(`${o} was not an officer at leaf ${at}`);
      leaves.push(`${o} (leaf ${l})`);
    }
    if (officers.includes(approver)) throw new Error(`the approver ${approver} is a participant`);
    const l = logged(approver);
    if (l === null) throw new Error(`no verified, logged signature of the approver ${approver} on request ${request} before leaf ${at}`);
    const role = g.get("emergency") ? "emergency-approver" : "approver";
    if (!registered(people, approver, at).roles.includes(role)) throw new Error(`${approver} was not an ${role} at leaf ${at}`);
    return `officers ${leaves.join(", ")} and ${role} ${approver} (leaf ${l}) signed request ${request} before the grant`;
  }
  function accessGrant(at, x, about, people) {
    const found = grantBefore(at, x.get("request"), about);
    if (!found) throw new Error(`no grant of request ${x.get("request")} before leaf ${at}`);
    const [i, g] = found;
    const d = diffs(["action", "officers", "purpose", "approval_doc", "emergency", "max_fetches"].map((f) => [f, jsonEq(x.get(f), g.get(f))]));
    if (d.length) throw new Error(`the access's ${d.join(", ")} differ from the grant's (leaf ${i})`);
    if (g.get("action") === "purge") throw new Error("a purge grant allows no access");
    if (!g.get("officers").includes(x.get("by"))) throw new Error(`the fetcher ${x.get("by")} is not a participant of the grant`);
    const fetch = x.get("fetch").big, max = g.get("max_fetches").big;
    if (fetch === 0n || fetch > max) throw new Error(`fetch ${fetch} of a grant of ${max}`);
    if (about.some(([j, o]) => j < at && o.kind === "access" && o.get("request") === x.get("request") && o.get("fetch").big === fetch)) {
      throw new Error(`fetch ${fetch} of request ${x.get("request")} is logged twice`);
    }
    const t = parseRfc3339Ms(x.time), e = parseRfc3339Ms(g.get("expires_at"));
    if (t === null || e === null) throw new Error("a time that is not RFC 3339");
    if (!(t < e)) throw new Error(`at ${x.time} the grant had expired (${g.get("expires_at")})`);
    for (const signer of [...g.get("officers"), g.get("approver")]) {
      try {
        registered(people, signer, at);
      } catch (err) {
        throw new Error(`the grant had ended: ${err.message}`);
      }
    }
    return `under the grant of leaf ${i} (same request ${x.get("request")} and action ${x.get("action")}); ${x.get("by")} is a participant; fetch ${fetch} of ${max}; before its expiry, no signer of it revoked`;
  }
  // Does base64 `signature` over `signed` verify under the key `registered` gave (`reg`)?
  // Throws when the key or the signature is not even well formed.
  async function registeredSignature(reg, signed, signature) {
    const key = b64key32(reg.key);
    if (!key) throw new Error("the registered key is not 32 bytes of base64");
    const sig = b64decode(signature);
    if (!sig) throw new Error("the signature is not base64");
    return ed25519Verify(key, signed, sig);
  }
  async function accessSignature(at, x, people) {
    const reg = registered(people, x.get("by"), at);
    const statement = new Map([["item", x.get("item")], ["request", x.get("request")], ["fetcher", x.get("by")], ["fetch_key", x.get("fetch_key")]]);
    const signed = concat(utf8("custody/access/v1\n"), canonicalBytes(statement));
    if (!(await registeredSignature(reg, signed, x.get("signature")))) {
      throw new Error(`the access statement's signature does not verify with ${x.get("by")}'s key registered at leaf ${reg.at}`);
    }
    return `${x.get("by")} signed the access statement (item, request, fetcher, fetch_key) with the key registered at leaf ${reg.at}`;
  }
  function purgeGrant(at, p, about) {
    const found = grantBefore(at, p.get("request"), about);
    if (!found) throw new Error(`no grant of request ${p.get("request")} before leaf ${at}`);
    const [i, g] = found;
    if (g.get("action") !== "purge") throw new Error(`the grant of leaf ${i} is for \`${g.get("action")}\`, not \`purge\``);
    if (!strEq(p.get("officers"), g.get("officers"))) throw new Error(`the purge's officers differ from the grant's (leaf ${i})`);
    if (!g.get("officers").includes(p.get("by"))) throw new Error(`${p.get("by")} is not a participant of the grant`);
    return `under the purge grant of leaf ${i}; ${p.get("by")} is a participant`;
  }

  // ---- Witness cosignatures (cosignature.rs).
  async function parseWitnessKeys(text) {
    const keys = [];
    const lines = text.split(/\r?\n/);
    for (const [i, raw] of lines.entries()) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      let k;
      try {
        k = await parseKey(line, 4);
      } catch (e) {
        throw new UsageError(`line ${i + 1}: ${e.message}`);
      }
      if (keys.some((o) => o.same(k))) continue;
      const o = keys.find((o) => bytesEq(o.pub, k.pub) || (o.name === k.name && bytesEq(o.id, k.id)));
      if (o) throw new UsageError(`line ${i + 1}: ${k} and ${o} are one key under two names, or two keys under one name and key id`);
      keys.push(k);
    }
    if (!keys.length) throw new UsageError("no witness keys");
    return keys;
  }
  async function checkWitnesses(note, keys, min) {
    const parsed = parseNote(note);
    const found = [];
    for (const line of parsed.signatures) {
      const key = keys.find((k) => k.name === line.name && bytesEq(k.id, line.id));
      if (!key) continue;
      if (line.sig.length !== 72) throw new Error("malformed cosignature: not an 8-byte timestamp and a 64-byte Ed25519 signature");
      const ts = new DataView(line.sig.buffer, line.sig.byteOffset, 8).getBigUint64(0);
      if (ts === 0n || ts > (1n << 63n) - 1n) throw new Error(`cosignature timestamp ${ts} is out of range`);
      const msg = concat(utf8(`cosignature/v1\ntime ${ts}\n`), utf8(parsed.text));
      if (!(await ed25519Verify(key.pub, msg, line.sig.slice(8)))) throw new Error(`the cosignature of ${key} does not verify`);
      if (!found.some((k) => k.same(key))) found.push(key);
    }
    if (found.length < min) throw new Error(`cosigned by ${found.length} of the ${keys.length} trusted witnesses; ${min} needed`);
    return found.map((k) => k.name);
  }

  // ---- The checks (bundle.rs `verify`), in its order and under its names.
  const ITEM_FIELDS = ["item", "sha256", "size", "case", "system", "depositor", "retention", "deposited_at", "retain_until", "note"];
  function itemChecks(checks, item, depositIndex, deposit, about) {
    let fields = new Map();
    if (item instanceof Map) {
      const unknown = [...item.keys()].filter((k) => !ITEM_FIELDS.includes(k) && k !== "hold");
      checks.push(
        unknown.length
          ? { name: "item fields", ok: false, detail: `\`item\` has fields no record binds: ${JSON.stringify(unknown)}` }
          : { name: "item fields", ok: true, detail: `every field of \`item\` is one the verifier binds to a record (${ITEM_FIELDS.join(", ")}, and \`hold\` when present)` },
      );
      fields = item;
    } else checks.push({ name: "item fields", ok: false, detail: "`item` is not a JSON object" });
    if (!deposit) {
      for (const f of ITEM_FIELDS) checks.push({ name: `item ${f}`, ok: false, detail: "no deposit record to compare with" });
      return;
    }
    const d = deposit.r;
    const atDeposit = `the deposit record (leaf ${depositIndex})`;
    const latest = (pred) => [...about].reverse().find(([, r]) => pred(r));
    const ret = latest((r) => r.kind === "retention");
    const [retention, retainUntil, retSource] = ret
      ? [ret[1].get("to"), ret[1].get("retain_until"), `the latest retention record (leaf ${ret[0]})`]
      : [d.get("retention"), d.get("retain_until"), atDeposit];
    const all = [
      ["item", d.get("item"), atDeposit],
      ["sha256", d.get("sha256"), atDeposit],
      ["size", d.get("size"), atDeposit],
      ["case", d.get("case"), atDeposit],
      ["system", d.get("system"), atDeposit],
      ["depositor", d.get("depositor"), atDeposit],
      ["retention", retention, retSource],
      ["deposited_at", d.time, `${atDeposit}'s time`],
      ["retain_until", retainUntil, retSource],
      ["note", d.get("note") ?? null, atDeposit],
    ];
    if (fields.has("hold")) {
      const h = latest((r) => r.kind === "hold");
      if (!h) all.push(["hold", null, "the trail (no hold record)"]);
      else if (h[1].get("action") === "hold") all.push(["hold", h[1].get("reason"), `the latest hold record (leaf ${h[0]})`]);
      else all.push(["hold", null, `the latest hold record (leaf ${h[0]}, a release)`]);
    }
    for (const [f, want, source] of all) {
      const got = fields.get(f);
      if (got === undefined) checks.push({ name: `item ${f}`, ok: false, detail: `\`item\` has no \`${f}\`; ${source} says ${show(want)}` });
      else if (jsonEq(got, want)) checks.push({ name: `item ${f}`, ok: true, detail: `\`${f}\` is ${show(want)}, as ${source} says` });
      else checks.push({ name: `item ${f}`, ok: false, detail: `\`${f}\` is ${show(got)}, but ${source} says ${show(want)}` });
    }
  }
  async function depositSignature(d, index, people) {
    const depositor = d.get("depositor");
    const reg = registered(people, depositor, index);
    if (!reg.roles.includes("officer")) throw new Error(`${depositor} was not an officer at leaf ${index}`);
    const statement = new Map([...d.m].filter(([k]) => !["v", "kind", "time", "retain_until", "signature"].includes(k)));
    const signed = concat(utf8("custody/deposit/v1\n"), canonicalBytes(statement));
    if (!(await registeredSignature(reg, signed, d.get("signature")))) {
      throw new Error(`the deposit statement's signature does not verify with ${depositor}'s key registered at leaf ${reg.at}`);
    }
    return `${depositor} (an officer) signed the deposit with the key registered at leaf ${reg.at}`;
  }
  function leavesDistinct(b) {
    const seen = new Map();
    const all = [[b.deposit.index, "deposit"], ...b.trail.map((t, i) => [t.index, `trail[${i}]`]), ...b.registry.map((r, i) => [r.index, `registry[${i}]`])];
    for (const [index, place] of all) {
      if (seen.has(index)) throw new Error(`leaf ${index} appears twice: ${seen.get(index)} and ${place}`);
      seen.set(index, place);
    }
    return `the ${seen.size} leaves of the bundle (deposit, trail, registry) are distinct`;
  }
  async function completeness(b, cp, keys, item) {
    if (!cp) throw new Error("no trusted checkpoint to check against");
    let v;
    try {
      v = await verifyItemHead(b.head, keys);
    } catch (e) {
      throw new Error(`the item-head statement: ${e.message}`);
    }
    const h = v.head;
    if (!(h.origin === cp.origin && h.size === cp.size && bytesEq(h.root, cp.root))) {
      throw new Error(`the item-head statement is for the tree of size ${h.size}, not the bundle's checkpoint`);
    }
    if (h.item !== item) throw new Error(`the item-head statement is about item ${h.item}, not ${item}`);
    const indices = [b.deposit.index, ...b.trail.map((t) => t.index)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    for (let k = 1; k < indices.length; k++) if (indices[k] === indices[k - 1]) throw new Error(`leaf ${indices[k]} appears twice`);
    if (BigInt(indices.length) !== h.records) {
      throw new Error(`the bundle carries ${indices.length} records about the item; ${v.signers.length} of the nodes state that the first ${h.size} leaves hold ${h.records}`);
    }
    const last = indices[indices.length - 1];
    if (last !== h.head) throw new Error(`the item's last record is leaf ${h.head}, the bundle's last is leaf ${last}`);
    return `all ${h.records} records about the item among the first ${h.size} leaves, the last at leaf ${h.head}, as ${v.signers.length} of the ${v.valid} keys valid there sign (${v.signers.join(", ")})`;
  }

  // Runs every check. `inputs`: { bundle: Uint8Array, keys: string,
  // clipSha256?: hex string, witnessKeys?: string, minWitnesses?: number }.
  // Resolves to the report `custody verify --json` prints; rejects with a
  // UsageError when an input cannot be read at all (exit status 2 there).
  async function verify(inputs) {
    const keys = await parseKeys(inputs.keys);
    const b = parseBundle(inputs.bundle);
    const wkeys = inputs.witnessKeys != null ? await parseWitnessKeys(inputs.witnessKeys) : null;
    const checks = [];
    const push = async (name, f) => {
      try {
        checks.push({ name, ok: true, detail: await f() });
      } catch (e) {
        checks.push({ name, ok: false, detail: e.message });
      }
    };
    let cp = null;
    await push("checkpoint signatures", async () => {
      const v = await verifyCheckpoint(b.checkpoint, keys);
      cp = v.cp;
      const shortened = cp.origin.includes("/dev-retention-"), auto = cp.origin.endsWith("/dev-auto-unseal");
      const dev = shortened && auto
        ? " — a DEV cluster with shortened retention, whose nodes unseal themselves"
        : shortened ? " — a DEV cluster with shortened retention" : auto ? " — a DEV cluster whose nodes unseal themselves" : "";
      return `signed by ${v.signers.length} of the ${v.valid} keys valid at size ${cp.size} (${v.signers.join(", ")}); origin ${cp.origin}${dev}`;
    });
    const untrusted = () => {
      throw new Error("no trusted checkpoint to check against");
    };
    let deposit = null, depositErr = null;
    try {
      deposit = decodeLeaf(b.deposit);
    } catch (e) {
      depositErr = e.message;
    }
    const isDeposit = deposit && deposit.r.kind === "deposit";
    await push("deposit record", () => {
      if (depositErr) throw new Error(depositErr);
      if (!isDeposit) throw new Error(`leaf ${b.deposit.index} is a \`${deposit.r.kind}\` record, not a deposit record`);
      return `leaf ${b.deposit.index} is the canonical deposit record of item ${deposit.r.get("item")}, deposited ${deposit.r.time} by ${deposit.r.get("depositor")}`;
    });
    await push("deposit inclusion", () => {
      if (b.deposit.inclusion.length) throw new Error("the deposit's proof is the bundle's `inclusion`; `deposit.inclusion` must be absent");
      if (!cp) untrusted();
      if (depositErr) throw new Error(depositErr);
      return inclusion(deposit.bytes, b.deposit.index, b.inclusion, cp);
    });
    if (inputs.clipSha256 != null) {
      await push("clip sha256", () => {
        if (!isDeposit) throw new Error("no deposited SHA-256 to compare with");
        const w = deposit.r.get("sha256");
        if (w !== inputs.clipSha256) throw new Error(`the clip's SHA-256 ${inputs.clipSha256} is not the deposited ${w}`);
        return `the clip's SHA-256 is the deposited one (${w})`;
      });
    }
    const itemId = isDeposit ? deposit.r.get("item") : null;
    const trail = b.trail.map((t) => {
      try {
        return { ok: decodeLeaf(t) };
      } catch (e) {
        return { err: e.message };
      }
    });
    const about = [];
    b.trail.forEach((t, k) => {
      const r = trail[k].ok?.r;
      if (r && t.index > b.deposit.index && itemId !== null && r.item() === itemId) about.push([t.index, r]);
    });
    itemChecks(checks, b.item, b.deposit.index, isDeposit ? deposit : null, about);
    const people = [];
    for (const [k, r] of b.registry.entries()) {
      await push(`registry[${k}] inclusion`, async () => {
        if (!cp) untrusted();
        const { bytes, r: rec } = decodeLeaf(r);
        if (!(rec.kind === "registry" && rec.get("subject") === "person")) throw new Error("not a registry record about a person");
        const d = await inclusion(bytes, r.index, r.inclusion, cp);
        people.push([r.index, rec]);
        return d;
      });
    }
    people.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    await push("deposit signature", () => {
      if (depositErr) throw new Error(depositErr);
      if (!isDeposit) throw new Error(`leaf ${b.deposit.index} is a \`${deposit.r.kind}\` record, not a deposit record`);
      return depositSignature(deposit.r, b.deposit.index, people);
    });
    await push("leaves distinct", () => leavesDistinct(b));
    const signed = [];
    for (const [k, a] of b.approvals.entries()) {
      const signer = a instanceof Map && S(a.get("signer")) ? a.get("signer") : "?";
      await push(`approval signature ${signer}`, async () => {
        try {
          const { detail, sig } = await approvalSignature(a, itemId ?? "", about, people);
          signed.push(sig);
          return detail;
        } catch (e) {
          throw new Error(`approvals[${k}]: ${e.message}`);
        }
      });
    }
    let previous = null;
    for (const [k, t] of b.trail.entries()) {
      const leaf = trail[k];
      const kind = leaf.ok ? leaf.ok.r.kind : "record";
      const name = (what) => `trail[${k}] ${kind} ${what}`;
      const prev = previous;
      await push(name("order"), () => {
        if (t.index <= b.deposit.index) throw new Error(`leaf ${t.index} is not after the deposit (leaf ${b.deposit.index})`);
        if (prev !== null && t.index <= prev) throw new Error(`leaf ${t.index} is not after the previous trail record (leaf ${prev})`);
        if (prev !== null) return `leaf ${t.index} comes after the deposit (leaf ${b.deposit.index}) and after trail[${k - 1}] (leaf ${prev})`;
        return `leaf ${t.index} comes after the deposit (leaf ${b.deposit.index})`;
      });
      previous = t.index;
      if (leaf.ok) {
        await push(name("kind"), () => kindCheck(leaf.ok.r));
        for (const [what, ok, detail] of await recordChecks(t.index, leaf.ok.r, about, signed, people)) checks.push({ name: name(what), ok, detail });
      }
      await push(name("inclusion"), () => {
        if (leaf.err) throw new Error(leaf.err);
        if (itemId === null || leaf.ok.r.item() !== itemId) throw new Error("the record is about another item");
        if (!cp) untrusted();
        return inclusion(leaf.ok.bytes, t.index, t.inclusion, cp);
      });
    }
    await push("trail completeness", () => completeness(b, cp, keys, itemId ?? ""));
    if (wkeys) {
      const min = inputs.minWitnesses ?? 0;
      await push("witness cosignatures", async () => {
        const names = await checkWitnesses(b.checkpoint, wkeys, min);
        return `cosigned by ${names.length ? names.join(", ") : "no witness"} (${min} needed)`;
      });
    }
    if (b.timestamp !== null) {
      checks.push({ name: "timestamp", ok: true, detail: "the bundle carries an RFC 3161 token, NOT checked: this page does not check tokens (use custody-verify --tsa-cert)" });
    }
    return { valid: checks.every((c) => c.ok), item: itemId, checks };
  }

  return { verify, fileSha256, Sha256, UsageError, hex, sha256, concat };
})();
