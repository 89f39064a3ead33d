//! Sealing at rest (docs/KEYS.md §8): a node's secrets are on disk only
//! encrypted; it starts sealed, serves only health and unseal, and opens when
//! k of its n custodians have each given a share.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_ports, wait_until, write_clip, Cluster, BIN};
use crate::tls::{config, raw_request};

fn init_sealed(n: u64, custodians: u8, threshold: u8) -> Cluster {
    let dir = tempfile::Builder::new().prefix("custody-it-").tempdir().unwrap();
    let base_port = free_ports(n as u16 + 2);
    let out = Command::new(BIN)
        .args(["--json", "cluster", "init", "--dir"])
        .arg(dir.path())
        .args(["--nodes", &n.to_string(), "--base-port", &base_port.to_string()])
        .args(["--custodians", &custodians.to_string(), "--unseal-threshold", &threshold.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "cluster init: {}", String::from_utf8_lossy(&out.stderr));
    let init: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(init["unseal_threshold"], threshold, "{init}");
    assert_eq!(init["dev_auto_unseal"], false, "{init}");
    assert_eq!(init["custodian_files"].as_array().unwrap().len(), custodians as usize, "{init}");
    Cluster { dir, base_port, children: Default::default() }
}

fn custodian(c: &Cluster, k: usize) -> std::path::PathBuf {
    c.path().join(format!("custodians/custodian-{k}.shares"))
}

/// `custody operator unseal --node id` with a share piped in on stdin, as a custodian would.
fn unseal_piped(c: &Cluster, id: u64, share_file: &Path) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--profile")
        .arg(c.profile("admin"))
        .args(["--json", "operator", "unseal", "--node", &id.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(share_file).unwrap()).unwrap();
    child.wait_with_output().unwrap()
}

fn seal_of(out: &Output) -> Value {
    assert!(out.status.success(), "operator unseal failed ({:?}): {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `GET path` on node `id` with alice's certificate: (status, body).
fn get(c: &Cluster, id: u64, path: &str) -> (u16, String) {
    let p = c.path().join("profiles");
    let cfg = config(&c.path().join("certs/ca.pem"), Some((&p.join("alice.pem"), &p.join("alice.key"))));
    let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    match raw_request(c.base_port + id as u16 - 1, cfg, req) {
        Ok(text) => {
            let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

#[test]
fn a_sealed_node_serves_only_health_and_unseal_until_k_of_n_custodians_open_it() {
    let mut c = init_sealed(3, 3, 2);
    // On disk, no node secret is in the clear: no key files, and the sealed
    // file holds no PEM key. Each custodian holds one share of each node.
    for id in 1..=3 {
        let d = c.node_dir(id);
        for f in ["tls.key", "checkpoint.key", "session.key", "share.key"] {
            assert!(!d.join(f).exists(), "node {id} has {f} in the clear");
        }
        let sealed = std::fs::read_to_string(d.join("sealed.json")).unwrap();
        assert!(sealed.contains("custody-sealed-v1") && !sealed.contains("PRIVATE KEY"), "{sealed}");
    }
    for k in 1..=3 {
        let text = std::fs::read_to_string(custodian(&c, k)).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("custody-unseal-v1:")).count(), 3, "custodian {k}: {text}");
    }
    c.start_all(3);

    // Sealed: live, not ready, and nothing but health, metrics and the seal is served.
    let (status, body) = wait_until("node 1 answers sealed", Duration::from_secs(30), || {
        let r = get(&c, 1, "/v1/seal");
        (r.0 == 200).then_some(r)
    });
    let seal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, &seal["sealed"], &seal["threshold"], &seal["shares"], &seal["progress"]),
        (200, &Value::Bool(true), &2.into(), &3.into(), &0.into())
    );
    assert_eq!(get(&c, 1, "/healthz").0, 200);
    for path in ["/readyz", "/v1/items", "/v1/checkpoint", "/internal/health", "/v1/node/binding", "/tlog/checkpoint"] {
        let (status, body) = get(&c, 1, path);
        assert!(status == 503 && body.contains("urn:custody:sealed"), "{path} on a sealed node: {status} {body}");
    }
    let (_, metrics) = get(&c, 1, "/metrics");
    assert!(metrics.lines().any(|l| l == "custody_sealed 1"), "{metrics}");
    // Its seal certificate cannot pass for the node: a member calling
    // node-1.custody fails the handshake, so no peer takes it for node 1.
    let node2 = c.keys_dir(2);
    let as_node2 = config(&c.path().join("certs/ca.pem"), Some((&c.node_dir(2).join("tls.pem"), &node2.join("tls.key"))));
    let pinned = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", c.base_port)).await.unwrap();
        tokio_rustls::TlsConnector::from(as_node2).connect(rustls::pki_types::ServerName::try_from("node-1.custody").unwrap(), tcp).await.map(|_| ())
    });
    assert!(pinned.is_err(), "a sealed node's seal certificate passed for node-1.custody");

    // One custodian: progress 1 of 2.
    let st = seal_of(&unseal_piped(&c, 1, &custodian(&c, 1)));
    assert_eq!((&st["sealed"], &st["progress"]), (&Value::Bool(true), &1.into()), "{st}");
    let schemas = crate::json::Schemas::new();
    schemas.output("operator unseal", &st);
    // The same share again counts once.
    let st = seal_of(&unseal_piped(&c, 1, &custodian(&c, 1)));
    assert_eq!(st["progress"], 1, "{st}");
    // A share of another cluster, and a share with one digit changed, are
    // refused (exit 1, problem wrong-share) and change nothing.
    let other = init_sealed(1, 3, 2);
    let foreign_text = std::fs::read_to_string(custodian(&other, 2)).unwrap().replace(&other.cluster_id(), &c.cluster_id());
    let foreign = c.path().join("foreign.share");
    std::fs::write(&foreign, &foreign_text).unwrap();
    let mut changed = std::fs::read_to_string(custodian(&c, 2)).unwrap().lines().next().unwrap().to_string();
    let last = changed.pop().unwrap();
    changed.push(if last == '0' { '1' } else { '0' });
    let tampered = c.path().join("tampered.share");
    std::fs::write(&tampered, &changed).unwrap();
    for bad in [&foreign, &tampered] {
        let out = unseal_piped(&c, 1, bad);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let err: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(err["problem"], "urn:custody:wrong-share", "{err}");
    }
    let st = seal_of(&c.cli(&c.profile("admin"), &["operator", "unseal", "--node", "1", "--status"]));
    assert_eq!((&st["sealed"], &st["progress"]), (&Value::Bool(true), &1.into()), "{st}");

    // The second custodian opens it: time from that share to ready.
    let t0 = Instant::now();
    let st = seal_of(&unseal_piped(&c, 1, &custodian(&c, 2)));
    let answered = t0.elapsed();
    assert_eq!(st["sealed"], false, "{st}");
    // Node 2 too; node 3 stays sealed, and status says so with its progress.
    seal_of(&unseal_piped(&c, 2, &custodian(&c, 3)));
    seal_of(&unseal_piped(&c, 2, &custodian(&c, 1)));
    wait_until("node 1 ready", Duration::from_secs(60), || (get(&c, 1, "/readyz").0 == 200).then_some(()));
    let ready = t0.elapsed();
    eprintln!("time to unseal: the last share answered in {} ms; node 1 ready {} ms after it", answered.as_millis(), ready.as_millis());
    seal_of(&unseal_piped(&c, 3, &custodian(&c, 1)));
    let st = wait_until("status shows node 3 sealed", Duration::from_secs(60), || {
        let st = c.status()?;
        (st["members"][2]["seal"]["sealed"] == true).then_some(st)
    });
    assert_eq!((&st["members"][2]["reachable"], &st["members"][2]["seal"]["progress"]), (&Value::Bool(false), &1.into()), "{st}");
    assert_eq!(st["dev_auto_unseal"], false, "{st}");
    let clip = c.path().join("clip.bin");
    write_clip(&clip, 300_000, 7);
    c.deposit("alice", &clip, "CASE-SEAL");
    seal_of(&unseal_piped(&c, 3, &custodian(&c, 2)));
    c.wait_leader(3);

    // A restarted node starts sealed again.
    c.kill(2);
    c.start(2);
    wait_until("node 2 sealed again", Duration::from_secs(30), || {
        let (s, b) = get(&c, 2, "/v1/seal");
        (s == 200 && b.contains("\"sealed\":true")).then_some(())
    });

    // Rekey on its host: 2 of the old shares give 2 new ones; the old no longer count.
    let out_dir = c.path().join("rekeyed");
    let rk = c.cli_json(
        &c.profile("admin"),
        &[
            "operator",
            "rekey",
            "--config",
            c.node_dir(2).join("node.toml").to_str().unwrap(),
            "--custodians",
            "2",
            "--unseal-threshold",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
            "--share-file",
            custodian(&c, 1).to_str().unwrap(),
            "--share-file",
            custodian(&c, 3).to_str().unwrap(),
        ],
    );
    assert_eq!((&rk["threshold"], &rk["shares"]), (&2.into(), &2.into()), "{rk}");
    schemas.output("operator rekey", &rk);
    // The node reads its sealed file at start.
    c.kill(2);
    c.start(2);
    wait_until("node 2 sealed", Duration::from_secs(30), || (get(&c, 2, "/v1/seal").0 == 200).then_some(()));
    // An old custodian file still holds a share of node 2, but not one the
    // rekeyed file was sealed with: refused.
    for k in [1, 3] {
        let out = unseal_piped(&c, 2, &custodian(&c, k));
        assert_eq!(out.status.code(), Some(1), "custodian {k}'s old share: {}", String::from_utf8_lossy(&out.stderr));
    }
    seal_of(&unseal_piped(&c, 2, &out_dir.join("custodian-1.share")));
    let st = seal_of(&unseal_piped(&c, 2, &out_dir.join("custodian-2.share")));
    assert_eq!(st["sealed"], false, "{st}");
    c.wait_leader(3);
    assert_eq!(c.items(&c.profile("alice")).len(), 1);
}

#[test]
fn a_dev_cluster_that_unseals_itself_says_so_in_its_checkpoints_and_status() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let st = c.status().unwrap();
    assert_eq!(st["dev_auto_unseal"], true, "{st}");
    let clip = c.path().join("clip.bin");
    write_clip(&clip, 10_000, 3);
    let item = c.deposit("alice", &clip, "CASE-DEV")["item"].as_str().unwrap().to_string();
    // The court's verifier says so too: the origin is in every bundle's signed checkpoint.
    let (bundle, keys) = (c.path().join("bundle.json"), c.pin_keys());
    let said = wait_until("a bundle that verifies", Duration::from_secs(30), || {
        c.cli_json(&c.profile("dave"), &["proof", &item, "--out", bundle.to_str().unwrap()]);
        let v = c.cli_json(&c.profile("dave"), &["verify", bundle.to_str().unwrap(), "--keys", keys.to_str().unwrap()]);
        (v["valid"] == true).then_some(v)
    });
    let checkpoint = said["checks"].as_array().unwrap().iter().find(|c| c["name"] == "checkpoint signatures").unwrap();
    assert!(checkpoint["detail"].as_str().unwrap().contains("a DEV cluster whose nodes unseal themselves"), "{checkpoint}");
    let cp = wait_until("a checkpoint", Duration::from_secs(30), || {
        let out = c.cli(&c.profile("dave"), &["checkpoint"]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).ok()).flatten()
    });
    assert!(cp["origin"].as_str().unwrap().ends_with("/dev-auto-unseal"), "{cp}");
    assert!(cp["note"].as_str().unwrap().starts_with(cp["origin"].as_str().unwrap()), "{cp}");
    let (_, seal) = get(&c, 1, "/v1/seal");
    let seal: Value = serde_json::from_str(&seal).unwrap();
    assert_eq!((&seal["sealed"], &seal["dev_auto_unseal"]), (&Value::Bool(false), &Value::Bool(true)), "{seal}");
}

/// A fresh SoftHSM2 token (Debian's `softhsm2`, its default configuration),
/// deleted when dropped.
struct SoftToken {
    label: String,
}

impl Drop for SoftToken {
    fn drop(&mut self) {
        let _ = Command::new("softhsm2-util").args(["--delete-token", "--token", &self.label]).output();
    }
}

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn a_pkcs11_token_unseals_its_node_and_its_custodians_still_can() {
    if !Path::new(SOFTHSM).exists() || Command::new("softhsm2-util").arg("--version").output().is_err() {
        eprintln!("SKIPPED: needs Debian's softhsm2 (.ci/run installs it)");
        return;
    }
    let mut c = init_sealed(3, 3, 2);
    let token = SoftToken { label: format!("custody-it-{}", c.cluster_id()) };
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", &token.label, "--pin", "1234", "--so-pin", "5678"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pin = c.node_dir(1).join("token.pin");
    std::fs::write(&pin, "1234\n").unwrap();
    let config = c.node_dir(1).join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[seal.pkcs11]\nmodule = \"{SOFTHSM}\"\ntoken = \"{}\"\npin_file = \"token.pin\"\nkey_label = \"custody-node-1\"\n",
        token.label
    ));
    std::fs::write(&config, text).unwrap();
    // Wrapping needs the node's root key: k custodians' shares.
    let w = c.cli_json(
        &c.profile("admin"),
        &[
            "operator",
            "wrap",
            "--config",
            config.to_str().unwrap(),
            "--share-file",
            custodian(&c, 1).to_str().unwrap(),
            "--share-file",
            custodian(&c, 2).to_str().unwrap(),
        ],
    );
    crate::json::Schemas::new().output("operator wrap", &w);
    assert_eq!((&w["node"], w["token"].as_str()), (&1.into(), Some(token.label.as_str())), "{w}");
    // One share is not enough to wrap.
    let out =
        c.cli(&c.profile("admin"), &["operator", "wrap", "--config", config.to_str().unwrap(), "--share-file", custodian(&c, 3).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));

    c.start_all(3);
    // Node 1 opens itself with the token; nodes 2 and 3 wait for custodians.
    let seal1 = wait_until("node 1 unsealed by its token", Duration::from_secs(30), || {
        let (s, b) = get(&c, 1, "/v1/seal");
        (s == 200).then(|| serde_json::from_str::<Value>(&b).ok()).flatten().filter(|v| v["sealed"] == false)
    });
    assert_eq!(seal1["pkcs11"], true, "{seal1}");
    for id in [2, 3] {
        seal_of(&unseal_piped(&c, id, &custodian(&c, 1)));
        seal_of(&unseal_piped(&c, id, &custodian(&c, 3)));
    }
    c.wait_leader(3);
    let clip = c.path().join("clip.bin");
    write_clip(&clip, 100_000, 9);
    c.deposit("alice", &clip, "CASE-HSM");

    // With a wrong PIN the token opens nothing: node 1 stays sealed, and its custodians open it.
    c.kill(1);
    std::fs::write(&pin, "9999\n").unwrap();
    c.start(1);
    let st = wait_until("node 1 sealed", Duration::from_secs(30), || {
        let (s, b) = get(&c, 1, "/v1/seal");
        (s == 200).then(|| serde_json::from_str::<Value>(&b).ok()).flatten()
    });
    assert_eq!((&st["sealed"], &st["pkcs11"]), (&Value::Bool(true), &Value::Bool(false)), "{st}");
    seal_of(&unseal_piped(&c, 1, &custodian(&c, 2)));
    let st = seal_of(&unseal_piped(&c, 1, &custodian(&c, 3)));
    assert_eq!(st["sealed"], false, "{st}");
    c.wait_leader(3);
    assert_eq!(c.items(&c.profile("alice")).len(), 1);
}
