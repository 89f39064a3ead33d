//! A real cluster of `custody node` processes on loopback, driven through the
//! real CLI. Every node's log is kept in its directory; a failing test prints
//! where.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_custody");

/// The court's verifier (`verify/`), which `cargo test` builds beside `custody`
/// (for its own tests in verify/tests/).
pub fn verify_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(BIN).with_file_name("custody-verify");
    assert!(bin.exists(), "{} is not built: run the tests with `cargo test` at the workspace root", bin.display());
    bin
}

/// `n` consecutive free ports on loopback, below Linux's default ephemeral
/// range (32768–60999), where any outgoing connection could take one of them
/// between this check and the node's start.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..500 {
        let base = 20000 + (u16::from_be_bytes(custody::crypto::random_bytes::<2>().unwrap()) % 12000);
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `size` deterministic pseudo-random bytes; returns their SHA-256 hex.
pub fn write_clip(path: &Path, size: u64, seed: u8) -> String {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut h = custody::crypto::Hasher::new();
    let mut block = custody::crypto::sha256(&[seed, 0x5a]);
    let mut left = size;
    while left > 0 {
        block = custody::crypto::sha256(&block);
        let n = left.min(32) as usize;
        f.write_all(&block[..n]).unwrap();
        h.update(&block[..n]);
        left -= n as u64;
    }
    f.flush().unwrap();
    hex::encode(h.finish())
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
    pub children: BTreeMap<u64, Child>,
}

impl Cluster {
    /// `cluster init` for `n` nodes; `extra` is appended to every node.toml.
    pub fn init(n: u64, extra: &str) -> Cluster {
        let dir = tempfile::Builder::new().prefix("custody-it-").tempdir().unwrap();
        let base_port = free_ports(n as u16 + 2);
        let out = Command::new(BIN)
            .args(["cluster", "init", "--dir"])
            .arg(dir.path())
            .args(["--nodes", &n.to_string(), "--base-port", &base_port.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster init: {}", String::from_utf8_lossy(&out.stderr));
        let c = Cluster { dir, base_port, children: BTreeMap::new() };
        if !extra.is_empty() {
            for id in 1..=n {
                c.append_node_config(id, extra);
            }
        }
        c
    }

    pub fn append_node_config(&self, id: u64, extra: &str) {
        let p = self.node_dir(id).join("node.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        // Top-level keys must come before the [[peers]] tables.
        let (head, tail) = text.split_at(text.find("[[peers]]").unwrap_or(text.len()));
        std::fs::write(&p, format!("{head}{extra}\n{tail}")).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// The cluster id `cluster init` chose (from `cluster.toml`).
    pub fn cluster_id(&self) -> String {
        std::fs::read_to_string(self.path().join("cluster.toml"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("cluster_id = ").map(|v| v.trim_matches('"').to_string()))
            .unwrap()
    }
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.path().join(format!("node{id}"))
    }

    /// Node `id`'s secrets as plain key files, for tests that act as the node
    /// (or as an insider holding its keys): opened from its dev seal and
    /// written to `node<id>/opened/` as `tls.key` (PEM), `checkpoint.key`,
    /// `session.key` and `share.key` (64 hex digits).
    pub fn keys_dir(&self, id: u64) -> PathBuf {
        use base64::Engine;
        let dir = self.node_dir(id).join("opened");
        if dir.exists() {
            return dir;
        }
        let cfg = custody::config::NodeConfig::load(&self.node_dir(id).join("node.toml")).unwrap();
        let s = match cfg.seal.as_ref().filter(|s| s.auto_unseal.is_none()) {
            // Sealed for custodians: the test holds every custodian's file.
            Some(sc) => {
                let file = custody::node::seal::SealedFile::load(&sc.file).unwrap();
                let mut text = String::new();
                for e in std::fs::read_dir(self.path().join("custodians")).unwrap() {
                    text.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
                }
                file.open(&custody::node::seal::shares_in(&text, &file.cluster_id, id).unwrap()).unwrap()
            }
            None => custody::node::secrets_without_custodians(&cfg).unwrap(),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(s.tls_key.as_slice());
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        std::fs::write(dir.join("tls.key"), format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))).unwrap();
        std::fs::write(dir.join("checkpoint.key"), hex::encode(*s.checkpoint_seed)).unwrap();
        std::fs::write(dir.join("session.key"), hex::encode(*s.session_seed)).unwrap();
        std::fs::write(dir.join("share.key"), hex::encode(*s.share_seed)).unwrap();
        dir
    }
    pub fn addr(&self, id: u64) -> String {
        format!("https://127.0.0.1:{}", self.base_port as u64 + id - 1)
    }
    pub fn profile(&self, user: &str) -> PathBuf {
        self.path().join(format!("profiles/{user}.toml"))
    }

    /// A profile for `user` that talks to node `id` only.
    pub fn node_profile(&self, user: &str, id: u64) -> PathBuf {
        self.profile_asking(user, &[id])
    }

    /// A profile for `user` whose endpoints are these nodes, in this order.
    pub fn profile_asking(&self, user: &str, ids: &[u64]) -> PathBuf {
        let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let p = self.path().join(format!("profiles/{user}-node{}.toml", names.join("-")));
        let text = std::fs::read_to_string(self.profile(user)).unwrap();
        let mut v: toml::Table = toml::from_str(&text).unwrap();
        v.insert("endpoints".into(), toml::Value::Array(ids.iter().map(|i| toml::Value::String(self.addr(*i))).collect()));
        std::fs::write(&p, toml::to_string(&v).unwrap()).unwrap();
        p
    }

    /// A granted request: alice files it with bob, bob signs, carol approves. Returns its id.
    pub fn grant(&self, item: &str, action: &str) -> String {
        let req = self
            .cli_json(&self.profile("alice"), &["request", item, "--action", action, "--purpose", "test", "--approval-doc", "DOC", "--with", "bob"])
            ["request"]
            .as_str()
            .unwrap()
            .to_string();
        self.cli_json(&self.profile("bob"), &["approve", &req, "--yes"]);
        assert_eq!(self.cli_json(&self.profile("carol"), &["approve", &req, "--yes"])["status"], "granted");
        req
    }

    /// A registry change as two administrators make it: `admin` files it and,
    /// when it is pending, `admin2` approves it. Returns the final status.
    pub fn registry_change(&self, args: &[&str]) -> Value {
        let filed = self.cli_json(&self.profile("admin"), args);
        if filed["status"] != "pending" {
            return filed;
        }
        let id = filed["change"].as_str().unwrap().to_string();
        self.cli_json(&self.profile("admin2"), &["registry", "approve", &id, "--yes"])
    }

    /// The nodes' verifier keys, pinned to `keys.txt` as a court would.
    pub fn pin_keys(&self) -> PathBuf {
        let keys = self.path().join("keys.txt");
        let v = self.cli_json(&self.profile("dave"), &["cluster", "keys"]);
        let lines: Vec<&str> = v["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        std::fs::write(&keys, lines.join("\n")).unwrap();
        keys
    }

    /// A fresh session token for `user` (logs in through the CLI).
    pub fn token(&self, user: &str) -> String {
        wait_until("a session token", Duration::from_secs(30), || {
            let out = self.cli(&self.profile(user), &["login"]);
            out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_string())
        })
    }

    /// A TLS connection to node `id`, presenting `user`'s client certificate.
    pub async fn connect_as(&self, user: &str, id: u64) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let p = self.path().join("profiles");
        let cfg = crate::tls::config(&self.path().join("certs/ca.pem"), Some((&p.join(format!("{user}.pem")), &p.join(format!("{user}.key")))));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.base_port + id as u16 - 1)).await.unwrap();
        tokio_rustls::TlsConnector::from(cfg).connect(rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
    }

    pub fn start(&mut self, id: u64) {
        self.start_with(id, &[]);
    }

    /// Starts node `id` with extra arguments to `custody node`.
    pub fn start_with(&mut self, id: u64, extra: &[&str]) {
        self.start_cmd(id, extra, None);
    }

    /// Starts node `id` with a deliberate bug switched on (a test binary built
    /// with `--features chaos-mutations`; src/mutation.rs).
    #[cfg(feature = "chaos-mutations")]
    pub fn start_mutant(&mut self, id: u64, mutation: &str) {
        self.start_cmd(id, &[], Some(mutation));
    }

    fn start_cmd(&mut self, id: u64, extra: &[&str], mutation: Option<&str>) {
        let dir = self.node_dir(id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("node.log")).unwrap();
        let mut cmd = Command::new(BIN);
        if let Some(m) = mutation {
            cmd.env("CUSTODY_MUTATION", m);
        }
        let child = cmd
            .args(["node", "--config"])
            .arg(dir.join("node.toml"))
            .args(extra)
            .env("CUSTODY_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(id, child);
    }

    pub fn start_all(&mut self, n: u64) {
        for id in 1..=n {
            self.start(id);
        }
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cli(&self, profile: &Path, args: &[&str]) -> Output {
        Command::new(BIN).arg("--profile").arg(profile).arg("--json").args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs a CLI command that must succeed; returns its JSON.
    pub fn cli_json(&self, profile: &Path, args: &[&str]) -> Value {
        let out = self.cli(profile, args);
        assert!(
            out.status.success(),
            "custody {args:?} failed ({:?}): {}\nnode logs in {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            self.path().display()
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("custody {args:?} printed no JSON object ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub fn status(&self) -> Option<Value> {
        let out = self.cli(&self.profile("admin"), &["cluster", "status"]);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    /// Waits for a leader that sees `members` reachable members; returns its id.
    pub fn wait_leader(&self, members: usize) -> u64 {
        wait_until("a leader", Duration::from_secs(60), || {
            let st = self.status()?;
            let leader = st["leader"].as_u64()?;
            let reachable = st["members"].as_array()?.iter().filter(|m| m["reachable"] == Value::Bool(true)).count();
            (reachable >= members).then_some(leader)
        })
    }

    /// A leader other than `not`, as seen by node `via`.
    pub fn wait_new_leader(&self, not: u64, via: u64) -> u64 {
        let p = self.node_profile("admin", via);
        wait_until("a new leader", Duration::from_secs(60), || {
            let out = self.cli(&p, &["cluster", "status"]);
            let st: Value = serde_json::from_slice(&out.stdout).ok()?;
            st["leader"].as_u64().filter(|l| *l != not)
        })
    }

    pub fn deposit(&self, user: &str, file: &Path, case: &str) -> Value {
        self.cli_json(&self.profile(user), &["deposit", file.to_str().unwrap(), "--case", case, "--system", "cam-demo-1", "--retention", "standard"])
    }

    pub fn items(&self, profile: &Path) -> Vec<Value> {
        self.cli_json(profile, &["items"])["items"].as_array().unwrap().clone()
    }

    /// The items, or `None` while the node asked cannot answer (not caught up yet).
    pub fn try_items(&self, profile: &Path) -> Option<Vec<Value>> {
        let out = self.cli(profile, &["items"]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).ok()?["items"].as_array().cloned()).flatten()
    }

    pub fn chunk_path(&self, id: u64, name: &str) -> PathBuf {
        self.node_dir(id).join(format!("data/chunks/{}/{name}", &name[..2]))
    }

    /// Does node `id` hold every chunk of `item`, each hashing to its name?
    pub fn holds_item(&self, id: u64, item: &Value) -> bool {
        item["chunks"].as_array().unwrap().iter().all(|c| {
            let name = c["name"].as_str().unwrap();
            match std::fs::read(self.chunk_path(id, name)) {
                Ok(b) => hex::encode(custody::crypto::sha256(&b)) == name,
                Err(_) => false,
            }
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            // Keep the directory with the node logs for whoever reads the failure.
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("cluster directory kept for inspection: {}", kept.display());
        }
    }
}
