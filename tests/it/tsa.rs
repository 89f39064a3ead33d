//! Issue 15, trusted time: a real 3-node cluster configured with a TSA run
//! locally (`tests/tsa/tsa.py`: `openssl ts -reply` behind HTTP on
//! loopback) publishes checkpoints with RFC 3161 tokens; its bundles carry
//! them, and `custody verify --tsa-cert` checks them offline. A token under
//! another TSA's certificate, a token of another checkpoint, or no token at
//! all is rejected. A TSA that is down stops no deposit and shows in `cluster
//! status`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_ports, wait_until, write_clip, Cluster, BIN};

/// `tests/tsa/tsa.py DIR PORT ALG` as a child process, killed on drop.
struct TsaProcess {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl TsaProcess {
    fn start(dir: &Path, alg: &str) -> TsaProcess {
        let port = free_ports(1);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tsa/tsa.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .arg(port.to_string())
            .arg(alg)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the test TSA");
        wait_until("the test TSA to listen", Duration::from_secs(30), || {
            (dir.join("tsa.crt").exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).then_some(())
        });
        TsaProcess { child, dir: dir.to_path_buf(), port }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tsa.crt")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TsaProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tsa_status(c: &Cluster, via: u64) -> Option<Value> {
    let out = c.cli(&c.node_profile("admin", via), &["cluster", "status"]);
    let st: Value = serde_json::from_slice(&out.stdout).ok()?;
    crate::json::Schemas::new().output("cluster status", &st);
    Some(st["tsa"].clone()).filter(|t| t.is_object())
}

/// `custody --json verify BUNDLE --keys KEYS [--tsa-cert CERT]`: exit code and report.
fn verify(bundle: &Path, keys: &Path, cert: Option<&Path>) -> (i32, Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "verify"]).arg(bundle).arg("--keys").arg(keys);
    if let Some(cert) = cert {
        cmd.arg("--tsa-cert").arg(cert);
    }
    let out = cmd.output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    crate::json::Schemas::new().output("verify", &report);
    (out.status.code().unwrap_or(-1), report)
}

fn check<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name)
}

#[test]
fn checkpoints_carry_rfc_3161_tokens_that_a_court_checks_offline_and_a_tsa_down_stops_nothing() {
    let mut c = Cluster::init(3, "");
    let mut tsa = TsaProcess::start(&c.path().join("tsa"), "ec");
    let other = TsaProcess::start(&c.path().join("other-tsa"), "rsa");
    for id in 1..=3 {
        c.append_node_config(id, &format!("[tsa]\nurl = \"http://127.0.0.1:{}/\"\n", tsa.port));
    }
    c.start_all(3);
    let leader = c.wait_leader(3);
    let p = c.profile("dave");
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 10_000, 1);
    let item = c.deposit("alice", &clip, "case-T")["item"].as_str().unwrap().to_string();

    // The checkpoint view and the bundle carry a token; status shows the TSA.
    let bpath = c.path().join("bundle.json");
    let bundle: Value = wait_until("a bundle with a timestamp token", Duration::from_secs(60), || {
        c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let b: Value = serde_json::from_slice(&std::fs::read(&bpath).ok()?).ok()?;
        b["timestamp"].is_string().then_some(b)
    });
    let st = wait_until("status to show the TSA", Duration::from_secs(30), || {
        let t = tsa_status(&c, leader)?;
        t["last_stamped_size"].is_u64().then_some(t)
    });
    assert_eq!(st["url"], format!("http://127.0.0.1:{}/", tsa.port));
    assert!(st["last_error"].is_null() && st["last_stamped_at"].is_string(), "{st}");
    let token_bytes = st["last_token_bytes"].as_u64().unwrap();
    eprintln!("TSA round trip: {:.2} ms; token {token_bytes} bytes (DER)", st["last_round_trip_ms"].as_f64().unwrap());

    let keys = c.path().join("keys.txt");
    let out = Command::new(BIN).arg("--profile").arg(&p).args(["cluster", "keys"]).output().unwrap();
    std::fs::write(&keys, &out.stdout).unwrap();

    // Checked against the TSA's certificate: valid, with the time it states.
    let (code, report) = verify(&bpath, &keys, Some(&tsa.cert()));
    assert_eq!(code, 0, "{report:#}");
    let stamp = &report["timestamp"];
    assert!(stamp["gen_time"].as_str().unwrap().ends_with('Z') && stamp["tsa"].as_str().unwrap().contains("custody test TSA"), "{report:#}");
    assert_eq!(check(&report, "timestamp").unwrap()["ok"], true);
    let with = std::fs::metadata(&bpath).unwrap().len();
    let mut without = bundle.clone();
    without.as_object_mut().unwrap().remove("timestamp");
    let text = serde_json::to_string_pretty(&without).unwrap() + "\n";
    eprintln!("bundle size with the token {with} B, without it {} B", text.len());

    // Without --tsa-cert the token is named as present and unchecked, and no time is reported.
    let (code, report) = verify(&bpath, &keys, None);
    assert_eq!(code, 0, "{report:#}");
    assert!(report.get("timestamp").is_none() && check(&report, "timestamp").unwrap()["detail"].as_str().unwrap().contains("NOT checked"));

    // Under another TSA's certificate: invalid (exit 1).
    let (code, report) = verify(&bpath, &keys, Some(&other.cert()));
    assert_eq!((code, &check(&report, "timestamp").unwrap()["ok"]), (1, &Value::Bool(false)), "{report:#}");

    // The token removed while the court asks for one: invalid.
    let bare = c.path().join("bare.json");
    std::fs::write(&bare, &text).unwrap();
    let (code, report) = verify(&bare, &keys, Some(&tsa.cert()));
    assert_eq!((code, &check(&report, "timestamp").unwrap()["ok"]), (1, &Value::Bool(false)), "{report:#}");

    // A genuine token of an earlier checkpoint put on this one: invalid.
    let first_token = bundle["timestamp"].as_str().unwrap().to_string();
    write_clip(&clip, 10_000, 2);
    c.deposit("alice", &clip, "case-T");
    let later: Value = wait_until("a later stamped checkpoint", Duration::from_secs(60), || {
        c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let b: Value = serde_json::from_slice(&std::fs::read(&bpath).ok()?).ok()?;
        (b["checkpoint"] != bundle["checkpoint"] && b["timestamp"].is_string()).then_some(b)
    });
    let mut swapped = later.clone();
    swapped["timestamp"] = Value::String(first_token);
    let spath = c.path().join("swapped.json");
    std::fs::write(&spath, serde_json::to_string(&swapped).unwrap()).unwrap();
    let (code, report) = verify(&spath, &keys, Some(&tsa.cert()));
    assert_eq!(code, 1, "{report:#}");
    assert!(check(&report, "timestamp").unwrap()["detail"].as_str().unwrap().contains("another message imprint"), "{report:#}");

    // The TSA goes down: deposits go on promptly, checkpoints are published
    // without tokens, and status names the error.
    tsa.kill();
    for i in 0..2 {
        write_clip(&clip, 10_000, 10 + i);
        let t = Instant::now();
        c.deposit("alice", &clip, "case-T");
        assert!(t.elapsed() < Duration::from_secs(10), "a deposit waited {:?} with the TSA down", t.elapsed());
    }
    let st = wait_until("status to show the TSA's error", Duration::from_secs(30), || {
        let t = tsa_status(&c, leader)?;
        (t["last_error"].is_string() && t["last_error_at"].is_string()).then_some(t)
    });
    assert!(st["last_stamped_size"].is_u64(), "the last success stays shown: {st}");
    let unstamped: Value = wait_until("a bundle without a token", Duration::from_secs(60), || {
        c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let b: Value = serde_json::from_slice(&std::fs::read(&bpath).ok()?).ok()?;
        b.get("timestamp").is_none().then_some(b)
    });
    assert!(unstamped["checkpoint"].is_string());
    assert_eq!(verify(&bpath, &keys, None).0, 0);
    assert_eq!(verify(&bpath, &keys, Some(&tsa.cert())).0, 1);
}
