//! Deliberate bugs for the chaos suite's mutation check (`chaos/README.md`).
//!
//! Only a binary built with the test-only cargo feature `chaos-mutations`
//! can switch one on, through the environment variable `CUSTODY_MUTATION` of
//! a node process. In every other build `on` is a constant `false` and the
//! bug paths compile away. Never ship a binary built with this feature.

/// The bugs the chaos suite must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Acknowledge a deposit once the leader alone holds its chunks: no push
    /// to the other members, no majority before the seal.
    EarlyAck,
    /// Stream a fetch's bytes first and record the access only after the
    /// last byte went out, so an aborted fetch leaves no record.
    ServeBeforeRecord,
    /// Leave the item's last access record out of its proof bundles (issue 15:
    /// the court's completeness check must see it).
    BundleOmitsLastAccess,
    /// Call other nodes by the address alone, not by their certificate name
    /// `node-<id>.custody` (issue 16: a node must reach the very node it
    /// meant to call).
    UnpinnedPeers,
    /// Append Raft log entries without fsyncing the write-ahead log (issue
    /// 16: a power loss must not take acknowledged deposits with it; a kill
    /// -9 does not show this, the page cache survives it).
    UnsyncedLog,
}

impl Mutation {
    pub const fn env_name(self) -> &'static str {
        match self {
            Mutation::EarlyAck => "early-ack",
            Mutation::ServeBeforeRecord => "serve-before-record",
            Mutation::BundleOmitsLastAccess => "bundle-omits-last-access",
            Mutation::UnpinnedPeers => "unpinned-peers",
            Mutation::UnsyncedLog => "unsynced-log",
        }
    }
}

/// Is `m` switched on in this process?
#[cfg(feature = "chaos-mutations")]
pub fn on(m: Mutation) -> bool {
    static SET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let set = SET.get_or_init(|| {
        let v = std::env::var("CUSTODY_MUTATION").ok();
        if let Some(v) = &v {
            tracing::error!(mutation = %v, "CHAOS MUTATION SWITCHED ON: this node has a deliberate bug");
        }
        v
    });
    set.as_deref() == Some(m.env_name())
}

/// Is `m` switched on in this process? Never, in a build without `chaos-mutations`.
#[cfg(not(feature = "chaos-mutations"))]
pub const fn on(_m: Mutation) -> bool {
    false
}
