//! `custody demo`: the vault end to end in a temporary directory, narrated.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use hyper::Method;

use super::init::{self, InitArgs};
use super::local::LocalCluster;
use super::ops::{self, DepositArgs};
use super::Failure;
use crate::wire::{ClusterStatus, ItemDetail};

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the temporary directory afterwards (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Size of the sample clip in MiB.
    #[arg(long, default_value_t = 12)]
    pub clip_mib: u64,
}

struct Narrator {
    json: bool,
    steps: Vec<crate::wire::DemoStep>,
    failed: bool,
}

impl Narrator {
    fn say(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }
    fn step(&mut self, name: &str, result: anyhow::Result<String>) -> bool {
        let ok = result.is_ok();
        match &result {
            Ok(detail) => self.say(&format!("  ✔ {name}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })),
            Err(e) => self.say(&format!("  ✘ {name}: {e:#}")),
        }
        let (detail, error) = match &result {
            Ok(d) => ((!d.is_empty()).then(|| d.clone()), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        self.steps.push(crate::wire::DemoStep { name: name.to_string(), ok, detail, error });
        self.failed |= !ok;
        ok
    }
}

/// A base port with `n` consecutive free ports on loopback, below Linux's
/// default ephemeral range (32768–60999): a port picked there can be taken
/// by any outgoing connection between this check and the node's start.
pub(super) fn free_base_port(n: u16) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let base = 20000 + (u16::from_be_bytes(crate::crypto::random_bytes::<2>()?) % 12000);
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    anyhow::bail!("no free ports on loopback")
}

/// A sample clip: deterministic pseudo-random bytes (incompressible, like video).
pub(super) fn write_sample(path: &Path, mib: u64) -> anyhow::Result<String> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut h = crate::crypto::Hasher::new();
    let mut block = crate::crypto::sha256(b"custody demo clip");
    for _ in 0..(mib * 1024 * 1024 / 32) {
        block = crate::crypto::sha256(&block);
        f.write_all(&block)?;
        h.update(&block);
    }
    f.flush()?;
    Ok(hex::encode(h.finish()))
}

pub(super) async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match probe().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    anyhow::bail!("timed out waiting for {what} {last}")
}

fn chunk_path(dir: &Path, node: u64, name: &str) -> PathBuf {
    dir.join(format!("node{node}/data/chunks/{}/{name}", &name[..2]))
}

pub async fn run(a: DemoArgs, json: bool) -> Result<(), Failure> {
    let tmp = tempfile::Builder::new().prefix("custody-demo-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let mut n = Narrator { json, steps: Vec::new(), failed: false };
    n.say(&format!("custody demo in {}", dir.display()));
    let mut cluster = LocalCluster::new(&dir);
    let result = demo_steps(&a, &dir, &mut n, &mut cluster).await;
    n.say("stopping the cluster");
    cluster.stop_all().await;
    n.step("stop the cluster", Ok(String::new()));
    if let Err(e) = result {
        n.step("demo", Err(e));
    }
    if a.keep {
        let kept = tmp.keep();
        n.say(&format!("kept {}", kept.display()));
    }
    if json {
        let out = crate::wire::DemoOutput { steps: std::mem::take(&mut n.steps), ok: !n.failed };
        println!("{}", serde_json::to_value(&out)?);
    }
    if n.failed {
        return Err(Failure { code: 1, message: "a demo step failed".into(), reported: json, problem: None });
    }
    n.say("demo finished: every step held");
    Ok(())
}

async fn demo_steps(a: &DemoArgs, dir: &Path, n: &mut Narrator, cluster: &mut LocalCluster) -> anyhow::Result<()> {
    n.say("1. An administrator initialises a 3-node cluster: dev CA, node and user certificates, each node's own");
    n.say("   keys bound in the genesis, profiles. No key in the cluster opens footage by itself.");
    let base_port = free_base_port(3)?;
    let r = init::init(&InitArgs::local(dir, 3, base_port, None)).map(|c| format!("{} node configs", c.nodes.len()));
    if !n.step("initialise the cluster", r) {
        return Ok(());
    }
    n.say("2. Three node processes start on loopback; every connection is TLS 1.3 with client certificates.");
    cluster.start_all()?;
    let admin = ops::session(Some(dir.join("profiles/admin.toml"))).map_err(|f| anyhow::anyhow!(f.message))?;
    let r = wait_for("a leader with 3 healthy members", Duration::from_secs(60), || async {
        let st: ClusterStatus = admin.call::<(), _>(Method::GET, "/v1/cluster/status", None, Duration::from_secs(5)).await?;
        Ok((st.leader.is_some() && st.members.len() == 3 && st.members.iter().all(|m| m.reachable))
            .then(|| format!("node {} leads, term {}", st.leader.unwrap_or(0), st.term)))
    })
    .await;
    if !n.step("elect a leader", r) {
        return Ok(());
    }
    n.say("3. Officer alice deposits a clip. Her client cuts it into chunks sealed with AES-256-GCM under a fresh data");
    n.say("   key, splits the key 2-of-3 and seals each share to one node's own key, and signs the deposit; the chunks are");
    n.say("   written and fsynced on a majority of nodes before the seal entry commits through Raft.");
    let clip = dir.join("sample-clip.mp4");
    let want_sha = write_sample(&clip, a.clip_mib)?;
    let alice = ops::session(Some(dir.join("profiles/alice.toml"))).map_err(|f| anyhow::anyhow!(f.message))?;
    let args = DepositArgs {
        file: clip.clone(),
        case: "LN-2026-0042".into(),
        system: super::init::DEMO_SYSTEM.into(),
        retention: "important".into(),
        note: Some("demo clip".into()),
    };
    let receipt = ops::upload(&alice, &args, false).await.map_err(|f| anyhow::anyhow!(f.message));
    let receipt = match receipt {
        Ok(r) => r,
        Err(e) => {
            n.step("deposit a clip", Err(e));
            return Ok(());
        }
    };
    let ok = receipt.sha256 == want_sha;
    n.step(
        "deposit a clip",
        if ok { Ok(format!("item {} ({} bytes), sha256 matches", receipt.item, receipt.size)) } else { Err(anyhow::anyhow!("sha256 differs")) },
    );
    let detail: ItemDetail = admin.call::<(), _>(Method::GET, &format!("/v1/items/{}", receipt.item), None, Duration::from_secs(10)).await?;
    n.step("show the item from any node", Ok(format!("{} chunks, retained until {}", detail.item.chunks.len(), detail.item.retain_until)));

    n.say("4. Every node holds every chunk, and no plaintext sits on any disk.");
    let names: Vec<String> = detail.item.chunks.iter().map(|c| c.name.to_string()).collect();
    let r =
        wait_for("every chunk on every node", Duration::from_secs(30), || {
            let names = names.clone();
            async move {
                Ok(names.iter().all(|c| (1..=3).all(|id| chunk_path(dir, id, c).exists())).then(|| format!("{} chunks × 3 nodes", names.len())))
            }
        })
        .await;
    n.step("replicate chunks to every node", r);
    let needle = std::fs::read(&clip)?.get(1000..1064).map(|s| s.to_vec()).unwrap_or_default();
    let leaked = (1..=3).any(|id| contains_bytes(&dir.join(format!("node{id}")), &needle));
    n.step(
        "no plaintext at rest",
        if leaked { Err(anyhow::anyhow!("plaintext found on a node's disk")) } else { Ok("searched every file under every node".into()) },
    );

    n.say("5. Art. 18: officers alice and bob request a retrieval, each signing with their own key; carol,");
    n.say("   an approver who is not a participant, approves. The access is recorded before a byte is served.");
    let bob = ops::session(Some(dir.join("profiles/bob.toml"))).map_err(|f| anyhow::anyhow!(f.message))?;
    let carol = ops::session(Some(dir.join("profiles/carol.toml"))).map_err(|f| anyhow::anyhow!(f.message))?;
    let args = super::access::RequestArgs {
        item: receipt.item.to_string(),
        action: "retrieve".into(),
        purpose: "trial LN-2026-0042".into(),
        approval_doc: "APPROVAL-2026-117".into(),
        with: vec!["bob".into()],
        emergency: false,
        fetches: 2,
        valid_secs: crate::approval::DEFAULT_TTL_SECS,
    };
    let granted = async {
        let filed = super::access::file_request(&alice, args).await?;
        let out = dir.join("fetched-clip.mp4");
        let early = super::access::fetch_to(&bob, &receipt.item.to_string(), &filed.request, &out).await;
        let bob_st = super::access::sign_request(&bob, &filed.request).await?;
        let carol_st = super::access::sign_request(&carol, &filed.request).await?;
        Ok::<_, Failure>((filed.request, early.is_err(), bob_st.status, carol_st.status))
    }
    .await;
    let mut granted_request = None;
    match granted {
        Ok((req, refused_early, bob_status, carol_status)) => {
            granted_request = Some(req.clone());
            n.step(
                "no bytes without a grant",
                if refused_early { Ok("a fetch before approval is refused".into()) } else { Err(anyhow::anyhow!("served before the grant")) },
            );
            n.step(
                "two officers and an approver grant the request",
                if carol_status == crate::wire::RequestState::Granted {
                    Ok(format!("request {req}: bob {bob_status}, carol {carol_status}"))
                } else {
                    Err(anyhow::anyhow!("not granted: {carol_status}"))
                },
            );
            let out = dir.join("fetched-clip.mp4");
            match super::access::fetch_to(&bob, &receipt.item.to_string(), &req, &out).await {
                Ok(v) => n.step(
                    "fetch the clip, access recorded first",
                    Ok(format!("{} bytes, SHA-256 matches, access record at leaf {}", v.size, v.access_leaf)),
                ),
                Err(f) => n.step("fetch the clip, access recorded first", Err(anyhow::anyhow!(f.message))),
            };
        }
        Err(f) => {
            n.step("two officers and an approver grant the request", Err(anyhow::anyhow!(f.message)));
        }
    }

    n.say("6. A court asks for proof: the bundle carries the deposit record, its inclusion proof, and a");
    n.say("   checkpoint cosigned by a majority of nodes. It is checked offline with the nodes' verifier keys.");
    let dave = ops::session(Some(dir.join("profiles/dave.toml"))).map_err(|f| anyhow::anyhow!(f.message))?;
    let r: anyhow::Result<(crate::audit::bundle::Bundle, Vec<crate::audit::bundle::TrustedKey>)> = async {
        let b: crate::audit::bundle::Bundle =
            dave.call::<(), _>(Method::GET, &format!("/v1/items/{}/proof", receipt.item), None, Duration::from_secs(30)).await?;
        let k: crate::wire::KeysView = dave.call::<(), _>(Method::GET, "/v1/cluster/keys", None, Duration::from_secs(10)).await?;
        std::fs::write(dir.join("bundle.json"), serde_json::to_string_pretty(&b)?)?;
        let file = super::audit::key_file(&k);
        std::fs::write(dir.join("keys.txt"), &file)?;
        Ok((b, crate::audit::bundle::parse_keys(&file)?))
    }
    .await;
    match r {
        Ok((bundle, keys)) => {
            n.step(
                "export a proof bundle",
                Ok(format!("{} (leaf {}, {} proof hashes)", dir.join("bundle.json").display(), bundle.deposit.index, bundle.inclusion.len())),
            );
            let checks = crate::audit::bundle::verify(&bundle, &keys, Some(&want_sha));
            let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
            n.step(
                "verify the bundle and the clip offline",
                if failed.is_empty() { Ok(format!("{} checks hold", checks.len())) } else { Err(anyhow::anyhow!("failed: {}", failed.join(", "))) },
            );
            let other = crate::crypto::sha256(b"a different clip");
            let tampered = crate::audit::bundle::verify(&bundle, &keys, Some(&hex::encode(other)));
            n.step(
                "reject a clip that is not the deposited one",
                if tampered.iter().any(|c| !c.ok) {
                    Ok("clip sha256 check fails, as it must".into())
                } else {
                    Err(anyhow::anyhow!("a wrong clip verified"))
                },
            );
        }
        Err(e) => {
            n.step("export a proof bundle", Err(e));
        }
    }

    n.say("7. Someone alters a stored chunk on node 3 behind the vault's back; the scrubber finds it,");
    n.say("   repairs it from a healthy replica by name, and records the finding in the audit log.");
    let victim = chunk_path(dir, 3, &names[0]);
    let mut bytes = std::fs::read(&victim)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, bytes)?;
    let r: anyhow::Result<serde_json::Value> =
        admin.call::<(), _>(Method::POST, "/v1/scrub", None, Duration::from_secs(600)).await.map_err(Into::into);
    match r {
        Ok(v)
            if v["corrupt"].as_u64() >= Some(1)
                && v["repaired"] == v["corrupt"]
                && crate::crypto::sha256(&std::fs::read(&victim)?) == hex_name(&names[0]) =>
        {
            n.step(
                "scrub finds and repairs an altered chunk",
                Ok(format!("checked {} chunk copies: {} corrupt, {} repaired", v["checked"], v["corrupt"], v["repaired"])),
            )
        }
        Ok(v) => n.step("scrub finds and repairs an altered chunk", Err(anyhow::anyhow!("unexpected report {v}"))),
        Err(e) => n.step("scrub finds and repairs an altered chunk", Err(e)),
    };

    n.say("8. A follower goes down. Each node holds one share of the clip's data key; the shares of the two");
    n.say("   left, each released only after that node's own log shows the access, rebuild it.");
    let Some(req) = granted_request else { return Ok(()) };
    let st: ClusterStatus = admin.call::<(), _>(Method::GET, "/v1/cluster/status", None, Duration::from_secs(10)).await?;
    let down = (1..=3).rev().find(|id| Some(*id) != st.leader).unwrap_or(3);
    cluster.stop(down).await;
    let out = dir.join("fetched-again.mp4");
    match super::access::fetch_to(&bob, &receipt.item.to_string(), &req, &out).await {
        Ok(v) => n.step(
            "fetch with a majority of the holders' shares",
            Ok(format!("node {down} down: {} bytes, SHA-256 matches, from the shares of the other two", v.size)),
        ),
        Err(f) => n.step("fetch with a majority of the holders' shares", Err(anyhow::anyhow!(f.message))),
    };

    n.say(&format!("9. Someone takes node {down}'s whole directory (database, chunks, config, every key file) and"));
    n.say("   tries to open the clip with it alone.");
    n.step(&format!("node {down}'s directory alone opens nothing"), one_directory_opens_nothing(dir, down, &receipt.item));
    Ok(())
}

/// Tries what a thief with node `id`'s directory could: read the item from
/// its database, open its share with its share key, rebuild the data key.
/// Succeeds (as a demo step) when the key cannot be rebuilt.
fn one_directory_opens_nothing(dir: &Path, id: u64, item: &crate::evidence::ItemId) -> anyhow::Result<String> {
    use crate::crypto::shares;
    let node_dir = dir.join(format!("node{id}"));
    let cfg = crate::config::NodeConfig::load(&node_dir.join("node.toml"))?;
    let db = crate::storage::Db::open(&cfg.data_dir.join("db"))?;
    let rec = crate::vault::query::item(&crate::raft::state_machine::StateView(db), item)?
        .ok_or_else(|| anyhow::anyhow!("node {id} has no record of the item"))?;
    let m = &rec.manifest;
    // A dev node: its secrets open from the shares file beside it (docs/KEYS.md §8).
    let secret = shares::ShareSecretKey::from_seed(&crate::node::secrets_without_custodians(&cfg)?.share_seed);
    let mut opened = Vec::new();
    for h in &m.holders {
        let aad = shares::share_aad(&cfg.cluster_id, m.item.as_bytes(), h.node, h.x);
        if let Ok(bytes) = secret.open(shares::SHARE_INFO, &aad, &hex::decode(&h.envelope)?) {
            opened.push(shares::KeyShare::from_bytes(&bytes)?);
        }
    }
    match shares::recover(&opened, m.threshold) {
        Ok(key) if shares::key_commitment(m.item.as_bytes(), &key) == m.key_commitment_bytes()? => {
            anyhow::bail!("node {id}'s directory alone rebuilt the data key")
        }
        Ok(_) | Err(_) => {
            Ok(format!("its key opens {} of the {} shares needed; the data key cannot be rebuilt, the chunks stay sealed", opened.len(), m.threshold))
        }
    }
}

fn hex_name(name: &str) -> [u8; 32] {
    hex::decode(name).ok().and_then(|v| v.try_into().ok()).unwrap_or([0; 32])
}

/// Does any file under `dir` contain `needle`?
fn contains_bytes(dir: &Path, needle: &[u8]) -> bool {
    if needle.is_empty() {
        return false;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    return true;
                }
            }
        }
    }
    false
}
