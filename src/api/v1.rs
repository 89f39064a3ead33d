//! The client API under `/v1/`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;
use hyper::Method;
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use serde::Deserialize;

use super::ApiError;
use crate::auth::Principal;
use crate::evidence::ItemId;
use crate::node::{self, DepositError, Node};
use crate::raft::NodeId;
use crate::vault::{query, ItemRecord};
use crate::wire::{self, AddMember, ClusterStatus, DepositReceipt, ItemDetail, ItemList, ItemView, MemberView, NodeHealth, TrailEntry};

pub async fn deposit(
    State(node): State<Arc<Node>>,
    who: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<DepositReceipt>), ApiError> {
    let number = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let total = number(header::CONTENT_LENGTH.as_str());
    let sealed_bytes = number(node::SEALED_BYTES_HEADER)
        .ok_or_else(|| ApiError::bad_request(format!("a deposit names its sealed bytes in {}", node::SEALED_BYTES_HEADER)))?;
    let chunk_size = number(node::CHUNK_SIZE_HEADER)
        .ok_or_else(|| ApiError::bad_request(format!("a deposit names its chunk size in {}", node::CHUNK_SIZE_HEADER)))?;
    let up = node::Upload { sealed_bytes, chunk_size, total };
    let res = node::deposit(&node, &who, up, body.into_data_stream()).await;
    match res {
        Ok(d) => {
            tracing::info!(item = %d.manifest.item, size = d.manifest.size, depositor = %who, "deposit committed");
            Ok((
                StatusCode::CREATED,
                Json(DepositReceipt {
                    item: d.manifest.item,
                    sha256: d.manifest.sha256,
                    size: d.manifest.size,
                    leaf_index: d.leaf_index,
                    deposited_at: wire::rfc3339_ms(d.time_ms),
                    retain_until: wire::rfc3339_ms(d.retain_until_ms),
                }),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, depositor = %who, "deposit failed");
            Err(match e {
                DepositError::NotLeader(l) => ApiError::not_leader(l),
                DepositError::Invalid(d) => ApiError::bad_request(d),
                DepositError::Refused(r, d) => ApiError::refused(r, d),
                e @ (DepositError::Truncated { .. } | DepositError::TooLong(_) | DepositError::Upload(_)) => ApiError::bad_request(e.to_string()),
                e @ (DepositError::NoQuorum { .. } | DepositError::Store(_)) => ApiError::unavailable(e.to_string()),
                e @ DepositError::HoldersChanged(_) => ApiError::new(StatusCode::CONFLICT, "holders-changed", "Holders changed", e.to_string()),
                DepositError::Internal(d) => ApiError::internal(d),
            })
        }
    }
}

pub(super) fn view(r: &ItemRecord) -> ItemView {
    let m = &r.manifest;
    ItemView {
        item: m.item,
        sha256: m.sha256.clone(),
        size: m.size,
        case: m.meta.case.clone(),
        system: m.meta.system.clone(),
        note: m.meta.note.clone(),
        depositor: m.depositor.clone(),
        retention: m.meta.retention,
        deposited_at: wire::rfc3339_ms(r.deposited_at_ms),
        retain_until: wire::rfc3339_ms(r.retain_until_ms),
        leaf_index: r.leaf_index,
        chunk_size: m.chunk_size,
        chunks: m.chunks.clone(),
        hold: r.hold.as_ref().map(|h| h.reason.clone()),
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    /// Only items of this case.
    pub case: Option<String>,
    /// Only items from this source system.
    pub system: Option<String>,
    /// Only items this officer deposited.
    pub depositor: Option<String>,
    /// Only items deposited at or after this time (RFC 3339, or a date `YYYY-MM-DD`).
    pub from: Option<String>,
    /// Only items deposited before this time (RFC 3339, or a date: before the day after it).
    pub until: Option<String>,
}

/// Milliseconds of an RFC 3339 time or of a date's midnight UTC (`YYYY-MM-DD`), and
/// for `until` of a bare date, the midnight after it.
fn bound_ms(text: &str, end_of_day: bool) -> Result<u64, ApiError> {
    if let Some(ms) = custody_verify::trail::parse_rfc3339_ms(text) {
        return Ok(ms);
    }
    let day = custody_verify::trail::parse_rfc3339_ms(&format!("{text}T00:00:00Z"))
        .ok_or_else(|| ApiError::bad_request(format!("`{text}` is neither an RFC 3339 time nor a date YYYY-MM-DD")))?;
    Ok(if end_of_day { day + 86_400_000 } else { day })
}

/// The items `q` selects, in deposit order.
pub fn select_items(node: &Node, q: &ListQuery) -> Result<Vec<ItemView>, ApiError> {
    let from = q.from.as_deref().map(|t| bound_ms(t, false)).transpose()?;
    let until = q.until.as_deref().map(|t| bound_ms(t, true)).transpose()?;
    let all = query::items(node.state()).map_err(ApiError::internal)?;
    let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.is_empty() || w == have);
    Ok(all
        .iter()
        .map(view)
        .filter(|v| same(&q.case, &v.case) && same(&q.system, &v.system) && same(&q.depositor, &v.depositor))
        .filter(|v| {
            let at = custody_verify::trail::parse_rfc3339_ms(&v.deposited_at).unwrap_or(0);
            from.is_none_or(|f| at >= f) && until.is_none_or(|u| at < u)
        })
        .collect())
}

pub async fn list_items(State(node): State<Arc<Node>>, _who: Principal, Query(q): Query<ListQuery>) -> Result<Json<ItemList>, ApiError> {
    Ok(Json(ItemList { items: select_items(&node, &q)? }))
}

pub async fn show_item(State(node): State<Arc<Node>>, _who: Principal, Path(id): Path<String>) -> Result<Json<ItemDetail>, ApiError> {
    let id: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let rec = query::item(node.state(), &id).map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found(format!("no item {id}")))?;
    // The custody trail: every audit record about the item, in log order.
    let mut trail = Vec::new();
    for leaf in crate::vault::access::item_log(node.state(), &id).map_err(ApiError::internal)? {
        let Some(bytes) = crate::vault::audit::leaf(node.state(), leaf).map_err(ApiError::internal)? else { continue };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
        trail.push(TrailEntry::from_record(leaf, v).map_err(ApiError::internal)?);
    }
    Ok(Json(ItemDetail { item: view(&rec), trail }))
}

/// The voters and their share keys: whom a new deposit splits its data key over.
pub async fn holders(State(node): State<Arc<Node>>, _who: Principal) -> Result<Json<wire::HoldersView>, ApiError> {
    let voters = crate::vault::query::voters(node.state()).map_err(ApiError::internal)?;
    let mut holders = Vec::with_capacity(voters.len());
    for v in &voters {
        let Some(k) = crate::vault::query::share_key(node.state(), *v).map_err(ApiError::internal)? else {
            // Only an administrator's binding gives a voter its keys (docs/KEYS.md §7): a voter
            // without one (a cluster put together by hand) needs `cluster add-node`.
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "node-not-bound",
                "Node not bound",
                format!("voter {v} has no bound share key: an administrator binds it with `custody cluster add-node --id {v} --addr URL`"),
            ));
        };
        holders.push(wire::HolderKey { node: *v, share_key: hex::encode(k) });
    }
    let n = u8::try_from(holders.len()).ok().filter(|n| (1..=crate::crypto::shares::MAX_HOLDERS).contains(n)).ok_or_else(|| {
        ApiError::unavailable(format!("{} voters: a data key is split over 1 to {}", holders.len(), crate::crypto::shares::MAX_HOLDERS))
    })?;
    Ok(Json(wire::HoldersView {
        cluster_id: node.cluster_id().to_string(),
        chunk_size: node.chunk_size_bytes(),
        threshold: crate::crypto::shares::threshold(n),
        holders,
    }))
}

/// Node `id`'s own view of itself, asked over its node certificate's connection.
async fn health_of(node: &Node, id: NodeId, addr: &str, timeout: Duration) -> Result<NodeHealth, crate::client::HttpError> {
    node.call_member::<(), NodeHealth>(id, addr, Method::GET, "/internal/health", None, timeout).await
}

pub async fn cluster_status(State(node): State<Arc<Node>>, _who: Principal) -> Result<Json<ClusterStatus>, ApiError> {
    let m = node.raft().metrics().borrow().clone();
    let members = node.members();
    let lookups = members.iter().map(|(id, addr, _)| {
        let node = node.clone();
        let (id, addr) = (*id, addr.clone());
        async move {
            if id == node.id() {
                return (Some(node.health()), None);
            }
            match health_of(&node, id, &addr, Duration::from_millis(1500)).await {
                Ok(h) => (Some(h), None),
                // Not itself: perhaps sealed, answering with its seal certificate only.
                Err(_) => (None, node.sealed_member_status(id, &addr, Duration::from_millis(1500)).await.ok().filter(|s| s.sealed)),
            }
        }
    });
    let healths = futures::future::join_all(lookups).await;
    let members = members
        .into_iter()
        .zip(healths)
        .map(|((id, addr, voter), (h, seal))| MemberView {
            id,
            addr,
            voter,
            last_applied: h.as_ref().and_then(|h| h.last_applied),
            reachable: h.is_some(),
            health: h,
            seal,
        })
        .collect();
    let config = query::config(node.state()).map_err(ApiError::internal)?;
    Ok(Json(ClusterStatus {
        cluster_id: config.as_ref().map(|c| c.cluster_id.clone()).unwrap_or_else(|| node.cluster_id().to_string()),
        answered_by: node.id(),
        leader: m.current_leader,
        term: m.current_term,
        members,
        dev_retention_secs: config.as_ref().map(|c| c.retention).filter(|r| r.is_dev()).map(|r| r.standard_secs),
        dev_auto_unseal: config.as_ref().is_some_and(|c| c.dev_auto_unseal),
        witnesses: node.witness_status(),
        tsa: node.tsa_status(),
        alerts: node.alerts_status(),
    }))
}

/// Membership changes are for registered, unrevoked administrators.
pub(super) fn require_admin(node: &Node, who: &Principal) -> Result<(), ApiError> {
    match crate::vault::registry::person(node.state(), who.name()).map_err(ApiError::internal)? {
        Some(p) if p.has(crate::vault::registry::Role::Admin) => Ok(()),
        _ => Err(ApiError::forbidden("membership changes need the admin role")),
    }
}

pub(super) fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::not_leader(f.leader_node.map(|n| n.addr)),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ApiError::new(StatusCode::CONFLICT, "membership", "Membership change refused", c.to_string())
        }
        other => ApiError::internal(other),
    }
}

pub async fn add_member(State(node): State<Arc<Node>>, who: Principal, Json(req): Json<AddMember>) -> Result<Json<ClusterStatus>, ApiError> {
    require_admin(&node, &who)?;
    if !req.addr.starts_with("https://") {
        return Err(ApiError::bad_request("addr must be https://host:port"));
    }
    if req.id > crate::limits::MAX_NODE_ID {
        return Err(ApiError::bad_request(format!("node ids are at most {}", crate::limits::MAX_NODE_ID)));
    }
    if !node.is_leader() {
        return Err(ApiError::not_leader(node.leader().map(|(_, a)| a)));
    }
    // Only a node whose keys an administrator bound joins, and only with those keys.
    let bound = crate::vault::nodes::bound(node.state(), req.id).map_err(ApiError::internal)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "node-not-bound",
            "Node not bound",
            format!("node {} has no registered key binding: `custody cluster add-node` binds it before it adds it", req.id),
        )
    })?;
    let health = health_of(&node, req.id, &req.addr, Duration::from_secs(5))
        .await
        .map_err(|e| ApiError::unavailable(format!("node {} at {} does not answer: {e}", req.id, req.addr)))?;
    let k = &bound.binding.keys;
    if health.id != req.id || health.checkpoint_key != k.checkpoint_key || health.share_key != k.share_key || health.session_key != k.session_key {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "node-not-bound",
            "Node not bound",
            format!("the node at {} is not node {} with its bound keys: bind it again (`custody cluster add-node`)", req.addr, req.id),
        ));
    }
    tracing::info!(id = req.id, addr = %req.addr, admin = %who, "adding a learner");
    // Learner first: it catches up (log or snapshot, then chunks) without counting toward quorums.
    node.raft().add_learner(req.id, BasicNode { addr: req.addr.clone() }, true).await.map_err(write_err)?;
    if !req.learner_only {
        let mut voters: BTreeSet<NodeId> = node.members().into_iter().filter(|m| m.2).map(|m| m.0).collect();
        voters.insert(req.id);
        node.raft().change_membership(voters, true).await.map_err(write_err)?;
        tracing::info!(id = req.id, "promoted to voter");
    }
    cluster_status(State(node), who).await
}

/// `GET /v1/node/binding`: this node's own key binding (no session needed:
/// it is public, and the administrator checks its proofs before signing it).
/// A person's certificate is still needed (as for every `/v1` route), but no
/// session: a node not yet added has an empty registry and could judge none.
pub async fn node_binding(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<super::session::Caller>,
) -> Result<Json<crate::vault::nodes::NodeBinding>, ApiError> {
    caller.require_user()?;
    Ok(Json(node.binding()))
}

pub async fn remove_member(State(node): State<Arc<Node>>, who: Principal, Path(id): Path<NodeId>) -> Result<Json<ClusterStatus>, ApiError> {
    require_admin(&node, &who)?;
    if !node.is_leader() {
        return Err(ApiError::not_leader(node.leader().map(|(_, a)| a)));
    }
    let members = node.members();
    if !members.iter().any(|m| m.0 == id) {
        return Err(ApiError::not_found(format!("node {id} is not a member")));
    }
    let voters: BTreeSet<NodeId> = members.iter().filter(|m| m.2 && m.0 != id).map(|m| m.0).collect();
    if voters.is_empty() {
        return Err(ApiError::bad_request("cannot remove the last voter"));
    }
    tracing::info!(id, admin = %who, "removing a member");
    node.raft().change_membership(voters, false).await.map_err(write_err)?;
    cluster_status(State(node), who).await
}

pub async fn openapi(_who: Principal) -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 document of `/v1`: every path with its request and answer
/// shapes, the shapes' JSON Schemas generated from the types themselves
/// ([`crate::wire::schemas`]), those the CLI alone prints with `--json` included.
pub fn openapi_document() -> serde_json::Value {
    let schema = |name: &str| serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
    let json_body = |name: &str| serde_json::json!({ "content": { "application/json": { "schema": schema(name) } } });
    let problem = serde_json::json!({ "description": "An RFC 9457 problem document", "content": { "application/problem+json": { "schema": schema("Problem") } } });
    let op = |summary: &str, answer: Option<&str>, body: Option<&str>| {
        let mut o = serde_json::json!({ "summary": summary, "responses": { "default": problem.clone() } });
        o["responses"]["200"] = match answer {
            Some(a) => {
                let mut r = json_body(a);
                r["description"] = "OK".into();
                r
            }
            None => serde_json::json!({ "description": "OK" }),
        };
        if let Some(b) = body {
            o["requestBody"] = json_body(b);
            o["requestBody"]["required"] = true.into();
        }
        o
    };
    let deposit_body = serde_json::json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } } });
    let mut deposit = op(
        "Deposit a clip sealed by the client (docs/KEYS.md §4.1): the sealed chunks (x-custody-sealed-bytes in all, chunks of x-custody-chunk-size plaintext bytes), then the signed manifest as JSON",
        Some("DepositReceipt"),
        None,
    );
    deposit["requestBody"] = deposit_body;
    let mut sealed = op("Stream the item's sealed chunks for a recorded access (query: access, the access leaf)", None, None);
    sealed["responses"]["200"] =
        serde_json::json!({ "description": "The sealed chunks, back to back", "content": { "application/octet-stream": {} } });
    let mut paths = BTreeMap::new();
    paths.insert("/v1/items", serde_json::json!({ "post": deposit, "get": op("List items (query: case, system, depositor, from, until; from/until RFC 3339 or YYYY-MM-DD)", Some("ItemList"), None) }));
    paths.insert("/v1/items/{id}", serde_json::json!({ "get": op("An item's metadata and custody trail", Some("ItemDetail"), None) }));
    paths.insert("/v1/items/{id}/proof", serde_json::json!({ "get": op("The item's proof bundle for a court (docs/AUDIT_FORMATS.md)", None, None) }));
    paths.insert(
        "/v1/holders",
        serde_json::json!({ "get": op("The voters and their share keys: whom a new deposit's data key is split over", Some("HoldersView"), None) }),
    );
    paths.insert(
        "/v1/items/{id}/access",
        serde_json::json!({ "post": op("Record an access under a grant, signed by the fetcher, naming the fetch key", Some("AccessView"), Some("AccessBody")) }),
    );
    paths.insert(
        "/v1/items/{id}/share",
        serde_json::json!({ "post": op("Release this node's share, sealed to the fetch key, for an access its applied state records", Some("ShareRelease"), Some("ShareRequest")) }),
    );
    paths.insert("/v1/items/{id}/sealed", serde_json::json!({ "get": sealed }));
    paths.insert(
        "/v1/items/{id}/hold",
        serde_json::json!({ "post": op("Place a legal hold (body: {\"reason\": string})", Some("RetentionView"), None) }),
    );
    paths.insert("/v1/items/{id}/release", serde_json::json!({ "post": op("Release a legal hold", Some("RetentionView"), None) }));
    paths.insert(
        "/v1/items/{id}/extend",
        serde_json::json!({ "post": op("Extend retention (body: {\"retention\": \"important\"})", Some("RetentionView"), None) }),
    );
    paths.insert(
        "/v1/items/{id}/purge",
        serde_json::json!({ "post": op("Purge after retention under a granted purge request (query: request)", Some("PurgeView"), None) }),
    );
    paths.insert(
        "/v1/requests",
        serde_json::json!({ "post": op("File an access request, signed by its requester", Some("RequestStatus"), Some("FileRequest")) }),
    );
    paths.insert(
        "/v1/requests/{id}",
        serde_json::json!({ "get": op("A request as committed, with its signatures and grant", Some("RequestRecord"), None) }),
    );
    paths.insert(
        "/v1/requests/{id}/approvals",
        serde_json::json!({ "post": op("Sign a request as participant or approver", Some("RequestStatus"), Some("Signature")) }),
    );
    paths.insert("/v1/cluster/status", serde_json::json!({ "get": op("Leader, members and per-node health", Some("ClusterStatus"), None) }));
    paths.insert(
        "/v1/cluster/members",
        serde_json::json!({ "post": op("Add a node: learner first, then voter (admin)", Some("ClusterStatus"), Some("AddMember")) }),
    );
    paths.insert("/v1/cluster/members/{id}", serde_json::json!({ "delete": op("Remove a node (admin)", Some("ClusterStatus"), None) }));
    paths.insert("/v1/cluster/keys", serde_json::json!({ "get": op("The nodes' checkpoint verifier keys", Some("KeysView"), None) }));
    paths.insert("/v1/registry", serde_json::json!({ "get": op("People and source systems", Some("RegistryView"), None) }));
    paths.insert(
        "/v1/registry/changes",
        serde_json::json!({ "post": op("File a registry change signed by an administrator (people: pending until a second approves)", Some("ChangeStatus"), Some("FileChange")) }),
    );
    paths.insert("/v1/registry/changes/{id}", serde_json::json!({ "get": op("A pending registry change", Some("PendingChange"), None) }));
    paths.insert(
        "/v1/registry/changes/{id}/approvals",
        serde_json::json!({ "post": op("A second administrator signs a pending change, which applies", Some("ChangeStatus"), Some("Signature")) }),
    );
    paths.insert("/v1/checkpoint", serde_json::json!({ "get": op("The latest majority-cosigned checkpoint", Some("CheckpointView"), None) }));
    paths.insert(
        "/v1/audit/consistency",
        serde_json::json!({ "get": op("Consistency proof between two tree sizes (query: old, new)", Some("ConsistencyView"), None) }),
    );
    paths.insert(
        "/v1/scrub",
        serde_json::json!({ "post": op("Every member scrubs its disk and audit tree now (admin)", Some("ScrubSummary"), None) }),
    );
    paths.insert("/v1/openapi.json", serde_json::json!({ "get": op("This document", None, None) }));
    let mut snap =
        op("A snapshot of the replicated state built now, for a backup (admin); its meta, base64 JSON, in x-custody-snapshot-meta", None, None);
    snap["responses"]["200"] =
        serde_json::json!({ "description": "The snapshot file (docs/STORAGE.md)", "content": { "application/octet-stream": {} } });
    paths.insert("/v1/backup/snapshot", serde_json::json!({ "get": snap }));
    let mut chunk = op("One sealed chunk, ciphertext, for a backup (admin)", None, None);
    chunk["responses"]["200"] = serde_json::json!({ "description": "The sealed chunk", "content": { "application/octet-stream": {} } });
    paths.insert("/v1/backup/chunks/{name}", serde_json::json!({ "get": chunk }));
    // The two routes without a session (`security: []`): the login itself, and
    // what a node states about its keys for the administrator who binds it.
    let mut login =
        op("Log in: a signature with the person's registered key over auth::login_message, for a session token", Some("Session"), Some("Login"));
    login["security"] = serde_json::json!([]);
    paths.insert("/v1/login", serde_json::json!({ "post": login }));
    let mut binding = op("This node's own key binding (docs/KEYS.md §7); a person's certificate, no session", Some("NodeBinding"), None);
    binding["security"] = serde_json::json!([]);
    paths.insert("/v1/node/binding", serde_json::json!({ "get": binding }));
    // A node's seal (docs/KEYS.md §8): any certificate of the CA, no session;
    // a sealed node serves these (and health) only.
    let mut seal = op("This node's seal: sealed or not, k of n custodians, shares given", Some("SealStatus"), None);
    seal["security"] = serde_json::json!([]);
    paths.insert("/v1/seal", serde_json::json!({ "get": seal }));
    let mut unseal =
        op("A sealed node takes one custodian's unseal share, or forgets those given (reset)", Some("SealStatus"), Some("UnsealRequest"));
    unseal["security"] = serde_json::json!([]);
    paths.insert("/v1/seal/unseal", serde_json::json!({ "post": unseal }));
    // What the CLI prints with --json: command → schema (README "Scripting").
    let cli: BTreeMap<&str, &str> = crate::wire::CLI_JSON.iter().copied().collect();
    serde_json::json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": { "title": "custody", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": crate::wire::schemas(),
            "securitySchemes": { "session": { "type": "http", "scheme": "bearer", "description": "The token POST /v1/login answers; every route needs one unless its `security` is empty" } },
        },
        "security": [{ "session": [] }],
        "x-cli-json": cli,
    })
}

/// `POST /v1/scrub` (admin): every member scrubs its own disk now; the reports are summed.
pub async fn scrub(State(node): State<Arc<Node>>, who: Principal) -> Result<Json<crate::wire::ScrubSummary>, ApiError> {
    require_admin(&node, &who)?;
    let runs = node.members().into_iter().map(|(id, addr, _)| {
        let node = node.clone();
        async move {
            if id == node.id() {
                return crate::node::scrub::scrub_once(&node, Duration::ZERO)
                    .await
                    .map_err(|e| crate::wire::NodeError { node: id, error: format!("{e:#}") });
            }
            node.call_member::<(), crate::node::scrub::ScrubReport>(
                id,
                &addr,
                Method::POST,
                crate::node::scrub::SCRUB_PATH,
                None,
                Duration::from_secs(3600),
            )
            .await
            .map_err(|e| crate::wire::NodeError { node: id, error: e.to_string() })
        }
    });
    let reports = futures::future::join_all(runs).await;
    let ok: Vec<crate::wire::ScrubReport> = reports.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    let sum = |f: fn(&crate::wire::ScrubReport) -> u64| ok.iter().map(f).sum::<u64>();
    Ok(Json(crate::wire::ScrubSummary {
        checked: sum(|r| r.checked),
        corrupt: sum(|r| r.corrupt),
        missing: sum(|r| r.missing),
        repaired: sum(|r| r.repaired),
        unrepairable: ok.iter().flat_map(|r| r.unrepairable.clone()).collect(),
        errors: reports.into_iter().filter_map(Result::err).collect(),
        nodes: ok,
    }))
}
