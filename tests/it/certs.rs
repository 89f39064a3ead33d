//! Issue 16, certificates: dev certificates live days to a year, not until
//! 4096; a node warns in `cluster status` before its certificate or the CA's
//! expires; `certs issue` onboards a new person from the cluster's existing
//! CA, whose profile then works once an administrator files them.

use std::process::Command;

use rustls::pki_types::pem::PemObject;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{free_ports, wait_until, Cluster, BIN};

/// `cluster init` with the dev CA valid for `days`.
fn init_with_cert_days(days: u32) -> Cluster {
    let dir = tempfile::Builder::new().prefix("custody-it-").tempdir().unwrap();
    let base_port = free_ports(5);
    let out = Command::new(BIN)
        .args(["cluster", "init", "--dir"])
        .arg(dir.path())
        .args(["--nodes", "3", "--base-port", &base_port.to_string(), "--cert-days", &days.to_string(), "--dev-auto-unseal"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cluster init: {}", String::from_utf8_lossy(&out.stderr));
    Cluster { dir, base_port, children: Default::default() }
}

fn not_after_days(pem: &std::path::Path) -> i64 {
    let der = rustls::pki_types::pem::PemObject::from_pem_file(pem).map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec()).unwrap();
    let (_, until) = custody::tls::validity_of(&der).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    (until - now) / 86_400
}

#[test]
fn dev_certificates_live_a_year_and_status_warns_before_one_expires() {
    // The default: the CA and every certificate it issued end within a year.
    let c = Cluster::init(1, "");
    for f in ["certs/ca.pem", "node1/tls.pem", "profiles/alice.pem"] {
        let d = not_after_days(&c.path().join(f));
        assert!((360..=365).contains(&d), "{f} is valid {d} more days");
    }
    drop(c);

    // A CA of 20 days: each node warns about its own certificate and the CA's.
    let mut c = init_with_cert_days(20);
    c.start_all(3);
    c.wait_leader(3);
    let st = c.status().unwrap();
    crate::json::Schemas::new().output("cluster status", &st);
    for m in st["members"].as_array().unwrap() {
        let warnings = m["health"]["warnings"].as_array().unwrap();
        let expiring: Vec<&Value> = warnings.iter().filter(|w| w["kind"] == "certificate_expiring").collect();
        let roles: Vec<&str> = expiring.iter().map(|w| w["certificate"].as_str().unwrap()).collect();
        assert_eq!(roles, ["node", "ca"], "{m:#}");
        for w in expiring {
            assert!((18..=20).contains(&w["days_left"].as_i64().unwrap()) && w["expires_at"].as_str().unwrap().ends_with('Z'), "{w}");
        }
    }
    // And the text form says so to a person.
    let out = Command::new(BIN).arg("--profile").arg(c.profile("admin")).args(["cluster", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("expires at") && text.contains("renew it"), "{text}");
}

#[test]
fn certs_issue_onboards_a_person_from_the_clusters_own_ca() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let ca_dir = c.path().join("certs");
    let issue = |args: &[&str]| Command::new(BIN).args(["--json", "certs", "issue"]).args(args).arg("--ca-dir").arg(&ca_dir).output().unwrap();
    let out = issue(&["erin", "--days", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    crate::json::Schemas::new().output("certs issue", &issued);
    let profile = std::path::PathBuf::from(issued["profile"].as_str().unwrap());
    assert_eq!(profile, c.path().join("profiles/erin.toml").canonicalize().unwrap());
    assert!((29..=30).contains(&not_after_days(&c.path().join("profiles/erin.pem"))));
    for f in ["erin.key", "erin.signing.key"] {
        let mode = std::fs::metadata(c.path().join("profiles").join(f)).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
        assert_eq!(mode.unwrap(), 0o600, "{f}");
    }
    // Nothing is overwritten; bad names and lifetimes are refused with a usage error.
    assert_eq!(issue(&["erin"]).status.code(), Some(2));
    assert_eq!(issue(&["../x"]).status.code(), Some(2));
    assert_eq!(issue(&["frank", "--days", "4000"]).status.code(), Some(2));

    // Her certificate passes the handshake, but she is nobody until filed.
    let list = |p: &std::path::Path| c.cli(p, &["items"]);
    let refused = list(&profile);
    let said: Value = serde_json::from_slice(&refused.stdout).unwrap_or_default();
    assert_eq!(said["problem"], "urn:custody:unauthenticated", "an unregistered person was served: {said}");
    let key = issued["public_key"].as_str().unwrap();
    let add = ["registry", "officer", "add", "erin", "--badge", "LN-0199", "--unit", "Heping", "--role", "officer", "--key", key];
    let filed = c.cli_json(&c.profile("admin"), &add);
    c.cli_json(&c.profile("admin2"), &["registry", "approve", filed["change"].as_str().unwrap(), "--yes"]);
    wait_until("erin to be served", Duration::from_secs(30), || list(&profile).status.success().then_some(()));
}

#[test]
fn a_revoked_certificate_fails_the_handshake_everywhere_within_seconds() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let items = |user: &str| c.cli(&c.profile(user), &["items"]);
    assert!(items("alice").status.success());
    let revoke = |cert: &str| {
        Command::new(BIN)
            .args(["--json", "certs", "revoke", "--ca-dir"])
            .arg(c.path().join("certs"))
            .arg("--cert")
            .arg(c.path().join(cert))
            .output()
            .unwrap()
    };

    // A user: every node refuses her certificate at the handshake; others are served.
    let out = revoke("profiles/alice.pem");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written: Value = serde_json::from_slice(&out.stdout).unwrap();
    crate::json::Schemas::new().output("certs revoke", &written);
    assert_eq!(written["revoked"].as_array().unwrap().len(), 1);
    assert!(written["revoked"][0]["subject"].as_str().unwrap().contains("alice"), "{written}");
    for id in 1..=3 {
        let p = c.node_profile("alice", id);
        let said = wait_until("alice refused at the handshake", Duration::from_secs(20), || {
            let out = c.cli(&p, &["items"]);
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        });
        // In TLS 1.3 the client may learn of the refusal only at its first read, so
        // what it says varies ("Revoked", or a connection closed); the node says why.
        let log = std::fs::read_to_string(c.node_dir(id).join("node.log")).unwrap();
        assert!(said.contains("Revoked") || log.contains("invalid peer certificate: Revoked"), "node {id} refused alice for another reason: {said}");
    }
    assert!(items("bob").status.success());
    // Revoking twice is refused; nothing changes. So is a certificate another CA issued.
    assert_eq!(revoke("profiles/alice.pem").status.code(), Some(1));
    let other = c.path().join("other-ca");
    assert!(Command::new(BIN)
        .args(["certs", "init", "--dir"])
        .arg(&other)
        .args(["--nodes", "0", "--users", "alice"])
        .output()
        .unwrap()
        .status
        .success());
    let out = revoke("other-ca/alice.pem");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not issued by this CA"), "{}", String::from_utf8_lossy(&out.stdout));

    // A node: the others stop talking to it in both directions, and the
    // cluster goes on with the two.
    assert!(revoke("node3/tls.pem").status.success());
    let view = |via: u64| {
        let st: Value = serde_json::from_slice(&c.cli(&c.node_profile("admin", via), &["cluster", "status"]).stdout).ok()?;
        let reachable = |id: u64| st["members"].as_array()?.iter().find(|m| m["id"] == id).map(|m| m["reachable"] == true);
        Some((reachable(1)?, reachable(2)?, reachable(3)?))
    };
    wait_until("node 1 to refuse node 3", Duration::from_secs(20), || (view(1)? == (true, true, false)).then_some(()));
    wait_until("node 3 to be refused by the others", Duration::from_secs(20), || (view(3)? == (false, false, true)).then_some(()));
    let clip = c.path().join("clip.mp4");
    crate::harness::write_clip(&clip, 10_000, 1);
    c.deposit("bob", &clip, "case-R");
}

/// A connection opened before the revocation is closed by the node when the
/// new list arrives: a revoked holder does not keep a kept-alive connection.
#[test]
fn a_connection_open_before_the_revocation_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = Cluster::init(1, "");
    c.start(1);
    c.wait_leader(1);
    let cfg = crate::tls::config(&c.path().join("certs/ca.pem"), Some((&c.path().join("profiles/carol.pem"), &c.path().join("profiles/carol.key"))));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let port = c.base_port;
    let mut tls = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tls.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        tls
    });
    let out = Command::new(BIN)
        .args(["certs", "revoke", "--ca-dir"])
        .arg(c.path().join("certs"))
        .arg("--cert")
        .arg(c.path().join("profiles/carol.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // Well before any idle or header timeout (20 s), the node closes it.
    let closed = rt.block_on(async move {
        let mut buf = vec![0u8; 4096];
        tokio::time::timeout(Duration::from_secs(8), tls.read(&mut buf)).await
    });
    match closed {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("the revoked holder's connection is still open: {other:?}"),
    }
}

/// Rotation without downtime: a node's and a user's certificates are
/// replaced in place; the node loads its new one with no restart and keeps
/// serving, the administrators register it, and the old ones, revoked, no
/// longer pass a handshake.
#[test]
fn certificates_rotate_in_place_without_a_restart() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let rotate = |cert: &str| {
        let out = Command::new(BIN)
            .args(["--json", "certs", "rotate", "--revoke-old", "--ca-dir"])
            .arg(c.path().join("certs"))
            .arg("--cert")
            .arg(c.path().join(cert))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        crate::json::Schemas::new().output("certs rotate", &v);
        v
    };
    let old_node3 = std::fs::read(c.path().join("node3/tls.pem")).unwrap();
    let r = rotate("node3/tls.pem");
    assert_eq!(r["subject"], "node-3");
    assert_ne!(r["serial"], r["old_serial"]);
    // A sealed node's key never leaves its sealed file: renewed over the same key.
    assert!(r["key"].is_null() && !c.path().join("node3/tls.key").exists(), "{r}");
    // Node 3 serves with its new certificate within seconds; the others reach it.
    let fingerprint = |pem: &[u8]| {
        let der: rustls::pki_types::CertificateDer<'static> = rustls::pki_types::pem::PemObject::from_pem_slice(pem).unwrap();
        hex::encode(custody::crypto::sha256(der.as_ref()))
    };
    let new_fp = fingerprint(&std::fs::read(c.path().join("node3/tls.pem")).unwrap());
    assert_ne!(new_fp, fingerprint(&old_node3));
    // Node 3 loads it within seconds, with no restart, and states its keys with it.
    let ca = c.path().join("certs/ca.pem");
    let stated = || -> Option<String> {
        let cfg = crate::tls::config(&ca, Some((&c.path().join("profiles/bob.pem"), &c.path().join("profiles/bob.key"))));
        let answer =
            crate::tls::raw_request(c.base_port + 2, cfg, "GET /v1/node/binding HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".into())
                .ok()?;
        let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1)?).ok()?;
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body["keys"]["certificate"].as_str()?).ok()?;
        Some(hex::encode(custody::crypto::sha256(&der)))
    };
    wait_until("node 3 to state its new certificate", Duration::from_secs(20), || (stated()? == new_fp).then_some(()));
    // The others reach it with that certificate (their old connections were dropped).
    let status = |via: u64| -> Option<Value> { serde_json::from_slice(&c.cli(&c.node_profile("admin", via), &["cluster", "status"]).stdout).ok() };
    wait_until("every node to reach node 3", Duration::from_secs(30), || {
        (1..=3)
            .all(|via| status(via).is_some_and(|st| st["members"].as_array().is_some_and(|m| m.iter().all(|m| m["reachable"] == true))))
            .then_some(())
    });
    // The administrators register it.
    let bound = c.cli_json(&c.profile("admin"), &["cluster", "bind", "--id", "3", "--addr", &c.addr(3)]);
    crate::json::Schemas::new().output("cluster bind", &bound);
    assert_eq!((bound["status"].as_str(), bound["subject"].as_str()), (Some("applied"), Some("node-3")), "{bound}");

    // A user: the same profile works with the new files; a copy of the old pair is refused.
    let p = c.path().join("profiles");
    std::fs::copy(p.join("alice.pem"), p.join("alice-old.pem")).unwrap();
    std::fs::copy(p.join("alice.key"), p.join("alice-old.key")).unwrap();
    std::fs::copy(p.join("alice.toml"), p.join("alice-old.toml")).unwrap();
    let text = std::fs::read_to_string(p.join("alice-old.toml")).unwrap().replace("alice.pem", "alice-old.pem").replace("alice.key", "alice-old.key");
    std::fs::write(p.join("alice-old.toml"), text).unwrap();
    rotate("profiles/alice.pem");
    assert!(c.cli(&c.profile("alice"), &["items"]).status.success());
    wait_until("the old certificate to be refused", Duration::from_secs(20), || {
        (!c.cli(&p.join("alice-old.toml"), &["items"]).status.success()).then_some(())
    });
    // The cluster went on throughout: a deposit now.
    let clip = c.path().join("clip.mp4");
    crate::harness::write_clip(&clip, 10_000, 1);
    c.deposit("alice", &clip, "case-ROT");
}

/// `certs export-p12`: a user's certificate, key and the CA in one
/// password-protected PKCS#12 file, as a browser imports it; read back with
/// OpenSSL (another implementation), and refused with a wrong password.
#[test]
fn a_users_certificate_exports_as_pkcs12_that_openssl_reads_back() {
    let c = Cluster::init(1, "");
    let (p, out, pw) = (c.path().join("profiles"), c.path().join("alice.p12"), c.path().join("p12.pass"));
    std::fs::write(&pw, "correct horse\n").unwrap();
    let run = || {
        Command::new(BIN)
            .args(["--json", "certs", "export-p12", "alice", "--from"])
            .arg(&p)
            .arg("--out")
            .arg(&out)
            .arg("--password-file")
            .arg(&pw)
            .output()
            .unwrap()
    };
    let done = run();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let v: Value = serde_json::from_slice(&done.stdout).unwrap();
    crate::json::Schemas::new().output("certs export-p12", &v);
    assert_eq!((v["user"].as_str(), v["includes_ca"].as_bool()), (Some("alice"), Some(true)), "{v}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    // An existing file is not overwritten.
    assert_eq!(run().status.code(), Some(2));
    let openssl = |args: &[&str], pass: &str| {
        Command::new("openssl").arg("pkcs12").arg("-in").arg(&out).args(["-passin", &format!("pass:{pass}")]).args(args).output().unwrap()
    };
    let pem_der = |text: &[u8]| -> Vec<Vec<u8>> { rustls::pki_types::CertificateDer::pem_slice_iter(text).map(|c| c.unwrap().to_vec()).collect() };
    let der_of = |path: &std::path::Path| pem_der(&std::fs::read(path).unwrap());
    let user = openssl(&["-nokeys", "-clcerts"], "correct horse");
    assert!(user.status.success(), "{}", String::from_utf8_lossy(&user.stderr));
    assert_eq!(pem_der(&user.stdout), der_of(&p.join("alice.pem")), "the user's certificate");
    let ca = openssl(&["-nokeys", "-cacerts"], "correct horse");
    assert_eq!(pem_der(&ca.stdout), der_of(&c.path().join("certs/ca.pem")), "the CA after it");
    let key = openssl(&["-nocerts", "-nodes"], "correct horse");
    let got: rustls::pki_types::PrivateKeyDer<'static> = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key.stdout).unwrap();
    let want: rustls::pki_types::PrivateKeyDer<'static> = rustls::pki_types::PrivateKeyDer::from_pem_file(p.join("alice.key")).unwrap();
    assert_eq!(got.secret_der(), want.secret_der(), "the user's key");
    assert!(!openssl(&["-nokeys"], "wrong").status.success(), "a wrong password opens nothing");
}
