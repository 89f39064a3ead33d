//! The command line: raw arguments (clap) to validated values, then a call
//! into the library. Output is human text, or exactly one JSON object with
//! `--json`. Exit status: 0 success, 1 a negative verdict, 2 usage or
//! operational error.

pub mod access;
mod audit;
pub mod backup;
pub mod bench;
mod demo;
pub mod init;
mod local;
pub mod ops;
mod registry;
mod seal;
mod up;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "custody", version, about = "A distributed, secure evidence vault for public-security video")]
pub struct Cli {
    /// Client profile (TOML): endpoints, CA, client certificate and key.
    #[arg(long, global = true, env = "CUSTODY_PROFILE")]
    pub profile: Option<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// How log lines on stderr look: `text` for people, `json` (one object per
    /// line: timestamp, level, target, fields) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CUSTODY_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the vault working end to end in a temporary directory.
    Demo(demo::DemoArgs),
    /// Measure the vault against this machine's own limits (SPEC §4) on a fresh local cluster.
    Bench(bench::BenchArgs),
    /// Initialise (first run) and run a local cluster in the foreground until Ctrl-C.
    Up(up::UpArgs),
    /// Run one node.
    Node {
        #[arg(long)]
        config: PathBuf,
        /// The data directory is empty on purpose: this member was removed from
        /// the cluster after losing its disk and will be added again (`cluster
        /// new-node` prepares new nodes' directories itself).
        #[arg(long)]
        new_disk: bool,
    },
    /// Cluster administration.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Development PKI.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// A node's seal (docs/KEYS.md §8): unseal it with custodians' shares, or change the shares.
    #[command(subcommand)]
    Operator(seal::OperatorCmd),
    /// A consistent, point-in-time backup of the running cluster (admin):
    /// its state at one log index, its checkpoint, and every sealed chunk;
    /// resumes an unfinished one in the same directory. `backup verify DIR`
    /// checks one offline.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        check: Option<BackupCmd>,
        /// Where to write it (empty, or an unfinished backup to resume).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a node's data directory from a backup (then start the node).
    Restore {
        /// The backup's directory.
        dir: PathBuf,
        /// The node's config: its keys stay as they are, its `data_dir` must hold no database.
        #[arg(long)]
        config: PathBuf,
    },
    /// Deposit a clip.
    Deposit(ops::DepositArgs),
    /// List items, filtered as the console filters them.
    Items(ops::ItemsFilter),
    /// Show one item's metadata and custody trail.
    Show { item: String },
    /// The latest majority-cosigned checkpoint, as signed-note text.
    Checkpoint,
    /// Log in (sign a challenge with the profile's key) and print the session token.
    Login,
    /// Every node re-reads and checks every chunk and its audit tree now; repairs from replicas (admin).
    Scrub,
    /// Make a user's Ed25519 signing key (mode 0600) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// File an access request (you are its first participant) and sign it.
    Request(access::RequestArgs),
    /// Sign a request as a participant or as approver. Shows the request first
    /// and, on a terminal, asks before signing.
    Approve {
        request: String,
        /// Sign without asking (for scripts); without a terminal it is required.
        #[arg(long)]
        yes: bool,
    },
    /// As a participant of a granted request: record the access, then stream the clip.
    Fetch {
        item: String,
        #[arg(long)]
        request: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Place a legal hold: the item is kept past its retention until released.
    Hold {
        item: String,
        #[arg(long)]
        reason: String,
    },
    /// Release a legal hold.
    Release { item: String },
    /// After retention, with a granted purge request: destroy the key and the chunks, keep the record.
    Purge {
        item: String,
        #[arg(long)]
        request: String,
    },
    /// Extend retention (shortening is refused).
    Extend {
        item: String,
        #[arg(long)]
        retention: String,
    },
    /// The replicated registry of people and source video systems.
    #[command(subcommand)]
    Registry(registry::RegistryCmd),
    /// Write an item's proof bundle for a court.
    Proof {
        item: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proof bundle offline (and the clip, if given).
    Verify(custody_verify::run::VerifyArgs),
    /// Check that the log only grew since the checkpoint kept in FILE; keep the new one.
    Monitor {
        #[arg(long)]
        state: PathBuf,
        /// Pin these verifier keys (otherwise those kept in the state, or the cluster's on first use).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// A witness outside the vault's control (C2SP tlog-witness): cosigns checkpoints that extend the last one it cosigned.
    #[command(subcommand)]
    Witness(witness::WitnessCmd),
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Write everything a local cluster needs into DIR; start nothing.
    Init(init::InitArgs),
    /// Write the config and certificate of one more node into an initialised DIR.
    NewNode(init::NewNodeArgs),
    /// Leader, members, terms, indices and per-node health.
    Status,
    /// The nodes' checkpoint verifier keys, one per line.
    Keys,
    /// Add a node: as a learner first, then as a voter once it has caught up.
    AddNode(AddNodeArgs),
    /// Register a member's keys again as it states them now (after its
    /// certificate was rotated): an administrator's signed registry change.
    Bind {
        #[arg(long)]
        id: u64,
        /// The node's `https://host:port`.
        #[arg(long)]
        addr: String,
    },
    /// Remove a node from the cluster.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
}

#[derive(Args)]
pub struct AddNodeArgs {
    #[arg(long)]
    pub id: u64,
    /// The node's `https://host:port`.
    #[arg(long)]
    pub addr: String,
    /// Leave it a learner.
    #[arg(long)]
    pub learner_only: bool,
}

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Check a backup offline against the node verifier keys you pinned.
    Verify {
        dir: PathBuf,
        #[arg(long)]
        keys: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum CertsCmd {
    /// A dev CA, node certificates and user certificates.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Comma-separated user names.
        #[arg(long, value_delimiter = ',', default_value = "alice,bob,carol,dave,admin,admin2")]
        users: Vec<String>,
    },
    /// A user's client certificate from an existing CA, with a new signing
    /// key and a profile: what a new officer or administrator needs (an
    /// administrator then files them with `registry officer add`).
    Issue(init::IssueArgs),
    /// Revokes a certificate the CA issued: writes the CA's revocation list,
    /// which every node configured with it (`crl` in node.toml) enforces on
    /// each handshake, incoming and outgoing, within seconds.
    Revoke(init::RevokeArgs),
    /// Replaces a node's or a user's certificate and key with new ones from
    /// the CA, in place: nodes load them within seconds, without a restart.
    Rotate(init::RotateArgs),
    /// A user's certificate and key as one password-protected PKCS#12 file,
    /// for a browser (the console is served over the same mutual TLS).
    ExportP12(init::ExportP12Args),
}

/// An error with the exit status it should produce.
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// The command already printed its (negative) result; print no error object.
    pub reported: bool,
    /// The vault's problem type, when the failure is its answer.
    pub problem: Option<String>,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure { code, message: message.into(), reported: false, problem: None }
    }
    /// A negative verdict (exit 1) whose result was already printed.
    pub fn verdict(message: impl Into<String>) -> Self {
        Failure { code: 1, message: message.into(), reported: true, problem: None }
    }
}

/// The exit status of the client half's failures (`crate::sealing`): a vault
/// that refused or answered wrong is a negative verdict, anything else an
/// operational error.
pub(crate) fn sealing_failure(e: crate::sealing::SealingError) -> Failure {
    let code = match e.kind {
        crate::sealing::ErrorKind::Verdict => 1,
        crate::sealing::ErrorKind::Operational => 2,
    };
    Failure { code, message: e.message, reported: false, problem: e.problem }
}

impl<E: std::fmt::Display + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        // The vault's answer: its refusals are a negative verdict (1), with their type.
        if let Some(p) = (&e as &dyn std::any::Any).downcast_ref::<crate::client::HttpError>().and_then(|h| h.problem()) {
            let code = if p.is_refusal() { 1 } else { 2 };
            return Failure { code, message: format!("{}: {}", p.title, p.detail), reported: false, problem: Some(p.kind.clone()) };
        }
        Failure::new(2, format!("{e:#}"))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Node { .. } | Command::Witness(_) => "info,openraft=warn",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTODY_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json && !f.reported {
                let out = crate::wire::ErrorOutput { error: f.message.clone(), exit_code: f.code, problem: f.problem.clone() };
                println!("{}", serde_json::to_value(&out).unwrap_or_default());
            }
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    match cli.command {
        Command::Demo(a) => demo::run(a, json).await,
        Command::Bench(a) => bench::run(a, json).await,
        Command::Up(a) => up::run(a).await,
        Command::Node { config, new_disk } => {
            let cfg = crate::config::NodeConfig::load(&config)?;
            // The node serves the API it is handed: `node/` does not import `api/`.
            crate::node::run(cfg, new_disk, crate::api::serve, crate::api::serve_sealed).await.map_err(Failure::from)
        }
        Command::Cluster(ClusterCmd::Init(a)) => {
            let done = init::init(&a)?;
            emit(json, &serde_json::to_value(&done)?, || done.summary());
            Ok(())
        }
        Command::Cluster(ClusterCmd::NewNode(a)) => {
            let path = init::new_node(&a)?;
            emit(json, &serde_json::to_value(crate::wire::NewNodeOutput { config: path.clone() })?, || path.display().to_string());
            Ok(())
        }
        Command::Backup { check: Some(BackupCmd::Verify { dir, keys }), .. } => backup::verify(&dir, &keys, json),
        Command::Backup { check: None, out } => {
            let out = out.ok_or_else(|| Failure::new(2, "--out DIR is required (or `backup verify DIR`)"))?;
            backup::backup(&ops::session(cli.profile)?, &out, json).await
        }
        Command::Restore { dir, config } => backup::restore(&dir, &config, json),
        Command::Certs(CertsCmd::Rotate(a)) => {
            let done = init::certs_rotate(&a)?;
            emit(json, &serde_json::to_value(&done)?, || {
                let mut out = format!("{}: a new certificate (serial {}) valid until {}", done.subject, done.serial, done.not_after);
                if done.revoked_old {
                    out.push_str(&format!("; the old one (serial {}) is revoked", done.old_serial));
                }
                if done.subject.starts_with("node-") {
                    out.push_str("\nthen register it: custody cluster bind --id <id> --addr <https://host:port>");
                }
                out
            });
            Ok(())
        }
        Command::Certs(CertsCmd::Revoke(a)) => {
            let done = init::certs_revoke(&a)?;
            emit(json, &serde_json::to_value(&done)?, || {
                let last = done.revoked.last().map(|r| format!("{} (serial {})", r.subject, r.serial)).unwrap_or_default();
                format!("revoked {last}; {} now lists {} certificates", done.crl.display(), done.revoked.len())
            });
            Ok(())
        }
        Command::Certs(CertsCmd::ExportP12(a)) => {
            let done = init::certs_export_p12(&a)?;
            emit(json, &serde_json::to_value(&done)?, || {
                format!(
                    "{}: {} (valid until {}{}); import it into the browser with its password",
                    done.user,
                    done.out.display(),
                    done.not_after,
                    if done.includes_ca { ", the CA after it" } else { "" }
                )
            });
            Ok(())
        }
        Command::Certs(CertsCmd::Issue(a)) => {
            let done = init::certs_issue(&a)?;
            emit(json, &serde_json::to_value(&done)?, || done.summary());
            Ok(())
        }
        Command::Certs(CertsCmd::Init { dir, nodes, users }) => {
            let done = init::certs_init(&dir, nodes, &users)?;
            emit(json, &serde_json::to_value(&done)?, || done.summary());
            Ok(())
        }
        Command::Cluster(ClusterCmd::Status) => ops::status(&ops::session(cli.profile)?, json).await,
        Command::Cluster(ClusterCmd::AddNode(a)) => ops::add_node(&ops::session(cli.profile)?, a, json).await,
        Command::Cluster(ClusterCmd::Bind { id, addr }) => ops::bind(&ops::session(cli.profile)?, id, &addr, json).await,
        Command::Cluster(ClusterCmd::RemoveNode { id }) => ops::remove_node(&ops::session(cli.profile)?, id, json).await,
        Command::Deposit(a) => ops::deposit(&ops::session(cli.profile)?, a, json).await.map(|_| ()),
        Command::Items(f) => ops::items(&ops::session(cli.profile)?, &f, json).await,
        Command::Show { item } => ops::show(&ops::session(cli.profile)?, &item, json).await,
        Command::Cluster(ClusterCmd::Keys) => audit::keys(&ops::session(cli.profile)?, json).await,
        Command::Checkpoint => audit::checkpoint(&ops::session(cli.profile)?, json).await,
        Command::Keygen { out } => registry::keygen(&out, json),
        Command::Scrub => {
            let s = ops::session(cli.profile)?;
            let v: crate::wire::ScrubSummary = s.call::<(), _>(hyper::Method::POST, "/v1/scrub", None, std::time::Duration::from_secs(3600)).await?;
            emit(json, &serde_json::to_value(&v)?, || {
                let mut out = format!("checked {} chunk copies: {} corrupt, {} missing, {} repaired", v.checked, v.corrupt, v.missing, v.repaired);
                if !v.unrepairable.is_empty() {
                    out.push_str(&format!("; UNREPAIRABLE: {}", v.unrepairable.join(", ")));
                }
                for e in &v.errors {
                    out.push_str(&format!("\nnode {} did not scrub: {}", e.node, e.error));
                }
                out
            });
            Ok(())
        }
        Command::Login => {
            let s = ops::session(cli.profile)?;
            let token = s.token().await?;
            emit(json, &serde_json::to_value(crate::wire::TokenOutput { token: token.clone(), expires_in: crate::auth::TOKEN_TTL_SECS })?, || {
                token.clone()
            });
            Ok(())
        }
        Command::Request(a) => access::request(&ops::session(cli.profile)?, a, json).await,
        Command::Hold { item, reason } => {
            access::retention(&ops::session(cli.profile)?, &item, "hold", serde_json::json!({ "reason": reason }), json).await
        }
        Command::Purge { item, request } => {
            let q = serde_urlencoded::to_string([("request", request.as_str())])?;
            access::retention(&ops::session(cli.profile)?, &item, &format!("purge?{q}"), serde_json::json!({}), json).await
        }
        Command::Release { item } => access::retention(&ops::session(cli.profile)?, &item, "release", serde_json::json!({}), json).await,
        Command::Extend { item, retention } => {
            access::retention(&ops::session(cli.profile)?, &item, "extend", serde_json::json!({ "retention": retention }), json).await
        }
        Command::Approve { request, yes } => access::approve(&ops::session(cli.profile)?, &request, yes, json).await,
        Command::Fetch { item, request, out } => access::fetch(&ops::session(cli.profile)?, &item, &request, &out, json).await,
        Command::Registry(cmd) => registry::run(&ops::session(cli.profile)?, cmd, json).await,
        Command::Proof { item, out } => audit::proof(&ops::session(cli.profile)?, &item, &out, json).await,
        Command::Verify(a) => audit::verify(&a, json),
        Command::Monitor { state, keys } => audit::monitor(&ops::session(cli.profile)?, &state, keys.as_deref(), json).await,
        Command::Witness(cmd) => witness::run(cmd, json).await,
        Command::Operator(cmd) => seal::run(cmd, cli.profile, json).await,
    }
}

/// Prints a result: the JSON object with `--json`, else the human text.
pub(crate) fn emit(json: bool, value: &serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}
