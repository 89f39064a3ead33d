//! Threshold key custody (docs/KEYS.md §4): no node's directory opens an item,
//! a majority of holders' shares does, and each holder releases its share only
//! for an access its own applied state records, by the user who asks.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{write_clip, Cluster};
use custody::crypto::shares;

/// The item record as node `id`'s database holds it (the node must be stopped).
fn item_record(c: &Cluster, id: u64, item: &str) -> custody::vault::ItemRecord {
    let db = custody::storage::Db::open(&c.node_dir(id).join("data/db")).unwrap();
    let view = custody::raft::state_machine::StateView(db);
    custody::vault::query::item(&view, &item.parse().unwrap()).unwrap().expect("the node holds the item record")
}

fn share_secret(c: &Cluster, id: u64) -> shares::ShareSecretKey {
    let seed: [u8; 32] = hex::decode(std::fs::read_to_string(c.keys_dir(id).join("share.key")).unwrap().trim()).unwrap().try_into().unwrap();
    shares::ShareSecretKey::from_seed(&seed)
}

/// Every file under `dir`, read whole.
fn all_bytes(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_bytes(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p.display().to_string(), b));
        }
    }
}

/// Issue 14: take one node's whole directory (its database, chunks, config and
/// every key file). Its own share opens; one share is fewer than the
/// threshold; the data key is nowhere in it. Two nodes' shares rebuild the key.
#[test]
fn one_nodes_directory_opens_no_item_and_a_majority_of_shares_does() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 3 << 20, 5);
    let item = c.deposit("alice", &clip, "case-K")["item"].as_str().unwrap().to_string();
    // Every node has the record before they stop.
    crate::harness::wait_until("every node lists the item", Duration::from_secs(30), || {
        (1..=3).all(|i| c.try_items(&c.node_profile("admin", i)).is_some_and(|l| l.iter().any(|v| v["item"] == item))).then_some(())
    });
    for id in 1..=3 {
        c.kill(id);
    }
    let cid = c.cluster_id();
    let mut opened = Vec::new();
    for id in 1..=3u64 {
        let rec = item_record(&c, id, &item);
        let m = &rec.manifest;
        assert_eq!((m.holders.len(), m.threshold), (3, 2));
        let mine = m.holders.iter().find(|h| h.node == id).unwrap();
        let aad = shares::share_aad(&cid, rec.manifest.item.as_bytes(), id, mine.x);
        let share = share_secret(&c, id).open(shares::SHARE_INFO, &aad, &hex::decode(&mine.envelope).unwrap()).unwrap();
        // No other holder's envelope opens with this node's key.
        for other in m.holders.iter().filter(|h| h.node != id) {
            let aad = shares::share_aad(&cid, rec.manifest.item.as_bytes(), other.node, other.x);
            assert!(share_secret(&c, id).open(shares::SHARE_INFO, &aad, &hex::decode(&other.envelope).unwrap()).is_err());
        }
        let share = shares::KeyShare::from_bytes(&share).unwrap();
        assert!(shares::recover(std::slice::from_ref(&share), 2).is_err(), "one share rebuilt a key");
        opened.push((share, m.item, m.key_commitment_bytes().unwrap()));
    }
    let (item_id, commitment) = (opened[0].1, opened[0].2);
    let key = shares::recover(&[opened[0].0.clone(), opened[2].0.clone()], 2).unwrap();
    assert_eq!(shares::key_commitment(item_id.as_bytes(), &key), commitment, "two holders' shares rebuild the item's key");
    // Nothing on any node's disk holds the data key: not the database, not a key file, not a log.
    let mut files = Vec::new();
    all_bytes(c.path(), &mut files);
    assert!(files.len() > 10);
    for (path, bytes) in &files {
        assert!(!bytes.windows(32).any(|w| w == key), "{path} holds the item's data key");
    }
}

/// A TLS request to node `id` as `user`; returns the status code and body.
pub fn request(c: &Cluster, user: &str, id: u64, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = c.connect_as(user, id).await;
        let body = serde_json::to_vec(body).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body).await.unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
        let json = text.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b.trim()).ok()).unwrap_or(Value::Null);
        (status, json)
    })
}

/// `user`'s own signing key, from their profile.
pub fn signing_key(c: &Cluster, user: &str) -> custody::crypto::SigningKey {
    let profile = custody::config::Profile::load(&c.profile(user)).unwrap();
    let seed: [u8; 32] = hex::decode(std::fs::read_to_string(profile.signing_key.unwrap()).unwrap().trim()).unwrap().try_into().unwrap();
    custody::crypto::SigningKey::from_seed(&seed).unwrap()
}

/// Issue 14: a holder releases its share only once its own applied state
/// records an access to this item by the user asking, with that fetch key.
#[test]
fn a_holder_releases_its_share_only_for_a_recorded_access_by_the_user_asking() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 1 << 20, 6);
    let deposit = c.deposit("alice", &clip, "case-R");
    let item = deposit["item"].as_str().unwrap().to_string();
    let deposit_leaf = deposit["leaf_index"].as_u64().unwrap();
    let req = c.grant(&item, "view");
    let fetch_secret = shares::ShareSecretKey::generate().unwrap();
    let fetch_key = hex::encode(fetch_secret.public_key());
    let statement =
        custody::evidence::AccessStatement { item: item.parse().unwrap(), request: req.clone(), fetcher: "bob".into(), fetch_key: fetch_key.clone() };
    let signature = base64::engine::general_purpose::STANDARD.encode(signing_key(&c, "bob").sign(&statement.signing_bytes().unwrap()));
    let bob = c.token("bob");
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let share = |user: &str, token: &str, leaf: u64, key: &str| {
        request(&c, user, follower, "POST", &format!("/v1/items/{item}/share"), token, &json!({ "access_leaf": leaf, "fetch_key": key }))
    };
    // Before any access: the deposit's own leaf is no access, and nothing is released.
    let (status, body) = share("bob", &bob, deposit_leaf, &fetch_key);
    assert_eq!(status, 403, "{body}");
    // Another key than bob signed is refused by apply.
    let (status, body) = request(
        &c,
        "bob",
        leader,
        "POST",
        &format!("/v1/items/{item}/access"),
        &bob,
        &json!({ "request": req, "fetch_key": "11".repeat(32), "signature": signature }),
    );
    assert_eq!(status, 403, "{body}");
    let (status, view) = request(
        &c,
        "bob",
        leader,
        "POST",
        &format!("/v1/items/{item}/access"),
        &bob,
        &json!({ "request": req, "fetch_key": fetch_key, "signature": signature }),
    );
    assert_eq!(status, 200, "{view}");
    let leaf = view["access_leaf"].as_u64().unwrap();
    // Alice is a participant too, but this access is bob's: not released to her.
    let (status, body) = share("alice", &c.token("alice"), leaf, &fetch_key);
    assert_eq!(status, 403, "{body}");
    // Nor to bob for another key than the one he signed for.
    let (status, body) = share("bob", &bob, leaf, &"22".repeat(32));
    assert_eq!(status, 403, "{body}");
    // Bob, for his recorded access: the follower releases its share, sealed to his fetch key.
    let (status, released) = share("bob", &bob, leaf, &fetch_key);
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["node"], follower);
    let x = released["x"].as_u64().unwrap() as u8;
    let aad =
        [shares::share_aad(&c.cluster_id(), &hex::decode(&item).unwrap().try_into().unwrap(), follower, x), leaf.to_be_bytes().to_vec()].concat();
    let opened = fetch_secret.open(shares::RELEASE_INFO, &aad, &hex::decode(released["envelope"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(shares::KeyShare::from_bytes(&opened).unwrap().x, x);
    // The access is in the log before any share left a node.
    let out = c.cli_json(&c.profile("dave"), &["show", &item]);
    assert!(out["trail"].as_array().unwrap().iter().any(|t| t["leaf_index"] == leaf && t["kind"] == "access"), "{out}");
}

/// Records `user`'s access to `item` under `req` through node `id`, as their
/// client does; returns the access leaf.
pub fn record_access(c: &Cluster, user: &str, id: u64, item: &str, req: &str) -> u64 {
    let fetch_key = hex::encode(shares::ShareSecretKey::generate().unwrap().public_key());
    let statement =
        custody::evidence::AccessStatement { item: item.parse().unwrap(), request: req.into(), fetcher: user.into(), fetch_key: fetch_key.clone() };
    let signature = base64::engine::general_purpose::STANDARD.encode(signing_key(c, user).sign(&statement.signing_bytes().unwrap()));
    let body = json!({ "request": req, "fetch_key": fetch_key, "signature": signature });
    let (status, view) = request(c, user, id, "POST", &format!("/v1/items/{item}/access"), &c.token(user), &body);
    assert_eq!(status, 200, "{view}");
    view["access_leaf"].as_u64().unwrap()
}

/// Issue 14: a new voter gets a share of every earlier item by re-sharing (no
/// one rebuilds the key), and with four voters (k = 3) the item stays readable
/// without one of its old holders: the new voter's share is one of the three.
/// Removing that holder re-shares the item again over the three voters left.
#[test]
fn a_voter_joins_and_a_holder_leaves_and_the_item_stays_readable() {
    use std::process::Command;
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    let sha = write_clip(&clip, 2 << 20, 7);
    let item = c.deposit("alice", &clip, "case-J")["item"].as_str().unwrap().to_string();
    let req = c.grant(&item, "view");
    let out = Command::new(crate::harness::BIN).args(["cluster", "new-node", "--dir"]).arg(c.path()).args(["--id", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.start(4);
    c.cli_json(&c.profile("admin"), &["cluster", "add-node", "--id", "4", "--addr", &c.addr(4)]);
    crate::harness::wait_until("the item to be re-shared to the four voters", Duration::from_secs(60), || {
        let v = c.cli_json(&c.profile("dave"), &["show", &item]);
        v["trail"].as_array()?.iter().any(|t| t["kind"] == "reshare").then_some(())
    });
    // One old holder goes (not the leader, so no election is needed); three of four remain.
    let gone = (1..=3).find(|i| *i != leader).unwrap();
    c.kill(gone);
    let out_path = c.path().join("fetched.mp4");
    let v = c.cli_json(&c.profile("bob"), &["fetch", &item, "--request", &req, "--out", out_path.to_str().unwrap()]);
    assert_eq!(v["sha256"], sha, "{v}");
    let log = std::fs::read_to_string(c.node_dir(4).join("node.log")).unwrap();
    assert!(log.contains("released this node's share"), "node 4's re-shared share was one of the three");
    // The dead holder is removed: the item is re-shared again, over the three voters left
    // (k = 2), and the removed node holds no share of it any more.
    c.cli_json(&c.profile("admin"), &["cluster", "remove-node", "--id", &gone.to_string()]);
    crate::harness::wait_until("the item to be re-shared to the three voters left", Duration::from_secs(60), || {
        let v = c.cli_json(&c.profile("dave"), &["show", &item]);
        (v["trail"].as_array()?.iter().filter(|t| t["kind"] == "reshare").count() >= 2).then_some(())
    });
    let req = c.grant(&item, "view");
    let v = c.cli_json(&c.profile("bob"), &["fetch", &item, "--request", &req, "--out", out_path.to_str().unwrap()]);
    assert_eq!(v["sha256"], sha, "{v}");
}

/// docs/KEYS.md §7: the leader adds no node whose keys an administrator did
/// not bind, even when an administrator asks it directly (not through
/// `cluster add-node`, which binds first); once bound, the same call adds it.
#[test]
fn the_leader_adds_no_node_whose_keys_are_not_bound() {
    use std::process::Command;
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let out = Command::new(crate::harness::BIN).args(["cluster", "new-node", "--dir"]).arg(c.path()).args(["--id", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.start(4);
    let token = c.token("admin");
    let body = json!({ "id": 4, "addr": c.addr(4), "learner_only": true });
    let (status, v) = request(&c, "admin", leader, "POST", "/v1/cluster/members", &token, &body);
    assert_eq!((status, v["type"].as_str()), (409, Some("urn:custody:node-not-bound")), "{v}");
    let st = c.cli_json(&c.profile("admin"), &["cluster", "status"]);
    assert!(st["members"].as_array().unwrap().iter().all(|m| m["id"] != 4), "an unbound node became a member: {st}");
    // `cluster add-node` binds (the administrator signs the node's own binding), then adds.
    c.cli_json(&c.profile("admin"), &["cluster", "add-node", "--id", "4", "--addr", &c.addr(4), "--learner-only"]);
    let st = c.cli_json(&c.profile("admin"), &["cluster", "status"]);
    assert!(st["members"].as_array().unwrap().iter().any(|m| m["id"] == 4), "{st}");
}

/// Issue 14: a snapshot is not a back door (docs/KEYS.md §7.3). Every voter's
/// state is given a person no registry record adds (as a compromised leader
/// would forge one); the snapshot a leader then ships to a joining node is
/// refused by it, loudly, and the forged person never reaches its state.
#[test]
fn a_joining_node_refuses_a_snapshot_whose_registry_its_leaves_do_not_record() {
    use custody::storage::{Batch, Cf, Db, Durability};
    let mut c = Cluster::init(3, "snapshot_every_entries = 3");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 200_000, 1);
    c.deposit("alice", &clip, "case-F");
    // Every node has applied the same tree, the deposit and every registry change before it included.
    crate::harness::wait_until("every node to apply the same tree", Duration::from_secs(30), || {
        let st = c.status()?;
        let sizes: Vec<u64> = st["members"].as_array()?.iter().filter_map(|m| m["health"]["audit_size"].as_u64()).collect();
        (sizes.len() == 3 && sizes.iter().all(|s| *s == sizes[0] && *s > 0)).then_some(())
    });
    for id in 1..=3 {
        c.kill(id);
    }
    let person = |name: &str| custody::vault::registry::keys::person(name);
    for id in 1..=3 {
        let db = Db::open(&c.node_dir(id).join("data/db")).unwrap();
        let carol = db.get(Cf::State, &person("carol")).unwrap().expect("carol is registered");
        let mut mallory: Value = serde_json::from_slice(&carol).unwrap();
        mallory["name"] = json!("mallory");
        let mut b = Batch::default();
        b.put(Cf::State, person("mallory"), serde_json::to_vec(&mallory).unwrap());
        db.write(b, Durability::Fsync).unwrap();
    }
    c.start_all(3);
    c.wait_leader(3);
    // New entries, so that the next snapshot is a dump of the forged state.
    for i in 2..6u8 {
        let p = c.path().join(format!("c{i}.mp4"));
        write_clip(&p, 100_000 + u64::from(i), i);
        c.deposit("alice", &p, "case-F");
    }
    let out =
        std::process::Command::new(crate::harness::BIN).args(["cluster", "new-node", "--dir"]).arg(c.path()).args(["--id", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.append_node_config(4, "snapshot_every_entries = 3");
    c.start(4);
    // add-node cannot finish: the newcomer never catches up, and add-node waits for
    // it. It runs beside the test and is stopped at the end; its answer is not the point.
    let mut add = std::process::Command::new(crate::harness::BIN)
        .arg("--profile")
        .arg(c.profile("admin"))
        .args(["--json", "cluster", "add-node", "--id", "4", "--addr", &c.addr(4)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log_path = c.node_dir(4).join("node.log");
    crate::harness::wait_until("node 4 to refuse the snapshot", Duration::from_secs(60), || {
        std::fs::read_to_string(&log_path).ok().filter(|l| l.contains("REFUSED THE LEADER'S SNAPSHOT")).map(|_| ())
    });
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("person mallory"), "the refusal names what was forged");
    assert!(!log.contains("installed a snapshot from the leader"), "node 4 installed the forged snapshot");
    let _ = add.kill();
    let _ = add.wait();
    c.kill(4);
    let db = Db::open(&c.node_dir(4).join("data/db")).unwrap();
    assert!(db.get(Cf::State, &person("mallory")).unwrap().is_none(), "the forged person reached node 4's state");
}

/// docs/KEYS.md §4.2: a fetch asks k holders and one more when they are slow,
/// so a holder that stops answering (paused, not gone: its connection hangs)
/// costs a fetch a quarter of a second, not the 20 s a release may take.
#[test]
fn a_holder_that_hangs_does_not_hold_up_a_fetch() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    let sha = write_clip(&clip, 1 << 20, 9);
    let item = c.deposit("alice", &clip, "case-H")["item"].as_str().unwrap().to_string();
    let hung = (1..=3).find(|i| *i != leader).unwrap();
    let order: Vec<u64> = std::iter::once(leader).chain((1..=3).filter(|i| *i != leader && *i != hung)).chain([hung]).collect();
    // Bob's client logs in and streams from the leader; the holders it asks start at a random one.
    let bob = c.profile_asking("bob", &order);
    let pid = c.children[&hung].id().to_string();
    let stop = |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    stop("-STOP");
    // Four fetches: the hung holder is among the first k asked in each with probability 2/3.
    for round in 0..4 {
        let req = c.grant(&item, "view");
        let out_path = c.path().join(format!("fetched-{round}.mp4"));
        let t = std::time::Instant::now();
        let v = c.cli_json(&bob, &["fetch", &item, "--request", &req, "--out", out_path.to_str().unwrap()]);
        assert_eq!(v["sha256"], sha, "{v}");
        assert!(t.elapsed() < Duration::from_secs(10), "fetch {round} took {:?} with a holder hung", t.elapsed());
    }
    stop("-CONT");
}
