//! The one importer of `prometheus-client`: a node's metrics, served as
//! Prometheus text at `/metrics` (README, "Monitoring a cluster").
//!
//! Counters are bumped where the events happen (`node/`); gauges are set
//! from the node's own state at each scrape ([`Gauges`]), so a scrape reads a
//! consistent picture and nothing has to keep them in step.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Member {
    member: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finding {
    finding: &'static str,
}

/// What a node counts while it runs (since it started).
pub struct Metrics {
    registry: Registry,
    deposited_bytes: Counter,
    deposited_items: Counter,
    fetched_bytes: Counter,
    fetched_items: Counter,
    key_releases: Family<Outcome, Counter>,
    scrub_runs: Counter,
    chunks_healed: Counter,
    // Set at scrape time.
    records: Gauge,
    items: Gauge,
    raft_term: Gauge,
    raft_last_log: Gauge,
    raft_applied: Gauge,
    raft_is_leader: Gauge,
    raft_commit: Gauge,
    raft_lag: Family<Member, Gauge>,
    chunks: Family<Finding, Gauge>,
    sealed: Gauge,
    audit_tree_ok: Gauge,
}

/// The state read at a scrape.
pub struct Gauges {
    pub records: u64,
    pub items: u64,
    pub term: u64,
    pub last_log: u64,
    pub applied: u64,
    pub is_leader: bool,
    /// On the leader: the highest log index a majority of the voters hold
    /// (the commit index); elsewhere not known, and not exported.
    pub commit: Option<u64>,
    /// Per member, how many log entries the leader has not yet seen it hold (leader only).
    pub lag: Vec<(u64, u64)>,
    pub chunks_missing: u64,
    pub chunks_lost: u64,
    pub chunks_damaged: u64,
    pub audit_tree_ok: bool,
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("custody");
        let m = Metrics {
            registry: Registry::default(),
            deposited_bytes: Counter::default(),
            deposited_items: Counter::default(),
            fetched_bytes: Counter::default(),
            fetched_items: Counter::default(),
            key_releases: Family::default(),
            scrub_runs: Counter::default(),
            chunks_healed: Counter::default(),
            records: Gauge::default(),
            items: Gauge::default(),
            raft_term: Gauge::default(),
            raft_last_log: Gauge::default(),
            raft_applied: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_commit: Gauge::default(),
            raft_lag: Family::default(),
            chunks: Family::default(),
            sealed: Gauge::default(),
            audit_tree_ok: Gauge::default(),
        };
        let r = &mut registry;
        r.register("deposited_bytes", "Clip bytes of deposits this node acknowledged", m.deposited_bytes.clone());
        r.register("deposited_items", "Deposits this node acknowledged", m.deposited_items.clone());
        r.register("fetched_bytes", "Sealed chunk bytes this node served to fetchers", m.fetched_bytes.clone());
        r.register("fetched_items", "Fetches this node began serving (each after its access record)", m.fetched_items.clone());
        r.register("key_releases", "Requests for this node's share of a data key, by outcome (granted or refused)", m.key_releases.clone());
        r.register("scrub_runs", "Scrub passes this node finished", m.scrub_runs.clone());
        r.register("chunks_healed", "Chunks this node copied back from a peer", m.chunks_healed.clone());
        r.register("audit_records", "Records committed to the audit log (its tree size) as this node applied it", m.records.clone());
        r.register("items", "Items in the vault as this node applied it", m.items.clone());
        r.register("raft_term", "This node's Raft term", m.raft_term.clone());
        r.register("raft_last_log_index", "The last Raft log index this node holds", m.raft_last_log.clone());
        r.register("raft_applied_index", "The last Raft log index this node applied", m.raft_applied.clone());
        r.register("raft_is_leader", "1 if this node is the leader", m.raft_is_leader.clone());
        r.register("raft_commit_index", "On the leader: the highest log index a majority of the voters hold (0 elsewhere)", m.raft_commit.clone());
        r.register("raft_member_lag_entries", "On the leader: log entries each member has yet to hold", m.raft_lag.clone());
        r.register(
            "chunks",
            "Chunks this node should hold but does not (missing), lost and not yet repaired (lost), or that no replica could restore (unrepairable)",
            m.chunks.clone(),
        );
        r.register(
            "sealed",
            "1 while this node is sealed (docs/KEYS.md §8): it then serves only health, its seal and these metrics",
            m.sealed.clone(),
        );
        r.register("audit_tree_ok", "1 while this node's stored audit tree checks out (it signs checkpoints only then)", m.audit_tree_ok.clone());
        Metrics { registry, ..m }
    }

    pub fn deposited(&self, bytes: u64) {
        self.deposited_items.inc();
        self.deposited_bytes.inc_by(bytes);
    }

    pub fn fetch_started(&self) {
        self.fetched_items.inc();
    }

    pub fn fetched(&self, bytes: usize) {
        self.fetched_bytes.inc_by(bytes as u64);
    }

    pub fn key_release(&self, granted: bool) {
        self.key_releases.get_or_create(&Outcome { outcome: if granted { "granted" } else { "refused" } }).inc();
    }

    pub fn scrub_run(&self) {
        self.scrub_runs.inc();
    }

    pub fn healed(&self) {
        self.chunks_healed.inc();
    }

    /// The text exposition of every metric, with the gauges set from `g`.
    /// The exposition of a sealed node: `custody_sealed 1`, every other value 0.
    pub fn render_sealed(&self) -> String {
        self.sealed.set(1);
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn render(&self, g: &Gauges) -> String {
        self.records.set(gauge(g.records));
        self.items.set(gauge(g.items));
        self.raft_term.set(gauge(g.term));
        self.raft_last_log.set(gauge(g.last_log));
        self.raft_applied.set(gauge(g.applied));
        self.raft_is_leader.set(i64::from(g.is_leader));
        self.raft_commit.set(gauge(g.commit.unwrap_or(0)));
        self.raft_lag.clear();
        for (member, lag) in &g.lag {
            self.raft_lag.get_or_create(&Member { member: *member }).set(gauge(*lag));
        }
        for (finding, n) in [("missing", g.chunks_missing), ("lost", g.chunks_lost), ("unrepairable", g.chunks_damaged)] {
            self.chunks.get_or_create(&Finding { finding }).set(gauge(n));
        }
        self.sealed.set(0);
        self.audit_tree_ok.set(i64::from(g.audit_tree_ok));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_carries_every_family_with_its_values() {
        let m = Metrics::new();
        m.deposited(1000);
        m.key_release(true);
        m.key_release(false);
        m.key_release(false);
        let text = m.render(&Gauges {
            records: 42,
            items: 3,
            term: 2,
            last_log: 50,
            applied: 48,
            is_leader: true,
            commit: Some(49),
            lag: vec![(2, 0), (3, 7)],
            chunks_missing: 1,
            chunks_lost: 0,
            chunks_damaged: 0,
            audit_tree_ok: true,
        });
        for line in [
            "custody_deposited_bytes_total 1000",
            "custody_deposited_items_total 1",
            "custody_key_releases_total{outcome=\"granted\"} 1",
            "custody_key_releases_total{outcome=\"refused\"} 2",
            "custody_audit_records 42",
            "custody_raft_member_lag_entries{member=\"3\"} 7",
            "custody_chunks{finding=\"missing\"} 1",
            "custody_sealed 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }
}
