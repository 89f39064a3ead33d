//! A local cluster of `custody node` child processes (used by `up` and `demo`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

pub struct LocalCluster {
    pub dir: PathBuf,
    children: BTreeMap<u64, Child>,
}

impl LocalCluster {
    pub fn new(dir: &Path) -> Self {
        LocalCluster { dir: dir.to_path_buf(), children: BTreeMap::new() }
    }

    /// Node ids that have a config in the directory.
    pub fn node_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("node")).and_then(|n| n.parse().ok()))
            .filter(|id| self.dir.join(format!("node{id}/node.toml")).exists())
            .collect();
        ids.sort();
        ids
    }

    /// Fails, naming the node and the port, when another process already
    /// listens where a node of this directory must: better said here than
    /// found later in a node's log.
    pub fn check_ports_free(&self) -> anyhow::Result<()> {
        for id in self.node_ids() {
            let cfg = crate::config::NodeConfig::load(&self.dir.join(format!("node{id}/node.toml")))?;
            if let Err(e) = std::net::TcpListener::bind(cfg.listen) {
                anyhow::bail!(
                    "node {id} cannot listen on {}: {e}. Another process holds the port (see `ss -ltnp 'sport = :{}'`), \
                     perhaps a cluster already running from this directory; stop it, or initialise a new directory with another --base-port",
                    cfg.listen,
                    cfg.listen.port()
                );
            }
        }
        Ok(())
    }

    /// Starts node `id` with its log appended to `nodeN/node.log`.
    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let node_dir = self.dir.join(format!("node{id}"));
        let log = OpenOptions::new().create(true).append(true).open(node_dir.join("node.log"))?;
        let exe = std::env::current_exe().context("locating the custody binary")?;
        let child = Command::new(exe)
            .arg("node")
            .arg("--config")
            .arg(node_dir.join("node.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        self.children.insert(id, child);
        Ok(())
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for id in self.node_ids() {
            self.start(id)?;
        }
        Ok(())
    }

    /// Stops node `id` with SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    /// Stops every node with SIGTERM, then SIGKILL after a grace period.
    pub async fn stop_all(&mut self) {
        for child in self.children.values() {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for (_, mut child) in std::mem::take(&mut self.children) {
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        self.children.iter().filter_map(|(id, c)| c.id().map(|p| (*id, p))).collect()
    }

    /// Waits until any child exits; returns its id.
    pub async fn any_exit(&mut self) -> Option<u64> {
        if self.children.is_empty() {
            return std::future::pending().await;
        }
        loop {
            for (id, c) in self.children.iter_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return Some(*id);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Reads one line from the terminal without echoing it (an unseal share),
/// after printing `prompt` to stderr. nix's one home is this module.
pub fn read_hidden_line(prompt: &str) -> anyhow::Result<crate::crypto::Secret<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning the terminal's echo off")?;
    let mut line = crate::crypto::Secret::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    read.context("reading the share")?;
    Ok(line)
}
