//! Issue 16: a cluster on real hosts. `cluster init --hosts` writes three
//! nodes for three addresses that are not loopback; each runs in its own
//! network namespace (its own interface and address, joined by a bridge), and
//! a client in a fourth namespace deposits and reads the item list. Needs
//! root (network namespaces), as CI has.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{wait_until, write_clip, BIN};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2's `ip`");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Three node namespaces and a client namespace on one bridge, removed on drop.
struct Hosts {
    names: Vec<String>,
    client: String,
    subnet: String,
    nodes: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Hosts {
    fn new() -> Hosts {
        let r = custody::crypto::random_bytes::<2>().unwrap();
        let tag = hex::encode(r);
        let subnet = format!("10.231.{}", r[0]);
        let client = format!("cst{tag}c");
        let names: Vec<String> = (1..=3).map(|i| format!("cst{tag}n{i}")).collect();
        let h = Hosts { names, client, subnet, nodes: Vec::new(), dir: tempfile::Builder::new().prefix("custody-hosts-").tempdir().unwrap() };
        ip(&["netns", "add", &h.client]);
        ip(&["-n", &h.client, "link", "set", "lo", "up"]);
        ip(&["-n", &h.client, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &h.client, "addr", "add", &format!("{}.254/24", h.subnet), "dev", "br0"]);
        ip(&["-n", &h.client, "link", "set", "br0", "up"]);
        for (i, ns) in h.names.iter().enumerate() {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            let peer = format!("p{tag}{}", i + 1);
            ip(&["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns", &h.client]);
            ip(&["-n", ns, "addr", "add", &format!("{}.{}/24", h.subnet, i + 1), "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &h.client, "link", "set", &peer, "master", "br0"]);
            ip(&["-n", &h.client, "link", "set", &peer, "up"]);
        }
        h
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn start(&mut self, id: usize) {
        let node = self.path().join(format!("node{id}"));
        let log = std::fs::File::create(node.join("node.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.names[id - 1], BIN, "node", "--config"])
            .arg(node.join("node.toml"))
            .env("CUSTODY_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.push(child);
    }

    /// The CLI, run in the client namespace.
    fn cli(&self, user: &str, args: &[&str]) -> std::process::Output {
        let profile: PathBuf = self.path().join(format!("profiles/{user}.toml"));
        Command::new("ip")
            .args(["netns", "exec", &self.client, BIN, "--profile"])
            .arg(profile)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        // `ip netns exec` leaves the node as its child's image: kill by namespace too.
        for ns in self.names.iter().chain([&self.client]) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn a_cluster_on_three_hosts_with_their_own_addresses() {
    let mut h = Hosts::new();
    let hosts: Vec<String> = (1..=3).map(|i| format!("{}.{i}", h.subnet)).collect();
    let out = Command::new(BIN)
        .args(["--json", "cluster", "init", "--dir"])
        .arg(h.path())
        .args(["--nodes", "3", "--base-port", "7101", "--hosts", &hosts.join(","), "--dev-auto-unseal"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let init: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, n) in init["nodes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(n["addr"], format!("https://{}:7101", hosts[i]), "{init}");
    }
    let cfg = std::fs::read_to_string(h.path().join("node2/node.toml")).unwrap();
    assert!(cfg.contains("listen = \"0.0.0.0:7101\"") && cfg.contains(&format!("https://{}:7101", hosts[1])), "{cfg}");
    // Each node's certificate names its host as well as its node name.
    let der: rustls::pki_types::CertificateDer<'static> = rustls::pki_types::pem::PemObject::from_pem_file(h.path().join("node2/tls.pem")).unwrap();
    assert_eq!(custody::tls::san_hosts(der.as_ref()).unwrap(), vec![hosts[1].clone()]);
    // A host name that is neither a name nor an address, or a count that does not match, is refused.
    for bad in ["10.0.0.1,bad host,10.0.0.3", "10.0.0.1,10.0.0.2"] {
        let dir = h.path().join("bad");
        let out = Command::new(BIN).args(["cluster", "init", "--dir"]).arg(&dir).args(["--nodes", "3", "--hosts", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }

    for id in 1..=3 {
        h.start(id);
    }
    let st = wait_until("a leader reaching every host", Duration::from_secs(60), || {
        let st: Value = serde_json::from_slice(&h.cli("admin", &["cluster", "status"]).stdout).ok()?;
        st["leader"].as_u64()?;
        st["members"].as_array()?.iter().all(|m| m["reachable"] == true).then_some(st)
    });
    let addrs: Vec<&str> = st["members"].as_array().unwrap().iter().map(|m| m["addr"].as_str().unwrap()).collect();
    eprintln!("members: {addrs:?}");
    assert_eq!(addrs, hosts.iter().map(|a| format!("https://{a}:7101")).collect::<Vec<_>>());

    // A deposit from the client's namespace reaches all three hosts.
    let clip = h.path().join("clip.mp4");
    write_clip(&clip, 300_000, 7);
    let out = h.cli("alice", &["deposit", clip.to_str().unwrap(), "--case", "case-H", "--system", "cam-demo-1", "--retention", "standard"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items: Value = serde_json::from_slice(&h.cli("bob", &["items"]).stdout).unwrap();
    assert_eq!(items["items"].as_array().unwrap().len(), 1, "{items}");
}
