//! Every limit of the vault in one place, with the relations between them
//! asserted at compile time. Units are the last word of each name.

/// Size of one plaintext chunk of a clip. The spec allows 1–8 MiB; 4 MiB keeps
/// a chunk's AES-GCM pass well under a millisecond of executor time per MiB
/// while bounding memory per in-flight chunk.
pub const CHUNK_SIZE_BYTES: u64 = 4 * 1024 * 1024;
/// Smallest chunk size a node config may choose.
pub const MIN_CHUNK_SIZE_BYTES: u64 = 1024 * 1024;
/// Largest chunk size a node config may choose.
pub const MAX_CHUNK_SIZE_BYTES: u64 = 8 * 1024 * 1024;
/// Largest clip a deposit may carry (1 TiB): bounds chunk counts and sizes.
pub const MAX_CLIP_SIZE_BYTES: u64 = 1 << 40;
/// AES-256-GCM tag appended to every sealed chunk.
pub const GCM_TAG_BYTES: u64 = 16;
/// How many sealed chunks the leader keeps in flight per deposit: bounds a
/// deposit's memory to about `(PIPELINE_CHUNKS + 2) * chunk size`.
pub const PIPELINE_CHUNKS: usize = 2;
/// Batches of small records the leader keeps in flight in Raft at once
/// (`node::proposer`): while one commits, new records queue for the next.
/// One is best under load (32 clients: ~20 records per entry, against ~5.5
/// with four in flight, for ~4% less CPU per record); a lone record still
/// goes at once.
pub const PROPOSALS_IN_FLIGHT: usize = 1;
/// Most small records in one batch entry (about 1 KiB each).
pub const MAX_BATCH_COMMANDS: usize = 512;
/// Longest free-text field (case, note, system id, ...) in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;
/// A chunk file not named by any committed manifest is collected after this
/// long (default; `orphan_grace_secs` in a node config), unless the deposit it
/// belongs to wrote a chunk on this node within the same period (a deposit
/// still streaming, however long). It must exceed the longest pause between
/// two chunks of one deposit.
pub const ORPHAN_CHUNK_GRACE_SECS: u64 = 3600;
/// How often a node looks for chunks it should hold but lacks.
pub const HEAL_INTERVAL_SECS: u64 = 5;
/// Seconds between the keeper's sweeps over every item's objects in bucket mode (a node
/// config's `[chunks] sweep_every_secs`; docs/STORAGE.md, "Object store").
pub const OBJECT_SWEEP_SECS: u64 = 60;
/// Chunks a fetch reads ahead from a bucket (a node holds that many more in memory per fetch).
pub const BUCKET_READ_AHEAD: usize = 4;
/// Raft entries between state-machine snapshots.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 5000;
/// Records per RocksDB write batch when a snapshot is installed.
pub const SNAPSHOT_INSTALL_BATCH_RECORDS: usize = 10_000;
/// Standard retention (art. 14(7)): 15 days.
pub const STANDARD_RETENTION_SECS: u64 = 15 * 24 * 3600;
/// Important retention (art. 14(7)): one year.
pub const IMPORTANT_RETENTION_SECS: u64 = 365 * 24 * 3600;
/// Timeout of one node-to-node RPC that carries no clip bytes.
pub const RPC_TIMEOUT_MS: u64 = 5_000;
/// Timeout of one chunk transfer between nodes.
pub const CHUNK_TRANSFER_TIMEOUT_MS: u64 = 60_000;

/// Connections a node serves at once, all peers together (README, "Limits
/// at the edge"); one over it is answered 503 `too-many-connections` and
/// closed, as is one over [`MAX_CONNECTIONS_PER_PEER`].
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections a node serves at once for one certificate (a node, or a
/// person or tool): a whole office behind one address is not one peer, one
/// stolen certificate is.
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;
/// A client must send a whole request head within this time, counted from
/// when the node starts waiting for it (an idle keep-alive connection
/// included); else the connection is closed.
pub const HEADER_READ_TIMEOUT_SECS: u64 = 20;
/// A request body that sends no byte for this long ends in an error (a
/// stalled upload), and a connection whose client reads no byte of its
/// answer for this long is closed (a client that stopped reading a fetch).
pub const CONNECTION_IDLE_TIMEOUT_SECS: u64 = 120;
/// Largest JSON body a `/v1` route takes (deposits stream their clip outside
/// this; the largest JSON a person sends is a registry proposal or a request).
pub const MAX_JSON_BODY_BYTES: usize = 256 * 1024;
/// Deepest nesting of arrays and objects a JSON body may have.
pub const MAX_JSON_DEPTH: usize = 32;
/// Clients drop pooled connections idle this long: well before a server's
/// [`HEADER_READ_TIMEOUT_SECS`], so no request goes out on a connection the
/// server is closing.
pub const CLIENT_POOL_IDLE_SECS: u64 = 10;
const _: () = assert!(CLIENT_POOL_IDLE_SECS * 2 <= HEADER_READ_TIMEOUT_SECS);
/// A member the leader cannot reach for this long is reported in an alert.
pub const MEMBER_UNREACHABLE_ALERT_SECS: u64 = 30;
/// How often a node looks for changed TLS files (certificate, key, CA,
/// revocation list) and loads them: a revocation takes effect within this.
pub const TLS_RELOAD_SECS: u64 = 2;
/// How long a dev CA certificate is valid (`cluster init`, `certs init`).
pub const DEV_CA_VALID_DAYS: u32 = 365;
/// How long a node or user certificate the dev CA issues is valid by
/// default (never past the CA's own end).
pub const DEV_CERT_VALID_DAYS: u32 = 365;
/// Longest validity `certs issue --days` accepts.
pub const MAX_CERT_VALID_DAYS: u32 = 366;
/// A node warns in `cluster status` this long before its certificate or the
/// CA's expires.
pub const CERT_EXPIRY_WARNING_DAYS: u64 = 30;
const _: () = assert!(DEV_CERT_VALID_DAYS <= MAX_CERT_VALID_DAYS && CERT_EXPIRY_WARNING_DAYS < DEV_CERT_VALID_DAYS as u64);
const _: () = assert!(MAX_CONNECTIONS_PER_PEER <= MAX_CONNECTIONS);

const _: () = assert!(MIN_CHUNK_SIZE_BYTES <= CHUNK_SIZE_BYTES && CHUNK_SIZE_BYTES <= MAX_CHUNK_SIZE_BYTES);
const _: () = assert!(MAX_CLIP_SIZE_BYTES / MIN_CHUNK_SIZE_BYTES < u32::MAX as u64);
const _: () = assert!(IMPORTANT_RETENTION_SECS > STANDARD_RETENTION_SECS);
const _: () = assert!(PIPELINE_CHUNKS >= 1);

/// Latest time any command may carry or any record may name, in unix
/// milliseconds (2^47 ms, in the year 6429): far below both 2^53 (the largest
/// integer canonical JSON carries exactly) and the year 9999 (the last one
/// RFC 3339 writes), with room for a retention period or a grant on top.
/// Apply refuses a command whose time lies beyond it.
pub const MAX_TIME_MS: u64 = 1 << 47;
/// Longest time a request, and the grant it forms, stays valid after it is
/// filed: seven days. Apply refuses a later expiry.
pub const MAX_GRANT_SECS: u64 = 7 * 24 * 3600;
/// Longest retention period a cluster may be configured with (100 years).
pub const MAX_RETENTION_SECS: u64 = 100 * 365 * 24 * 3600;
/// Largest node id: ids appear as integers in audit records, and canonical
/// JSON carries integers exactly only below 2^53.
pub const MAX_NODE_ID: u64 = (1 << 53) - 1;
/// Most participants one access request may name.
pub const MAX_PARTICIPANTS: usize = 16;
/// Longest user name (a client certificate's common name) in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest base64 signature or key field accepted in a command, in bytes (an
/// Ed25519 signature is 88 base64 characters).
pub const MAX_SIGNATURE_B64_BYTES: usize = 128;
/// Longest signed note (a checkpoint with its cosignatures) in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most fetches one grant may allow (a request names how many; 1 by default).
pub const MAX_FETCHES_PER_GRANT: u32 = 100;
/// Longest legal-hold reason, in bytes.
pub const MAX_REASON_BYTES: usize = MAX_TEXT_BYTES;

const _: () = assert!(MAX_TIME_MS + MAX_RETENTION_SECS * 1000 + MAX_GRANT_SECS * 1000 < 253_402_300_800_000);
const _: () = assert!(MAX_TIME_MS + MAX_RETENTION_SECS * 1000 < 1 << 53);
const _: () = assert!(IMPORTANT_RETENTION_SECS <= MAX_RETENTION_SECS);
const _: () = assert!(approval_ttl_fits());
const fn approval_ttl_fits() -> bool {
    crate::approval::DEFAULT_TTL_SECS <= MAX_GRANT_SECS
}

/// How far from a follower's own clock the time stamped on a not-yet-committed
/// Raft entry may be before the follower refuses the entry (docs/KEYS.md §6):
/// every committed time is then within this of a majority of clocks.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;
/// How long after an access is recorded its holders release their shares and
/// serve its sealed chunks (docs/KEYS.md §4.2): a later fetch records a new access.
pub const ACCESS_RELEASE_SECS: u64 = 3600;
/// How long a follower waits for a leader to commit an entry it refused for its
/// time before it stops following that leader (and so starts an election). A
/// leader the others follow commits without this follower: its clock is the odd one.
pub const CLOCK_DISTRUST_AFTER_MS: u64 = 5_000;
