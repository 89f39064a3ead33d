//! The figures that need a running cluster: three `custody node` processes
//! on loopback, mTLS and fsync on, driven through the same client code the
//! CLI uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use serde::Serialize;

use super::super::access::{self, RequestArgs};
use super::super::demo::{free_base_port, wait_for};
use super::super::init::{self, InitArgs, NewNodeArgs};
use super::super::local::LocalCluster;
use super::super::ops::{self, DepositArgs, Session};
use super::machine::write_clip;
use crate::wire::{AddMember, ClusterStatus, DepositReceipt};

pub struct Bench {
    pub dir: PathBuf,
    pub cluster: LocalCluster,
    pub admin: Session,
    next_node: u64,
}

/// A demo user's session in the bench's cluster directory.
pub fn session(dir: &Path, user: &str) -> anyhow::Result<Session> {
    ops::session(Some(dir.join(format!("profiles/{user}.toml")))).map_err(|f| anyhow::anyhow!(f.message))
}

fn fail(f: super::super::Failure) -> anyhow::Error {
    anyhow::anyhow!(f.message)
}

/// A process's resident set now and at its peak, in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used, in microseconds.
pub fn cpu_us(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Some(ticks / 100.0 * 1e6)
}

impl Bench {
    /// `cluster init` for `nodes` nodes in `dir`, the nodes started, a leader elected.
    pub async fn start(dir: &Path, nodes: u64) -> anyhow::Result<Bench> {
        Self::start_with(dir, nodes, None).await
    }

    /// As [`Bench::start`], with `table` (TOML, e.g. a `[chunks]` table) added to every node's config.
    pub async fn start_with(dir: &Path, nodes: u64, table: Option<&str>) -> anyhow::Result<Bench> {
        let base_port = free_base_port(u16::try_from(nodes + 1)?)?;
        init::init(&InitArgs::local(dir, nodes, base_port, None))?;
        for id in 1..=nodes {
            let Some(table) = table else { break };
            let path = dir.join(format!("node{id}/node.toml"));
            let text = std::fs::read_to_string(&path)?;
            // Tables go before the `[[peers]]` array, after the top-level keys.
            let at = text.find("[[peers]]").unwrap_or(text.len());
            std::fs::write(&path, format!("{}{table}\n{}", &text[..at], &text[at..]))?;
        }
        let mut cluster = LocalCluster::new(dir);
        cluster.start_all()?;
        let admin = session(dir, "admin")?;
        let b = Bench { dir: dir.to_path_buf(), cluster, admin, next_node: nodes + 1 };
        b.wait_healthy(usize::try_from(nodes)?, Duration::from_secs(60)).await?;
        Ok(b)
    }

    pub async fn status(&self) -> anyhow::Result<ClusterStatus> {
        Ok(self.admin.call::<(), _>(Method::GET, "/v1/cluster/status", None, Duration::from_secs(5)).await?)
    }

    /// Waits for a leader, `members` reachable members that have applied the same index, and no missing chunks.
    pub async fn wait_healthy(&self, members: usize, timeout: Duration) -> anyhow::Result<()> {
        wait_for("a healthy cluster", timeout, || async {
            let st = self.status().await?;
            let applied: Vec<Option<u64>> = st.members.iter().map(|m| m.last_applied).collect();
            let whole = st.members.iter().all(|m| m.reachable && m.health.as_ref().is_some_and(|h| h.missing_chunks == 0));
            Ok((st.leader.is_some() && st.members.len() == members && whole && applied.windows(2).all(|w| w[0] == w[1])).then_some(()))
        })
        .await
    }

    /// Deposits a fresh clip of `bytes` bytes; returns the receipt and the seconds the upload took.
    pub async fn deposit(&self, bytes: u64, name: &str) -> anyhow::Result<(DepositReceipt, f64)> {
        let clip = self.dir.join(format!("{name}.bin"));
        let want = write_clip(&clip, bytes)?;
        let alice = session(&self.dir, "alice")?;
        let args = DepositArgs {
            file: clip.clone(),
            case: "BENCH-1".into(),
            system: init::DEMO_SYSTEM.into(),
            retention: "standard".into(),
            note: Some(name.into()),
        };
        alice.token().await?;
        let t = Instant::now();
        let receipt = ops::upload(&alice, &args, false).await.map_err(fail)?;
        let secs = t.elapsed().as_secs_f64();
        std::fs::remove_file(&clip)?;
        anyhow::ensure!(receipt.sha256 == want, "the receipt's SHA-256 is not the clip's");
        Ok((receipt, secs))
    }

    /// Runs this binary's CLI as `user` (`custody <args> --json --profile ...`), as a
    /// user would, in its own process; returns its JSON answer, its peak RSS in MiB
    /// (`VmHWM`, read every 50 ms until it exits) and the seconds it ran.
    pub async fn cli(&self, user: &str, args: &[&str]) -> anyhow::Result<(serde_json::Value, f64, f64)> {
        let profile = self.dir.join(format!("profiles/{user}.toml"));
        let t = Instant::now();
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(args)
            .arg("--json")
            .arg("--profile")
            .arg(&profile)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("the CLI exited at once"))?;
        let peak = Arc::new(std::sync::Mutex::new(0f64));
        let watcher = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Some((_, hwm)) = rss_mib(pid) {
                        let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                        *p = p.max(hwm);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let output = child.wait_with_output().await;
        watcher.abort();
        let output = output?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(output.status.success(), "custody {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
        Ok((serde_json::from_slice(&output.stdout)?, peak, secs))
    }

    /// Files a request for `item` as alice with bob, approved by bob and carol.
    pub async fn grant(&self, item: &str) -> anyhow::Result<String> {
        let (alice, bob, carol) = (session(&self.dir, "alice")?, session(&self.dir, "bob")?, session(&self.dir, "carol")?);
        let filed = access::file_request(&alice, request_args(item)).await.map_err(fail)?;
        access::sign_request(&bob, &filed.request).await.map_err(fail)?;
        let st = access::sign_request(&carol, &filed.request).await.map_err(fail)?;
        anyhow::ensure!(st.status == crate::wire::RequestState::Granted, "the bench request was not granted: {}", st.status);
        Ok(filed.request)
    }

    /// Fetches `item` as bob under `request`, checking its SHA-256 but keeping
    /// no copy (the client's own disk is not what is measured); returns the seconds it took.
    pub async fn fetch(&self, item: &str, request: &str) -> anyhow::Result<f64> {
        Ok(self.fetch_timed(item, request).await?.0)
    }

    /// [`Bench::fetch`], with how long each of its steps took.
    pub async fn fetch_timed(&self, item: &str, request: &str) -> anyhow::Result<(f64, crate::sealing::FetchTimings)> {
        let bob = session(&self.dir, "bob")?;
        bob.token().await?;
        let t = Instant::now();
        let (_, steps) = access::fetch_checked_timed(&bob, item, request).await.map_err(fail)?;
        Ok((t.elapsed().as_secs_f64(), steps))
    }

    /// Starts every node's peak RSS afresh (`/proc/PID/clear_refs`), so the
    /// next phase's peak is its own.
    pub fn reset_peak_rss(&self) -> anyhow::Result<()> {
        for (_, pid) in self.cluster.pids() {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
        }
        Ok(())
    }

    /// Current and peak RSS of every node, in MiB.
    pub fn rss(&self) -> BTreeMap<u64, (f64, f64)> {
        self.cluster.pids().into_iter().filter_map(|(id, pid)| rss_mib(pid).map(|r| (id, r))).collect()
    }

    /// Adds a blank node and waits until it holds everything; returns its id and the seconds it took.
    pub async fn join_node(&mut self, timeout: Duration) -> anyhow::Result<(u64, f64)> {
        let id = self.next_node;
        self.next_node += 1;
        let cfg = init::new_node(&NewNodeArgs { dir: self.dir.clone(), id, host: None })?;
        let addr = crate::config::NodeConfig::load(&cfg)?.advertise;
        let t = Instant::now();
        self.cluster.start(id)?;
        if let Err(f) = crate::cli::ops::bind_node(&self.admin, id, &addr).await {
            let log = std::fs::read_to_string(self.dir.join(format!("node{id}/node.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            anyhow::bail!("{}; the end of node {id}'s log:\n{}", f.message, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        let body = AddMember { id, addr, learner_only: false };
        let _: ClusterStatus = self.admin.call(Method::POST, "/v1/cluster/members", Some(&body), Duration::from_secs(3600)).await?;
        self.wait_healthy(id as usize, timeout).await?;
        // Health can read "nothing missing" before the healer's first scan: count the files too.
        let want = chunk_files(&self.dir, 1);
        wait_for("the new node to hold every chunk", timeout, || async { Ok((chunk_files(&self.dir, id) >= want).then_some(())) }).await?;
        Ok((id, t.elapsed().as_secs_f64()))
    }
}

/// Chunk files node `id` holds.
fn chunk_files(dir: &Path, id: u64) -> usize {
    let root = dir.join(format!("node{id}/data/chunks"));
    std::fs::read_dir(root).into_iter().flatten().flatten().map(|d| std::fs::read_dir(d.path()).into_iter().flatten().count()).sum()
}

fn request_args(item: &str) -> RequestArgs {
    RequestArgs {
        item: item.to_string(),
        action: "view".into(),
        purpose: "bench".into(),
        approval_doc: "BENCH-APPROVAL".into(),
        with: vec!["bob".into()],
        emergency: false,
        fetches: crate::limits::MAX_FETCHES_PER_GRANT,
        valid_secs: crate::approval::DEFAULT_TTL_SECS,
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SmallRecords {
    /// Leaves the audit log grew by, per second: every committed small record
    /// (a granting approval also appends its grant record).
    pub per_sec: f64,
    pub leaves: u64,
    pub clients: usize,
    pub secs: f64,
    /// Committed records by kind: each client cycles through filing a
    /// request, two approvals (the second grants it) and a fetch of a tiny
    /// clip (its access record).
    pub requests: u64,
    pub approvals: u64,
    pub accesses: u64,
    pub errors: u64,
    /// Raft log entries written meanwhile: leaves per entry is what group
    /// commit achieved (one entry is one fsync on each node).
    pub log_entries: u64,
    /// CPU time each process spent per committed record (`bench` is this
    /// process: the 32 clients).
    pub cpu_us_per_record: BTreeMap<String, f64>,
    /// Their sum: the CPU the whole system spent per record.
    pub cpu_us_per_record_total: f64,
    /// The key releases of the fetches in this load (each one the shares of
    /// a majority of holders), and their latency's median and 99th
    /// percentile (none when no fetch completed).
    pub key_releases: u64,
    pub key_release_p50_ms: Option<f64>,
    pub key_release_p99_ms: Option<f64>,
    /// Seconds of the same load before the measured window ([`WARMUP_SECS`]);
    /// nothing above counts them.
    pub warmup_secs: f64,
    /// The key releases of fetches begun in the warm-up, and their 99th
    /// percentile: the start the window leaves out, reported beside it.
    pub warmup_key_releases: u64,
    pub warmup_key_release_p99_ms: Option<f64>,
}

/// Seconds the small-records load runs before its measured window opens.
/// The clients start together, and their first fetches open their mTLS
/// connections to the holders all at once: in a 10 s run on five nodes, 40 of
/// the 41 slowest key releases began in its first second (30 of them a client's
/// first). The window measures the load as it runs, not its start.
pub const WARMUP_SECS: f64 = 2.0;

/// The quantiles `qs` of `v`, each the sorted value nearest rank (len − 1)·q
/// (none when `v` is empty).
pub fn quantiles<const N: usize>(mut v: Vec<f64>, qs: [f64; N]) -> [Option<f64>; N] {
    v.sort_by(f64::total_cmp);
    qs.map(|q| v.get(((v.len().max(1) - 1) as f64 * q).round() as usize).copied())
}

/// The leader's applied audit tree size and last log index.
async fn audit_size(b: &Bench) -> anyhow::Result<(u64, u64)> {
    let st = b.status().await?;
    let leader = st.leader.ok_or_else(|| anyhow::anyhow!("no leader"))?;
    st.members
        .iter()
        .find(|m| m.id == leader)
        .and_then(|m| m.health.as_ref())
        .map(|h| (h.audit_size, h.last_log_index.unwrap_or(0)))
        .ok_or_else(|| anyhow::anyhow!("the leader did not report its audit size"))
}

/// `clients` concurrent clients committing records for `secs` seconds, after
/// [`WARMUP_SECS`] of the same load.
pub async fn small_records(b: &Bench, clients: usize, secs: f64) -> anyhow::Result<SmallRecords> {
    let (tiny, _) = b.deposit(4096, "tiny").await?;
    let item = tiny.item.to_string();
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    // Each fetch's key release (shares from a majority), timed under this very load;
    // those begun in the warm-up apart.
    let releases = Arc::new(std::sync::Mutex::new((Vec::<f64>::new(), Vec::<f64>::new())));
    let mut sessions = Vec::new();
    for _ in 0..clients {
        let (alice, bob, carol) = (session(&b.dir, "alice")?, session(&b.dir, "bob")?, session(&b.dir, "carol")?);
        for s in [&alice, &bob, &carol] {
            s.token().await?;
        }
        sessions.push((alice, bob, carol));
    }
    let mut pids: Vec<(String, String)> = b.cluster.pids().into_iter().map(|(id, p)| (format!("node{id}"), p.to_string())).collect();
    pids.push(("bench".into(), "self".into()));
    let window = Instant::now() + Duration::from_secs_f64(WARMUP_SECS);
    let deadline = window + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|(alice, bob, carol)| {
            let (item, counts, releases) = (item.clone(), counts.clone(), releases.clone());
            tokio::spawn(async move {
                // Counted when it ends in the window.
                let bump = |k: usize, ok: bool| {
                    if Instant::now() >= window {
                        counts[if ok { k } else { 3 }].fetch_add(1, Ordering::Relaxed);
                    }
                };
                while Instant::now() < deadline {
                    let Ok(filed) = access::file_request(&alice, request_args(&item)).await else {
                        bump(0, false);
                        continue;
                    };
                    bump(0, true);
                    let steps = [&bob, &carol];
                    let mut granted = true;
                    for s in steps {
                        let ok = access::sign_request(s, &filed.request).await.is_ok();
                        bump(1, ok);
                        granted &= ok;
                    }
                    if granted {
                        let in_window = Instant::now() >= window;
                        let fetched = access::fetch_checked_timed(&bob, &item, &filed.request).await;
                        if let Ok((_, steps)) = &fetched {
                            let mut r = releases.lock().unwrap_or_else(|p| p.into_inner());
                            if in_window { &mut r.0 } else { &mut r.1 }.push(steps.release_ms);
                        }
                        bump(2, fetched.is_ok());
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep_until(window.into()).await;
    let cpu_before: Vec<Option<f64>> = pids.iter().map(|(_, p)| cpu_us(p)).collect();
    let start = Instant::now();
    let (size_before, log_before) = audit_size(b).await?;
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (size_after, log_after) = audit_size(b).await?;
    let grew = |after: u64, before: u64| after.checked_sub(before).ok_or_else(|| anyhow::anyhow!("the leader changed during the phase: rerun"));
    let total = grew(size_after, size_before)?;
    let [requests, approvals, accesses, errors] = [0, 1, 2, 3].map(|k| counts[k].load(Ordering::Relaxed));
    anyhow::ensure!(total > 0, "no small record committed");
    let cpu_us_per_record: BTreeMap<String, f64> =
        pids.iter().zip(cpu_before).filter_map(|((name, pid), before)| Some((name.clone(), (cpu_us(pid)? - before?) / total as f64))).collect();
    let (measured, warmup) = std::mem::take(&mut *releases.lock().unwrap_or_else(|p| p.into_inner()));
    let (key_releases, warmup_key_releases) = (measured.len() as u64, warmup.len() as u64);
    let [key_release_p50_ms, key_release_p99_ms] = quantiles(measured, [0.5, 0.99]);
    let [warmup_key_release_p99_ms] = quantiles(warmup, [0.99]);
    Ok(SmallRecords {
        per_sec: total as f64 / elapsed,
        leaves: total,
        clients,
        secs: elapsed,
        requests,
        approvals,
        accesses,
        errors,
        log_entries: grew(log_after, log_before)?,
        cpu_us_per_record_total: cpu_us_per_record.values().sum(),
        cpu_us_per_record,
        key_releases,
        key_release_p50_ms,
        key_release_p99_ms,
        warmup_secs: WARMUP_SECS,
        warmup_key_releases,
        warmup_key_release_p99_ms,
    })
}
