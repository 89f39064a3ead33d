//! Issue 15: a witness outside the vault's control. A real `custody witness
//! serve` process cosigns a real 3-node cluster's checkpoints in sequence,
//! refuses whatever does not extend the last one it cosigned (and then
//! changes nothing), answers a stale `old` with 409 and its size, and keeps
//! its state across a restart.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use custody::audit::{sign_note, Checkpoint, Note, Signer};
use custody::witness::{verify_cosignature, verify_cosignatures, CosignerKey};
use serde_json::Value;

use crate::harness::{free_ports, wait_until, write_clip, Cluster, BIN};

/// One HTTP/1.1 exchange on loopback: status, content type, body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!("{method} {path} HTTP/1.1\r\nhost: witness\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let ctype = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string)).unwrap_or_default();
    Some((status, ctype, body.to_string()))
}

fn add(port: u16, old: u64, proof: &[String], note: &str) -> (u16, String, String) {
    let mut b = format!("old {old}\n");
    for h in proof {
        b.push_str(h);
        b.push('\n');
    }
    b.push('\n');
    b.push_str(note);
    http(port, "POST", "/add-checkpoint", b.as_bytes()).expect("the witness answers")
}

struct WitnessProcess {
    key: PathBuf,
    state: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl WitnessProcess {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.state.join("witness.log")).unwrap();
        let child = Command::new(BIN)
            .args(["witness", "serve", "--key"])
            .arg(&self.key)
            .arg("--state")
            .arg(&self.state)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_until("the witness to listen", Duration::from_secs(30), || http(port, "GET", "/health-probe/checkpoint", b""));
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The size the witness's state file records for `origin`, read from disk.
    fn stored_size(&self, origin: &str) -> Option<u64> {
        let v: Value = serde_json::from_slice(&std::fs::read(self.state.join("state.json")).unwrap()).unwrap();
        v["logs"][origin]["size"].as_u64()
    }

    /// The checkpoint the witness serves for monitors (tlog-witness GET).
    fn served(&self, origin: &str) -> (u16, String) {
        let h = hex::encode(custody::crypto::sha256(origin.as_bytes()));
        let (status, _, body) = http(self.port, "GET", &format!("/{h}/checkpoint"), b"").unwrap();
        (status, body)
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn checkpoint_view(c: &Cluster, p: &Path) -> Option<Value> {
    let out = c.cli(p, &["checkpoint"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

/// The newest checkpoint once it is larger than `than`.
fn checkpoint_above(c: &Cluster, p: &Path, than: u64) -> (u64, String) {
    wait_until("a larger checkpoint", Duration::from_secs(60), || {
        let v = checkpoint_view(c, p)?;
        let size = v["size"].as_u64()?;
        (size > than).then(|| (size, v["note"].as_str().unwrap().to_string()))
    })
}

fn consistency(c: &Cluster, leader: u64, token: &str, old: u64, new: u64) -> Vec<String> {
    let (status, v) = crate::keys::request(c, "dave", leader, "GET", &format!("/v1/audit/consistency?old={old}&new={new}"), token, &Value::Null);
    assert_eq!(status, 200, "{v}");
    v["proof"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect()
}

/// The cluster's own node signers, as a vault operator holding every node's
/// checkpoint key could use them: what a witness is there to stop.
fn node_signers(c: &Cluster) -> Vec<Signer> {
    let cluster_id = c.cluster_id();
    (1..=3)
        .map(|id| {
            let seed: [u8; 32] =
                hex::decode(std::fs::read_to_string(c.keys_dir(id).join("checkpoint.key")).unwrap().trim()).unwrap().try_into().unwrap();
            Signer::from_seed(&custody::node::checkpoint::signer_name(&cluster_id, id), &seed).unwrap()
        })
        .collect()
}

fn forged(signers: &[Signer], origin: &str, size: u64, root: [u8; 32]) -> String {
    let text = Checkpoint { origin: origin.into(), size, root, extensions: vec![] }.to_text().unwrap();
    let all: Vec<&Signer> = signers.iter().collect();
    sign_note(&text, &all).unwrap()
}

#[test]
fn a_witness_cosigns_a_clusters_checkpoints_in_sequence_and_never_a_fork() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let p = c.profile("dave");
    let token = c.token("dave");

    // The court's side: a key, a state directory, and the logs file filled in from
    // the checkpoint's origin line and `custody cluster keys` exactly as it prints them.
    let (key, state, init) = init_witness(&c, "witness.court.test/w1");
    crate::json::Schemas::new().output("witness init", &init);
    let wkey = CosignerKey::parse(init["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(wkey.name(), "witness.court.test/w1");
    // A second init over the same files is refused and changes nothing.
    let again = Command::new(BIN).args(["witness", "init", "--name", "x", "--key"]).arg(&key).arg("--state").arg(&state).output().unwrap();
    assert_eq!(again.status.code(), Some(2));

    let (s1, note1) = checkpoint_above(&c, &p, 0);
    let origin = Note::parse(&note1).and_then(|n| Checkpoint::parse(&n.text)).unwrap().origin;
    let key_lines = cluster_keys(&p);
    assert_eq!(key_lines.lines().filter(|l| l.contains("from=")).count(), 3, "{key_lines}");
    std::fs::write(state.join("logs"), format!("# from the vault's operators, checked out of band\norigin {origin}\n{key_lines}\n")).unwrap();

    let mut w = WitnessProcess { key: key.clone(), state: state.clone(), port: free_ports(1), child: None };
    w.start();
    assert_eq!(w.served(&origin).0, 404, "nothing cosigned yet");

    // Bad input: a clear error, nothing changes.
    let (status, _, body) = http(w.port, "POST", "/add-checkpoint", b"hello\n").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("old"), "{body}");

    // The first checkpoint, from size 0 with no proof.
    let (status, ctype, line) = add(w.port, 0, &[], &note1);
    assert_eq!(status, 200, "{line}");
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(line.starts_with("\u{2014} witness.court.test/w1 ") && line.ends_with('\n') && line.lines().count() == 1, "{line:?}");
    let t1 = verify_cosignature(&note1, &line, &wkey).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(t1 <= now && t1 + 120 > now, "the cosignature states the time it was made");
    assert_eq!(w.stored_size(&origin), Some(s1));

    // The log grows; the witness is sent the next checkpoint with the proof from s1.
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 10_000, 3);
    c.deposit("alice", &clip, "case-W");
    let (s2, note2) = checkpoint_above(&c, &p, s1);
    let proof12 = consistency(&c, leader, &token, s1, s2);
    assert!(!proof12.is_empty());

    // A stale old size: 409 with the size the witness holds, in the spec's format.
    let (status, ctype, body) = add(w.port, 0, &[], &note2);
    assert_eq!((status, ctype.as_str(), body.as_str()), (409, "text/x.tlog.size", format!("{s1}\n").as_str()));

    // A checkpoint signed by one node only is not the cluster's: 403.
    let one = {
        let mut n = Note::parse(&note2).unwrap();
        n.signatures.truncate(1);
        n.encode().unwrap()
    };
    assert_eq!(add(w.port, s1, &proof12, &one).0, 403);
    // A wrong proof: 422, nothing recorded.
    let mut bad_proof = proof12.clone();
    bad_proof[0] = BASE64.encode([0u8; 32]);
    assert_eq!(add(w.port, s1, &bad_proof, &note2).0, 422);
    assert_eq!(w.stored_size(&origin), Some(s1));

    let (status, _, line2) = add(w.port, s1, &proof12, &note2);
    assert_eq!(status, 200, "{line2}");
    verify_cosignature(&note2, &line2, &wkey).unwrap();
    // The cosignature of one checkpoint does not pass for another.
    assert!(verify_cosignature(&note1, &line2, &wkey).is_err());
    assert_eq!(w.stored_size(&origin), Some(s2));
    // Monitors read the same checkpoint with the log's signatures and the witness's.
    let (status, served) = w.served(&origin);
    assert_eq!(status, 200);
    assert_eq!(served, format!("{note2}{line2}"));
    assert_eq!(verify_cosignatures(&served, std::slice::from_ref(&wkey)).unwrap().len(), 1);

    // Whoever holds every node's key forks the log: another root at a larger size,
    // validly signed by all three nodes. No proof from the cosigned tree exists, so
    // whatever proof comes with it, the witness refuses; and another root at the same size too.
    let nodes = node_signers(&c);
    let fork = forged(&nodes, &origin, s2 + 3, custody::crypto::sha256(b"another history"));
    let proof_to_nowhere: Vec<String> = (0..3).map(|i| BASE64.encode(custody::crypto::sha256(&[i]))).collect();
    let (status, _, body) = add(w.port, s2, &proof_to_nowhere, &fork);
    assert_eq!(status, 422, "{body}");
    assert_eq!(add(w.port, s2, &[], &fork).0, 422);
    let same_size = forged(&nodes, &origin, s2, custody::crypto::sha256(b"rewritten"));
    assert_eq!(add(w.port, s2, &[], &same_size).0, 422);
    // A smaller tree (a rollback) cannot even be asked for: old would exceed its size.
    let rollback = forged(&nodes, &origin, s1, Checkpoint::parse(&Note::parse(&note1).unwrap().text).unwrap().root);
    assert_eq!(add(w.port, s2, &[], &rollback).0, 400);
    assert_eq!(add(w.port, s1, &[], &rollback).0, 409);
    // An origin the witness was not told of: 404.
    let stranger = forged(&nodes, "custody.vault/someone-else", 5, [7; 32]);
    assert_eq!(add(w.port, 0, &[], &stranger).0, 404);
    // None of that changed what the witness holds, on disk or served.
    assert_eq!(w.stored_size(&origin), Some(s2));
    assert_eq!(w.served(&origin).1, format!("{note2}{line2}"));

    // A restart keeps the state: the stale size is still refused with s2.
    w.kill();
    w.start();
    let (status, _, body) = add(w.port, 0, &[], &note2);
    assert_eq!((status, body), (409, format!("{s2}\n")));
    assert_eq!(w.served(&origin), (200, format!("{note2}{line2}")));

    // And the log goes on from there.
    write_clip(&clip, 10_000, 4);
    let item = c.deposit("alice", &clip, "case-W")["item"].as_str().unwrap().to_string();
    let (s3, note3) = checkpoint_above(&c, &p, s2);
    let proof23 = consistency(&c, leader, &token, s2, s3);
    let (status, _, line3) = add(w.port, s2, &proof23, &note3);
    assert_eq!(status, 200, "{line3}");
    verify_cosignature(&note3, &line3, &wkey).unwrap();
    assert_eq!(w.stored_size(&origin), Some(s3));

    // A court's offline check: the bundle's checkpoint with the witness's line appended
    // verifies with `--witness-keys`; without the line, or asking for two witnesses, it does not.
    let bpath = c.path().join("bundle.json");
    c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
    let mut bundle: Value = serde_json::from_slice(&std::fs::read(&bpath).unwrap()).unwrap();
    let bnote = bundle["checkpoint"].as_str().unwrap().to_string();
    let bsize = Checkpoint::parse(&Note::parse(&bnote).unwrap().text).unwrap().size;
    let line = if bsize == s3 {
        line3
    } else {
        let (status, _, line) = add(w.port, s3, &consistency(&c, leader, &token, s3, bsize), &bnote);
        assert_eq!(status, 200, "{line}");
        line
    };
    let kpath = c.path().join("keys.txt");
    std::fs::write(&kpath, &key_lines).unwrap();
    let wkpath = c.path().join("witness-keys.txt");
    std::fs::write(&wkpath, format!("{wkey}\n")).unwrap();
    let verify = |bundle: &Value, min: &str| {
        std::fs::write(&bpath, serde_json::to_vec(bundle).unwrap()).unwrap();
        let out = Command::new(BIN)
            .args(["--json", "verify", bpath.to_str().unwrap(), "--keys", kpath.to_str().unwrap(), "--witness-keys", wkpath.to_str().unwrap()])
            .args(["--min-witnesses", min])
            .output()
            .unwrap();
        (out.status.code(), serde_json::from_slice::<Value>(&out.stdout).unwrap())
    };
    let (code, v) = verify(&bundle, "1");
    assert_eq!(code, Some(1), "no cosignature in the vault's bundle yet: {v}");
    bundle["checkpoint"] = Value::String(format!("{bnote}{line}"));
    let (code, v) = verify(&bundle, "1");
    assert_eq!((code, &v["valid"]), (Some(0), &Value::Bool(true)), "{v}");
    assert!(v["checks"].as_array().unwrap().iter().any(|c| c["name"] == "witness cosignatures" && c["ok"] == true), "{v}");
    let (code, _) = verify(&bundle, "2");
    assert_eq!(code, Some(1), "one witness is not two");
}

/// A witness refuses to start without its state rather than begin again from
/// nothing (it would then cosign a log rolled back behind what it once cosigned).
#[test]
fn a_witness_without_its_state_file_does_not_start() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("w.key");
    let state = d.path().join("state");
    let out = Command::new(BIN).args(["witness", "init", "--name", "w.test/1", "--key"]).arg(&key).arg("--state").arg(&state).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let port = free_ports(1).to_string();
    // The logs file is still the template: no log to accept.
    let serve = |state: &Path| {
        Command::new(BIN)
            .args(["witness", "serve", "--key"])
            .arg(&key)
            .arg("--state")
            .arg(state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap()
    };
    let out = serve(&state);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("origin"), "{}", String::from_utf8_lossy(&out.stderr));
    let k = Signer::from_seed("n1", &[1; 32]).unwrap().verifier_key();
    std::fs::write(state.join("logs"), format!("origin custody.vault/x\n{k}\n")).unwrap();
    std::fs::remove_file(state.join("state.json")).unwrap();
    let out = serve(&state);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state.json"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The witness as `cluster status` on node `via` shows it.
fn witness_status(c: &Cluster, via: u64) -> Option<Value> {
    let out = c.cli(&c.node_profile("admin", via), &["cluster", "status"]);
    let st: Value = serde_json::from_slice(&out.stdout).ok()?;
    crate::json::Schemas::new().output("cluster status", &st);
    st["witnesses"].as_array()?.first().cloned()
}

#[test]
fn the_leader_pushes_checkpoints_to_a_configured_witness_and_deposits_never_wait_for_it() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let p = c.profile("dave");

    // The court's witness, trusting the cluster's keys as `cluster keys` prints them.
    let (key, state, init) = init_witness(&c, "witness.court.test/w2");
    let vkey = init["verifier_key"].as_str().unwrap().to_string();
    let wkey = CosignerKey::parse(&vkey).unwrap();
    let (_, note1) = checkpoint_above(&c, &p, 0);
    let origin = Note::parse(&note1).and_then(|n| Checkpoint::parse(&n.text)).unwrap().origin;
    let key_lines = cluster_keys(&p);
    std::fs::write(state.join("logs"), format!("origin {origin}\n{key_lines}\n")).unwrap();
    let mut w = WitnessProcess { key: key.clone(), state: state.clone(), port: free_ports(1), child: None };
    w.start();

    // Every node is configured with the witness and restarted.
    for id in 1..=3 {
        c.kill(id);
        c.append_node_config(id, &format!("[[witnesses]]\nurl = \"http://127.0.0.1:{}\"\nkey = \"{vkey}\"\n", w.port));
    }
    c.start_all(3);
    let leader = c.wait_leader(3);

    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 10_000, 5);
    let item = c.deposit("alice", &clip, "case-P")["item"].as_str().unwrap().to_string();
    // The published checkpoint carries the witness's cosignature, and status shows its size.
    let (size, note) = wait_until("a witness-cosigned checkpoint", Duration::from_secs(60), || {
        let v = checkpoint_view(&c, &p)?;
        let note = v["note"].as_str()?.to_string();
        let size = v["size"].as_u64()?;
        (size >= 2 && verify_cosignatures(&note, std::slice::from_ref(&wkey)).ok()?.len() == 1).then_some((size, note))
    });
    assert_eq!(w.stored_size(&origin), Some(size), "{note}");
    let st = wait_until("status to show the witness's size", Duration::from_secs(30), || {
        let s = witness_status(&c, leader)?;
        (s["last_cosigned_size"].as_u64()? >= size).then_some(s)
    });
    assert_eq!(st["url"], format!("http://127.0.0.1:{}", w.port));
    assert_eq!(st["key_name"], "witness.court.test/w2");
    assert!(st["last_cosigned_at"].is_string() && st["last_error"].is_null(), "{st}");
    // The round trip, for operators (and the figure in the closing note of issue 15).
    let rtt = st["last_round_trip_ms"].as_f64().unwrap();
    assert!(rtt > 0.0 && rtt < 2000.0, "{st}");
    eprintln!("witness round trip: {rtt:.2} ms");

    // The vault's own bundle verifies with the witness's key and one witness required,
    // and without any witness key as before.
    let bpath = c.path().join("bundle.json");
    let kpath = c.path().join("keys.txt");
    std::fs::write(&kpath, &key_lines).unwrap();
    let wkpath = c.path().join("witness-keys.txt");
    std::fs::write(&wkpath, format!("{wkey}\n")).unwrap();
    wait_until("a bundle whose checkpoint the witness cosigned", Duration::from_secs(60), || {
        c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let out = Command::new(BIN)
            .args(["--json", "verify", bpath.to_str().unwrap(), "--keys", kpath.to_str().unwrap(), "--witness-keys", wkpath.to_str().unwrap()])
            .args(["--min-witnesses", "1"])
            .output()
            .unwrap();
        out.status.success().then_some(())
    });
    let plain = Command::new(BIN).args(["verify", bpath.to_str().unwrap(), "--keys", kpath.to_str().unwrap()]).output().unwrap();
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stdout));

    // The witness goes down: deposits still succeed promptly, checkpoints go on
    // without its line, and status names the error.
    w.kill();
    let before = checkpoint_view(&c, &p).unwrap()["size"].as_u64().unwrap();
    for i in 0..3 {
        write_clip(&clip, 10_000, 10 + i);
        let t = std::time::Instant::now();
        c.deposit("alice", &clip, "case-P");
        assert!(t.elapsed() < Duration::from_secs(10), "a deposit waited {:?} with the witness down", t.elapsed());
    }
    let (after, _) = checkpoint_above(&c, &p, before);
    wait_until("status to show the witness's error", Duration::from_secs(30), || {
        let s = witness_status(&c, leader)?;
        (s["last_error"].is_string() && s["last_error_at"].is_string()).then_some(())
    });

    // Restarted, it catches up with the checkpoints it missed.
    w.start();
    write_clip(&clip, 10_000, 20);
    c.deposit("alice", &clip, "case-P");
    wait_until("the witness to catch up", Duration::from_secs(60), || {
        let s = witness_status(&c, leader)?;
        (s["last_cosigned_size"].as_u64()? > after && s["last_error"].is_null()).then_some(())
    });
    assert!(w.stored_size(&origin).unwrap() > after);
}

/// `custody witness init` for a witness named `name` in the cluster's
/// directory: its key file, its state directory and what init printed.
fn init_witness(c: &Cluster, name: &str) -> (std::path::PathBuf, std::path::PathBuf, Value) {
    let wdir = c.path().join("witness");
    let key = wdir.join("witness.key");
    let state = wdir.join("state");
    std::fs::create_dir_all(&wdir).unwrap();
    let out = Command::new(BIN).args(["--json", "witness", "init", "--name", name, "--key"]).arg(&key).arg("--state").arg(&state).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (key, state, serde_json::from_slice(&out.stdout).unwrap())
}

/// The key file a court keeps, as `custody cluster keys` prints it.
fn cluster_keys(profile: &std::path::Path) -> String {
    let keys = Command::new(BIN).arg("--profile").arg(profile).args(["cluster", "keys"]).output().unwrap();
    assert!(keys.status.success());
    String::from_utf8(keys.stdout).unwrap()
}
