//! The object-store chunk tier (`[chunks] backend = "s3"`, docs/STORAGE.md) against a real
//! Ceph cluster with an S3 gateway (RGW), started by `cluster/ceph-up.sh`. The adversary's
//! requests go through `curl --aws-sigv4`, an S3 client we did not write, with the nodes' own
//! credentials.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{free_ports, wait_until, write_clip, Cluster};

/// The keeper's first sweep comes an hour after start, after the test: the scrubber is what the
/// test watches find and record an object altered or hidden (the keeper would find a hidden one too).
const SWEEP: &str = "sweep_every_secs = 3600\n";

/// A single-host Ceph cluster for one test; stopped when dropped.
pub struct Ceph {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster").join(name)
}

impl Ceph {
    pub fn start() -> Ceph {
        let dir = tempfile::Builder::new().prefix("custody-ceph-").tempdir().unwrap();
        let port = free_ports(2);
        let started = Instant::now();
        let out = Command::new("bash").arg(script("ceph-up.sh")).arg(dir.path()).arg(port.to_string()).output().unwrap();
        assert!(
            out.status.success(),
            "cluster/ceph-up.sh failed (Debian: apt-get install ceph-mon ceph-mgr ceph-osd radosgw ceph-common): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{} ({:.1} s here)", String::from_utf8_lossy(&out.stdout).trim(), started.elapsed().as_secs_f64());
        let env = std::fs::read_to_string(dir.path().join("s3.env")).unwrap();
        let get = |k: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap().to_string();
        Ceph { endpoint: get("CUSTODY_S3_ENDPOINT"), access_key: get("CUSTODY_S3_ACCESS_KEY"), secret_key: get("CUSTODY_S3_SECRET_KEY"), dir }
    }

    /// The `[chunks]` table of a node config for `bucket` (its secret written next to the cluster).
    pub fn chunks_table(&self, c: &Cluster, bucket: &str) -> String {
        let secret = c.path().join("s3.secret");
        std::fs::write(&secret, &self.secret_key).unwrap();
        format!(
            "[chunks]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"{bucket}\"\nregion = \"default\"\naccess_key = \"{}\"\nsecret_key_file = \"{}\"\n{SWEEP}",
            self.endpoint,
            self.access_key,
            secret.display()
        )
    }

    /// An S3 request by curl, signed with the nodes' own keys: (HTTP status, body).
    pub fn curl(&self, method: &str, path_and_query: &str, upload: Option<&Path>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        // curl 7.88 does not send S3's payload header itself.
        cmd.args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "--aws-sigv4",
            "aws:amz:default:s3",
            "--user",
        ])
        .arg(format!("{}:{}", self.access_key, self.secret_key));
        if let Some(f) = upload {
            cmd.arg("-T").arg(f);
        }
        let out = cmd.arg(format!("{}/{path_and_query}", self.endpoint)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// The version ids of an object, newest first.
    pub fn versions(&self, bucket: &str, key: &str) -> Vec<String> {
        let (status, xml) = self.curl("GET", &format!("{bucket}?prefix={}&versions=", key.replace('/', "%2F")), None);
        assert_eq!(status, 200, "{xml}");
        xml.split("<VersionId>").skip(1).map(|s| s.split('<').next().unwrap().to_string()).collect()
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script("ceph-down.sh")).arg(self.dir.path()).status();
    }
}

fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    Some(xml[start..].split('<').next()?.to_string())
}

/// Deposit, fetch and purge through the store; the store refuses to delete inside retention
/// even with the nodes' own keys; an object altered or deleted behind the vault's back is found
/// by the scrubber, recorded, and brought back from the locked version under it; a legal hold
/// becomes an S3 legal hold.
#[test]
fn chunks_in_an_object_locked_bucket_survive_the_nodes_own_credentials_and_go_only_at_purge() {
    let ceph = Ceph::start();
    let bucket = "evidence";
    let mut c = Cluster::init(3, "");
    let table = ceph.chunks_table(&c, bucket);
    for id in 1..=3 {
        c.append_node_config(id, &format!("dev_retention_secs = 25\n{table}"));
    }
    c.start_all(3);
    c.wait_leader(3);
    let st = c.status().unwrap();
    for m in st["members"].as_array().unwrap() {
        assert_eq!(m["health"]["chunk_backend"], "s3", "status says where chunks go: {m}");
    }
    let (status, lock_cfg) = ceph.curl("GET", &format!("{bucket}?object-lock="), None);
    assert_eq!(status, 200, "the nodes made the bucket: {lock_cfg}");
    assert_eq!(xml_field(&lock_cfg, "ObjectLockEnabled").as_deref(), Some("Enabled"), "with Object Lock: {lock_cfg}");

    let clip = c.path().join("clip.mp4");
    let want = write_clip(&clip, 9 << 20, 4);
    let before = std::time::SystemTime::now();
    let dep = c.deposit("alice", &clip, "case-S3");
    let item = dep["item"].as_str().unwrap().to_string();
    let shown = c.cli_json(&c.profile("alice"), &["show", &item]);
    let names: Vec<String> = shown["item"]["chunks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 3);
    for id in 1..=3 {
        assert!(!c.holds_item(id, &shown["item"]) && !c.chunk_path(id, &names[0]).exists(), "node {id} keeps no chunk on its disk");
    }

    // Every chunk is in the bucket, locked in compliance mode until the item's retention ends.
    let retain_until = dep["retain_until"].as_str().unwrap().to_string();
    let until = time::OffsetDateTime::parse(&retain_until, &time::format_description::well_known::Rfc3339).unwrap();
    for n in &names {
        let (status, r) = ceph.curl("GET", &format!("{bucket}/chunks/{n}?retention="), None);
        assert_eq!(status, 200, "{r}");
        assert_eq!(xml_field(&r, "Mode").as_deref(), Some("COMPLIANCE"), "{r}");
        let locked = time::OffsetDateTime::parse(&xml_field(&r, "RetainUntilDate").unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        assert!(locked >= until && locked - until < time::Duration::seconds(2), "locked until {locked}, retention ends {until}");
    }

    // Inside retention the store refuses to delete, with the nodes' own credentials.
    let key = format!("chunks/{}", names[0]);
    let versions = ceph.versions(bucket, &key);
    assert_eq!(versions.len(), 1);
    let (status, body) = ceph.curl("DELETE", &format!("{bucket}/{key}?versionId={}", versions[0]), None);
    assert_eq!(status, 403, "deleting a locked version is refused by the store: {body}");
    assert_eq!(xml_field(&body, "Code").as_deref(), Some("AccessDenied"), "{body}");
    assert!(before.elapsed().unwrap() < Duration::from_secs(25), "the refusal was tested inside retention");
    // A delete without a version only hides the object behind a delete marker …
    let (status, _) = ceph.curl("DELETE", &format!("{bucket}/{key}"), None);
    assert_eq!(status, 204);
    // … and one chunk is overwritten with other bytes (a new, unlocked version).
    let forged = c.path().join("forged");
    std::fs::write(&forged, vec![7u8; 1000]).unwrap();
    let (status, body) = ceph.curl("PUT", &format!("{bucket}/chunks/{}", names[1]), Some(&forged));
    assert_eq!(status, 200, "{body}");

    // The scrubber finds both, records them and brings the locked versions back.
    let report = c.cli_json(&c.profile("admin"), &["scrub"]);
    assert_eq!(report["checked"], 3, "the leader alone reads the bucket: {report}");
    assert_eq!(report["missing"], 1, "{report}");
    assert_eq!(report["corrupt"], 1, "{report}");
    assert_eq!(report["repaired"], 2, "{report}");
    wait_until("the findings in the item's trail", Duration::from_secs(30), || {
        let v = c.cli_json(&c.profile("alice"), &["show", &item]);
        (v["trail"].as_array()?.iter().filter(|t| t["kind"].as_str().unwrap_or("").starts_with("scrub")).count() == 2).then_some(())
    });
    let again = c.cli_json(&c.profile("admin"), &["scrub"]);
    assert_eq!((again["missing"].as_u64(), again["corrupt"].as_u64()), (Some(0), Some(0)), "{again}");

    // The store itself checks a chunk's bytes against the SHA-256 our request is signed with
    // (the chunk's name): bytes damaged on the way are refused, not stored.
    let bucket_cfg = custody::evidence::BucketConfig {
        endpoint: ceph.endpoint.clone(),
        bucket: bucket.into(),
        region: "default".into(),
        access_key: ceph.access_key.clone(),
        secret_key: ceph.secret_key.clone(),
        prefix: "chunks/".into(),
        ca: None,
        sweep_every_secs: 60,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ours = custody::evidence::Bucket::new(bucket_cfg).unwrap();
    let name: custody::evidence::ChunkName = names[2].parse().unwrap();
    let refused = rt.block_on(ours.put(&name, bytes::Bytes::from_static(b"not the chunk these bytes claim to be"))).unwrap_err();
    assert_eq!(refused.code(), Some("XAmzContentSHA256Mismatch"), "{refused}");
    assert_eq!(ceph.versions(bucket, &format!("chunks/{}", names[2])).len(), 1, "nothing was stored");

    // A fetch reads the bucket and gets the clip deposited, even over a chunk written over just
    // before: it brings back the locked version and records the finding as the scrubber does.
    let (status, body) = ceph.curl("PUT", &format!("{bucket}/chunks/{}", names[0]), Some(&forged));
    assert_eq!(status, 200, "{body}");
    let req = c.grant(&item, "view");
    let out = c.path().join("out.mp4");
    c.cli_json(&c.profile("alice"), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&clip).unwrap(), "the clip fetched from the bucket is the clip deposited");
    assert_eq!(custody_verify::run::file_sha256(&out).unwrap(), want);
    wait_until("the fetch's finding in the item's trail", Duration::from_secs(30), || {
        let v = c.cli_json(&c.profile("alice"), &["show", &item]);
        (v["trail"].as_array()?.iter().filter(|t| t["kind"].as_str().unwrap_or("").starts_with("scrub")).count() == 3).then_some(())
    });

    // A legal hold is an S3 legal hold on every chunk, and is lifted with the release.
    let hold = |on: &str| {
        for n in &names {
            let (status, r) = ceph.curl("GET", &format!("{bucket}/chunks/{n}?legal-hold="), None);
            assert_eq!((status, xml_field(&r, "Status").as_deref()), (200, Some(on)), "{r}");
        }
    };
    c.cli_json(&c.profile("alice"), &["hold", &item, "--reason", "appeal"]);
    hold("ON");
    c.cli_json(&c.profile("carol"), &["release", &item]);
    hold("OFF");

    // After retention, a granted purge deletes every version of every chunk.
    let purge_req = c.grant(&item, "purge");
    wait_until("retention to end", Duration::from_secs(60), || (std::time::SystemTime::now() > before + Duration::from_secs(27)).then_some(()));
    let done = c.cli_json(&c.profile("alice"), &["purge", &item, "--request", &purge_req]);
    assert_eq!(done["chunks_destroyed"], 3, "{done}");
    wait_until("the purged chunks' objects to be gone", Duration::from_secs(60), || {
        names.iter().all(|n| ceph.versions(bucket, &format!("chunks/{n}")).is_empty()).then_some(())
    });
}

/// The keeper (the healer's job in bucket mode): an object hidden behind a delete marker is
/// brought back and recorded once, not once a sweep; a legal hold set while the store was down
/// reaches the store's objects once it is back.
#[test]
fn the_keeper_brings_back_a_hidden_object_and_sets_a_hold_the_store_missed() {
    let ceph = Ceph::start();
    let bucket = "kept";
    let mut c = Cluster::init(3, "");
    let table = ceph.chunks_table(&c, bucket).replace(SWEEP, "sweep_every_secs = 2\n");
    for id in 1..=3 {
        c.append_node_config(id, &table);
    }
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 5 << 20, 9);
    let item = c.deposit("alice", &clip, "case-K")["item"].as_str().unwrap().to_string();
    let shown = c.cli_json(&c.profile("alice"), &["show", &item]);
    let names: Vec<String> = shown["item"]["chunks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let findings = || {
        let v = c.cli_json(&c.profile("alice"), &["show", &item]);
        v["trail"].as_array().unwrap().iter().filter(|t| t["kind"].as_str().unwrap_or("").starts_with("scrub")).count()
    };

    let (status, _) = ceph.curl("DELETE", &format!("{bucket}/chunks/{}", names[0]), None);
    assert_eq!(status, 204);
    assert_eq!(ceph.curl("GET", &format!("{bucket}/chunks/{}", names[0]), None).0, 404, "hidden");
    wait_until("the keeper to bring the object back", Duration::from_secs(30), || {
        (ceph.curl("GET", &format!("{bucket}/chunks/{}", names[0]), None).0 == 200).then_some(())
    });
    wait_until("the finding in the item's trail", Duration::from_secs(30), || (findings() == 1).then_some(()));
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(findings(), 1, "one finding, not one a sweep");

    // The store goes away; a hold commits all the same; the keeper sets it once the store is back.
    let pid = std::fs::read_to_string(ceph.dir.path().join("run/client.rgw.a.pid")).unwrap().trim().to_string();
    assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    wait_until("RGW to stop", Duration::from_secs(30), || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()));
    c.cli_json(&c.profile("alice"), &["hold", &item, "--reason", "appeal"]);
    let conf = ceph.dir.path().join("ceph.conf");
    assert!(Command::new("radosgw").arg("-c").arg(&conf).args(["-n", "client.rgw.a"]).status().unwrap().success());
    wait_until("the keeper to set the legal holds", Duration::from_secs(60), || {
        names
            .iter()
            .all(|n| {
                let (status, r) = ceph.curl("GET", &format!("{bucket}/chunks/{n}?legal-hold="), None);
                status == 200 && xml_field(&r, "Status").as_deref() == Some("ON")
            })
            .then_some(())
    });
}
