//! Fetch in the browser (docs/KEYS.md §4.2, as the CLI does it): the page
//! (`console-fetch.js`) draws the fetch key, signs the access statement, has
//! the access recorded on the leader, asks every holder for its share, opens
//! them, rebuilds the data key and checks its commitment, then streams the
//! sealed chunks from this node, opens them and keeps the clip only if its
//! SHA-256 is the deposited one. No node sees the key or a plaintext byte.
//!
//! The holders are other origins (each node its own `https://host:port`). A
//! browser sends its client certificate on a cross-origin request only
//! when the request carries credentials, and never on a CORS preflight: a
//! preflight fails the mutual-TLS handshake. So a holder is asked with a
//! CORS-"simple" request, which has no preflight: `POST` with a
//! `text/plain` body and no custom header. The session token, which
//! `/v1` reads from the `Authorization` header, rides in that body. The
//! holder checks it with `session::principal`, the check behind every
//! session, and then releases exactly as `/v1/items/{id}/share` does (the
//! same handler). It answers with CORS headers only to the origins of the
//! cluster's members.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::html;
use serde::Deserialize;

use super::super::session::{self, Caller};
use super::super::{ApiError, Json};
use super::{key_picker, Viewer, CSP};
use crate::node::Node;
use crate::wire::ShareRequest;

/// The origins a node's console may reach: every member's advertised
/// `https://host:port`. An address that is not one (or would break the
/// header) is left out.
fn member_origins(node: &Node) -> Vec<String> {
    node.members().into_iter().filter_map(|(_, addr, _)| origin_of(&addr)).collect()
}

/// `https://host:port` of an advertised address, or `None`.
fn origin_of(addr: &str) -> Option<String> {
    let rest = addr.trim_end_matches('/').strip_prefix("https://")?;
    let ok = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| format!("https://{rest}"))
}

/// The origin a share may be asked from: this node's own (`https://` and the
/// `Host` asked for), or a member's. Anything else, or no `Origin`, is refused.
fn allowed_origin(origin: Option<&str>, host: Option<&str>, members: &[String]) -> Option<String> {
    let origin = origin?;
    let own = host.map(|h| format!("https://{h}"));
    (own.as_deref() == Some(origin) || members.iter().any(|m| m == origin)).then(|| origin.to_string())
}

/// The console's CSP, with the members' origins added to `connect-src`.
fn csp_with(origins: &[String]) -> String {
    CSP.replace("connect-src 'self'", &format!("connect-src 'self' {}", origins.join(" ")))
}

/// `GET /console/items/{id}/fetch`: the viewer's granted requests for this
/// item, each with a button that fetches under it. The page only lists and
/// asks; the vault judges every step. Accesses are recorded by the leader:
/// on a follower the page names the leader's console.
pub(super) async fn fetch_page(State(node): State<Arc<Node>>, v: Viewer, Path(id): Path<String>) -> Response {
    let t = v.t();
    let detail = match v.item(&node, id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let item = detail.item.item;
    let all = match crate::vault::access::requests(node.state()) {
        Ok(r) => r,
        Err(e) => return v.refused(ApiError::internal(e)),
    };
    let mine: Vec<_> =
        all.into_iter().filter(|r| r.request.item == item && r.grant.is_some() && r.request.participants.iter().any(|p| p == v.who.name())).collect();
    let leader = node.leader().filter(|(id, _)| *id != node.id());
    let origins = member_origins(&node);
    let body = html! {
        @if let Some((id, addr)) = &leader {
            p id="not-leader" class="problem" { (t.get("fetch_not_leader")) " " a href={ (addr) "/console/items/" (item) "/fetch" } { (t.get("node")) " " (id) } }
        }
        p { (t.get("fetch_intro")) }
        (key_picker(t))
        table id="grants" data-item=(item) data-user=(v.who.name()) data-opening=(t.get("opening")) data-downloading=(t.get("downloading")) {
            thead { tr { th { (t.get("request")) } th { (t.get("action")) } th { (t.get("purpose")) } th { (t.get("approval_doc")) } th { (t.get("fetches")) } th { (t.get("expires")) } th {} } }
            tbody {
                @for r in &mine {
                    @let q = &r.request;
                    tr data-request=(r.id) {
                        td.mono { (&r.id[..8.min(r.id.len())]) }
                        td { (t.get(&format!("action.{}", q.action))) }
                        td { (q.purpose) } td { (q.approval_doc) }
                        td { (r.fetches) " / " (q.max_fetches) }
                        td { (custody_verify::trail::rfc3339_ms(q.expires_at_ms).unwrap_or_default()) }
                        td { button.fetch type="button" data-request=(r.id) { (t.get("fetch")) } }
                    }
                }
            }
        }
        @if mine.is_empty() { p id="no-grants" { (t.get("no_grants")) } }
        p { progress id="fetch-progress" max="1" value="0" hidden {} " " span id="fetch-phase" {} }
        div id="fetched" hidden {
            p { (t.get("fetched")) " " span id="fetched-size" {} " · SHA-256 " span.mono id="fetched-sha256" {} " · " span id="fetched-rate" {} }
            p { a id="save" href="#" { (t.get("save_clip")) } }
        }
        script src="/console/static/verify.js" {}
        script type="module" src="/console/static/console-fetch.js" {}
    };
    let mut resp = v.page(&format!("{} {}", t.get("fetch"), &item.to_string()[..8]), body);
    if let Ok(csp) = HeaderValue::from_str(&csp_with(&origins)) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    resp
}

/// The body of `POST /console/items/{id}/share`: `/v1`'s share request and
/// the session token `/v1` would read from the `Authorization` header.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareAsk {
    token: String,
    access_leaf: u64,
    fetch_key: String,
}

/// `POST /console/items/{id}/share`: this node's share for a recorded access,
/// asked by a console page of any member's origin (see the module's notes).
/// The token is checked as `/v1` checks it; the release is `/v1`'s.
pub(super) async fn share(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // Only a console page of this cluster may ask: its origin is a member's, or this node's own.
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let Some(origin) = allowed_origin(text(header::ORIGIN), text(header::HOST), &member_origins(&node)) else {
        let asked = text(header::ORIGIN).unwrap_or("a request without an Origin");
        return ApiError::forbidden(format!("this route serves the console of a member's origin, not {asked}")).into_response();
    };
    let answer = async {
        let ask: ShareAsk = super::super::json::parse(&body)?;
        let who = session::principal(&node, &caller, &ask.token)?;
        super::super::access::share(State(node.clone()), who, Path(id), Json(ShareRequest { access_leaf: ask.access_leaf, fetch_key: ask.fetch_key }))
            .await
    };
    let mut resp = match answer.await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    if let Ok(o) = HeaderValue::from_str(&origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_https_host_port_only_and_the_csp_names_them() {
        assert_eq!(origin_of("https://127.0.0.1:7001/").as_deref(), Some("https://127.0.0.1:7001"));
        assert_eq!(origin_of("https://node-2.agency.example:443").as_deref(), Some("https://node-2.agency.example:443"));
        assert_eq!(origin_of("http://127.0.0.1:7001"), None);
        assert_eq!(origin_of("https://a; script-src *"), None);
        let csp = csp_with(&["https://127.0.0.1:7002".into()]);
        assert!(csp.contains("connect-src 'self' https://127.0.0.1:7002;"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
    }

    #[test]
    fn a_share_is_asked_only_from_this_nodes_or_a_members_origin() {
        let members = ["https://127.0.0.1:7001".to_string(), "https://127.0.0.1:7002".to_string()];
        let ok = |o, h| allowed_origin(o, h, &members);
        assert_eq!(ok(Some("https://127.0.0.1:7002"), Some("127.0.0.1:7001")).as_deref(), Some("https://127.0.0.1:7002"));
        assert_eq!(ok(Some("https://vault.example:7001"), Some("vault.example:7001")).as_deref(), Some("https://vault.example:7001"));
        assert_eq!(ok(Some("https://evil.example"), Some("127.0.0.1:7001")), None);
        assert_eq!(ok(Some("http://127.0.0.1:7002"), Some("127.0.0.1:7001")), None);
        assert_eq!(ok(Some("null"), Some("127.0.0.1:7001")), None);
        assert_eq!(ok(None, Some("127.0.0.1:7001")), None);
    }
}
