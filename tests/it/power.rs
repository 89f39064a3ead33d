//! Power loss, not just kill -9. A killed process leaves its writes in the
//! page cache, which the next start reads back, so a missing fsync goes
//! unseen by the kill tests. Here every node's data directory is its own
//! ext4 file system on a loop device, and "power loss" is the file system's
//! shutdown ioctl without a journal flush (`EXT4_IOC_SHUTDOWN`,
//! `EXT4_GOING_FLAGS_NOLOGFLUSH`: what xfstests' `godown` does): whatever was
//! not fsynced is gone when it is mounted again. Needs root (mount, loop
//! devices); without it the test says so and passes without checking.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{write_clip, Cluster};

/// `EXT4_IOC_SHUTDOWN` (`_IOR('X', 125, __u32)`) with flag 2, `EXT4_GOING_FLAGS_NOLOGFLUSH`,
/// on the directory given: Python's `fcntl.ioctl` makes the call (no unsafe code here).
const SHUTDOWN: &str = "import fcntl, os, struct, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nfcntl.ioctl(fd, 0x8004587D, struct.pack('I', 2))\n";

/// Each node's data directory on its own small ext4 file system; unmounted (lazily) when dropped.
struct Disks {
    mounts: Vec<(PathBuf, PathBuf)>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Disks {
    /// Puts node 1..=n's `data/` on a new 1 GiB (sparse) ext4 image, keeping the marker files in it.
    fn new(c: &Cluster, n: u64) -> Disks {
        let mut mounts = Vec::new();
        for id in 1..=n {
            let data = c.node_dir(id).join("data");
            let img = c.path().join(format!("node{id}.ext4"));
            std::fs::File::create(&img).unwrap().set_len(1 << 30).unwrap();
            run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
            let markers: Vec<(std::ffi::OsString, Vec<u8>)> =
                std::fs::read_dir(&data).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name(), std::fs::read(e.path()).unwrap())).collect();
            run(Command::new("mount").args(["-t", "ext4", "-o", "loop"]).arg(&img).arg(&data));
            mounts.push((img, data.clone()));
            for (name, bytes) in markers {
                std::fs::write(data.join(name), bytes).unwrap();
            }
        }
        Disks { mounts }
    }

    fn mount_all(&self) {
        for (img, dir) in &self.mounts {
            run(Command::new("mount").args(["-t", "ext4", "-o", "loop"]).arg(img).arg(dir));
        }
    }

    /// Power off every disk at once: nothing more reaches them, and what was not fsynced is lost.
    fn cut_power(&self) {
        for (_, dir) in &self.mounts {
            run(Command::new("python3").args(["-c", SHUTDOWN]).arg(dir));
        }
    }

    fn unmount_all(&self) {
        for (_, dir) in &self.mounts {
            run(Command::new("umount").arg(dir));
        }
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for (_, dir) in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(dir).output();
        }
    }
}

fn can_mount() -> bool {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let tools = Command::new("mkfs.ext4").arg("-V").output().is_ok();
    if !(root && tools && Path::new("/dev/loop-control").exists()) {
        eprintln!("SKIPPED: the power-loss test needs root, loop devices and mkfs.ext4 (CI has them)");
        return false;
    }
    true
}

/// Deposits `n` clips, each acknowledged, then cuts the power to every node
/// at once, restarts them, and answers the items the cluster lists after.
fn deposit_then_cut_power(mutation: Option<&str>, n: u8) -> (Cluster, Disks, Vec<(String, String)>, Vec<Value>) {
    let mut c = Cluster::init(3, "");
    let disks = Disks::new(&c, 3);
    for id in 1..=3 {
        match mutation {
            #[cfg(feature = "chaos-mutations")]
            Some(m) => c.start_mutant(id, m),
            _ => c.start(id),
        }
    }
    c.wait_leader(3);
    let mut acked = Vec::new();
    for i in 0..n {
        let clip = c.path().join(format!("clip{i}.bin"));
        let sha = write_clip(&clip, 1_500_000 + u64::from(i) * 100_000, i + 1);
        let r = c.deposit("alice", &clip, "CASE-POWER");
        assert_eq!(r["sha256"], sha);
        acked.push((r["item"].as_str().unwrap().to_string(), sha));
    }
    // The moment the last acknowledgement arrived: every disk loses power.
    disks.cut_power();
    for id in 1..=3 {
        c.kill(id);
    }
    disks.unmount_all();
    disks.mount_all();
    for id in 1..=3 {
        c.start(id);
    }
    c.wait_leader(3);
    // A node lists what it has applied: ask until every acknowledged item
    // is listed, or for 20 s (a node may still be applying the log).
    let listed = |c: &Cluster| -> Option<Vec<Value>> {
        let out = c.cli(&c.profile("alice"), &["items"]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).ok()).flatten().and_then(|v| v["items"].as_array().cloned())
    };
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let mut items = Vec::new();
    while std::time::Instant::now() < until {
        items = listed(&c).unwrap_or_default();
        if acked.iter().all(|(i, _)| items.iter().any(|x| x["item"] == i.as_str())) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    (c, disks, acked, items)
}

#[test]
fn acknowledged_deposits_survive_a_power_loss_of_every_node() {
    if !can_mount() {
        return;
    }
    let (c, _disks, acked, items) = deposit_then_cut_power(None, 3);
    for (item, sha) in &acked {
        assert!(items.iter().any(|i| i["item"] == item.as_str()), "acknowledged item {item} is gone after the power loss: {items:?}");
        // Whole and as deposited: a granted fetch streams it back.
        let req = c.grant(item, "retrieve");
        let out = c.path().join(format!("{item}.out"));
        let got = c.cli_json(&c.profile("alice"), &["fetch", item, "--request", &req, "--out", out.to_str().unwrap()]);
        assert_eq!(&got["sha256"], sha.as_str(), "{got}");
    }
}

/// The same with the write-ahead log's fsync skipped on log appends (the
/// `unsynced-log` mutation): acknowledged deposits are lost, so the test
/// above would go red. Run with `cargo test --features chaos-mutations --test it power`.
#[cfg(feature = "chaos-mutations")]
#[test]
fn power_loss_mutant_without_the_log_fsync_loses_acknowledged_deposits() {
    if !can_mount() {
        return;
    }
    let (_c, _disks, acked, items) = deposit_then_cut_power(Some("unsynced-log"), 3);
    let lost: Vec<&String> = acked.iter().map(|(i, _)| i).filter(|i| !items.iter().any(|x| x["item"] == i.as_str())).collect();
    eprintln!("unsynced-log: {} of {} acknowledged deposits lost in the power loss", lost.len(), acked.len());
    assert!(!lost.is_empty(), "with the log fsync skipped, the power loss should have lost an acknowledged deposit");
}
