//! The one importer of `axum`: the HTTPS API every node serves over mutual
//! TLS — `/v1/...` for people's tools, `/internal/...` for other nodes. Every
//! request carries its connection's [`session::Caller`] (what the TLS handshake
//! proved); a `/v1` handler acts for the [`crate::auth::Principal`] the session
//! check made, an `/internal` one for the member node its certificate names.
//! The rules themselves live in `vault/` and `node/`.

pub mod access;
mod audit;
mod backup;
mod console;
mod edge;
mod internal;
mod json;
mod ops;
mod problem;
pub mod registry;
mod seal;
pub mod session;
mod tiles;
pub mod v1;
pub mod witness;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post, put};
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::node::Node;
use crate::tls::Acceptor;
pub use json::Json;
pub use problem::ApiError;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT_SECS: u64 = 10;

pub fn router(node: Arc<Node>) -> Router {
    let internal = Router::new()
        .route(crate::raft::network::APPEND_PATH, post(internal::append))
        .route(crate::raft::network::VOTE_PATH, post(internal::vote))
        .route(crate::raft::network::SNAPSHOT_PATH, post(internal::snapshot))
        .route("/internal/health", get(internal::health))
        .route(crate::node::checkpoint::COSIGN_PATH, post(internal::cosign))
        .route(crate::node::heads::ITEM_HEAD_PATH, post(internal::item_head))
        .route(crate::node::scrub::SCRUB_PATH, post(internal::scrub))
        .route(crate::node::scrub::FINDING_PATH, post(internal::scrub_finding))
        .route(crate::node::reshare::RESHARE_PATH, post(internal::reshare))
        .route(crate::node::heal::ORPHANS_PATH, post(internal::orphans))
        .layer(axum::extract::DefaultBodyLimit::max(internal::MAX_RAFT_RPC_BYTES))
        .merge(
            Router::new()
                .route("/internal/chunks/{name}", put(internal::put_chunk).get(internal::get_chunk))
                .layer(axum::extract::DefaultBodyLimit::max(internal::MAX_CHUNK_BODY_BYTES)),
        );
    let v1 = Router::new()
        .route("/v1/items", post(v1::deposit).get(v1::list_items))
        .route("/v1/items/{id}", get(v1::show_item))
        .route("/v1/items/{id}/proof", get(audit::proof_bundle))
        .route("/v1/checkpoint", get(audit::checkpoint))
        .route("/v1/cluster/keys", get(audit::cluster_keys))
        .route("/v1/audit/consistency", get(audit::consistency))
        .route("/v1/cluster/status", get(v1::cluster_status))
        .route("/v1/cluster/members", post(v1::add_member))
        .route("/v1/cluster/members/{id}", axum::routing::delete(v1::remove_member))
        .route("/v1/requests", post(access::file))
        .route("/v1/requests/{id}", get(access::show))
        .route("/v1/requests/{id}/approvals", post(access::approve))
        .route("/v1/holders", get(v1::holders))
        .route("/v1/items/{id}/access", post(access::access))
        .route("/v1/items/{id}/share", post(access::share))
        .route("/v1/items/{id}/sealed", get(access::sealed))
        .route("/v1/items/{id}/hold", post(access::hold))
        .route("/v1/items/{id}/purge", post(access::purge))
        .route("/v1/items/{id}/release", post(access::release))
        .route("/v1/items/{id}/extend", post(access::extend))
        .route("/v1/scrub", post(v1::scrub))
        .route("/v1/registry", get(registry::list))
        .route("/v1/registry/changes", post(registry::file))
        .route("/v1/registry/changes/{id}", get(registry::show))
        .route("/v1/registry/changes/{id}/approvals", post(registry::approve))
        .route("/v1/openapi.json", get(v1::openapi))
        .route("/v1/backup/snapshot", get(backup::snapshot))
        .route("/v1/backup/chunks/{name}", get(backup::chunk))
        // Every /v1 resource but login needs a valid session token. The check puts the
        // request's Principal on it; each of these handlers takes one (those that only
        // read, unused), so one moved out from under this layer answers 401, and one
        // that acts for someone has no one to act for without it.
        .route_layer(axum::middleware::from_fn_with_state(node.clone(), session::require_session))
        .route("/v1/login", post(session::login))
        // What this node states about its keys, for the administrator who binds it (docs/KEYS.md §7).
        .route("/v1/node/binding", get(v1::node_binding))
        .layer(axum::extract::DefaultBodyLimit::max(crate::limits::MAX_JSON_BODY_BYTES))
        // For operators' tools: any certificate of the cluster's CA, no session (api/ops.rs).
        .route("/metrics", get(ops::metrics))
        .route("/v1/seal", get(seal::status))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        // The court's offline page (custody verify --page).
        .route("/verify", get(ops::verify_page))
        // The web console: pages behind the session cookie (api/console/).
        .merge(console::router());
    // The standard read-only view of the audit log (C2SP tlog-tiles, api/tiles.rs): no
    // session, so mirrors and monitors need no login; a node's or a registered person's
    // certificate, the same readers as /v1's audit routes.
    let tlog = Router::new()
        .route("/tlog/checkpoint", get(tiles::checkpoint))
        .route("/tlog/tile/{*path}", get(tiles::tile))
        .route_layer(axum::middleware::from_fn_with_state(node.clone(), tiles::require_reader));
    internal.merge(v1).merge(tlog).fallback(problem::not_found).layer(axum::middleware::from_fn(edge::body_idle_timeout)).with_state(node)
}

/// Accepts connections until the task is aborted. A connection whose peer
/// has no certificate from the cluster CA fails the handshake and never
/// reaches a handler.
/// The `node` command hands this to `node::run`, which starts it once the node
/// is built and aborts it at shutdown (`node/` does not import `api/`).
pub async fn serve(node: Arc<Node>, listener: TcpListener, acceptor: Acceptor) {
    serve_app(router(node), listener, acceptor).await
}

/// What a sealed node serves until it is unsealed (`api/seal.rs`); the
/// `node` command hands this to `node::run` too.
pub async fn serve_sealed(unsealer: Arc<crate::node::seal::Unsealer>, listener: TcpListener, acceptor: Acceptor) {
    serve_app(seal::router(unsealer), listener, acceptor).await
}

async fn serve_app(app: Router, listener: TcpListener, acceptor: Acceptor) {
    use crate::limits::{CONNECTION_IDLE_TIMEOUT_SECS, HEADER_READ_TIMEOUT_SECS};
    let gate = edge::Gate::new();
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let place = gate.place();
        let (gate, acceptor, app) = (gate.clone(), acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let (tls, peer) = match tokio::time::timeout(Duration::from_secs(HANDSHAKE_TIMEOUT_SECS), acceptor.accept(tcp)).await {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "refused a connection at the TLS handshake");
                    return;
                }
                Err(_) => return,
            };
            let io = TokioIo::new(edge::StalledWrites::new(tls, Duration::from_secs(CONNECTION_IDLE_TIMEOUT_SECS)));
            let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            server.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(HEADER_READ_TIMEOUT_SECS));
            let admitted = place.and_then(|p| gate.admit(peer.identity()).map(|a| (p, a)));
            let _admitted = match admitted {
                Ok(a) => a,
                Err(over) => {
                    // Over a limit: one clear answer, then the connection closes.
                    tracing::warn!(%remote, ?over, "too many connections: refusing this one");
                    server.http1().keep_alive(false);
                    let svc = TowerToHyperService::new(Router::new().fallback(move || edge_refusal(over)));
                    let answer = server.serve_connection(io, svc);
                    let _ = tokio::time::timeout(Duration::from_secs(HANDSHAKE_TIMEOUT_SECS), answer).await;
                    return;
                }
            };
            let watched = peer.clone();
            let untrusted = acceptor.until_untrusted(&watched);
            // The caller wraps the whole router once (`Router::layer` would rebuild every route per connection).
            let svc = TowerToHyperService::new(tower::Layer::layer(&Extension(session::Caller::new(peer)), app));
            tokio::select! {
                r = server.serve_connection(io, svc) => if let Err(e) = r {
                    tracing::debug!(%remote, error = %e, "connection ended");
                },
                () = untrusted => tracing::warn!(%remote, "closed a connection whose certificate is no longer trusted (revoked, or another CA)"),
            }
        });
    }
}

/// The answer on a connection over a limit of `edge`.
async fn edge_refusal(over: edge::Over) -> ApiError {
    let detail = match over {
        edge::Over::Total => format!("this node serves {} connections at most; try again shortly", crate::limits::MAX_CONNECTIONS),
        edge::Over::PerPeer => {
            format!("this node serves {} connections at most for one certificate; close some and try again", crate::limits::MAX_CONNECTIONS_PER_PEER)
        }
    };
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "too-many-connections", "Too many connections", detail)
}

#[cfg(test)]
mod tests {
    /// Every `/v1` route the router serves, with each of its methods, has an
    /// entry in `/v1/openapi.json`, and the document names no route the
    /// router lacks: read from this file's `router`, so a route added
    /// without its entry turns this red.
    #[test]
    fn the_openapi_document_covers_every_v1_route_and_no_other() {
        let src = include_str!("mod.rs");
        let sealed = include_str!("seal.rs");
        // The routes of a node, and those of a sealed node.
        let router = [
            &src[src.find("pub fn router").unwrap()..src.find("/// Accepts connections until").unwrap()],
            &sealed[sealed.find("pub fn router").unwrap()..sealed.find("fn sealed()").unwrap()],
        ]
        .concat();
        let mut served = std::collections::BTreeSet::new();
        for line in router.lines().filter(|l| l.trim_start().starts_with(".route(\"/v1")) {
            let path = line.split('"').nth(1).unwrap();
            let rest = &line[line.find(path).unwrap() + path.len()..];
            for m in ["get", "post", "put", "delete"] {
                if rest.contains(&format!("{m}(")) {
                    served.insert((path.to_string(), m.to_string()));
                }
            }
        }
        assert!(served.len() >= 29, "{served:?}");
        assert_eq!((crate::node::SEAL_PATH, crate::node::UNSEAL_PATH), ("/v1/seal", "/v1/seal/unseal"));
        let doc = super::v1::openapi_document();
        let mut documented = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (m, op) in ops.as_object().unwrap() {
                assert!(op["responses"]["200"].is_object() && op["responses"]["default"].is_object(), "{m} {path}: responses");
                documented.insert((path.clone(), m.clone()));
            }
        }
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "routes without an OpenAPI entry: {missing:?}");
        assert!(extra.is_empty(), "OpenAPI entries for no route: {extra:?}");
    }
}
