//! Running the `custody` binary: one process per client operation, always
//! with a hard deadline of our own (the CLI waits up to a day for a deposit,
//! and a node stopped with SIGSTOP never answers).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Every process we start dies with us, even if we are killed with SIGKILL
/// (a CI timeout must not leave nodes running on a shared machine).
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only makes one
    // async-signal-safe system call (prctl).
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
    }
}

#[derive(Clone)]
pub struct Custody {
    pub bin: PathBuf,
}

/// What one CLI run produced.
#[derive(Clone, Debug)]
pub struct CliOut {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// We killed it at its deadline (or on purpose): the outcome is unknown.
    pub killed: bool,
    pub elapsed: Duration,
}

impl CliOut {
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.killed
    }

    /// The one JSON object `--json` prints.
    pub fn json(&self) -> Option<Value> {
        self.stdout.lines().rev().find_map(|l| serde_json::from_str::<Value>(l.trim()).ok().filter(Value::is_object))
    }

    /// A one-line reason for a failure.
    pub fn error(&self) -> String {
        if self.killed {
            return format!("killed after {:.1}s without an answer", self.elapsed.as_secs_f64());
        }
        let line = self.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        let line = if line.is_empty() { self.json().and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or_default() } else { line };
        let line: String = line.chars().take(400).collect();
        format!("exit {}: {line}", self.code.map(|c| c.to_string()).unwrap_or("by signal".into()))
    }
}

/// A CLI process in flight.
pub struct Running {
    child: Child,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
    started: Instant,
    killed: bool,
}

impl Custody {
    fn command(&self, profile: Option<&Path>, args: &[String]) -> Command {
        let mut c = Command::new(&self.bin);
        if let Some(p) = profile {
            c.arg("--profile").arg(p);
        }
        c.arg("--json")
            .args(args)
            .env("CUSTODY_LOG", "warn")
            .env_remove("CUSTODY_PROFILE")
            .env_remove("CUSTODY_MUTATION")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut c);
        c
    }

    pub fn spawn(&self, profile: Option<&Path>, args: &[String]) -> std::io::Result<Running> {
        let mut child = self.command(profile, args).spawn()?;
        let mut so = child.stdout.take();
        let mut se = child.stderr.take();
        let out = tokio::spawn(async move {
            let mut s = String::new();
            if let Some(o) = so.as_mut() {
                let _ = o.read_to_string(&mut s).await;
            }
            s
        });
        let err = tokio::spawn(async move {
            let mut s = String::new();
            if let Some(e) = se.as_mut() {
                let _ = e.read_to_string(&mut s).await;
            }
            s
        });
        Ok(Running { child, out, err, started: Instant::now(), killed: false })
    }

    /// Runs to completion or `timeout`, whichever comes first.
    pub async fn run(&self, profile: Option<&Path>, args: &[String], timeout: Duration) -> CliOut {
        match self.spawn(profile, args) {
            Ok(r) => r.finish(timeout).await,
            Err(e) => {
                CliOut { code: None, stdout: String::new(), stderr: format!("cannot start custody: {e}"), killed: false, elapsed: Duration::ZERO }
            }
        }
    }
}

impl Running {
    /// Has it exited?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// kill -9; the outcome becomes unknown.
    pub async fn kill(&mut self) {
        if !self.exited() {
            self.killed = true;
            let _ = self.child.kill().await;
        }
    }

    /// Waits for the exit (killing it after `timeout` from now) and collects its output.
    pub async fn finish(mut self, timeout: Duration) -> CliOut {
        let code = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(s)) => s.code(),
            _ => {
                self.killed = true;
                let _ = self.child.kill().await;
                None
            }
        };
        let stdout = tokio::time::timeout(Duration::from_secs(5), &mut self.out).await.ok().and_then(Result::ok).unwrap_or_default();
        let stderr = tokio::time::timeout(Duration::from_secs(5), &mut self.err).await.ok().and_then(Result::ok).unwrap_or_default();
        CliOut { code, stdout, stderr, killed: self.killed, elapsed: self.started.elapsed() }
    }
}

/// `args!["deposit", path, "--case", c]` as an array of `String`s.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { [$($a.to_string()),*] };
}
