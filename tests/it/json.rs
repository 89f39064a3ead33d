//! Every command documented as taking `--json` prints one object whose every
//! value has the type its published schema says (`/v1/openapi.json`, built
//! from the types), and no field the schema does not name.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::harness::{wait_until, write_clip, Cluster, BIN};

/// Checks `v` against `schema`, resolving `$ref`s in `defs`. Stricter than
/// JSON Schema on one point: an object may carry only the properties its
/// schema names, unless the schema says `additionalProperties` (the trail
/// entries, whose fields are the record's own).
fn check(v: &Value, schema: &Value, defs: &Map<String, Value>, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/components/schemas/").ok_or_else(|| format!("{at}: foreign $ref {r}"))?;
        let target = defs.get(name).ok_or_else(|| format!("{at}: no schema {name}"))?;
        return check(v, target, defs, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = alts.iter().filter_map(|s| check(v, s, defs, at).err()).collect();
            let held = alts.len() - errors.len();
            if held == 0 || (key == "oneOf" && held > 1) {
                return Err(format!("{at}: {held} of the {key} alternatives hold for {v}: {errors:?}"));
            }
        }
    }
    if let Some(c) = schema.get("const") {
        if v != c {
            return Err(format!("{at}: {v} is not {c}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type {t}")),
        };
        let is = |t: &str| match t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            return Err(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            return Err(format!("{at}: {n} < {min}"));
        }
    }
    if let Some(s) = v.as_str() {
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_err()
        {
            return Err(format!("{at}: `{s}` is not an RFC 3339 time"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            // The patterns we publish are all ^[0-9a-f]{N}$.
            let n: usize =
                p.strip_prefix("^[0-9a-f]{").and_then(|r| r.strip_suffix("}$")).and_then(|n| n.parse().ok()).ok_or(format!("{at}: pattern {p}"))?;
            if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(format!("{at}: `{s}` does not match {p}"));
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(item_schema) = schema.get("items") {
            for (i, x) in items.iter().enumerate() {
                check(x, item_schema, defs, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                return Err(format!("{at}: required `{r}` missing from {v}"));
            }
        }
        let open = schema.get("additionalProperties").is_some_and(|a| a != &Value::Bool(false));
        let has_alternatives = schema.get("oneOf").is_some() || schema.get("anyOf").is_some();
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(x, s, defs, &format!("{at}.{k}"))?,
                None if open || has_alternatives => {}
                None => return Err(format!("{at}: `{k}` is not in the published schema")),
            }
        }
    }
    Ok(())
}

pub struct Schemas {
    defs: Map<String, Value>,
    cli: Map<String, Value>,
}

impl Schemas {
    pub fn new() -> Schemas {
        let doc = custody::api::v1::openapi_document();
        Schemas { defs: doc["components"]["schemas"].as_object().unwrap().clone(), cli: doc["x-cli-json"].as_object().unwrap().clone() }
    }

    /// Checks one command's output against the schema the document names for it.
    pub fn output(&self, command: &str, v: &Value) {
        let name = self.cli.get(command).and_then(Value::as_str).unwrap_or_else(|| panic!("`{command}` is not in x-cli-json"));
        self.shape(name, v, command);
    }

    pub fn shape(&self, name: &str, v: &Value, what: &str) {
        let schema = self.defs.get(name).unwrap_or_else(|| panic!("no schema {name}"));
        if let Err(e) = check(v, schema, &self.defs, name) {
            panic!("`{what}` --json does not match {name}: {e}\n{v:#}");
        }
    }
}

fn run(args: &[&str], dir: &Path) -> Value {
    let out = Command::new(BIN).arg("--json").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "custody {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("custody {args:?} printed no JSON object ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_checker_refuses_what_the_schemas_do_not_allow() {
    let s = Schemas::new();
    let ok = serde_json::json!({ "request": "00".repeat(16), "status": "granted", "leaf_index": 4 });
    assert!(check(&ok, &s.defs["RequestStatus"], &s.defs, "").is_ok());
    for bad in [
        serde_json::json!({ "request": "00".repeat(16), "status": "granted (leaf 4)", "leaf_index": 4 }),
        serde_json::json!({ "request": "00".repeat(16), "status": "granted", "leaf_index": "4" }),
        serde_json::json!({ "request": "00".repeat(16), "status": "granted", "leaf_index": 4, "detail": "prose" }),
        serde_json::json!({ "request": "00".repeat(16), "status": "granted" }),
    ] {
        assert!(check(&bad, &s.defs["RequestStatus"], &s.defs, "").is_err(), "{bad}");
    }
    let entry = serde_json::json!({ "leaf_index": 1, "kind": "access (leaf 19)", "time": "2026-12-03T07:00:00.000Z", "v": 1 });
    assert!(check(&entry, &s.defs["TrailEntry"], &s.defs, "").is_err(), "kind is exactly the record's");
    let entry = serde_json::json!({ "leaf_index": 1, "kind": "access", "time": "yesterday", "v": 1 });
    assert!(check(&entry, &s.defs["TrailEntry"], &s.defs, "").is_err(), "time is RFC 3339");
    let w = serde_json::json!({ "kind": "chunks_lost", "chunks": "a, b" });
    assert!(check(&w, &s.defs["HealthWarning"], &s.defs, "").is_err(), "a list is a list");
}

#[test]
fn every_json_output_has_its_published_shape() {
    let s = Schemas::new();
    // The commands that need no cluster.
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    s.output("certs init", &run(&["certs", "init", "--dir", certs.to_str().unwrap(), "--nodes", "2", "--users", "ann,ben"], tmp.path()));
    let key = tmp.path().join("erin.signing.key");
    let keygen = run(&["keygen", "--out", key.to_str().unwrap()], tmp.path());
    s.output("keygen", &keygen);

    let mut c = Cluster::init(3, "dev_retention_secs = 2");
    let init_again = tempfile::tempdir().unwrap();
    s.output(
        "cluster init",
        &run(&["cluster", "init", "--dir", init_again.path().to_str().unwrap(), "--nodes", "3", "--base-port", "7101"], tmp.path()),
    );
    s.output("cluster new-node", &run(&["cluster", "new-node", "--dir", c.path().to_str().unwrap(), "--id", "4"], tmp.path()));
    c.start_all(3);
    c.wait_leader(3);
    let profiles = c.path().join("profiles");
    let p = move |u: &str| profiles.join(format!("{u}.toml"));
    let status = c.cli_json(&p("admin"), &["cluster", "status"]);
    s.output("cluster status", &status);
    assert!(status["members"].as_array().unwrap().iter().all(|m| m["health"].is_object()), "{status}");
    s.output("cluster keys", &c.cli_json(&p("dave"), &["cluster", "keys"]));
    s.output("login", &c.cli_json(&p("alice"), &["login"]));

    // The registry.
    s.output("registry list", &c.cli_json(&p("admin"), &["registry", "list"]));
    let sys = ["registry", "system", "add", "cam-json", "--filing", "LN-1", "--operator", "Metro", "--location", "gate"];
    s.output("registry system add", &c.cli_json(&p("admin"), &sys));
    let pk = keygen["public_key"].as_str().unwrap();
    let add = ["registry", "officer", "add", "erin", "--badge", "LN-9", "--unit", "Heping", "--role", "officer", "--key", pk];
    let filed = c.cli_json(&p("admin"), &add);
    s.output("registry officer add", &filed);
    s.output("registry approve", &c.cli_json(&p("admin2"), &["registry", "approve", filed["change"].as_str().unwrap(), "--yes"]));
    s.output("registry roles", &c.cli_json(&p("admin"), &["registry", "roles", "erin", "--role", "officer", "--role", "court"]));
    let other = c.path().join("erin2.signing.key");
    let pk2 = run(&["keygen", "--out", other.to_str().unwrap()], tmp.path())["public_key"].as_str().unwrap().to_string();
    s.output("registry key", &c.cli_json(&p("admin"), &["registry", "key", "erin", "--key", &pk2]));
    s.output("registry revoke", &c.cli_json(&p("admin"), &["registry", "revoke", "erin"]));
    s.output("registry list", &c.cli_json(&p("admin"), &["registry", "list"]));

    // A deposit and its life.
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 5 << 20, 9);
    let receipt = c.deposit("alice", &clip, "case-J");
    s.output("deposit", &receipt);
    let item = receipt["item"].as_str().unwrap().to_string();
    s.output("items", &c.cli_json(&p("alice"), &["items"]));
    let request =
        c.cli_json(&p("alice"), &["request", &item, "--action", "retrieve", "--purpose", "trial", "--approval-doc", "D-1", "--with", "bob"]);
    s.output("request", &request);
    let rid = request["request"].as_str().unwrap().to_string();
    s.output("approve", &c.cli_json(&p("bob"), &["approve", &rid, "--yes"]));
    let granted = c.cli_json(&p("carol"), &["approve", &rid, "--yes"]);
    s.output("approve", &granted);
    assert_eq!(granted["status"], "granted");
    let out = c.path().join("fetched.mp4");
    s.output("fetch", &c.cli_json(&p("bob"), &["fetch", &item, "--request", &rid, "--out", out.to_str().unwrap()]));
    s.output("hold", &c.cli_json(&p("alice"), &["hold", &item, "--reason", "appeal"]));
    s.output("release", &c.cli_json(&p("carol"), &["release", &item]));
    s.output("scrub", &c.cli_json(&p("admin"), &["scrub"]));
    let shown = c.cli_json(&p("alice"), &["show", &item]);
    s.output("show", &shown);
    let kinds: Vec<&str> = shown["trail"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    for k in ["deposit", "request", "approval", "grant", "access", "hold"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let checkpoint = wait_until("a checkpoint", Duration::from_secs(30), || {
        let out = c.cli(&p("dave"), &["checkpoint"]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    s.output("checkpoint", &checkpoint);
    let bundle = c.path().join("bundle.json");
    s.output("proof", &c.cli_json(&p("dave"), &["proof", &item, "--out", bundle.to_str().unwrap()]));
    let keys = c.pin_keys();
    let verdict = run(&["verify", bundle.to_str().unwrap(), "--file", out.to_str().unwrap(), "--keys", keys.to_str().unwrap()], c.path());
    s.output("verify", &verdict);
    let state = c.path().join("monitor.json");
    s.output("monitor", &c.cli_json(&p("dave"), &["monitor", "--state", state.to_str().unwrap()]));
    s.output("monitor", &c.cli_json(&p("dave"), &["monitor", "--state", state.to_str().unwrap()]));

    // Retention, after the two dev seconds: extend, then purge.
    let second = c.deposit("alice", &clip, "case-K");
    let item2 = second["item"].as_str().unwrap().to_string();
    s.output("extend", &c.cli_json(&p("alice"), &["extend", &item2, "--retention", "important"]));
    let purge_req = c.grant(&item, "purge");
    let purged = wait_until("retention to end", Duration::from_secs(30), || {
        let out = c.cli(&p("alice"), &["purge", &item, "--request", &purge_req]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    s.output("purge", &purged);

    // Membership.
    c.start(4);
    let added = c.cli_json(&p("admin"), &["cluster", "add-node", "--id", "4", "--addr", &c.addr(4), "--learner-only"]);
    s.output("cluster add-node", &added);
    s.output("cluster remove-node", &c.cli_json(&p("admin"), &["cluster", "remove-node", "--id", "4"]));

    // A failure prints one object too.
    let refused = c.cli(&p("alice"), &["release", &item2]);
    assert_eq!(refused.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&refused.stdout).unwrap();
    s.shape("ErrorOutput", &v, "release (refused)");
    assert_eq!(v["exit_code"], 1);
}

#[test]
fn docs_json_md_describes_every_published_shape() {
    let s = Schemas::new();
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md")).unwrap();
    for (command, shape) in &s.cli {
        assert!(doc.contains(&format!("| `{command}` | [`{}`]", shape.as_str().unwrap())), "docs/JSON.md does not map `{command}`");
    }
    for (name, schema) in &s.defs {
        let head = format!("\n### `{name}`\n");
        let at = doc.find(&head).unwrap_or_else(|| panic!("docs/JSON.md has no section {head:?}"));
        let section = &doc[at + head.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        let mut props: Vec<&String> = schema.get("properties").and_then(Value::as_object).map(|p| p.keys().collect()).unwrap_or_default();
        for alt in schema.get("oneOf").and_then(Value::as_array).into_iter().flatten() {
            props.extend(alt.get("properties").and_then(Value::as_object).map(|p| p.keys().collect::<Vec<_>>()).unwrap_or_default());
        }
        for p in props {
            assert!(section.contains(&format!("`{p}`")), "docs/JSON.md, section {name}, does not describe `{p}`");
        }
    }
}
