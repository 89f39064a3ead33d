//! A running vault node: opens its storage, starts Raft, serves the API over
//! mutual TLS (the server it is handed: `api/` imports `node/`, never the
//! other way round), and keeps itself whole (fetching chunks it lacks,
//! collecting orphans). This is where the pieces meet; the rules live in `vault/`.

pub mod alerts;
pub mod backup;
pub mod checkpoint;
mod clock;
mod deposit;
mod fetch;
pub mod heads;
pub mod heal;
mod held;
mod inflight;
pub mod objects;
pub mod pkcs11;
pub mod proposer;
pub mod reshare;
pub mod scrub;
pub mod seal;
mod snapshot;
mod tsa;
mod witnesses;

pub use deposit::{deposit, DepositError, Upload};
pub use fetch::{record_access, release_share, sealed_chunks, AccessAsk, FetchError, Recorded, Released, Sealed};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use openraft::BasicNode;
use tokio::sync::mpsc;

use crate::client::Http;
use crate::config::NodeConfig;
use crate::evidence::ChunkStore;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::state_machine::{StateMachineStore, StateView};
use crate::raft::{NodeId, Raft};
use crate::storage::{Batch, Cf, Db, Durability};
use crate::vault::{query, ClusterConfig, Command};

/// Header naming the deposit a chunk transfer belongs to.
pub const DEPOSIT_HEADER: &str = "x-custody-deposit";
/// A deposit's sealed chunk bytes, before its manifest (docs/KEYS.md §4.1).
pub const SEALED_BYTES_HEADER: &str = "x-custody-sealed-bytes";
/// A deposit's chunk size: plaintext bytes per sealed chunk.
pub const CHUNK_SIZE_HEADER: &str = "x-custody-chunk-size";

/// Marker file `cluster init` leaves in the first node's data directory: that
/// node initialises the cluster once, then removes it. A node whose disk was
/// lost has no marker and joins as a blank node instead of forming a new cluster.
pub const BOOTSTRAP_MARKER: &str = "bootstrap-pending";

/// Marker `cluster init` and `cluster new-node` leave in every new data
/// directory: it is empty on purpose. A member whose disk was lost has none and
/// refuses to start blank, because a blank voter could help elect a leader that
/// lacks committed entries; the operator removes it from the cluster first and
/// then starts it with `custody node --new-disk` (which stands for the marker).
pub const NEW_DISK_MARKER: &str = "new-disk";
/// Where a node answers with its seal (`wire::SealStatus`), sealed or not.
pub const SEAL_PATH: &str = "/v1/seal";
/// Where a sealed node takes a custodian's share (`wire::UnsealRequest`).
pub const UNSEAL_PATH: &str = "/v1/seal/unseal";
pub(crate) const IDENTITY_KEY: &[u8] = b"node/identity";

/// Shared state of a running node. Its fields are private to `node/`: `api/`
/// and the rest ask through the methods below, so what a handler may do with a
/// node is this interface, and an entry point that acts for a person takes a
/// [`crate::auth::Principal`], which only the session check makes.
///
/// A handler cannot reach past the interface into a field:
///
/// ```compile_fail,E0616
/// fn sessions(node: &custody::node::Node) {
///     let _ = &node.sessions;
/// }
/// ```
///
/// nor act for a name it holds instead of a `Principal`:
///
/// ```compile_fail,E0308
/// async fn fetch(node: &custody::node::Node, item: custody::evidence::ItemId, ask: custody::node::AccessAsk) {
///     let _ = custody::node::record_access(node, "alice".to_string(), item, ask).await;
/// }
/// ```
///
/// It acts for the one the session check authenticated:
///
/// ```
/// async fn fetch(node: &custody::node::Node, who: &custody::auth::Principal, item: custody::evidence::ItemId, ask: custody::node::AccessAsk) {
///     let _ = custody::node::record_access(node, who, item, ask).await;
/// }
/// ```
pub struct Node {
    cfg: NodeConfig,
    raft: Raft,
    db: Db,
    state: StateView,
    chunks: ChunkStore,
    /// Set in bucket mode (`[chunks] backend = "s3"`): chunks live there, not in `chunks`.
    bucket: Option<Arc<crate::evidence::Bucket>>,
    http: Http,
    /// Chunks this node should hold but does not (kept by the healer).
    missing_chunks: AtomicU64,
    /// This node's checkpoint signing key.
    signer: crate::audit::Signer,
    /// Tree size up to which this node has checked its stored audit tree.
    audit_verified: tokio::sync::Mutex<u64>,
    /// Set when the stored tree failed a check: the node then never signs.
    audit_broken: std::sync::Mutex<Option<String>>,
    /// The witnesses the leader pushes checkpoints to, and what it knows of each.
    witnesses: witnesses::Witnesses,
    /// The time-stamping authority the leader asks for tokens on checkpoints, if any.
    tsa: Option<tsa::Tsa>,
    /// Suspicious events: the log, and the webhook when configured.
    pub(crate) alerts: alerts::Alerts,
    /// Deposits streaming chunks here that have not committed yet.
    inflight: inflight::Inflight,
    /// This node's own session-token key (docs/KEYS.md §3): no other node has it.
    sessions: crate::auth::SessionKeys,
    /// Its public half.
    session_public: [u8; 32],
    /// This node's keys as it states them, with its proofs (docs/KEYS.md §7);
    /// an administrator's signed change registers them.
    binding: std::sync::RwLock<crate::vault::nodes::NodeBinding>,
    /// This node's share key (docs/KEYS.md §4): it opens this node's share of
    /// each data key, and nothing else does.
    share_secret: crate::crypto::shares::ShareSecretKey,
    /// Only with the `serve-before-record` chaos mutation: accesses claimed but
    /// not yet recorded (item, user, command).
    late_records: std::sync::Mutex<Vec<(crate::evidence::ItemId, String, crate::vault::Command)>>,
    /// Chunks the last scrub could not repair from any replica (their items are damaged).
    damaged_chunks: std::sync::Mutex<Vec<String>>,
    /// Chunks this node held once and found gone, not yet repaired (kept by the
    /// healer; each is a recorded finding).
    lost_chunks: std::sync::Mutex<Vec<String>>,
    /// When this node's certificate and the CA's end (unix seconds), read at start.
    cert_ends: Vec<(crate::wire::CertificateRole, i64)>,
    /// Set once this node has applied the cluster's configuration, which it
    /// then never loses (every snapshot carries it): spares a read per call.
    caught_up: std::sync::atomic::AtomicBool,
    /// Refuses entries stamped too far from this node's clock (docs/KEYS.md §6).
    clock: clock::ClockGuard,
    /// Group commit for small records.
    proposer: proposer::Proposer,
    /// What this node counts while it runs (`/metrics`).
    metrics: crate::metrics::Metrics,
    /// This node's TLS identity and trust (read again when a file changes).
    tls: Arc<crate::tls::Reloading>,
    /// How this node came by its secrets (docs/KEYS.md §8): `sealed` is false here.
    seal: crate::wire::SealStatus,
}

/// The current wall-clock time in unix milliseconds. Only the leader reads
/// the clock, to stamp commands; apply never does.
pub fn now_ms() -> u64 {
    let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    real.saturating_add_signed(CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// `clock_offset_secs` of the node config, for tests of a node whose clock is wrong.
static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

impl Node {
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// Current leader and its address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Proposes a command and waits until it is committed and applied; small
    /// records share entries with others proposed at the same time. Private to
    /// `node/`: a command a person asks for goes through [`Node::propose_as`].
    async fn propose(&self, cmd: Command) -> Result<crate::vault::Outcome, proposer::WriteError> {
        self.proposer.propose(&self.raft, cmd).await
    }

    /// Proposes the command `make` builds for `who`, the person the session
    /// check authenticated: `make` is handed their name, which the command
    /// records as the one who acts (its `by`). Apply decides whether they may.
    pub async fn propose_as(
        &self,
        who: &crate::auth::Principal,
        make: impl FnOnce(String) -> Command,
    ) -> Result<crate::vault::Outcome, proposer::WriteError> {
        self.propose(make(who.name().to_string())).await
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.cfg.id)
    }

    /// Members as `(id, addr, voter)`.
    /// Is node `id` in the membership this node has applied (voter or learner)?
    pub fn is_member(&self, id: NodeId) -> bool {
        self.raft.metrics().borrow().membership_config.membership().nodes().any(|(n, _)| *n == id)
    }

    pub fn members(&self) -> Vec<(NodeId, String, bool)> {
        let m = self.raft.metrics().borrow().clone();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        mem.nodes().map(|(id, n)| (*id, n.addr.clone(), voters.contains(id))).collect()
    }

    /// Is `peer` (a node certificate from the cluster CA) allowed to send Raft
    /// traffic and chunks to this node? A member node is. A node that knows no
    /// membership yet (new, or back with an empty disk) accepts any node of the
    /// cluster's CA: the leader that adds or refills it may be a node its own
    /// config predates (found by the chaos suite, seeds 11 and 62).
    pub fn accepts_peer(&self, peer: NodeId) -> bool {
        let members = self.members();
        members.is_empty() || members.iter().any(|(id, _, _)| *id == peer)
    }

    /// Where this node sends its own traffic to member `id`: its configured
    /// route if it has one, else the member's advertised `addr`.
    pub fn route(&self, id: NodeId, addr: &str) -> String {
        self.http.node_url(id, self.cfg.routes.get(&id).map(String::as_str).unwrap_or(addr))
    }

    /// The other members as `(id, address to reach it, voter)`, for this node's own traffic.
    pub fn routed_peers(&self) -> Vec<(NodeId, String, bool)> {
        self.members().into_iter().filter(|m| m.0 != self.cfg.id).map(|(id, a, v)| (id, self.route(id, &a), v)).collect()
    }

    /// Addresses of the other members, for fetching chunks.
    pub fn peer_addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = self.routed_peers().into_iter().map(|(_, a, _)| a).collect();
        if out.is_empty() {
            out = self.cfg.peers.iter().filter(|p| p.id != self.cfg.id).map(|p| self.route(p.id, &p.addr)).collect();
        }
        out
    }
}

/// Checks that the data directory belongs to this cluster and this node, and
/// records the identity in a new one: only one prepared as new (the marker, or
/// `--new-disk` from the operator).
fn check_identity(db: &Db, cfg: &NodeConfig, new_disk: bool) -> anyhow::Result<()> {
    let want = format!("{}/{}", cfg.cluster_id, cfg.id);
    let marker = cfg.data_dir.join(NEW_DISK_MARKER);
    match db.get(Cf::Meta, IDENTITY_KEY)? {
        Some(have) if have == want.as_bytes() => {}
        Some(have) => bail!(
            "the data directory {} belongs to cluster/node {}, but this config is for {}: refusing to start (pointing a node at another cluster's data would corrupt both)",
            cfg.data_dir.display(),
            String::from_utf8_lossy(&have),
            want
        ),
        None => {
            if db.edge(Cf::Log, false)?.is_some() || db.edge(Cf::State, false)?.is_some() {
                bail!("the data directory {} holds data but no identity: refusing to start", cfg.data_dir.display());
            }
            if !new_disk && !marker.exists() {
                bail!(
                    "the data directory {} is empty, and it was not prepared as a new node's: if this member lost its disk, it must not \
                     rejoin by itself (a blank voter can help elect a leader that lacks committed entries). Remove it from the cluster \
                     (`custody cluster remove-node --id {id}`), start it with `custody node --config <its node.toml> --new-disk`, then add \
                     it again (`custody cluster add-node --id {id} --addr {addr}`): it catches up as a learner before it votes",
                    cfg.data_dir.display(),
                    id = cfg.id,
                    addr = cfg.advertise,
                );
            }
            let mut b = Batch::default();
            b.put(Cf::Meta, IDENTITY_KEY, want.into_bytes());
            db.write(b, Durability::Fsync)?;
        }
    }
    // The marker stands for an empty directory only: once the identity is
    // durable it must go, or a later loss of the database would pass for new.
    match std::fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", marker.display())),
        _ => Ok(()),
    }
}

/// A 32-byte seed kept as 64 hex digits: read, or made (mode 0600, fsynced)
/// when the file is absent.
/// Reads a node key file: a 32-byte seed as 64 hex digits.
pub fn read_seed(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    parse_seed(path, &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
}

fn parse_seed(path: &std::path::Path, text: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(text.trim()).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| anyhow::anyhow!("{} must hold 64 hex digits", path.display()))
}

pub(crate) fn load_or_make_seed(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => parse_seed(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = crate::crypto::random_bytes::<32>()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(hex::encode(seed).as_bytes()).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "made this node's key file");
            Ok(seed)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The binding of the node whose config is `cfg` and whose secrets are
/// `secrets`. `cluster init` writes the first members' into the genesis.
pub fn binding_of(cfg: &NodeConfig, secrets: &seal::NodeSecrets) -> anyhow::Result<crate::vault::nodes::NodeBinding> {
    let signer = checkpoint::load_signer(cfg, &secrets.checkpoint_seed)?;
    let session = crate::crypto::SigningKey::from_seed(&secrets.session_seed)?.public_key();
    let share = crate::crypto::shares::ShareSecretKey::from_seed(&secrets.share_seed).public_key();
    checkpoint::own_binding(cfg, &signer, &session, &share, &secrets.tls_key)
}

/// The secrets of the node whose config is `cfg`, without a custodian:
/// from its key files, or from its sealed file with its dev shares file.
pub fn secrets_without_custodians(cfg: &NodeConfig) -> anyhow::Result<seal::NodeSecrets> {
    match &cfg.seal {
        None => seal::NodeSecrets::from_files(cfg),
        Some(sc) => match &sc.auto_unseal {
            Some(p) => seal::auto_unseal(&seal::SealedFile::load(&sc.file)?, p),
            None => bail!("node {}'s secrets are sealed: only its custodians' shares open them", cfg.id),
        },
    }
}

/// How this node came by its secrets.
async fn open_secrets<SS, FS>(cfg: &NodeConfig, serve_sealed: SS) -> anyhow::Result<Option<(seal::NodeSecrets, crate::wire::SealStatus)>>
where
    SS: FnOnce(Arc<seal::Unsealer>, tokio::net::TcpListener, crate::tls::Acceptor) -> FS,
    FS: std::future::Future<Output = ()> + Send + 'static,
{
    let mut status = crate::wire::SealStatus {
        node: cfg.id,
        cluster_id: cfg.cluster_id.clone(),
        sealed: false,
        threshold: 0,
        shares: 0,
        progress: 0,
        dev_auto_unseal: false,
        pkcs11: false,
    };
    let Some(sc) = &cfg.seal else {
        return Ok(Some((seal::NodeSecrets::from_files(cfg)?, status)));
    };
    let file = seal::SealedFile::load(&sc.file)?;
    if file.node != cfg.id || file.cluster_id != cfg.cluster_id {
        bail!("{} seals node {} of cluster {}, not this node {} of {}", sc.file.display(), file.node, file.cluster_id, cfg.id, cfg.cluster_id);
    }
    (status.threshold, status.shares) = (file.threshold, file.shares);
    if let Some(p) = &sc.auto_unseal {
        tracing::warn!(shares = %p.display(), "DEV: this node unseals itself from a shares file; the cluster says so in its checkpoints");
        status.dev_auto_unseal = true;
        return Ok(Some((seal::auto_unseal(&file, p)?, status)));
    }
    if let Some(token) = &sc.pkcs11 {
        let (f, t) = (file.clone(), token.clone());
        match tokio::task::spawn_blocking(move || seal::token_unseal(&f, &t)).await? {
            Ok(secrets) => {
                tracing::info!(token = %token.token, "unsealed with the PKCS#11 token");
                status.pkcs11 = true;
                return Ok(Some((secrets, status)));
            }
            // The custodians can still open it.
            Err(e) => tracing::error!(error = format!("{e:#}"), "the PKCS#11 token did not unseal this node: waiting for custodians' shares"),
        }
    }
    // Sealed: only health and unseal are served, with the seal certificate,
    // which names `sealed.node-<id>.custody` and cannot pass for this node.
    let tls = crate::tls::Reloading::load(crate::tls::TlsPaths {
        ca: cfg.ca.clone(),
        cert: sc.cert.clone(),
        key: crate::tls::KeySource::File(sc.key.clone()),
        crl: cfg.crl.clone(),
    })?;
    let acceptor = crate::tls::Acceptor::reloading(&tls)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("listening on {}", cfg.listen))?;
    let unsealer = Arc::new(seal::Unsealer::new(file));
    tracing::warn!(node = cfg.id, listen = %cfg.listen, "SEALED: waiting for the custodians' shares (`custody operator unseal --node {}`)", cfg.id);
    let server = tokio::spawn(serve_sealed(unsealer.clone(), listener, acceptor));
    let reload = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(crate::limits::TLS_RELOAD_SECS)).await;
            if let Err(e) = tls.reload_if_changed() {
                tracing::warn!(error = %e, "TLS files changed but do not load; the previous ones stay in use");
            }
        }
    });
    let secrets = tokio::select! {
        s = unsealer.opened() => s,
        () = shutdown_signal() => None,
    };
    server.abort();
    reload.abort();
    let _ = server.await;
    Ok(secrets.map(|s| (s, status)))
}

/// Runs a node until SIGINT or SIGTERM. `serve` is the HTTPS API over this
/// node (`api::serve`, which the `node` command hands in: `node/` does not know
/// `api/`); it starts once the node is built and listening, before the
/// bootstrap and the background loops, and stops before Raft does.
pub async fn run<S, F, SS, FS>(cfg: NodeConfig, new_disk: bool, serve: S, serve_sealed: SS) -> anyhow::Result<()>
where
    S: FnOnce(Arc<Node>, tokio::net::TcpListener, crate::tls::Acceptor) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
    SS: FnOnce(Arc<seal::Unsealer>, tokio::net::TcpListener, crate::tls::Acceptor) -> FS,
    FS: std::future::Future<Output = ()> + Send + 'static,
{
    let Some((secrets, seal_status)) = open_secrets(&cfg, serve_sealed).await? else {
        tracing::info!(node = cfg.id, "stopping, still sealed");
        return Ok(());
    };
    let signer = checkpoint::load_signer(&cfg, &secrets.checkpoint_seed)?;
    if cfg.clock_offset_secs != 0 {
        tracing::warn!(secs = cfg.clock_offset_secs, "TESTING: this node's clock is shifted by clock_offset_secs");
        CLOCK_OFFSET_MS.store(cfg.clock_offset_secs.saturating_mul(1000), std::sync::atomic::Ordering::Relaxed);
    }
    let clock = clock::ClockGuard::new(cfg.max_clock_skew_secs);
    let session_public = crate::crypto::SigningKey::from_seed(&secrets.session_seed)?.public_key();
    let sessions = crate::auth::SessionKeys::new(cfg.id, &secrets.session_seed, &cfg.cluster_id);
    let share_secret = crate::crypto::shares::ShareSecretKey::from_seed(&secrets.share_seed);
    let binding = checkpoint::own_binding(&cfg, &signer, &session_public, &share_secret.public_key(), &secrets.tls_key)?;
    let key = match &cfg.seal {
        Some(_) => crate::tls::KeySource::Held(Arc::new(secrets.tls_key)),
        None => crate::tls::KeySource::File(cfg.key.clone()),
    };
    // Read again when a file changes: a renewed certificate or a new
    // revocation list takes effect without a restart (`tls_reload_loop`).
    let tls = crate::tls::Reloading::load(crate::tls::TlsPaths { ca: cfg.ca.clone(), cert: cfg.cert.clone(), key, crl: cfg.crl.clone() })?;
    let acceptor = crate::tls::Acceptor::reloading(&tls)?;
    let http = Http::new(tls.client_config()?);

    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let db = Db::open(&cfg.data_dir.join("db")).with_context(|| format!("opening the database in {}", cfg.data_dir.display()))?;
    check_identity(&db, &cfg, new_disk)?;
    let chunks = ChunkStore::open(&cfg.data_dir.join("chunks"))?;
    let bucket = match cfg.bucket.clone() {
        None => None,
        Some(b) => {
            let b = crate::evidence::Bucket::new(b)?;
            b.ensure().await.with_context(|| format!("the chunk bucket {b:?}"))?;
            tracing::info!(bucket = ?b, "chunks go to the object store");
            Some(Arc::new(b))
        }
    };

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let log_store = LogStore::new(db.clone());
    let sm = StateMachineStore::open(db.clone(), &cfg.data_dir.join("snapshots"), events_tx, snapshot::Gate::new(&cfg, http.clone()))?;
    let state = sm.view();
    let raft_cfg = Arc::new(crate::raft::config(&cfg.cluster_name, cfg.snapshot_every_entries)?);
    let raft = Raft::new(cfg.id, raft_cfg, Network::new(http.clone(), Arc::new(cfg.routes.clone())), log_store, sm).await?;

    let listener = tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("listening on {}", cfg.listen))?;
    let proposer = proposer::Proposer::start(raft.clone());
    let witness_list = cfg.witnesses.clone();
    let mut cert_ends = Vec::new();
    for (role, path) in [(crate::wire::CertificateRole::Node, &cfg.cert), (crate::wire::CertificateRole::Ca, &cfg.ca)] {
        let der = crate::tls::load_certs(path)?.into_iter().next().ok_or_else(|| anyhow::anyhow!("{} holds no certificate", path.display()))?;
        cert_ends.push((role, crate::tls::validity_of(der.as_ref())?.1));
    }
    let tsa = cfg.tsa_url.clone().map(tsa::Tsa::new);
    let alerts = alerts::Alerts::new(cfg.cluster_id.clone(), cfg.id, cfg.alert_webhook.clone());
    let node = Arc::new(Node {
        cfg,
        raft,
        db,
        state,
        chunks,
        bucket,
        http,
        missing_chunks: AtomicU64::new(0),
        signer,
        audit_verified: tokio::sync::Mutex::new(0),
        audit_broken: std::sync::Mutex::new(None),
        witnesses: witnesses::Witnesses::new(witness_list),
        tsa,
        alerts,
        caught_up: std::sync::atomic::AtomicBool::new(false),
        inflight: inflight::Inflight::default(),
        sessions,
        session_public,
        binding: std::sync::RwLock::new(binding),
        share_secret,
        late_records: Default::default(),
        damaged_chunks: std::sync::Mutex::new(Vec::new()),
        lost_chunks: std::sync::Mutex::new(Vec::new()),
        cert_ends,
        clock,
        proposer,
        metrics: crate::metrics::Metrics::new(),
        tls: tls.clone(),
        seal: seal_status,
    });
    tracing::info!(node = node.id(), listen = %node.cfg.listen, "node started");

    tokio::spawn(tls_reload_loop(node.clone(), tls));
    {
        let n = node.clone();
        tokio::spawn(async move { n.alerts.deliver_loop().await });
    }
    tokio::spawn(alerts::watch_members(node.clone(), Duration::from_secs(node.cfg.unreachable_after_secs)));
    let server = tokio::spawn(serve(node.clone(), listener, acceptor));
    bootstrap(&node).await?;
    tokio::spawn(configure_loop(node.clone()));
    tokio::spawn(checkpoint::verify_at_start(node.clone()));
    tokio::spawn(checkpoint::checkpoint_loop(node.clone()));
    if node.bucket.is_some() {
        tokio::spawn(objects::keep_loop(node.clone(), events_rx));
    } else {
        tokio::spawn(heal::heal_loop(node.clone(), events_rx));
        tokio::spawn(heal::orphan_loop(node.clone()));
    }
    tokio::spawn(scrub::scrub_loop(node.clone()));
    tokio::spawn(reshare::reshare_loop(node.clone()));

    shutdown_signal().await;
    tracing::info!(node = node.id(), "stopping");
    server.abort();
    node.raft.shutdown().await.ok();
    Ok(())
}

/// Reads the node's TLS files again whenever one changes.
/// Outgoing connections are dropped then (the next call makes a new one,
/// checked by the new reading); the server side closes incoming connections
/// whose peer the new reading refuses (`tls::Acceptor::until_untrusted`);
/// the node states its keys again with the certificate now in use.
async fn tls_reload_loop(node: Arc<Node>, tls: Arc<crate::tls::Reloading>) {
    loop {
        tokio::time::sleep(Duration::from_secs(crate::limits::TLS_RELOAD_SECS)).await;
        match tls.reload_if_changed() {
            Ok(true) => {
                node.http.drop_connections();
                if let Err(e) = node.restate_binding() {
                    tracing::warn!(error = %e, "the new certificate is in use, but this node cannot state its keys with it");
                }
                tracing::info!(revoked = tls.revoked(), "TLS files changed: the new certificate and revocation list are in use")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "TLS files changed but do not load; the previous ones stay in use"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Forms a new cluster if this is the bootstrap node of a fresh one.
async fn bootstrap(node: &Node) -> anyhow::Result<()> {
    let marker = node.cfg.data_dir.join(BOOTSTRAP_MARKER);
    if !node.cfg.bootstrap || !marker.exists() {
        return Ok(());
    }
    if !node.raft.is_initialized().await? {
        let members: BTreeMap<NodeId, BasicNode> = node.cfg.peers.iter().map(|p| (p.id, BasicNode { addr: p.addr.clone() })).collect();
        tracing::info!(?members, "initialising a new cluster");
        if let Err(e) = node.raft.initialize(members).await {
            tracing::warn!(error = %e, "initialise");
        }
    }
    std::fs::remove_file(&marker).context("removing the bootstrap marker")?;
    Ok(())
}

impl Node {
    /// Whether this node has applied the cluster's configuration (it then
    /// never loses it: every snapshot carries it).
    pub fn has_configuration(&self) -> Result<bool, crate::vault::VaultError> {
        use std::sync::atomic::Ordering;
        if self.caught_up.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let yes = query::config(&self.state)?.is_some();
        if yes {
            self.caught_up.store(true, Ordering::Relaxed);
        }
        Ok(yes)
    }

    /// On the leader: makes sure the cluster's settings are in replicated
    /// state before the first command that needs them.
    pub async fn ensure_configured(&self) -> anyhow::Result<()> {
        if query::config(&self.state)?.is_some() {
            return Ok(());
        }
        let config =
            ClusterConfig { cluster_id: self.cfg.cluster_id.clone(), retention: self.cfg.retention, dev_auto_unseal: self.seal.dev_auto_unseal };
        let mut registry: crate::vault::InitialRegistry = match &self.cfg.registry_file {
            Some(path) => serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
                .with_context(|| format!("{} is not a registry file", path.display()))?,
            None => Default::default(),
        };
        // The first leader's own keys are in the genesis even when the file
        // lists none; other members are bound by an administrator
        // (`custody cluster add-node`).
        if !registry.nodes.iter().any(|b| b.keys.node == self.id()) {
            registry.nodes.push(self.binding());
        }
        self.raft.client_write(Command::Configure { config, registry, time_ms: now_ms() }).await?;
        Ok(())
    }
}

/// The leader makes sure the cluster's settings are in replicated state; every
/// node checks its own config against them.
async fn configure_loop(node: Arc<Node>) {
    let mut warned = false;
    loop {
        match query::config(&node.state) {
            Ok(Some(c)) => {
                if (c.cluster_id != node.cfg.cluster_id || c.retention != node.cfg.retention) && !warned {
                    tracing::error!(replicated = ?c, "this node's config disagrees with the cluster's replicated settings; the replicated ones apply");
                    warned = true;
                }
                if !warned {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            Ok(None) if node.is_leader() => {
                if let Err(e) = node.ensure_configured().await {
                    tracing::debug!(error = %e, "configure");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "reading the cluster config"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn missing_chunks(node: &Node) -> u64 {
    node.missing_chunks.load(Ordering::Relaxed)
}

/// What `api/` asks of a node beyond the pipelines (`deposit`, `fetch`): reads
/// of its applied state, its sessions, Raft RPCs and membership, chunks other
/// members send or ask for, and its own health.
impl Node {
    /// This node's applied state, for queries (`vault::query` and the like).
    pub fn state(&self) -> &StateView {
        &self.state
    }

    /// The Raft handle: RPCs from other members, membership changes, metrics.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The cluster id in this node's config (the replicated one governs once applied).
    pub fn cluster_id(&self) -> &str {
        &self.cfg.cluster_id
    }

    /// Plaintext bytes per chunk that a new deposit should use.
    pub fn chunk_size_bytes(&self) -> u64 {
        self.cfg.chunk_size_bytes
    }

    /// This node's own key binding, as it states it (docs/KEYS.md §7).
    pub fn binding(&self) -> crate::vault::nodes::NodeBinding {
        match self.binding.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// This node's seal, as `GET /v1/seal` reports it.
    pub fn seal_status(&self) -> crate::wire::SealStatus {
        self.seal.clone()
    }

    /// States this node's keys again, with the certificate now in its files
    /// (after a rotation): an administrator registers the new statement with
    /// `custody cluster bind`.
    fn restate_binding(&self) -> anyhow::Result<()> {
        let pkcs8 = self.tls.key_pkcs8()?;
        let b = checkpoint::own_binding(&self.cfg, &self.signer, &self.session_public, &self.share_secret.public_key(), &pkcs8)?;
        match self.binding.write() {
            Ok(mut cur) => *cur = b,
            Err(poisoned) => *poisoned.into_inner() = b,
        }
        Ok(())
    }

    /// Is this node's own session key the one registered for it? Tokens it
    /// signs before then verify nowhere.
    pub fn session_key_registered(&self) -> Result<bool, crate::vault::VaultError> {
        Ok(query::session_key(&self.state, self.id())? == Some(self.session_public))
    }

    /// A session token for `user` over the certificate with SHA-256 `cert_sha256`,
    /// signed with this node's own key.
    pub fn issue_session(&self, user: &str, cert_sha256: &[u8; 32], now_secs: u64) -> Result<String, crate::auth::AuthError> {
        self.sessions.issue(user, cert_sha256, now_secs)
    }

    /// Verifies a session token presented by `user` over the certificate with
    /// SHA-256 `cert_sha256`: issued by a current member with the session key
    /// registered for it (docs/KEYS.md §3).
    pub fn verify_session(&self, token: &str, user: &str, cert_sha256: &[u8; 32]) -> Result<crate::auth::VerifiedToken, crate::auth::AuthError> {
        let issuer_key = |id: NodeId| if self.is_member(id) { query::session_key(&self.state, id).ok().flatten() } else { None };
        self.sessions.verify(token, user, cert_sha256, issuer_key)
    }

    /// Refuses entries not yet committed whose time is too far from this node's
    /// clock (docs/KEYS.md §6); the reason, when refused.
    pub fn check_entry_times(&self, req: &openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig>) -> Result<(), String> {
        let committed = req.leader_commit.map(|l| l.index);
        self.clock.check(&req.vote, &req.entries, committed, now_ms())
    }

    /// Stores a chunk a member sent (its bytes checked against its name) and
    /// marks it held. `deposit` names the deposit still streaming it, which
    /// keeps the orphan collector off it meanwhile.
    pub async fn receive_chunk(
        &self,
        name: crate::evidence::ChunkName,
        deposit: Option<crate::evidence::ItemId>,
        body: bytes::Bytes,
    ) -> Result<crate::evidence::Put, crate::evidence::ChunkStoreError> {
        if let Some(item) = deposit {
            self.inflight.touch(item, name);
        }
        let (store, db) = (self.chunks.clone(), self.db.clone());
        tokio::task::spawn_blocking(move || {
            let put = store.put(&name, &body)?;
            held::mark(&db, &name).map_err(|e| crate::evidence::ChunkStoreError::Io(std::io::Error::other(e.to_string())))?;
            Ok(put)
        })
        .await
        .map_err(|e| crate::evidence::ChunkStoreError::Io(std::io::Error::other(e)))?
    }

    /// A chunk from this node's own store, checked against its name.
    pub async fn stored_chunk(&self, name: crate::evidence::ChunkName) -> Result<bytes::Bytes, crate::evidence::ChunkStoreError> {
        let store = self.chunks.clone();
        tokio::task::spawn_blocking(move || store.get(&name)).await.map_err(|e| crate::evidence::ChunkStoreError::Io(std::io::Error::other(e)))?
    }

    /// Calls `path` on member `id` (advertised at `addr`, or at this node's
    /// route to it) over this node's own certificate.
    pub async fn call_member<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        id: NodeId,
        addr: &str,
        method: hyper::Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, crate::client::HttpError> {
        let url = format!("{}{path}", self.route(id, addr));
        self.http.call(method, &url, body, timeout).await
    }

    /// Member `id`'s seal, asked of it as a sealed node (`cluster status`,
    /// when it does not answer as itself).
    pub async fn sealed_member_status(&self, id: NodeId, addr: &str, timeout: Duration) -> Result<crate::wire::SealStatus, crate::client::HttpError> {
        let url = format!("{}{}", self.http.sealed_node_url(id, self.cfg.routes.get(&id).map(String::as_str).unwrap_or(addr)), SEAL_PATH);
        self.http.call::<(), _>(hyper::Method::GET, &url, None, timeout).await
    }

    /// The configured witnesses as this node knows them (`cluster status`).
    pub fn witness_status(&self) -> Vec<crate::wire::WitnessStatus> {
        self.witnesses.status()
    }

    /// The alert webhook as this node knows it (`cluster status`).
    pub fn alerts_status(&self) -> Option<crate::wire::AlertsStatus> {
        self.alerts.status()
    }

    /// The configured time-stamping authority as this node knows it (`cluster status`).
    pub fn tsa_status(&self) -> Option<crate::wire::TsaStatus> {
        self.tsa.as_ref().map(tsa::Tsa::status)
    }

    /// Why this node is not live (its Raft core stopped), if it is not.
    pub fn not_live(&self) -> Option<String> {
        self.raft.metrics().borrow().running_state.as_ref().err().map(|e| format!("Raft stopped: {e}"))
    }

    /// Why this node should not be sent clients now; empty when it is ready.
    pub fn not_ready(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow().clone();
        let mut why: Vec<String> = self.not_live().into_iter().collect();
        if !self.caught_up.load(std::sync::atomic::Ordering::Relaxed) && query::config(&self.state).ok().flatten().is_none() {
            why.push("it has not applied the cluster's configuration yet".into());
        }
        if m.current_leader.is_none() {
            why.push("it knows no leader".into());
        }
        if let Ok(Some(e)) = self.audit_broken.lock().map(|b| b.clone()) {
            why.push(format!("its audit tree does not check out: {e}"));
        }
        why
    }

    /// This node's metrics as Prometheus text (`GET /metrics`), gauges read now.
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        let m = self.raft.metrics().borrow().clone();
        let lag = match (&m.replication, m.last_log_index) {
            (Some(r), Some(last)) => r.iter().map(|(id, at)| (*id, last.saturating_sub(at.map(|l| l.index).unwrap_or(0)))).collect(),
            _ => Vec::new(),
        };
        // On the leader: the index a majority of the voters hold (its own last log among them).
        let commit = m.replication.as_ref().map(|r| {
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            let mut held: Vec<u64> = voters
                .iter()
                .map(|v| if *v == self.id() { m.last_log_index.unwrap_or(0) } else { r.get(v).copied().flatten().map(|l| l.index).unwrap_or(0) })
                .collect();
            held.sort_unstable_by(|a, b| b.cmp(a));
            held.get(voters.len() / 2).copied().unwrap_or(0)
        });
        let lost = self.lost_chunks.lock().map(|l| l.len()).unwrap_or(0) as u64;
        let damaged = self.damaged_chunks.lock().map(|d| d.len()).unwrap_or(0) as u64;
        let audit_ok = self.audit_broken.lock().map(|b| b.is_none()).unwrap_or(false);
        Ok(self.metrics.render(&crate::metrics::Gauges {
            records: crate::vault::audit::size(&self.state)?,
            items: query::item_count(&self.state)?,
            term: m.current_term,
            last_log: m.last_log_index.unwrap_or(0),
            applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            is_leader: m.current_leader == Some(self.id()),
            commit,
            lag,
            chunks_missing: missing_chunks(self),
            chunks_lost: lost,
            chunks_damaged: damaged,
            audit_tree_ok: audit_ok,
        }))
    }

    pub fn health(&self) -> crate::wire::NodeHealth {
        use crate::wire::HealthWarning;
        let m = self.raft.metrics().borrow().clone();
        let missing = missing_chunks(self);
        let mut warnings = Vec::new();
        if missing > 0 {
            warnings.push(HealthWarning::ChunksNotHeld { count: missing });
        }
        if let Ok(l) = self.lost_chunks.lock() {
            if !l.is_empty() {
                warnings.push(HealthWarning::ChunksLost { chunks: l.clone() });
            }
        }
        if let Err(e) = &m.running_state {
            warnings.push(HealthWarning::RaftStopped { error: e.to_string() });
        }
        if let Ok(d) = self.damaged_chunks.lock() {
            if !d.is_empty() {
                warnings.push(HealthWarning::ChunksDamaged { chunks: d.clone() });
            }
        }
        if let Ok(Some(why)) = self.audit_broken.lock().map(|b| b.clone()) {
            warnings.push(HealthWarning::AuditTreeInvalid { error: why });
        }
        let now_secs = (now_ms() / 1000) as i64;
        for (role, ends) in &self.cert_ends {
            let left = ends - now_secs;
            if left < (crate::limits::CERT_EXPIRY_WARNING_DAYS * 86_400) as i64 {
                warnings.push(HealthWarning::CertificateExpiring {
                    certificate: *role,
                    expires_at: crate::wire::rfc3339_ms(u64::try_from(*ends).unwrap_or(0) * 1000),
                    days_left: left.div_euclid(86_400),
                });
            }
        }
        crate::wire::NodeHealth {
            id: self.id(),
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            missing_chunks: missing,
            chunk_backend: if self.bucket.is_some() { crate::wire::ChunkBackend::S3 } else { crate::wire::ChunkBackend::Local },
            checkpoint_key: self.signer.verifier_key().to_string(),
            session_key: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, self.session_public),
            share_key: hex::encode(self.share_secret.public_key()),
            audit_size: crate::vault::audit::size(&self.state).unwrap_or(0),
            warnings,
        }
    }
}
