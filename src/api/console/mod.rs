//! The web console (issue 17): server-rendered pages for evidence units,
//! over the same mutual TLS as the API, in Chinese and English. The one home
//! of `maud`. Every page is built from the very handlers `/v1` runs, for the
//! [`Principal`] the session check makes: the console enforces no rule of
//! its own, the vault does.
//!
//! Logging in is the CLI's signed challenge (`auth::login_message`) signed in
//! the browser with WebCrypto Ed25519 (`console.js`): the signing key never
//! leaves the browser. The token `/v1/login` returns is then handed to
//! `POST /console/session`, which checks it as the API does and keeps it in
//! an `HttpOnly; Secure; SameSite=Strict` cookie for the pages.

mod fetch;
mod text;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::session::{self, Caller};
use super::{ApiError, Json};
use crate::auth::Principal;
use crate::node::Node;
use crate::wire::{ItemView, TrailEntry};
use text::{Lang, T};

const COOKIE: &str = "custody_session";
const LANG_COOKIE: &str = "custody_lang";
/// Items a page of the list shows.
const PAGE_SIZE: usize = 25;
/// What a console page may load: itself only; no frame may hold it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/items") }))
        .route("/console/login", get(login_page))
        .route("/console/whoami", get(whoami))
        .route("/console/session", post(start_session))
        .route("/console/logout", post(logout))
        .route("/console/items", get(items_page))
        .route("/console/items/{id}", get(item_page))
        .route("/console/items/{id}/proof", get(proof))
        .route("/console/health", get(health_page))
        .route("/console/requests", get(requests_page))
        .route("/console/items/{id}/request", get(request_form))
        .route("/console/deposit", get(deposit_page))
        .route("/console/registry", get(registry_page))
        .route("/console/items/{id}/report", get(report_page))
        .route("/console/items/{id}/fetch", get(fetch::fetch_page))
        .route("/console/items/{id}/share", post(fetch::share))
        .route("/console/static/{*file}", get(static_file))
}

/// The console's scripts and style, and the vendored ChaCha20-Poly1305 (vendor/noble-ciphers/VENDORED.md).
async fn static_file(Path(file): Path<String>) -> Response {
    const JS: &str = "text/javascript; charset=utf-8";
    let (kind, body): (&str, &str) = match file.as_str() {
        "console.js" => (JS, include_str!("console.js")),
        "console-seal.js" => (JS, include_str!("console-seal.js")),
        "console-fetch.js" => (JS, include_str!("console-fetch.js")),
        "console.css" => ("text/css; charset=utf-8", include_str!("console.css")),
        "verify.js" => (JS, custody_verify::page::script()),
        "vendor/noble-ciphers/chacha.js" => (JS, include_str!("vendor/noble-ciphers/chacha.js")),
        "vendor/noble-ciphers/_arx.js" => (JS, include_str!("vendor/noble-ciphers/_arx.js")),
        "vendor/noble-ciphers/_poly1305.js" => (JS, include_str!("vendor/noble-ciphers/_poly1305.js")),
        "vendor/noble-ciphers/utils.js" => (JS, include_str!("vendor/noble-ciphers/utils.js")),
        _ => return ApiError::not_found(format!("no console file {file}")).into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The page's language: `?lang=` (which also sets the cookie), the cookie, or Chinese.
#[derive(Deserialize, Default)]
pub struct LangQuery {
    lang: Option<String>,
}

fn lang_of(headers: &HeaderMap, q: &LangQuery) -> (Lang, bool) {
    match q.lang.as_deref().and_then(Lang::parse) {
        Some(l) => (l, true),
        None => (cookie(headers, LANG_COOKIE).and_then(Lang::parse).unwrap_or(Lang::Zh), false),
    }
}

/// Who a page is for, and in which language: the session cookie checked as
/// `/v1` checks a bearer token, or the way to the login page.
struct Viewer {
    lang: Lang,
    /// `?lang=` asked for it: the page sets the language cookie.
    set_lang: bool,
    who: Principal,
}

impl axum::extract::FromRequestParts<Arc<Node>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, node: &Arc<Node>) -> Result<Self, Response> {
        let q = Query::<LangQuery>::try_from_uri(&parts.uri).map(|Query(q)| q).unwrap_or_default();
        let (lang, set_lang) = lang_of(&parts.headers, &q);
        let caller = parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::forbidden("no client certificate").into_response())?;
        let who = principal(node, &caller, &parts.headers)?;
        Ok(Viewer { lang, set_lang, who })
    }
}

impl Viewer {
    fn t(&self) -> T {
        T(self.lang)
    }
    /// A whole page for this viewer.
    fn page(&self, title: &str, body: Markup) -> Response {
        page(self.lang, self.set_lang, Some(&self.who), title, body)
    }
    /// The vault's refusal, as a page.
    fn refused(&self, e: ApiError) -> Response {
        problem_page(self.lang, Some(&self.who), e)
    }
    /// An item and its trail, through `/v1`'s handler.
    async fn item(&self, node: &Arc<Node>, id: String) -> Result<crate::wire::ItemDetail, Response> {
        super::v1::show_item(State(node.clone()), self.who.clone(), Path(id)).await.map(|Json(d)| d).map_err(|e| self.refused(e))
    }
}

/// The session a page acts under, or the way to the login page.
fn principal(node: &Node, caller: &Caller, headers: &HeaderMap) -> Result<Principal, Response> {
    let token = cookie(headers, COOKIE).ok_or_else(|| Redirect::to("/console/login").into_response())?;
    session::principal(node, caller, token).map_err(|e| {
        if e.0 == StatusCode::UNAUTHORIZED {
            Redirect::to("/console/login").into_response()
        } else {
            e.into_response()
        }
    })
}

/// A whole page: the frame (navigation, language switch) around `body`.
fn page(lang: Lang, set_lang: bool, who: Option<&Principal>, title: &str, body: Markup) -> Response {
    let t = T(lang);
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (t.get("product")) }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/console/items" { (t.get("product")) }
                    @if who.is_some() {
                        nav {
                            a href="/console/items" { (t.get("items")) }
                            a href="/console/requests" { (t.get("requests")) }
                            a href="/console/deposit" { (t.get("deposit")) }
                            a href="/console/registry" { (t.get("registry")) }
                            a href="/console/health" { (t.get("health")) }
                            a href="/verify" { (t.get("court_page")) }
                        }
                    }
                    span.spacer {}
                    a.lang href="?lang=zh-CN" aria-current=[(lang == Lang::Zh).then_some("true")] { "中文" }
                    a.lang href="?lang=en" aria-current=[(lang == Lang::En).then_some("true")] { "English" }
                    @if let Some(p) = who {
                        span id="user" { (p.name()) }
                        form method="post" action="/console/logout" { button id="logout" type="submit" { (t.get("logout")) } }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        markup.into_string(),
    )
        .into_response();
    if set_lang {
        let c = format!("{LANG_COOKIE}={}; Path=/; Secure; SameSite=Strict; Max-Age=31536000", lang.code());
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// A refusal of the vault, as a page.
fn problem_page(lang: Lang, who: Option<&Principal>, e: ApiError) -> Response {
    let status = e.0;
    let mut r = page(lang, false, who, T(lang).get("refused"), html! { p.problem data-type=(e.1.kind) { (e.1.title) ": " (e.1.detail) } });
    *r.status_mut() = status;
    r
}

async fn login_page(headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (lang, set) = lang_of(&headers, &q);
    let t = T(lang);
    let body = html! {
        p { (t.get("login_intro")) }
        div id="login" data-ready="false" {
            p id="stored" hidden { button id="login-stored" type="button" { (t.get("login_stored")) } }
            label { (t.get("signing_key")) " " input id="key-file" type="file"; }
            label { input id="remember" type="checkbox"; " " (t.get("remember_key")) }
            p { button id="login-file" type="button" { (t.get("login")) } }
            p id="login-error" class="problem" role="alert" hidden {}
        }
    };
    page(lang, set, None, t.get("login"), body)
}

#[derive(serde::Serialize)]
struct WhoAmI {
    user: String,
    thumbprint: String,
}

/// `GET /console/whoami`: the name and thumbprint of the certificate this
/// connection presented: what the login signature must cover.
async fn whoami(Extension(caller): Extension<Caller>) -> Result<Json<WhoAmI>, ApiError> {
    let (user, thumbprint) = session::whoami(&caller)?;
    Ok(Json(WhoAmI { user, thumbprint }))
}

#[derive(Deserialize)]
struct StartSession {
    token: String,
}

/// `POST /console/session`: a token `/v1/login` issued to this certificate
/// becomes the pages' cookie, once it checks out as it would on `/v1`.
async fn start_session(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Json(s): Json<StartSession>,
) -> Result<Response, ApiError> {
    session::principal(&node, &caller, &s.token)?;
    let c = format!("{COOKIE}={}; Path=/console; Secure; HttpOnly; SameSite=Strict; Max-Age={}", s.token, crate::auth::TOKEN_TTL_SECS);
    let c = HeaderValue::from_str(&c).map_err(|_| ApiError::bad_request("the token is not a header value"))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, c)]).into_response())
}

async fn logout() -> Response {
    let gone = format!("{COOKIE}=; Path=/console; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    let mut r = Redirect::to("/console/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize, Default)]
struct ItemsQuery {
    #[serde(flatten)]
    filter: super::v1::ListQuery,
    #[serde(default)]
    page: Option<usize>,
    /// Items a page shows (1–100, default 25).
    #[serde(default)]
    per_page: Option<usize>,
}

fn size_text(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

async fn items_page(State(node): State<Arc<Node>>, v: Viewer, Query(q): Query<ItemsQuery>) -> Response {
    let t = v.t();
    let items = match super::v1::select_items(&node, &q.filter) {
        Ok(i) => i,
        Err(e) => return v.refused(e),
    };
    let total = items.len();
    let per = q.per_page.unwrap_or(PAGE_SIZE).clamp(1, 100);
    let pages = total.div_ceil(per).max(1);
    let current = q.page.unwrap_or(1).clamp(1, pages);
    // Newest first.
    let shown: Vec<&ItemView> = items.iter().rev().skip((current - 1) * per).take(per).collect();
    let f = &q.filter;
    let link = |p: usize| {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [("case", &f.case), ("system", &f.system), ("depositor", &f.depositor), ("from", &f.from), ("until", &f.until)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                pairs.push((k, v.clone()));
            }
        }
        if per != PAGE_SIZE {
            pairs.push(("per_page", per.to_string()));
        }
        pairs.push(("page", p.to_string()));
        format!("/console/items?{}", pairs.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&"))
    };
    let body = html! {
        form id="filter" method="get" action="/console/items" {
            label { (t.get("case")) input name="case" value=[f.case.as_deref()]; }
            label { (t.get("system")) input name="system" value=[f.system.as_deref()]; }
            label { (t.get("depositor")) input name="depositor" value=[f.depositor.as_deref()]; }
            label { (t.get("from")) input name="from" type="date" value=[f.from.as_deref()]; }
            label { (t.get("until")) input name="until" type="date" value=[f.until.as_deref()]; }
            button type="submit" { (t.get("search")) }
        }
        p id="count" data-total=(total) { (t.count(total)) }
        table id="items" {
            thead { tr { th { (t.get("item")) } th { (t.get("case")) } th { (t.get("system")) } th { (t.get("depositor")) } th { (t.get("deposited_at")) } th { (t.get("size")) } th { (t.get("retention")) } th { (t.get("hold")) } } }
            tbody {
                @for i in &shown {
                    tr data-item=(i.item) {
                        td.mono { a href={ "/console/items/" (i.item) } { (i.item) } }
                        td { (i.case) } td { (i.system) } td { (i.depositor) } td { (i.deposited_at) }
                        td { (size_text(i.size)) } td { (t.get(&i.retention.to_string())) } td { (i.hold.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        nav.pages {
            @if current > 1 { a id="prev" href=(link(current - 1)) { "‹ " (t.get("previous")) } }
            span id="page" data-page=(current) data-pages=(pages) { (t.page_of(current, pages)) }
            @if current < pages { a id="next" href=(link(current + 1)) { (t.get("next")) " ›" } }
        }
    };
    v.page(t.get("items"), body)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A trail entry's string field, or a list of strings joined.
fn field(e: &TrailEntry, name: &str) -> Option<String> {
    match e.fields.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

async fn item_page(State(node): State<Arc<Node>>, v: Viewer, Path(id): Path<String>) -> Response {
    let t = v.t();
    let detail = match v.item(&node, id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let i = &detail.item;
    let body = html! {
        dl id="meta" {
            dt { (t.get("item")) } dd.mono { (i.item) }
            dt { (t.get("case")) } dd { (i.case) }
            dt { (t.get("system")) } dd { (i.system) }
            dt { (t.get("depositor")) } dd { (i.depositor) }
            dt { (t.get("deposited_at")) } dd { (i.deposited_at) }
            dt { (t.get("size")) } dd { (size_text(i.size)) " (" (i.size) " B)" }
            dt { "SHA-256" } dd.mono { (i.sha256) }
            dt { (t.get("retention")) } dd { (t.get(&i.retention.to_string())) " — " (t.get("retain_until")) " " (i.retain_until) }
            @if let Some(h) = &i.hold { dt { (t.get("hold")) } dd { (h) } }
            @if let Some(n) = &i.note { dt { (t.get("note")) } dd { (n) } }
        }
        p {
            a id="new-request" href={ "/console/items/" (i.item) "/request" } { (t.get("new_request")) } " · "
            a id="fetch" href={ "/console/items/" (i.item) "/fetch" } { (t.get("fetch")) } " · "
            a id="report" href={ "/console/items/" (i.item) "/report" } { (t.get("report")) } " · "
            a id="proof" href={ "/console/items/" (i.item) "/proof" } download { (t.get("download_proof")) } " · "
            a href="/verify" { (t.get("court_page")) }
        }
        h2 { (t.get("trail")) }
        // Art. 18 registration: who, when, purpose, approval document, credentials.
        table id="trail" {
            thead { tr { th { (t.get("leaf")) } th { (t.get("when")) } th { (t.get("event")) } th { (t.get("who")) } th { (t.get("purpose")) } th { (t.get("approval_doc")) } th { (t.get("credentials")) } } }
            tbody {
                @for e in &detail.trail {
                    tr data-kind=(e.kind) {
                        td { (e.leaf_index) }
                        td { (e.time) }
                        td { (t.get(&format!("kind.{}", e.kind))) @if let Some(a) = field(e, "action") { " · " (a) } }
                        td { (["by", "signer", "depositor"].iter().find_map(|k| field(e, k)).unwrap_or_default())
                             @if let Some(o) = field(e, "officers") { br; small { (t.get("officers")) ": " (o) } }
                             @if let Some(a) = field(e, "approver") { br; small { (t.get("approver")) ": " (a) } } }
                        td { (field(e, "purpose").or_else(|| field(e, "reason")).unwrap_or_default()) }
                        td { (field(e, "approval_doc").unwrap_or_default()) }
                        td { @if e.fields.contains_key("signature") { (t.get("signed")) } @else if e.kind == "grant" { (t.get("signatures_checked")) } }
                    }
                }
            }
        }
    };
    v.page(&format!("{} {}", t.get("item"), &i.item.to_string()[..8]), body)
}

/// The item's proof bundle as a file, for the court (the `/v1` handler's).
async fn proof(State(node): State<Arc<Node>>, v: Viewer, Path(id): Path<String>) -> Response {
    match super::audit::proof_bundle(State(node), v.who, Path(id.clone())).await {
        Ok(Json(b)) => {
            let body = serde_json::to_vec_pretty(&b).unwrap_or_default();
            let name = format!("attachment; filename=\"bundle-{}.json\"", id.chars().filter(char::is_ascii_hexdigit).collect::<String>());
            let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            if let Ok(v) = HeaderValue::from_str(&name) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn health_page(State(node): State<Arc<Node>>, v: Viewer) -> Response {
    let t = v.t();
    let s = match super::v1::cluster_status(State(node.clone()), v.who.clone()).await {
        Ok(Json(s)) => s,
        Err(e) => return v.refused(e),
    };
    let body = html! {
        p id="cluster" { (t.get("cluster")) " " span.mono { (s.cluster_id) } " · " (t.get("leader")) " " (s.leader.map(|l| l.to_string()).unwrap_or("—".into())) " · " (t.get("term")) " " (s.term)
            @if s.dev_auto_unseal { " · " strong.warn { (t.get("dev_cluster")) } } }
        table id="members" {
            thead { tr { th { (t.get("node")) } th { (t.get("address")) } th { (t.get("role")) } th { (t.get("state")) } th { (t.get("last_applied")) } th { (t.get("missing_chunks")) } } }
            tbody {
                @for m in &s.members {
                    tr data-node=(m.id) data-reachable=(m.reachable) {
                        td { (m.id) } td.mono { (m.addr) } td { (t.get(if m.voter { "voter" } else { "learner" })) }
                        td { @if let Some(h) = &m.health { (h.state) } @else if m.seal.is_some() { strong.warn { (t.get("sealed")) } } @else { strong.warn { (t.get("unreachable")) } } }
                        td { (m.last_applied.map(|a| a.to_string()).unwrap_or_default()) }
                        td { (m.health.as_ref().map(|h| h.missing_chunks.to_string()).unwrap_or_default()) }
                    }
                }
            }
        }
        @if !s.witnesses.is_empty() {
            h2 { (t.get("witnesses")) }
            ul { @for w in &s.witnesses { li.mono { (serde_json::to_string(w).unwrap_or_default()) } } }
        }
        p { small { (t.get("health_json")) " " code { "custody --json cluster status" } } }
    };
    v.page(t.get("health"), body)
}

/// Where the signing key comes from on a page that signs: the key kept in
/// this browser, or the key file chosen here (console.js decides which).
fn key_picker(t: T) -> Markup {
    html! {
        p id="key-picker" {
            label { (t.get("signing_key")) " " input id="sign-key" type="file"; }
            span id="key-stored" hidden { (t.get("key_stored")) }
        }
        p id="sign-error" class="problem" role="alert" hidden {}
    }
}

/// `GET /console/items/{id}/request`: filing a request (art. 18): purpose,
/// approval document, co-officers. The page signs it; the vault judges it.
async fn request_form(State(node): State<Arc<Node>>, v: Viewer, Path(id): Path<String>) -> Response {
    let t = v.t();
    let detail = match v.item(&node, id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let i = &detail.item;
    let body = html! {
        p { (t.get("item")) " " a.mono href={ "/console/items/" (i.item) } { (i.item) } " · " (t.get("case")) " " (i.case) }
        form id="request-form" data-item=(i.item) data-user=(v.who.name()) {
            label { (t.get("action")) select name="action" {
                @for a in ["view", "retrieve", "copy", "purge"] { option value=(a) { (t.get(&format!("action.{a}"))) } }
            } }
            label { (t.get("purpose")) textarea name="purpose" required {} }
            label { (t.get("approval_doc")) input name="approval_doc" required; }
            label { (t.get("co_officers")) input name="with" placeholder="bob, dave" required; }
            label { (t.get("max_fetches")) input name="max_fetches" type="number" min="1" max="100" value="1"; }
            label { (t.get("expires_hours")) input name="hours" type="number" min="1" max="720" value="24"; }
            label { input name="emergency" type="checkbox"; " " (t.get("emergency")) }
            (key_picker(t))
            button id="file-request" type="submit" { (t.get("sign_and_file")) }
        }
        p id="filed" hidden { (t.get("filed")) " " a id="filed-link" href="/console/requests" { "" } }
    };
    v.page(t.get("new_request"), body)
}

/// `GET /console/requests`: the approver's queue: every open request (not
/// granted, not expired), who has signed it, and a button to sign it.
async fn requests_page(State(node): State<Arc<Node>>, v: Viewer) -> Response {
    let t = v.t();
    let all = match crate::vault::access::requests(node.state()) {
        Ok(r) => r,
        Err(e) => return v.refused(ApiError::internal(e)),
    };
    let now = crate::node::now_ms();
    let mut open: Vec<_> = all.into_iter().filter(|r| r.grant.is_none() && r.request.expires_at_ms > now).collect();
    open.sort_by_key(|r| std::cmp::Reverse(r.filed_at_ms));
    let body = html! {
        (key_picker(t))
        table id="queue" {
            thead { tr { th { (t.get("request")) } th { (t.get("item")) } th { (t.get("action")) } th { (t.get("purpose")) } th { (t.get("approval_doc")) } th { (t.get("officers")) } th { (t.get("signed_by")) } th { (t.get("expires")) } th {} } }
            tbody {
                @for r in &open {
                    @let q = &r.request;
                    tr data-request=(r.id) {
                        td.mono { (&r.id[..8.min(r.id.len())]) }
                        td.mono { a href={ "/console/items/" (q.item) } { (&q.item.to_string()[..8]) } }
                        td { (t.get(&format!("action.{}", q.action))) @if q.emergency { " " strong.warn { (t.get("emergency")) } } }
                        td { (q.purpose) } td { (q.approval_doc) } td { (q.participants.join(", ")) }
                        td { (r.signatures.keys().cloned().collect::<Vec<_>>().join(", ")) }
                        td { (custody_verify::trail::rfc3339_ms(q.expires_at_ms).unwrap_or_default()) }
                        td { @if !r.signatures.contains_key(v.who.name()) { button.sign-request type="button" data-request=(r.id) { (t.get("sign")) } } }
                    }
                }
            }
        }
        @if open.is_empty() { p id="queue-empty" { (t.get("queue_empty")) } }
    };
    v.page(t.get("requests"), body)
}

/// `GET /console/deposit`: a clip sealed in the browser (console-seal.js) and
/// streamed to this node, with a progress bar. A deposit goes to the leader:
/// on a follower the page names the leader's console.
async fn deposit_page(State(node): State<Arc<Node>>, v: Viewer) -> Response {
    let t = v.t();
    let leader = node.leader().filter(|(id, _)| *id != node.id());
    let body = html! {
        @if let Some((id, addr)) = &leader {
            p id="not-leader" class="problem" { (t.get("not_leader")) " " a href={ (addr) "/console/deposit" } { (t.get("node")) " " (id) } }
        }
        form id="deposit-form" data-seal=(t.get("sealing")) data-upload=(t.get("uploading")) {
            label { (t.get("clip")) " " input id="clip" type="file" required; }
            label { (t.get("case")) input name="case" required; }
            label { (t.get("system")) input name="system" required; }
            label { (t.get("retention")) select name="retention" {
                option value="standard" { (t.get("standard")) } option value="important" { (t.get("important")) }
            } }
            label { (t.get("note")) input name="note"; }
            (key_picker(t))
            button id="deposit-button" type="submit" { (t.get("seal_and_deposit")) }
            p { progress id="deposit-progress" max="1" value="0" hidden {} " " span id="deposit-phase" {} }
        }
        p id="deposited" hidden { (t.get("deposited")) " " a id="deposited-link" href="#" {} " · " span id="deposited-rate" {} }
        script src="/console/static/verify.js" {}
        script type="module" src="/console/static/console-seal.js" {}
    };
    v.page(t.get("deposit"), body)
}

/// Both languages of `key`, Chinese first: the custody report is bilingual.
fn both(key: &str) -> Markup {
    let (zh, en) = (T(Lang::Zh).get(key), T(Lang::En).get(key));
    html! { span.zh { (zh) } " " span.en { (en) } }
}

/// `GET /console/items/{id}/report`: the custody report of an item, for print
/// (the browser's "Save as PDF"), in Chinese and English: the item, its
/// source system and filing number, every access with the art. 18 fields,
/// the approvals, and the proof, with the proof bundle embedded so that the
/// report itself can be verified (the court's page reads the bundle saved
/// from it).
async fn report_page(State(node): State<Arc<Node>>, v: Viewer, Path(id): Path<String>) -> Response {
    let detail = match v.item(&node, id.clone()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let bundle = match super::audit::proof_bundle(State(node.clone()), v.who.clone(), Path(id)).await {
        Ok(Json(b)) => b,
        Err(e) => return v.refused(e),
    };
    let system = crate::vault::registry::system(node.state(), &detail.item.system).ok().flatten();
    let bundle_json = serde_json::to_string_pretty(&bundle).unwrap_or_default();
    use base64::Engine;
    let bundle_b64 = base64::engine::general_purpose::STANDARD.encode(bundle_json.as_bytes());
    let cp = custody_verify::Note::parse(&bundle.checkpoint).ok().and_then(|n| custody_verify::Checkpoint::parse(&n.text).ok());
    let i = &detail.item;
    let accesses: Vec<&TrailEntry> = detail.trail.iter().filter(|e| e.kind == "access").collect();
    let approvals: Vec<&TrailEntry> = detail.trail.iter().filter(|e| matches!(e.kind.as_str(), "request" | "approval" | "grant")).collect();
    let markup = html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                title { "证据保管报告 Custody report " (i.item) }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body.report {
                h1 { (both("custody_report")) }
                p.mono { (i.item) }
                p { small { (both("report_generated")) " " (custody_verify::trail::rfc3339_ms(crate::node::now_ms()).unwrap_or_default()) " · " (v.who.name()) } }
                h2 { (both("item")) }
                table id="report-item" {
                    tr { th { (both("case")) } td { (i.case) } }
                    tr { th { (both("system")) } td { (i.system) } }
                    tr { th { (both("filing")) } td id="filing" { (system.as_ref().map(|s| s.filing.as_str()).unwrap_or("—")) } }
                    tr { th { (both("operator")) } td { (system.as_ref().map(|s| format!("{} · {}", s.operator, s.location)).unwrap_or_default()) } }
                    tr { th { (both("depositor")) } td { (i.depositor) } }
                    tr { th { (both("deposited_at")) } td { (i.deposited_at) } }
                    tr { th { "SHA-256" } td.mono { (i.sha256) } }
                    tr { th { (both("size")) } td { (i.size) " B" } }
                    tr { th { (both("retention")) } td { (i.retention.to_string()) " → " (i.retain_until) } }
                    @if let Some(h) = &i.hold { tr { th { (both("hold")) } td { (h) } } }
                }
                h2 { (both("accesses")) }
                table id="report-accesses" {
                    tr { th { (both("when")) } th { (both("who")) } th { (both("action")) } th { (both("purpose")) } th { (both("approval_doc")) } th { (both("credentials")) } th { (both("leaf")) } }
                    @for e in &accesses {
                        tr data-leaf=(e.leaf_index) {
                            td { (e.time) }
                            td { (field(e, "by").unwrap_or_default()) br; small { (both("officers")) ": " (field(e, "officers").unwrap_or_default()) } }
                            td { (field(e, "action").unwrap_or_default()) }
                            td { (field(e, "purpose").unwrap_or_default()) }
                            td { (field(e, "approval_doc").unwrap_or_default()) }
                            td { (both("signed")) br; small.mono { "fetch key " (field(e, "fetch_key").unwrap_or_default()) } }
                            td { (e.leaf_index) }
                        }
                    }
                    @if accesses.is_empty() { tr { td colspan="7" { (both("no_access")) } } }
                }
                h2 { (both("approvals")) }
                table id="report-approvals" {
                    tr { th { (both("when")) } th { (both("event")) } th { (both("who")) } th { (both("purpose")) } th { (both("approval_doc")) } th { (both("leaf")) } }
                    @for e in &approvals {
                        tr {
                            td { (e.time) }
                            td { (T(Lang::Zh).get(&format!("kind.{}", e.kind))) " " (T(Lang::En).get(&format!("kind.{}", e.kind))) }
                            td { (["by", "signer"].iter().find_map(|k| field(e, k)).unwrap_or_default())
                                 @if let Some(a) = field(e, "approver") { " → " (a) } }
                            td { (field(e, "purpose").unwrap_or_default()) }
                            td { (field(e, "approval_doc").unwrap_or_default()) }
                            td { (e.leaf_index) }
                        }
                    }
                }
                h2 { (both("proof")) }
                p { (both("proof_text")) }
                @if let Some(cp) = &cp {
                    table id="report-proof" {
                        tr { th { (both("log")) } td.mono { (cp.origin) } }
                        tr { th { (both("tree_size")) } td { (cp.size) } }
                        tr { th { (both("root")) } td.mono { (base64::engine::general_purpose::STANDARD.encode(cp.root)) } }
                        tr { th { (both("deposit_leaf")) } td { (bundle.deposit.index) } }
                        tr { th { (both("trail_records")) } td { (bundle.trail.len() + 1) } }
                    }
                }
                pre.mono.checkpoint { (bundle.checkpoint) }
                p.noprint { a id="report-bundle" download={ "bundle-" (i.item) ".json" } href={ "data:application/json;base64," (bundle_b64) } { (both("save_bundle")) } }
                // The bundle itself, for any tool that reads this file.
                script id="custody-bundle" type="application/json" { (maud::PreEscaped(bundle_json.replace("</", "<\\/"))) }
            }
        }
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// `GET /console/registry`: the people, the source systems and the changes
/// waiting for a second administrator; an administrator files a change
/// (add a person, revoke one) or signs another's, in the browser
/// (docs/KEYS.md §5). Whether they may is the vault's rule.
async fn registry_page(State(node): State<Arc<Node>>, v: Viewer) -> Response {
    let t = v.t();
    let r = match super::registry::list(State(node.clone()), v.who.clone()).await {
        Ok(Json(r)) => r,
        Err(e) => return v.refused(e),
    };
    let body = html! {
        h2 { (t.get("pending")) }
        (key_picker(t))
        table id="pending" {
            thead { tr { th { (t.get("change")) } th { (t.get("subject")) } th { (t.get("filed_by")) } th { (t.get("detail")) } th {} } }
            tbody {
                @for c in &r.pending {
                    tr data-change=(c.change) {
                        td.mono { (&c.change[..8.min(c.change.len())]) }
                        td { (c.proposal.change.subject()) }
                        td { (c.by) }
                        td.mono { (serde_json::to_string(&c.proposal.change).unwrap_or_default()) }
                        td { @if c.by != v.who.name() { button.sign-change type="button" data-change=(c.change) { (t.get("sign")) } } }
                    }
                }
            }
        }
        @if r.pending.is_empty() { p id="pending-empty" { (t.get("queue_empty")) } }
        h2 { (t.get("people")) }
        table id="people" {
            thead { tr { th { (t.get("name")) } th { (t.get("badge")) } th { (t.get("unit")) } th { (t.get("roles")) } th { (t.get("state")) } } }
            tbody {
                @for p in &r.people {
                    tr data-person=(p.name) data-revoked=(p.revoked) {
                        td { (p.name) } td { (p.badge) } td { (p.unit) }
                        td { (p.roles.iter().map(|r| serde_json::to_value(r).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()).collect::<Vec<_>>().join(", ")) }
                        td { @if p.revoked { strong.warn { (t.get("revoked")) } } }
                    }
                }
            }
        }
        h2 { (t.get("systems")) }
        table id="systems" {
            thead { tr { th { (t.get("system")) } th { (t.get("filing")) } th { (t.get("operator")) } } }
            tbody { @for s in &r.systems { tr { td { (s.id) } td { (s.filing) } td { (s.operator) " · " (s.location) } } } }
        }
        h2 { (t.get("add_person")) }
        form id="add-person" {
            label { (t.get("name")) input name="name" required; }
            label { (t.get("badge")) input name="badge" required; }
            label { (t.get("unit")) input name="unit" required; }
            label { (t.get("public_key")) input name="public_key" required; }
            fieldset { legend { (t.get("roles")) }
                @for role in ["officer", "approver", "emergency-approver", "court", "admin"] {
                    label { input type="checkbox" name="roles" value=(role); " " (role) }
                }
            }
            button id="file-add-person" type="submit" { (t.get("sign_and_file")) }
        }
        h2 { (t.get("revoke_person")) }
        form id="revoke-person" {
            label { (t.get("name")) input name="name" required; }
            button id="file-revoke" type="submit" { (t.get("sign_and_file")) }
        }
        p id="change-filed" hidden {}
    };
    v.page(t.get("registry"), body)
}
