//! The cluster under test: `custody cluster init` into the episode's folder,
//! `[[routes]]` through the fault proxy appended to every node config, and
//! one `custody node` process per node, which we kill -9, stop, continue,
//! restart, wipe and starve of disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::args;
use crate::cli::Custody;
use crate::oracle::Oracle;
use crate::proxy::Proxies;

/// Settings every node of the episode gets (chosen from the seed).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeSettings {
    pub chunk_size_bytes: u64,
    pub snapshot_every_entries: u64,
    pub orphan_grace_secs: u64,
}

struct NodeProc {
    child: Option<Child>,
    paused: bool,
}

/// A node's chunk store moved onto a small tmpfs (the full-disk fault).
pub struct FullDisk {
    pub id: u64,
    /// Where the node's real chunk store waits meanwhile.
    pub real: PathBuf,
    pub mount: PathBuf,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub custody: Custody,
    pub base_port: u16,
    /// Nodes of the initial membership.
    pub initial: Vec<u64>,
    /// Every node id that may ever run (the initial ones and the spares membership changes add).
    pub all_ids: Vec<u64>,
    /// Who should be a voting member now, as far as we know.
    pub members: BTreeSet<u64>,
    pub settings: NodeSettings,
    pub mutation: Option<String>,
    pub oracle: Arc<Oracle>,
    procs: BTreeMap<u64, NodeProc>,
    pub full_disk: Option<FullDisk>,
    /// How far each node's log has been searched for panics.
    log_read: BTreeMap<u64, u64>,
    /// Panics found in node logs (each one a bug).
    pub panics: Vec<String>,
}

/// `n` consecutive free ports on loopback, below the ephemeral range (from 32768 on Linux), so
/// no proxy listener and no client connection can be sitting on a port a node restarts on.
fn free_ports(n: u16, seed: u64) -> anyhow::Result<u16> {
    let mut x = seed | 1;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 20000 + (x % 12000) as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free ports on loopback")
}

impl Cluster {
    /// Writes the cluster (nothing started). `spares` extra node ids get ports and proxies too.
    #[allow(clippy::too_many_arguments)]
    pub async fn init(
        dir: &Path,
        custody: Custody,
        nodes: u64,
        spares: u64,
        settings: NodeSettings,
        mutation: Option<String>,
        oracle: Arc<Oracle>,
        port_seed: u64,
    ) -> anyhow::Result<(Cluster, Proxies)> {
        let all_ids: Vec<u64> = (1..=nodes + spares).collect();
        let base_port = free_ports(all_ids.len() as u16, port_seed)?;
        let out = custody
            .run(
                None,
                &args!["cluster", "init", "--dir", dir.display(), "--nodes", nodes, "--base-port", base_port, "--dev-auto-unseal"],
                Duration::from_secs(120),
            )
            .await;
        if !out.ok() {
            bail!("custody cluster init failed: {}", out.error());
        }
        let proxies = Proxies::start(&all_ids, |j| base_port + j as u16 - 1).await?;
        let c = Cluster {
            dir: dir.to_path_buf(),
            custody,
            base_port,
            initial: (1..=nodes).collect(),
            all_ids,
            members: (1..=nodes).collect(),
            settings,
            mutation,
            oracle,
            procs: BTreeMap::new(),
            full_disk: None,
            log_read: BTreeMap::new(),
            panics: Vec::new(),
        };
        for id in 1..=nodes {
            c.configure(id, &proxies)?;
        }
        Ok((c, proxies))
    }

    /// Adds the episode's settings and the proxy routes to node `id`'s config.
    pub fn configure(&self, id: u64, proxies: &Proxies) -> anyhow::Result<()> {
        let p = self.node_dir(id).join("node.toml");
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        // Top-level keys go before the first table.
        let cut = text.find("\n[").map(|i| i + 1).unwrap_or(text.len());
        let (head, tail) = text.split_at(cut);
        let s = &self.settings;
        let mut out = format!(
            "{head}chunk_size_bytes = {}\nsnapshot_every_entries = {}\norphan_grace_secs = {}\n\n{tail}",
            s.chunk_size_bytes, s.snapshot_every_entries, s.orphan_grace_secs
        );
        for &to in &self.all_ids {
            if to == id {
                continue;
            }
            let addr = proxies.addr(id, to).context("no proxy for a link")?;
            out.push_str(&format!("\n[[routes]]\nid = {to}\naddr = \"https://{addr}\"\n"));
        }
        std::fs::write(&p, out)?;
        Ok(())
    }

    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("data")
    }
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("node.log")
    }
    pub fn port(&self, id: u64) -> u16 {
        self.base_port + id as u16 - 1
    }
    pub fn addr(&self, id: u64) -> String {
        format!("https://127.0.0.1:{}", self.port(id))
    }
    pub fn profile(&self, user: &str) -> PathBuf {
        self.dir.join(format!("profiles/{user}.toml"))
    }

    /// A profile for `user` that talks to node `id` only.
    pub fn node_profile(&self, user: &str, id: u64) -> PathBuf {
        let p = self.dir.join(format!("profiles/{user}-node{id}.toml"));
        if !p.exists() {
            let text = format!(
                "endpoints = [\"{}\"]\nca = \"../certs/ca.pem\"\ncert = \"{user}.pem\"\nkey = \"{user}.key\"\nsigning_key = \"{user}.signing.key\"\n",
                self.addr(id)
            );
            let _ = std::fs::write(&p, text);
        }
        p
    }

    /// A line in the node's log, so a reader sees what we did to it and when.
    pub fn mark(&self, id: u64, what: &str) {
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(self.log_path(id)) {
            let _ = writeln!(f, "=== chaos t={}ms: {what}", self.oracle.now_ms());
        }
    }

    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        self.launch(id, false)
    }

    /// Starts a node on a data directory emptied on purpose, after it left the membership
    /// (`custody node --new-disk`, as an operator would).
    pub fn start_new_disk(&mut self, id: u64) -> anyhow::Result<()> {
        self.launch(id, true)
    }

    fn launch(&mut self, id: u64, new_disk: bool) -> anyhow::Result<()> {
        if self.is_running(id) {
            return Ok(());
        }
        self.mark(id, if new_disk { "start --new-disk" } else { "start" });
        let log = OpenOptions::new().create(true).append(true).open(self.log_path(id))?;
        let mut cmd = Command::new(&self.custody.bin);
        cmd.args(["node", "--config"])
            .arg(self.node_dir(id).join("node.toml"))
            .args(new_disk.then_some("--new-disk"))
            .env("CUSTODY_LOG", "info,openraft=warn")
            .env_remove("CUSTODY_PROFILE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        crate::cli::die_with_parent(&mut cmd);
        match &self.mutation {
            Some(m) => cmd.env("CUSTODY_MUTATION", m),
            None => cmd.env_remove("CUSTODY_MUTATION"),
        };
        let child = cmd.spawn().with_context(|| format!("starting node {id}"))?;
        self.procs.insert(id, NodeProc { child: Some(child), paused: false });
        Ok(())
    }

    fn pid(&self, id: u64) -> Option<Pid> {
        self.procs.get(&id)?.child.as_ref()?.id().map(|p| Pid::from_raw(p as i32))
    }

    /// Is the node's process alive (paused counts as alive)?
    pub fn is_running(&mut self, id: u64) -> bool {
        match self.procs.get_mut(&id).and_then(|p| p.child.as_mut()) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Nodes that should run but whose process exited by itself: (id, exit status).
    pub fn exited(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for (id, p) in self.procs.iter_mut() {
            if let Some(c) = p.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    out.push((*id, status.to_string()));
                    p.child = None;
                }
            }
        }
        out
    }

    /// kill -9.
    pub async fn kill(&mut self, id: u64) {
        if let Some(p) = self.procs.get_mut(&id) {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill().await;
                let _ = c.wait().await;
            }
            p.paused = false;
        }
        self.mark(id, "killed (SIGKILL)");
    }

    pub fn pause(&mut self, id: u64) -> bool {
        let Some(pid) = self.pid(id) else { return false };
        if kill(pid, Signal::SIGSTOP).is_ok() {
            if let Some(p) = self.procs.get_mut(&id) {
                p.paused = true;
            }
            self.mark(id, "paused (SIGSTOP)");
            return true;
        }
        false
    }

    pub fn resume(&mut self, id: u64) {
        if let Some(pid) = self.pid(id) {
            let _ = kill(pid, Signal::SIGCONT);
            self.mark(id, "continued (SIGCONT)");
        }
        if let Some(p) = self.procs.get_mut(&id) {
            p.paused = false;
        }
    }

    pub fn paused(&self) -> Vec<u64> {
        self.procs.iter().filter(|(_, p)| p.paused && p.child.is_some()).map(|(id, _)| *id).collect()
    }

    /// Nodes whose process runs (paused or not).
    pub fn running(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        ids.into_iter().filter(|id| self.is_running(*id)).collect()
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            if self.procs.get(&id).is_some_and(|p| p.child.is_some()) {
                if self.paused().contains(&id) {
                    self.resume(id);
                }
                self.kill(id).await;
            }
        }
    }

    /// The last `n` lines of a node's log.
    pub fn log_tail(&self, id: u64, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].iter().map(|l| l.chars().take(300).collect()).collect()
    }

    /// Panics logged by any node since the last call: (node, "location: message"). A panic
    /// in a node is always a bug; one in the Raft core silently stops the node's consensus
    /// while its process lives on.
    pub fn new_panics(&mut self) -> Vec<(u64, String)> {
        use std::io::{Read, Seek, SeekFrom};
        let mut out = Vec::new();
        for id in self.all_ids.clone() {
            let Ok(mut f) = std::fs::File::open(self.log_path(id)) else { continue };
            let from = self.log_read.get(&id).copied().unwrap_or(0);
            let mut bytes = Vec::new();
            if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
                continue;
            }
            // Only whole lines: a panic message may still be being written. Bytes that are not
            // UTF-8 must not stop the scan for good, so the offset counts bytes, not characters.
            let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else { continue };
            self.log_read.insert(id, from + end as u64 + 1);
            let text = String::from_utf8_lossy(&bytes[..=end]);
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if let Some(at) = l.find("panicked at ") {
                    let place = l[at + 12..].trim_end_matches(':').rsplit("/src/").next().unwrap_or("").to_string();
                    let msg: String = lines.get(i + 1).copied().unwrap_or("").chars().take(300).collect();
                    out.push((id, format!("{place}: {msg}")));
                }
            }
        }
        out
    }

    /// Records new panics and restarts the nodes that had them: the process may live on with
    /// its consensus stopped, and an operator would restart it.
    pub async fn handle_panics(&mut self) {
        for (id, what) in self.new_panics() {
            let msg = format!("node {id} panicked at t≈{}ms: {what}", self.oracle.now_ms());
            self.oracle.event("panic", serde_json::json!(msg));
            self.panics.push(msg);
            if self.members.contains(&id) && self.is_running(id) {
                self.kill(id).await;
                self.mark(id, "restarted after a panic");
                if let Err(e) = self.start(id) {
                    self.oracle.event("restart-failed", serde_json::json!(format!("node {id}: {e:#}")));
                }
            }
        }
    }

    /// `cluster status` as node `id` sees it.
    pub async fn status_via(&self, id: u64) -> Option<Value> {
        let out = self.custody.run(Some(&self.node_profile("admin", id)), &args!["cluster", "status"], Duration::from_secs(6)).await;
        out.json().filter(|_| out.ok())
    }

    /// The leader: asks every running node and believes the answer with the highest term.
    pub async fn leader(&mut self) -> Option<u64> {
        let ids: Vec<u64> = self.running().into_iter().filter(|id| !self.paused().contains(id)).collect();
        let answers = futures_join(ids.iter().map(|id| self.status_via(*id))).await;
        answers.into_iter().flatten().filter_map(|s| Some((s["term"].as_u64()?, s["leader"].as_u64()?))).max().map(|(_, l)| l)
    }

    /// Is the cluster whole: a leader that reaches every member, each member holding every
    /// chunk, none warning, applied indices close together? `Err` says what is not.
    pub async fn whole(&mut self, slack: u64) -> Result<Value, String> {
        let running = self.running();
        for id in &self.members {
            if !running.contains(id) {
                return Err(format!("node {id} is not running"));
            }
        }
        if let Some(p) = self.paused().first() {
            return Err(format!("node {p} is paused"));
        }
        let leader = self.leader().await.ok_or("no leader")?;
        let st = self.status_via(leader).await.ok_or("the leader does not answer")?;
        if st["leader"].as_u64() != Some(leader) {
            return Err("leadership is moving".into());
        }
        let members = st["members"].as_array().cloned().unwrap_or_default();
        let ids: BTreeSet<u64> = members.iter().filter_map(|m| m["id"].as_u64()).collect();
        if ids != self.members {
            return Err(format!("membership is {ids:?}, expected {:?}", self.members));
        }
        let applied: Vec<u64> = members.iter().filter_map(|m| m["last_applied"].as_u64()).collect();
        let max = applied.iter().copied().max().unwrap_or(0);
        for m in &members {
            let id = m["id"].as_u64().unwrap_or(0);
            if m["reachable"] != true {
                return Err(format!("node {id} is unreachable from the leader"));
            }
            if m["voter"] != true {
                return Err(format!("node {id} is not a voter"));
            }
            let h = &m["health"];
            if h["missing_chunks"].as_u64() != Some(0) {
                return Err(format!("node {id} misses {} chunks", h["missing_chunks"]));
            }
            if let Some(w) = h["warnings"].as_array().filter(|w| !w.is_empty()) {
                return Err(format!("node {id} warns: {}", w.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ")));
            }
            if m["last_applied"].as_u64().unwrap_or(0) + slack < max {
                return Err(format!("node {id} has applied {} of {max}", m["last_applied"]));
            }
        }
        Ok(st)
    }

    /// Waits up to `timeout` for [`Cluster::whole`].
    pub async fn wait_whole(&mut self, timeout: Duration, slack: u64) -> Result<Value, String> {
        let start = Instant::now();
        loop {
            self.handle_panics().await;
            let r = self.whole(slack).await;
            if r.is_ok() || start.elapsed() >= timeout {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every chunk file of node `id` (named by its hash, fanned out by the first two digits).
    pub fn chunk_files(&self, id: u64) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in std::fs::read_dir(self.data_dir(id).join("chunks")).into_iter().flatten().flatten() {
            if d.path().is_dir() {
                for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                    let name = f.file_name().to_string_lossy().to_string();
                    if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                        out.push(f.path());
                    }
                }
            }
        }
        out.sort();
        out
    }

    pub fn chunk_path(&self, id: u64, name: &str) -> PathBuf {
        self.data_dir(id).join("chunks").join(name.get(..2).unwrap_or(name)).join(name)
    }

    /// Every file of node `id`'s RocksDB (and its snapshots).
    pub fn db_files(&self, id: u64) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.data_dir(id).join("db"), self.data_dir(id).join("snapshots")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_none_or(|n| n != "LOCK") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// The full-disk fault: with node `id` stopped, its chunk store moves onto a tmpfs that
    /// holds what it holds now plus `slack` bytes.
    pub fn fill_disk(&mut self, id: u64, slack: u64) -> anyhow::Result<()> {
        if self.full_disk.is_some() {
            bail!("a disk is already full");
        }
        let chunks = self.data_dir(id).join("chunks");
        let real = self.data_dir(id).join("chunks.real");
        std::fs::create_dir_all(&chunks)?;
        let used: u64 = self.chunk_files(id).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len() + 4096).sum();
        let size = (used + slack).div_ceil(1 << 20).max(1);
        std::fs::rename(&chunks, &real)?;
        std::fs::create_dir_all(&chunks)?;
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}m"), "tmpfs"]).arg(&chunks).status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            let _ = std::fs::remove_dir(&chunks);
            std::fs::rename(&real, &chunks)?;
            bail!("cannot mount a tmpfs (needs root)");
        }
        self.full_disk = Some(FullDisk { id, real: real.clone(), mount: chunks.clone() });
        copy_tree(&real, &chunks, true)?;
        self.mark(id, &format!("chunk store moved onto a {size} MiB tmpfs (disk full)"));
        Ok(())
    }

    /// Undoes [`Cluster::fill_disk`] (the node must be stopped): chunks written meanwhile go back
    /// to the real store.
    pub fn free_disk(&mut self) -> anyhow::Result<Option<u64>> {
        let Some(f) = self.full_disk.take() else { return Ok(None) };
        copy_tree(&f.mount, &f.real, false)?;
        let st = std::process::Command::new("umount").arg(&f.mount).status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&f.mount).status();
        }
        std::fs::remove_dir(&f.mount).or_else(|_| std::fs::remove_dir_all(&f.mount))?;
        std::fs::rename(&f.real, &f.mount)?;
        self.mark(f.id, "chunk store back on the real disk");
        Ok(Some(f.id))
    }
}

impl Drop for Cluster {
    /// However the episode ends, no tmpfs stays mounted in its folder.
    fn drop(&mut self) {
        if let Some(f) = &self.full_disk {
            let _ = std::process::Command::new("umount").arg("-l").arg(&f.mount).status();
        }
    }
}

/// Copies chunk files (`XX/<hash>`) from `from` into `to`, skipping temporary files; with
/// `stop_when_full`, stops quietly when the target fills up.
fn copy_tree(from: &Path, to: &Path, stop_when_full: bool) -> anyhow::Result<()> {
    for d in std::fs::read_dir(from)?.flatten() {
        if !d.path().is_dir() {
            continue;
        }
        let sub = to.join(d.file_name());
        std::fs::create_dir_all(&sub)?;
        for f in std::fs::read_dir(d.path())?.flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.len() != 64 || !name.chars().all(|c| c.is_ascii_hexdigit()) || sub.join(&name).exists() {
                continue;
            }
            if let Err(e) = std::fs::copy(f.path(), sub.join(&name)) {
                let _ = std::fs::remove_file(sub.join(&name));
                if stop_when_full {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Runs futures concurrently, in order.
pub async fn futures_join<F: std::future::Future>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.into_iter().collect();
    let mut out = Vec::with_capacity(handles.len());
    // Small fan-out: join by pinning them all and polling through a JoinSet-free select.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}
