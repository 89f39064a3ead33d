//! Time attested by a majority (docs/KEYS.md §6). The leader stamps every
//! command with its clock; a follower refuses, before Raft sees it, any entry
//! not yet committed whose stamp is further than `max_clock_skew_secs` from its
//! own clock. An entry commits only on a majority, so every committed time —
//! the times purge, retention and expiry are decided by — is within the skew
//! of a majority of clocks. A leader whose clock is off commits nothing, and
//! once it has failed to commit a refused entry for a while, the follower stops
//! following it (it refuses its heartbeats too), so an election replaces it.
//! A follower whose own clock is off sees the others commit what it refused:
//! it keeps following and accepts those entries once committed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::raft::{Entry, NodeId};
use crate::vault::Command;

/// The times a command carries: its own, or its batch members'.
fn times(cmd: &Command, out: &mut Vec<u64>) {
    match cmd {
        Command::Batch { commands } => commands.iter().for_each(|c| times(c, out)),
        c => out.extend(c.time_ms()),
    }
}

/// The first entry after `committed` whose stamp is more than `skew_ms` from `now`: (index, stamp).
pub fn off_entry(entries: &[Entry], committed: Option<u64>, now: u64, skew_ms: u64) -> Option<(u64, u64)> {
    let mut ts = Vec::new();
    for e in entries.iter().filter(|e| committed.is_none_or(|c| e.log_id.index > c)) {
        if let openraft::EntryPayload::Normal(cmd) = &e.payload {
            ts.clear();
            times(cmd, &mut ts);
            if let Some(t) = ts.iter().find(|t| t.abs_diff(now) > skew_ms) {
                return Some((e.log_id.index, *t));
            }
        }
    }
    None
}

struct Refusal {
    vote: openraft::Vote<NodeId>,
    index: u64,
    since: Instant,
}

/// A follower's judgement of the leader's clock.
pub struct ClockGuard {
    skew_ms: u64,
    distrust_after: Duration,
    refused: Mutex<Option<Refusal>>,
}

impl ClockGuard {
    pub fn new(skew_secs: u64) -> Self {
        ClockGuard {
            skew_ms: skew_secs.saturating_mul(1000),
            distrust_after: Duration::from_millis(crate::limits::CLOCK_DISTRUST_AFTER_MS),
            refused: Mutex::new(None),
        }
    }

    /// Whether to hand this AppendEntries to Raft: `Err` says why not.
    pub fn check(&self, vote: &openraft::Vote<NodeId>, entries: &[Entry], committed: Option<u64>, now: u64) -> Result<(), String> {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = refused.as_ref() {
            // Another leader or term, or the refused entry committed on the others' word: start afresh.
            if &r.vote != vote || committed.is_some_and(|c| c >= r.index) {
                *refused = None;
            }
        }
        if let Some(r) = refused.as_ref() {
            if r.since.elapsed() > self.distrust_after {
                return Err(format!(
                    "not following leader {} of term {}: it has not committed entry {} in {} s, which this node refused for its time",
                    vote.leader_id().voted_for().unwrap_or_default(),
                    vote.leader_id().get_term(),
                    r.index,
                    r.since.elapsed().as_secs()
                ));
            }
        }
        if let Some((index, t)) = off_entry(entries, committed, now, self.skew_ms) {
            if refused.is_none() {
                *refused = Some(Refusal { vote: *vote, index, since: Instant::now() });
                tracing::warn!(index, stamped = t, now, "refusing an entry stamped too far from this node's clock");
            }
            return Err(format!(
                "entry {index} is stamped {t} ms, {} s from this node's clock (at most {} s): refused",
                t.abs_diff(now) / 1000,
                self.skew_ms / 1000
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

    fn entry(index: u64, time_ms: u64) -> Entry {
        let cmd = Command::Hold { item: crate::evidence::ItemId::from_bytes([1; 16]), by: "alice".into(), reason: "r".into(), time_ms };
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(cmd) }
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn only_uncommitted_entries_far_from_the_clock_are_refused() {
        let year = 365 * 24 * 3600 * 1000;
        assert_eq!(off_entry(&[entry(5, NOW + 30_000)], Some(4), NOW, 60_000), None, "within the skew");
        assert_eq!(off_entry(&[entry(5, NOW + year)], Some(4), NOW, 60_000), Some((5, NOW + year)), "a year ahead");
        assert_eq!(off_entry(&[entry(5, NOW - year)], Some(4), NOW, 60_000), Some((5, NOW - year)), "a year behind");
        assert_eq!(off_entry(&[entry(5, NOW - year)], Some(5), NOW, 60_000), None, "committed already: a majority attested it");
        let batch = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 6),
            payload: EntryPayload::Normal(Command::Batch { commands: vec![cmd(entry(0, NOW)), cmd(entry(0, NOW + year))] }),
        };
        assert_eq!(off_entry(&[batch], Some(5), NOW, 60_000), Some((6, NOW + year)), "a batch member's time counts");
    }

    #[test]
    fn a_leader_that_commits_nothing_stops_being_followed_and_one_that_commits_does_not() {
        let mut g = ClockGuard::new(60);
        g.distrust_after = Duration::from_millis(50);
        let vote = Vote::new_committed(3, 1);
        let far = [entry(10, NOW + 3_600_000)];
        assert!(g.check(&vote, &far, Some(9), NOW).is_err());
        assert!(g.check(&vote, &[], Some(9), NOW).is_ok(), "heartbeats pass for a while");
        std::thread::sleep(Duration::from_millis(80));
        assert!(g.check(&vote, &[], Some(9), NOW).is_err(), "then even heartbeats are refused: an election follows");
        assert!(g.check(&Vote::new_committed(4, 2), &[], Some(9), NOW).is_ok(), "a new leader is followed");
        // This node's clock is the odd one: the leader commits the entry without it.
        let g = ClockGuard::new(60);
        assert!(g.check(&vote, &far, Some(9), NOW).is_err());
        std::thread::sleep(Duration::from_millis(10));
        assert!(g.check(&vote, &far, Some(10), NOW).is_ok(), "committed by the others: accepted");
    }

    fn cmd(e: Entry) -> Command {
        match e.payload {
            EntryPayload::Normal(c) => c,
            _ => unreachable!(),
        }
    }
}
