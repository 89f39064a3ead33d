//! The final checks, run after every fault is healed, against what the
//! clients saw (the oracle's model) and what the healed cluster holds.
//!
//! What each check guarantees when it passes:
//! - **convergence**: a leader reaches every member, all applied the same
//!   log, none misses a chunk or warns.
//! - **nothing acknowledged lost**: every acknowledged deposit is listed by
//!   every node with the SHA-256 and size of the clip sent, and a full fetch
//!   returns exactly those bytes.
//! - **no phantom items**: every listed item is one a client deposited (the
//!   note names the operation), with that clip's SHA-256 and size; a deposit
//!   whose client saw an error may have committed (indeterminate), but then it
//!   is whole and fetchable too. An item listed at any time during the run is
//!   still there (committed items never vanish).
//! - **chunks whole everywhere**: every chunk of every item is on every
//!   member's disk and hashes to its name.
//! - **logged before served**: for each user and item, fetches that delivered
//!   at least one byte are no more than the access records by that user in the
//!   item's trail.
//! - **no grant without its signatures**: each item with a grant has a proof
//!   bundle that `custody verify` accepts offline against the pinned keys, and
//!   every grant in it carries a verified signature of each participant and of
//!   the approver, each of whom a client really asked to approve.
//! - **no fork, no shrink**: checkpoints seen by clients agree wherever their
//!   sizes agree, none exceeds the final one, and `custody monitor` proves the
//!   final tree extends each of them.
//! - **one audit root**: every node ends on the same cosigned checkpoint,
//!   covering its whole tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::args;
use crate::cluster::{futures_join, Cluster};
use crate::workload::{file_sha256, Client, OnFirstBytes};

#[derive(Default)]
pub struct Verdict {
    pub lost: Vec<String>,
    pub violations: Vec<String>,
    pub stats: BTreeMap<String, Value>,
}

/// How many checks may run at once.
const PARALLEL: usize = 4;

impl Verdict {
    fn stat(&mut self, k: &str, v: impl Into<Value>) {
        self.stats.insert(k.to_string(), v.into());
    }
}

/// Runs a read-only CLI command as the court clerk, recorded, retried a few times.
async fn read(client: &Client, profile: &Path, kind: &str, args: &[String]) -> Result<Value, String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let op = client.oracle.invoke("checker", kind, json!({ "args": args }));
        let out = client.custody.run(Some(profile), args, Duration::from_secs(30)).await;
        let v = out.json().unwrap_or(Value::Null);
        let outcome = if out.ok() { crate::oracle::Outcome::Ok } else { crate::oracle::Outcome::Failed(out.error()) };
        client.oracle.complete(op, "checker", kind, &outcome, if kind == "items" || kind == "show" { Value::Null } else { v.clone() });
        if out.ok() {
            return Ok(v);
        }
        last = out.error();
        // A negative verdict is an answer, not a hiccup.
        if out.code == Some(1) {
            return Err(last);
        }
    }
    Err(last)
}

/// Runs every check; `until` bounds the work done on a cluster that is too broken to answer
/// quickly (at least 20 s are always given).
pub async fn run(cluster: &mut Cluster, client: &Client, keys: &Path, fetch_limit: usize, seed: u64, until: tokio::time::Instant) -> Verdict {
    let mut v = Verdict::default();
    let members: Vec<u64> = cluster.members.iter().copied().collect();

    // Convergence: the cluster says it is whole, and every member's disk agrees. A cluster that
    // does not converge has already failed; the checks below then look at fewer items, so that a
    // broken cluster cannot hold the run up for long.
    let mut fetch_limit = fetch_limit;
    match converge(cluster, client, &members, Duration::from_secs(45), &mut v).await {
        Ok(()) => v.stat("converged", true),
        Err(why) => {
            v.stat("converged", false);
            v.violations.push(format!("the cluster did not converge within 45 s of healing every fault: {why}"));
            fetch_limit = fetch_limit.min(8);
        }
    }
    let budget = until.max(tokio::time::Instant::now() + Duration::from_secs(20));
    let mut out_of_time = Vec::new();

    // Listings, node by node.
    let dave = client.profile("dave");
    let mut listings: BTreeMap<u64, BTreeMap<String, Value>> = BTreeMap::new();
    for id in &members {
        match read(client, &cluster.node_profile("dave", *id), "items", &args!["items"]).await {
            Ok(l) => {
                let items = l["items"].as_array().cloned().unwrap_or_default();
                listings.insert(*id, items.into_iter().filter_map(|i| Some((i["item"].as_str()?.to_string(), i))).collect());
            }
            Err(e) => v.violations.push(format!("node {id} does not list its items after healing: {e}")),
        }
    }
    let Some((&ref_node, listed)) = listings.iter().max_by_key(|(_, l)| l.len()) else {
        v.violations.push("no node lists items after healing".into());
        return v;
    };
    let listed = listed.clone();
    for (id, l) in &listings {
        let a: BTreeSet<&String> = l.keys().collect();
        let b: BTreeSet<&String> = listed.keys().collect();
        if a != b {
            let only_ref: Vec<_> = b.difference(&a).collect();
            let only_here: Vec<_> = a.difference(&b).collect();
            v.violations.push(format!(
                "node {id} lists other items than node {ref_node}: lacks {} (e.g. {:?}), has {} extra (e.g. {:?})",
                only_ref.len(),
                only_ref.iter().take(3).collect::<Vec<_>>(),
                only_here.len(),
                only_here.iter().take(3).collect::<Vec<_>>()
            ));
        }
    }
    v.stat("items_listed", listed.len());

    // Acknowledged deposits, phantom items, vanished items.
    let (deposits, seen, targeted) = client.oracle.with(|m| {
        (
            m.deposits.clone(),
            m.seen_items.clone(),
            m.deposits.values().filter(|d| d.targeted).filter_map(|d| d.acked.clone()).collect::<BTreeSet<_>>(),
        )
    });
    let mut acked = 0;
    for (note, d) in &deposits {
        let Some(item) = &d.acked else { continue };
        acked += 1;
        match listed.get(item) {
            None => v.lost.push(format!("acknowledged deposit op {} (item {item}, {} bytes, sha256 {}) is not listed", d.op, d.size, d.sha256)),
            Some(i) if i["sha256"] != d.sha256.as_str() || i["size"] != d.size => v.lost.push(format!(
                "acknowledged deposit {note} (item {item}) is listed with sha256 {} size {}, but the clip had sha256 {} size {}",
                i["sha256"], i["size"], d.sha256, d.size
            )),
            Some(_) => {}
        }
    }
    let mut indeterminate = 0;
    for (item, i) in &listed {
        let note = i["note"].as_str().unwrap_or("");
        match deposits.get(note) {
            None => v.violations.push(format!("item {item} (note {note:?}) appeared, but no client ever deposited it")),
            Some(d) => {
                if i["sha256"] != d.sha256.as_str() || i["size"] != d.size {
                    v.violations.push(format!(
                        "item {item} of deposit {note} is listed with sha256 {} size {}, but the clip sent had sha256 {} size {}",
                        i["sha256"], i["size"], d.sha256, d.size
                    ));
                }
                if d.acked.as_deref() != Some(item.as_str()) {
                    indeterminate += 1;
                }
            }
        }
    }
    for (item, sha) in &seen {
        if !listed.contains_key(item) {
            v.violations.push(format!("item {item} (sha256 {sha}) was listed during the run and is gone"));
        }
    }
    v.stat("deposits_acknowledged", acked);
    v.stat("deposits_indeterminate_committed", indeterminate);

    // Chunks on every member's disk.
    let disk = disk_check(cluster, &listed, &members);
    for (item, (gone, of)) in &disk.gone {
        let msg = format!("{} of the {of} chunks of item {item} are on no node's disk (e.g. {})", gone.len(), gone[0]);
        if deposits.values().any(|d| d.acked.as_deref() == Some(item.as_str())) {
            v.lost.push(msg);
        } else {
            v.violations.push(msg);
        }
    }
    for (id, gap) in &disk.not_whole {
        v.violations.push(format!("node {id} is not whole after healing: {gap}"));
    }
    v.stat("chunk_copies_verified", disk.copies);

    // Trails: access records against fetches that delivered bytes; grants against signatures.
    let (fetches, requests) = client.oracle.with(|m| (m.fetches.clone(), m.requests.clone()));
    // (user, item) → the fetches that delivered bytes: (op, request, completed).
    type Fetched = Vec<(u64, String, bool)>;
    let mut delivered: BTreeMap<(String, String), Fetched> = BTreeMap::new();
    for f in fetches.iter().filter(|f| f.delivered > 0) {
        delivered.entry((f.user.clone(), f.item.clone())).or_default().push((f.op, f.request.clone(), f.ok));
    }
    let items: Vec<String> = listed.keys().cloned().collect();
    let mut trails: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for batch in items.chunks(PARALLEL) {
        if tokio::time::Instant::now() > budget {
            out_of_time.push(format!("{} of {} custody trails", items.len() - trails.len(), items.len()));
            break;
        }
        let shown = futures_join(batch.iter().map(|i| {
            let dave = &dave;
            async move { read(client, dave, "show", &args!["show", i]).await }
        }))
        .await;
        for (item, s) in batch.iter().zip(shown) {
            match s {
                Ok(s) => {
                    trails.insert(item.clone(), s["trail"].as_array().cloned().unwrap_or_default());
                }
                Err(e) => v.violations.push(format!("cannot show item {item} after healing: {e}")),
            }
        }
    }
    let mut pairs = 0;
    for ((user, item), fetched) in &delivered {
        let Some(trail) = trails.get(item) else { continue };
        pairs += 1;
        let records = trail.iter().filter(|t| t["kind"] == "access" && t["by"] == user.as_str()).count();
        if records < fetched.len() {
            let ops: Vec<String> =
                fetched.iter().map(|(op, req, ok)| format!("op {op} (request {req}, {})", if *ok { "completed" } else { "cut off" })).collect();
            v.violations.push(format!(
                "{user} received bytes of item {item} in {} fetches [{}], but its trail holds {records} access records by {user}: bytes were served without a record",
                fetched.len(),
                ops.join(", ")
            ));
        }
    }
    v.stat("access_pairs_checked", pairs);

    let granted_items: Vec<String> =
        trails.iter().filter(|(_, t)| t.iter().any(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("grant")))).map(|(i, _)| i.clone()).collect();
    let mut grants_checked = 0;
    for (i, batch) in granted_items.chunks(PARALLEL).enumerate() {
        if tokio::time::Instant::now() > budget {
            out_of_time.push(format!("{} proof bundles", granted_items.len() - i * PARALLEL));
            break;
        }
        let results = futures_join(batch.iter().map(|item| check_bundle(client, cluster, keys, item, &requests))).await;
        for r in results {
            match r {
                Ok(n) => grants_checked += n,
                Err(mut errs) => v.violations.append(&mut errs),
            }
        }
    }
    v.stat("grants_checked", grants_checked);

    // Full fetches (after the trails, so a broken fetch path cannot starve the other checks):
    // every item if there are few, else the targeted ones and a sample. Many failures in a row
    // mean the fetch path itself is broken; one verdict says so and the rest are skipped.
    let mut to_fetch: Vec<String> = listed.keys().cloned().collect();
    if to_fetch.len() > fetch_limit {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfe7c);
        to_fetch.shuffle(&mut rng);
        let mut chosen: Vec<String> = targeted.iter().filter(|t| listed.contains_key(*t)).cloned().collect();
        for i in to_fetch {
            if chosen.len() >= fetch_limit.max(targeted.len()) {
                break;
            }
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        to_fetch = chosen;
    }
    let mut fetched = 0;
    let mut failed_in_a_row = 0;
    for batch in to_fetch.chunks(PARALLEL) {
        if tokio::time::Instant::now() > budget {
            out_of_time.push(format!("{} full fetches", to_fetch.len() - fetched));
            break;
        }
        if failed_in_a_row >= 8 {
            v.violations
                .push(format!("{failed_in_a_row} full fetches in a row failed; the other {} items were not fetched", to_fetch.len() - fetched));
            break;
        }
        fetched += batch.len();
        let results = futures_join(batch.iter().map(|item| fetch_whole(client, item))).await;
        for (item, r) in batch.iter().zip(results) {
            if r.is_ok() {
                failed_in_a_row = 0;
            }
            if let Err(e) = r {
                failed_in_a_row += 1;
                let acked_item = deposits.values().any(|d| d.acked.as_deref() == Some(item.as_str()));
                if acked_item {
                    v.lost.push(format!("acknowledged item {item} cannot be fetched whole: {e}"));
                } else {
                    v.violations.push(format!("committed item {item} (indeterminate deposit) cannot be fetched whole: {e}"));
                }
            }
        }
    }

    v.stat("items_fetched_in_full", fetched);

    // Checkpoints: no fork, no shrink, each extended by the final tree.
    check_checkpoints(cluster, client, keys, &members, &mut v).await;
    if !out_of_time.is_empty() {
        v.violations.push(format!("the checks ran out of time on the healed cluster and skipped {}", out_of_time.join(", ")));
    }
    v
}

/// What the members' disks hold of the listed items' chunks.
struct Disk {
    /// Chunk copies present and hashing to their names.
    copies: u64,
    /// Node → "N chunk copies of M items missing or altered (e.g. …)".
    not_whole: BTreeMap<u64, String>,
    /// Item → (chunks on no member's disk, chunk count).
    gone: BTreeMap<String, (Vec<String>, usize)>,
}

/// Hashes every chunk copy every member should hold.
fn disk_check(cluster: &Cluster, listed: &BTreeMap<String, Value>, members: &[u64]) -> Disk {
    let mut d = Disk { copies: 0, not_whole: BTreeMap::new(), gone: BTreeMap::new() };
    // node → (copies missing or altered, items touched, an example)
    let mut gaps: BTreeMap<u64, (usize, BTreeSet<String>, String)> = BTreeMap::new();
    for (item, i) in listed {
        let chunks = i["chunks"].as_array().cloned().unwrap_or_default();
        let mut gone = Vec::new();
        for c in &chunks {
            let Some(name) = c["name"].as_str() else { continue };
            let mut holders = 0;
            for id in members {
                let problem = match file_sha256(&cluster.chunk_path(*id, name)) {
                    Ok(h) if h == name => {
                        holders += 1;
                        d.copies += 1;
                        continue;
                    }
                    Ok(_) => "altered",
                    Err(_) => "missing",
                };
                let e = gaps.entry(*id).or_insert_with(|| (0, BTreeSet::new(), format!("chunk {name} of item {item} {problem}")));
                e.0 += 1;
                e.1.insert(item.clone());
            }
            if holders == 0 {
                gone.push(name.to_string());
            }
        }
        if !gone.is_empty() {
            d.gone.insert(item.clone(), (gone, chunks.len()));
        }
    }
    for (id, (n, items, example)) in gaps {
        d.not_whole.insert(id, format!("{n} chunk copies of {} items missing or altered (e.g. {example})", items.len()));
    }
    d
}

/// Waits until `cluster status` calls the cluster whole *and* every member's disk holds every
/// chunk of every item the leader lists. When the status says whole while a disk disagrees, the
/// status was wrong at that moment: that goes into the stats (`status_whole_but_disk_not`).
async fn converge(cluster: &mut Cluster, client: &Client, members: &[u64], timeout: Duration, v: &mut Verdict) -> Result<(), String> {
    let end = tokio::time::Instant::now() + timeout;
    let mut mismatches = Vec::new();
    let result = loop {
        let why = match cluster.whole(0).await {
            Err(why) => why,
            Ok(st) => {
                let leader = st["answered_by"].as_u64().or(members.first().copied()).unwrap_or_default();
                let out = client.custody.run(Some(&cluster.node_profile("dave", leader)), &args!["items"], Duration::from_secs(20)).await;
                match out.json().filter(|_| out.ok()).and_then(|l| l["items"].as_array().cloned()) {
                    None => format!("node {leader} does not list items: {}", out.error()),
                    Some(items) => {
                        let listed: BTreeMap<String, Value> = items.into_iter().filter_map(|i| Some((i["item"].as_str()?.to_string(), i))).collect();
                        let disk = disk_check(cluster, &listed, members);
                        if disk.not_whole.is_empty() {
                            break Ok(());
                        }
                        let gap = disk.not_whole.iter().map(|(id, g)| format!("node {id}: {g}")).collect::<Vec<_>>().join("; ");
                        mismatches.push(format!("t={}ms: {gap}", client.oracle.now_ms()));
                        format!("cluster status says whole, but {gap}")
                    }
                }
            }
        };
        if tokio::time::Instant::now() >= end {
            break Err(why);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.handle_panics().await;
    };
    if let Some(first) = mismatches.first() {
        client.oracle.event("status-whole-but-disk-not", json!(mismatches));
        v.stat("status_whole_but_disk_not", json!({ "times": mismatches.len(), "first": first }));
    }
    result
}

/// Fetches `item` in full as bob, with a grant from the run or a fresh one.
async fn fetch_whole(client: &Client, item: &str) -> Result<(), String> {
    let existing = client.oracle.with(|m| m.requests.iter().find(|(_, r)| r.item == item && r.granted_seen).map(|(id, _)| id.clone()));
    let req = match existing {
        Some(r) => r,
        None => {
            let mut granted = None;
            for _ in 0..2 {
                let Some(r) = client.request("checker", item).await else { continue };
                client.approve("checker", "bob", &r).await;
                if client.approve("checker", "carol", &r).await.as_deref() == Some("granted") {
                    granted = Some(r);
                    break;
                }
            }
            granted.ok_or("could not obtain a grant to fetch it")?
        }
    };
    let mut last = String::new();
    for _ in 0..2 {
        let (r, _) = client.fetch("checker", "bob", &client.profile("bob"), item, &req, OnFirstBytes::Continue, Duration::from_secs(90)).await;
        if r.ok {
            return Ok(());
        }
        last = client.oracle.with(|m| m.fetches.last().map(|f| format!("fetch op {} failed after {} bytes", f.op, f.delivered))).unwrap_or_default();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(format!("{last} (see history.jsonl)"))
}

fn decode_leaf(b64: &str) -> Option<Value> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The proof bundle of `item` verifies offline, and every grant in it carries a verified
/// signature of each participant and of its approver. Returns the grants checked.
async fn check_bundle(
    client: &Client,
    cluster: &Cluster,
    keys: &Path,
    item: &str,
    requests: &BTreeMap<String, crate::oracle::RequestRec>,
) -> Result<usize, Vec<String>> {
    let path = cluster.dir.join(format!("bundle-{item}.json"));
    let dave = client.profile("dave");
    read(client, &dave, "proof", &args!["proof", item, "--out", path.display()])
        .await
        .map_err(|e| vec![format!("no proof bundle for item {item}: {e}")])?;
    // `verify` is offline: exit 1 is its negative verdict, with the checks printed.
    let out = client.custody.run(None, &args!["verify", path.display(), "--keys", keys.display()], Duration::from_secs(30)).await;
    let verdict = out.json().unwrap_or(Value::Null);
    let checks = verdict["checks"].as_array().cloned().unwrap_or_default();
    let mut errs = Vec::new();
    if verdict["valid"] != true {
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c["ok"] != true)
            .map(|c| format!("{}: {}", c["name"].as_str().unwrap_or("?"), c["detail"].as_str().unwrap_or("")))
            .collect();
        errs.push(format!("the proof bundle of item {item} does not verify ({}): {}", out.error(), failed.join("; ")));
    }
    let bundle: Value = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    let approvals = bundle["approvals"].as_array().cloned().unwrap_or_default();
    let sig_checks: Vec<bool> =
        checks.iter().filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("approval signature"))).map(|c| c["ok"] == true).collect();
    let mut grants = 0;
    for t in bundle["trail"].as_array().cloned().unwrap_or_default() {
        let Some(leaf) = t["leaf"].as_str().and_then(decode_leaf) else { continue };
        if leaf["kind"] != "grant" {
            continue;
        }
        grants += 1;
        let req = leaf["request"].as_str().unwrap_or("").to_string();
        let mut required: BTreeSet<String> =
            leaf["officers"].as_array().into_iter().flatten().filter_map(|o| o.as_str().map(str::to_string)).collect();
        if let Some(a) = leaf["approver"].as_str() {
            required.insert(a.to_string());
        } else {
            errs.push(format!("the grant of request {req} on item {item} names no approver"));
        }
        for signer in &required {
            let signed = approvals
                .iter()
                .enumerate()
                .any(|(i, a)| a["request"] == req.as_str() && a["signer"] == signer.as_str() && sig_checks.get(i).copied().unwrap_or(false));
            if !signed {
                errs.push(format!("the grant of request {req} on item {item} has no verified signature by {signer}"));
            }
        }
        match requests.get(&req) {
            None => errs.push(format!("item {item} has a grant for request {req}, which no client filed")),
            Some(r) => {
                // The requester signs the request itself; everyone else signs an approval.
                for signer in required.iter().filter(|s| r.participants.first().is_none_or(|first| first != *s)) {
                    if !r.approve_invoked.contains(signer) {
                        errs.push(format!("the grant of request {req} carries {signer}'s signature, but {signer} was never asked to approve it"));
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    if errs.is_empty() {
        Ok(grants)
    } else {
        Err(errs)
    }
}

async fn check_checkpoints(cluster: &mut Cluster, client: &Client, keys: &Path, members: &[u64], v: &mut Verdict) {
    // Every node on the same checkpoint, covering its whole tree (wait for the last one to publish).
    let mut last_err = String::new();
    let mut finals: BTreeMap<u64, (u64, String, String)> = BTreeMap::new();
    for _ in 0..30 {
        finals.clear();
        last_err.clear();
        let st = match cluster.leader().await {
            Some(l) => cluster.status_via(l).await,
            None => None,
        };
        let sizes: BTreeMap<u64, u64> = st
            .as_ref()
            .and_then(|s| s["members"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| Some((m["id"].as_u64()?, m["health"]["audit_size"].as_u64()?)))
            .collect();
        for id in members {
            let out = client.custody.run(Some(&cluster.node_profile("dave", *id)), &args!["checkpoint"], Duration::from_secs(10)).await;
            match out.json().filter(|_| out.ok()) {
                Some(c) => {
                    finals.insert(
                        *id,
                        (c["size"].as_u64().unwrap_or(0), c["root"].as_str().unwrap_or("").to_string(), c["note"].as_str().unwrap_or("").to_string()),
                    );
                }
                None => last_err = format!("node {id} shows no checkpoint: {}", out.error()),
            }
        }
        if last_err.is_empty() {
            let distinct: BTreeSet<(u64, &String)> = finals.values().map(|(s, r, _)| (*s, r)).collect();
            let behind: Vec<String> = finals
                .iter()
                .filter(|(id, (s, _, _))| sizes.get(id).is_none_or(|a| a != s))
                .map(|(id, (s, _, _))| format!("node {id}: checkpoint {s} of tree {:?}", sizes.get(id)))
                .collect();
            if distinct.len() == 1 && behind.is_empty() {
                break;
            }
            last_err = format!("checkpoints {distinct:?}; {}", behind.join(", "));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut by_size: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (s, r, _) in finals.values() {
        by_size.entry(*s).or_default().insert(r.clone());
    }
    if !last_err.is_empty() {
        v.violations.push(format!("the nodes do not end on one audit root covering their whole tree: {last_err}"));
    }
    let Some((final_size, final_root, final_note)) = finals.values().max_by_key(|(s, _, _)| *s).cloned() else { return };
    v.stat("final_tree_size", final_size);
    v.stat("final_root", final_root.clone());

    let observed = client.oracle.with(|m| m.checkpoints.clone());
    for c in &observed {
        by_size.entry(c.size).or_default().insert(c.root.clone());
    }
    for (size, roots) in &by_size {
        if roots.len() > 1 {
            let ops: Vec<u64> = observed.iter().filter(|c| c.size == *size).map(|c| c.op).collect();
            v.violations.push(format!("fork: checkpoints of size {size} with different roots {roots:?} (read by ops {ops:?} and the final nodes)"));
        }
    }
    let mut distinct: BTreeMap<(u64, String), String> = BTreeMap::new();
    for c in &observed {
        distinct.entry((c.size, c.root.clone())).or_insert(c.note.clone());
    }
    let key_lines: Vec<String> =
        std::fs::read_to_string(keys).unwrap_or_default().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    let mut checked = 0;
    for ((size, root), note) in &distinct {
        if *size > final_size {
            v.violations.push(format!("shrink: a client saw a checkpoint of size {size}, the final tree has {final_size}"));
            continue;
        }
        if *size == final_size {
            if *root != final_root {
                v.violations.push(format!("fork: a client saw root {root} at size {size}, the final root is {final_root}"));
            }
            checked += 1;
            continue;
        }
        let state = cluster.dir.join(format!("monitor-{size}.json"));
        let _ = std::fs::write(&state, json!({ "keys": key_lines, "checkpoint": note }).to_string());
        let r = read(client, &client.profile("dave"), "monitor", &args!["monitor", "--state", state.display(), "--keys", keys.display()]).await;
        match r {
            Ok(m) if m["consistent"] == true => checked += 1,
            Ok(m) => v.violations.push(format!("the final tree does not extend the checkpoint of size {size} a client saw: {}", m["detail"])),
            Err(e) => v.violations.push(format!("the final tree does not provably extend the checkpoint of size {size} a client saw: {e}")),
        }
        let _ = std::fs::remove_file(&state);
    }
    let _ = final_note;
    v.stat("checkpoints_checked", checked);
}
