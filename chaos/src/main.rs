//! `custody-chaos`: a real cluster of `custody node` processes on loopback,
//! concurrent clients, faults chosen from a seed, and an oracle that proves at
//! the end that nothing acknowledged was lost and nothing was served, granted
//! or rewritten that should not have been. See `chaos/README.md`.
//!
//! - `cluster.rs`: the node processes, their configs, disks.
//! - `proxy.rs`: the fault proxy on every inter-node link.
//! - `workload.rs`: the clients (every operation through the real CLI).
//! - `faults.rs`: the fault injector.
//! - `oracle.rs`: the history of every operation and what the clients learned.
//! - `checks.rs`: the final checks.

mod checks;
mod cli;
mod cluster;
mod faults;
mod oracle;
mod proxy;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::cli::Custody;
use crate::cluster::{Cluster, NodeSettings};
use crate::faults::{Fault, Nemesis};
use crate::oracle::Oracle;
use crate::workload::Client;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mutation {
    /// The leader acknowledges a deposit once its own copy is written.
    EarlyAck,
    /// Fetch bytes are served before the access record commits.
    ServeBeforeRecord,
}

impl Mutation {
    fn name(self) -> &'static str {
        match self {
            Mutation::EarlyAck => "early-ack",
            Mutation::ServeBeforeRecord => "serve-before-record",
        }
    }
}

#[derive(Parser)]
#[command(name = "custody-chaos", about = "Runs a custody cluster under faults and checks that nothing acknowledged was lost")]
struct Args {
    /// Seed of every choice (faults, clients, sizes); random if not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of clients and faults (healing and checks come after).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Nodes in the cluster (3 or 5 are the interesting ones).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Keep the episode's folder (cluster, node logs, history) even when it passes.
    #[arg(long)]
    keep: bool,
    /// Switch on a deliberate bug in every node (needs a custody built with `--features chaos-mutations`).
    #[arg(long, value_enum)]
    mutation: Option<Mutation>,
    /// The custody binary (default: $CUSTODY_BIN, else target/debug/custody beside this program).
    #[arg(long)]
    custody_bin: Option<PathBuf>,
    /// Only these fault kinds (comma-separated; see --list-faults).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// List the fault kinds and exit.
    #[arg(long)]
    list_faults: bool,
    /// Where to make the episode's folder (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Fetch at most this many items in full at the end (targeted ones always); every chunk is hash-checked on disk regardless.
    #[arg(long, default_value_t = 80)]
    fetch_limit: usize,
}

fn find_custody(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = arg.or_else(|| std::env::var_os("CUSTODY_BIN").map(PathBuf::from)) {
        anyhow::ensure!(p.is_file(), "the custody binary {} does not exist", p.display());
        return Ok(std::fs::canonicalize(p)?);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow::anyhow!("no folder for {}", exe.display()))?;
    for c in [dir.join("../debug/custody"), dir.join("custody")] {
        if c.is_file() {
            return Ok(std::fs::canonicalize(c)?);
        }
    }
    anyhow::bail!("cannot find the custody binary: pass --custody-bin PATH or set CUSTODY_BIN (build it with `cargo build --bin custody`)")
}

/// The command that replays this episode.
fn replay(a: &Args, seed: u64, bin: &Path) -> String {
    let mut s =
        format!("cargo run --release -p custody-chaos -- --seed {seed} --duration {} --nodes {} --clients {}", a.duration, a.nodes, a.clients);
    if let Some(m) = a.mutation {
        s.push_str(&format!(" --mutation {}", m.name()));
    }
    if !a.faults.is_empty() {
        s.push_str(&format!(" --faults {}", a.faults.join(",")));
    }
    s.push_str(&format!(" --custody-bin {}", bin.display()));
    s
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_faults {
        for f in Fault::ALL {
            println!("{}", f.name());
        }
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custody-chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async {
        tokio::select! {
            code = episode(&args) => code,
            _ = tokio::signal::ctrl_c() => {
                // Dropping the episode kills every node (kill_on_drop) and unmounts a full disk.
                eprintln!("custody-chaos: interrupted; the episode's folder is kept");
                ExitCode::from(130)
            }
        }
    })
}

async fn episode(a: &Args) -> ExitCode {
    let seed = a.seed.unwrap_or_else(|| rand::thread_rng().gen_range(0..1_000_000));
    let bin = match find_custody(a.custody_bin.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("custody-chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut only = Vec::new();
    for f in &a.faults {
        match Fault::parse(f) {
            Some(f) => only.push(f),
            None => {
                eprintln!("custody-chaos: unknown fault kind `{f}` (see --list-faults)");
                return ExitCode::from(2);
            }
        }
    }
    let parent = a.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("custody-chaos-{seed}-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(dir.join("scratch")) {
        eprintln!("custody-chaos: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let replay = replay(a, seed, &bin);
    if !a.json {
        eprintln!("custody-chaos: seed {seed}, {} nodes, {} s; folder {}", a.nodes, a.duration, dir.display());
    }
    let started = Instant::now();
    let result = run(a, seed, &bin, &dir).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (mut report, failed) = match result {
        Ok(r) => r,
        Err(e) => (json!({ "error": format!("{e:#}"), "lost": [], "violations": [format!("the episode could not run: {e:#}")] }), true),
    };
    report["seed"] = json!(seed);
    report["elapsed_secs"] = json!((elapsed * 10.0).round() / 10.0);
    report["replay"] = json!(replay);
    let keep = failed || a.keep;
    if keep {
        report["kept"] = json!(dir.display().to_string());
        report["history"] = json!(dir.join("history.jsonl").display().to_string());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if a.json {
        println!("{report}");
    } else {
        print_human(&report);
    }
    if failed {
        eprintln!("custody-chaos: FAILED with seed {seed}. Replay: {replay}");
        eprintln!("custody-chaos: history and node logs kept in {}", dir.display());
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_human(r: &Value) {
    println!("seed {}  elapsed {} s", r["seed"], r["elapsed_secs"]);
    println!("operations acknowledged: {} of {}", r["ops_acknowledged"], r["ops_total"]);
    if let Some(f) = r["faults"].as_object() {
        println!("faults: {}", f.iter().map(|(k, v)| format!("{k}×{v}")).collect::<Vec<_>>().join(", "));
    }
    for k in ["lost", "violations", "crashes", "notes"] {
        if let Some(l) = r[k].as_array().filter(|l| !l.is_empty()) {
            println!("{k}:");
            for x in l {
                println!("  - {}", x.as_str().unwrap_or(&x.to_string()));
            }
        }
    }
    if let Some(c) = r["checks"].as_object() {
        println!("checks: {}", c.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
    }
    let ok = r["lost"].as_array().is_some_and(|l| l.is_empty()) && r["violations"].as_array().is_some_and(|l| l.is_empty());
    println!("{}", if ok { "PASS" } else { "FAIL" });
}

async fn run(a: &Args, seed: u64, bin: &Path, dir: &Path) -> anyhow::Result<(Value, bool)> {
    let mut phases = serde_json::Map::new();
    let mut mark = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let oracle = Arc::new(Oracle::new(&dir.join("history.jsonl"))?);
    let custody = Custody { bin: bin.to_path_buf() };
    let settings = NodeSettings {
        chunk_size_bytes: 1 << 20,
        snapshot_every_entries: [40, 150, 1000, 5000][rng.gen_range(0..4)],
        orphan_grace_secs: [15, 60, 3600][rng.gen_range(0..3)],
    };
    let mutation = a.mutation.map(|m| m.name().to_string());
    oracle
        .event("episode", json!({ "seed": seed, "nodes": a.nodes, "duration": a.duration, "settings": settings, "mutation": mutation, "bin": bin }));
    let cluster_dir = dir.join("cluster");
    let (mut cluster, proxies) =
        Cluster::init(&cluster_dir, custody.clone(), a.nodes, 2, settings.clone(), mutation.clone(), oracle.clone(), rng.gen()).await?;
    for id in cluster.initial.clone() {
        cluster.start(id)?;
    }
    cluster.wait_whole(Duration::from_secs(90), 0).await.map_err(|e| anyhow::anyhow!("the cluster did not come up: {e}"))?;
    let client = Client {
        custody: custody.clone(),
        oracle: oracle.clone(),
        dir: cluster_dir.clone(),
        scratch: dir.join("scratch"),
        case: format!("chaos-{seed}"),
    };
    let keys = pin_keys(&client, a.nodes, &cluster_dir.join("keys.txt")).await?;

    // Clients and faults until the deadline.
    let mut phase = |name: &str| {
        phases.insert(name.to_string(), json!((mark.elapsed().as_secs_f64() * 10.0).round() / 10.0));
        mark = Instant::now();
    };
    phase("setup");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.duration);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..a.clients {
        workers.spawn(workload::worker(i, client.clone(), seed, deadline, stop_rx.clone()));
    }
    let mut nemesis = Nemesis::new(cluster, proxies, client.clone(), seed, &only_faults(a), mutation.as_deref());
    nemesis.run(deadline).await;
    phase("faults");

    // Heal, let the clients finish what they were doing, then check.
    nemesis.heal().await;
    let _ = stop_tx.send(true);
    let grace = tokio::time::Instant::now() + Duration::from_secs(10);
    while !workers.is_empty() {
        match tokio::time::timeout_at(grace, workers.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                // Their operations stay unfinished in the history: indeterminate.
                workers.abort_all();
                oracle.event("clients-aborted", json!("still running 10 s after the end"));
                break;
            }
        }
    }
    nemesis.supervise().await;
    nemesis.restore_membership().await;
    nemesis.heal().await;
    client.scrub("checker").await;
    phase("heal");
    // However broken the cluster, the checks give up on what is left about 80 s after the end.
    let verdict = checks::run(&mut nemesis.cluster, &client, &keys, a.fetch_limit, seed, deadline + Duration::from_secs(80)).await;
    nemesis.supervise().await;
    nemesis.cluster.stop_all().await;
    phase("checks");

    let mut violations = oracle.with(|m| m.violations.clone());
    violations.extend(verdict.violations.iter().cloned());
    // A panic is a bug even when the cluster recovered from it; the same one is reported once.
    let mut seen = std::collections::BTreeSet::new();
    for p in &nemesis.cluster.panics {
        let what = p.split_once("ms: ").map(|(_, w)| w.to_string()).unwrap_or(p.clone());
        if seen.insert(what) {
            violations.push(p.clone());
        }
    }
    // A node that exits by itself is a bug, unless it runs on a database we damaged (fail-stop).
    for (c, explained) in &nemesis.crashes {
        if !explained {
            violations.push(c.clone());
        }
    }
    let counts = oracle.counts();
    let ops_total: u64 = counts.values().map(|c| c.ok + c.failed).sum();
    let ops_ok: u64 = counts.values().map(|c| c.ok).sum();
    let failed = !verdict.lost.is_empty() || !violations.is_empty();
    let report = json!({
        "nodes": a.nodes,
        "clients": a.clients,
        "duration_secs": a.duration,
        "mutation": mutation,
        "settings": settings,
        "ops_total": ops_total,
        "ops_acknowledged": ops_ok,
        "ops_by_kind": counts,
        "faults": nemesis.counts,
        "lost": verdict.lost,
        "violations": violations,
        "crashes": nemesis.crashes.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "panics": nemesis.cluster.panics,
        "notes": nemesis.notes,
        "checks": verdict.stats,
        "phase_secs": phases,
    });
    Ok((report, failed))
}

fn only_faults(a: &Args) -> Vec<Fault> {
    a.faults.iter().filter_map(|f| Fault::parse(f)).collect()
}

/// The nodes' verifier keys, pinned once the whole cluster registered them (as a court would).
async fn pin_keys(client: &Client, nodes: u64, path: &Path) -> anyhow::Result<PathBuf> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let out = client.custody.run(Some(&client.profile("dave")), &args!["cluster", "keys"], Duration::from_secs(15)).await;
        if let Some(keys) = out.json().and_then(|v| v["keys"].as_array().cloned()) {
            if keys.len() as u64 >= nodes {
                let lines: Vec<&str> = keys.iter().filter_map(|k| k.as_str()).collect();
                std::fs::write(path, lines.join("\n") + "\n")?;
                return Ok(path.to_path_buf());
            }
        }
        if Instant::now() > end {
            anyhow::bail!("the nodes did not register their checkpoint keys within 60 s: {}", out.error());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
