//! Issue 17, the web console in a real browser: a user's certificate
//! exported with `custody certs export-p12` and imported into the browser's
//! own NSS database, the server's CA trusted there (no certificate error is
//! ignored), the login signed in the page with WebCrypto Ed25519, then the
//! items list with its filters and pages, an item's custody trail, the proof
//! download and cluster health, in Chinese and English.
//!
//! Chromium asks which client certificate to send; a headless one cannot be
//! asked, so the test installs the policy a managed browser would have
//! (`AutoSelectCertificateForUrls` for https://127.0.0.1, in
//! /etc/chromium/policies/managed/custody-tests.json). It needs root, as CI has.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{screenshots, Browser};
use crate::harness::{write_clip, Cluster, BIN};

const POLICY: &str = "/etc/chromium/policies/managed/custody-tests.json";

/// Lets Chromium send the one client certificate it has to https://127.0.0.1.
fn install_policy() {
    let policy = r#"{ "AutoSelectCertificateForUrls": ["{\"pattern\":\"https://127.0.0.1:*\",\"filter\":{}}"] }"#;
    if std::fs::read_to_string(POLICY).ok().as_deref() != Some(policy) {
        std::fs::create_dir_all(Path::new(POLICY).parent().unwrap()).expect("create Chromium's policy directory (root needed)");
        std::fs::write(POLICY, policy).unwrap();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install libnss3-tools)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A browser home whose NSS database holds `user`'s certificate and key
/// (from `custody certs export-p12`) and trusts the cluster's CA.
fn browser_home(c: &Cluster, user: &str) -> tempfile::TempDir {
    let home = tempfile::Builder::new().prefix("custody-browser-home-").tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let sql = format!("sql:{}", db.display());
    run(Command::new("certutil").args(["-N", "-d", &sql, "--empty-password"]));
    let pw = home.path().join("p12.pw");
    std::fs::write(&pw, "console-test\n").unwrap();
    let p12 = home.path().join(format!("{user}.p12"));
    let profiles = c.path().join("profiles");
    run(Command::new(BIN).args(["certs", "export-p12", user, "--from"]).arg(&profiles).arg("--out").arg(&p12).arg("--password-file").arg(&pw));
    run(Command::new("pk12util").args(["-i"]).arg(&p12).args(["-d", &sql, "-w"]).arg(&pw));
    run(Command::new("certutil").args(["-A", "-n", "custody-ca", "-t", "C,,", "-d", &sql, "-i"]).arg(c.path().join("certs/ca.pem")));
    home
}

async fn text_of(c: &Client, css: &str) -> anyhow::Result<String> {
    Ok(c.find(Locator::Css(css)).await?.text().await?)
}

async fn shot(c: &Client, name: &str) {
    if let Ok(png) = c.screenshot().await {
        let _ = std::fs::write(screenshots().join(format!("{name}.png")), png);
    }
}

/// Logs in on the login page with the key file (or the key kept in the browser).
async fn log_in(c: &Client, base: &str, key_file: Option<&Path>, remember: bool) -> anyhow::Result<()> {
    c.goto(&format!("{base}/console/login")).await?;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#login[data-ready='true']")).await?;
    match key_file {
        Some(k) => {
            c.find(Locator::Css("#key-file")).await?.send_keys(&k.display().to_string()).await?;
            if remember {
                c.find(Locator::Css("#remember")).await?.click().await?;
            }
            c.find(Locator::Css("#login-file")).await?.click().await?;
        }
        None => c.find(Locator::Css("#login-stored")).await?.click().await?,
    }
    // The login navigates to the items page: a query that meets the navigation is aborted
    // ("aborted by navigation"), which `wait()` does not retry, so this loop does.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match c.find(Locator::Css("table#items, #login-error:not([hidden])")).await {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e.into()),
        }
    }
    if let Ok(e) = c.find(Locator::Css("#login-error:not([hidden])")).await {
        anyhow::bail!("the login failed: {}", e.text().await?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_logs_in_with_the_key_in_the_browser_and_reads_items_trails_and_health() {
    install_policy();
    let mut cluster = Cluster::init(3, "");
    cluster.start_all(3);
    cluster.wait_leader(3);
    let dir = tempfile::tempdir().unwrap();
    let mut items = Vec::new();
    for (i, case) in ["case-A", "case-A", "case-B"].iter().enumerate() {
        let clip = dir.path().join(format!("clip{i}.mp4"));
        write_clip(&clip, 50_000 + i as u64, i as u8);
        items.push(cluster.deposit("alice", &clip, case)["item"].as_str().unwrap().to_string());
    }
    let req = cluster.grant(&items[0], "view");
    let out = dir.path().join("fetched.mp4");
    cluster.cli_json(&cluster.profile("bob"), &["fetch", &items[0], "--request", &req, "--out", out.to_str().unwrap()]);

    // The same filters through the API, as `custody items` scripts them.
    let dave = cluster.profile("dave");
    let count = |args: &[&str]| cluster.cli_json(&dave, &[&["items"], args].concat())["items"].as_array().unwrap().len();
    assert_eq!(count(&["--case", "case-A"]), 2);
    assert_eq!(count(&["--depositor", "alice", "--system", "cam-demo-1"]), 3);
    assert_eq!(count(&["--from", "2000-01-01", "--until", "2000-01-01"]), 0);
    assert_eq!(count(&["--from", "2000-01-01"]), 3);
    let bad = cluster.cli(&dave, &["items", "--from", "yesterday"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stdout).contains("neither an RFC 3339 time nor a date"), "{bad:?}");

    let base = format!("https://127.0.0.1:{}", cluster.base_port);
    let key = cluster.path().join("profiles/alice.signing.key");
    let home = browser_home(&cluster, "alice");
    let b = Browser::start_in(Some(home.path()), &[]).await;
    let c = b.client.clone();
    let first = items[0].clone();
    let report_bundle = dir.path().join("report-bundle.json");
    let keys = cluster.pin_keys();
    b.checked("console", async move {
        // Without a session every page leads to the login.
        c.goto(&format!("{base}/console/items")).await?;
        anyhow::ensure!(c.current_url().await?.path() == "/console/login", "no session, yet not at the login page");
        shot(&c, "console-login").await;
        log_in(&c, &base, Some(&key), true).await?;
        let load = c.execute("const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;", vec![]).await?;
        eprintln!("console: the items page loaded in {:.1} ms", load.as_f64().unwrap_or(f64::NAN));
        anyhow::ensure!(text_of(&c, "#user").await? == "alice", "the page names the user");
        // A token the vault did not issue to this certificate makes no console session; the
        // pages load nothing but the console's own files (their CSP).
        let probe = c
            .execute_async(
                r#"const done = arguments[0];
                (async () => {
                  const bad = await fetch("/console/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: "eyJhbGciOiJFZERTQSJ9.e30.AAAA" }) });
                  const page = await fetch("/console/items");
                  return { session: bad.status, cookie: bad.headers.has("set-cookie"), csp: page.headers.get("content-security-policy") };
                })().then(done, (e) => done({ error: String(e) }));"#,
                vec![],
            )
            .await?;
        anyhow::ensure!(probe["session"] == 401, "a forged token made a console session: {probe}");
        let csp = probe["csp"].as_str().unwrap_or_default();
        anyhow::ensure!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "the console's CSP: {csp}");
        let total = c.find(Locator::Css("#count")).await?.attr("data-total").await?;
        anyhow::ensure!(total.as_deref() == Some("3"), "three items, not {total:?}");
        shot(&c, "console-items").await;

        // Filters and pages, as the vault selects them.
        c.goto(&format!("{base}/console/items?case=case-A")).await?;
        anyhow::ensure!(c.find_all(Locator::Css("#items tbody tr")).await?.len() == 2, "case-A has two items");
        c.goto(&format!("{base}/console/items?case=case-A&per_page=1")).await?;
        anyhow::ensure!(text_of(&c, "#page").await?.contains('2'), "two pages of one");
        c.find(Locator::Css("#next")).await?.click().await?;
        let url = c.current_url().await?;
        anyhow::ensure!(url.query().is_some_and(|q| q.contains("case=case-A") && q.contains("page=2")), "the next page keeps the filter: {url}");
        anyhow::ensure!(c.find_all(Locator::Css("#items tbody tr")).await?.len() == 1, "one item on page 2");
        c.goto(&format!("{base}/console/items?depositor=nobody")).await?;
        anyhow::ensure!(c.find(Locator::Css("#count")).await?.attr("data-total").await?.as_deref() == Some("0"), "no item of nobody");
        c.goto(&format!("{base}/console/items?from=2000-01-01&until=2000-01-02")).await?;
        anyhow::ensure!(c.find(Locator::Css("#count")).await?.attr("data-total").await?.as_deref() == Some("0"), "none deposited in 2000");

        // The item's page: its metadata and its custody trail in log order.
        c.goto(&format!("{base}/console/items/{first}?lang=en")).await?;
        let kinds: Vec<String> = {
            let mut v = Vec::new();
            for row in c.find_all(Locator::Css("#trail tbody tr")).await? {
                v.push(row.attr("data-kind").await?.unwrap_or_default());
            }
            v
        };
        anyhow::ensure!(
            kinds.first().map(String::as_str) == Some("deposit")
                && kinds.contains(&"grant".into())
                && kinds.last().map(String::as_str) == Some("access"),
            "trail {kinds:?}"
        );
        anyhow::ensure!(text_of(&c, "#trail").await?.contains("Purpose"), "English labels after ?lang=en");
        shot(&c, "console-item").await;
        // The language sticks (a cookie) until switched back.
        c.goto(&format!("{base}/console/health")).await?;
        anyhow::ensure!(text_of(&c, "h1").await? == "Cluster health", "English kept");
        anyhow::ensure!(c.find_all(Locator::Css("#members tbody tr")).await?.len() == 3, "three members");
        shot(&c, "console-health").await;
        c.goto(&format!("{base}/console/health?lang=zh-CN")).await?;
        anyhow::ensure!(text_of(&c, "h1").await? == "集群状态", "Chinese again");

        // The custody report: bilingual, the filing number, the access with its art. 18 fields,
        // the proof bundle embedded (checked below with custody verify), printable to PDF.
        c.goto(&format!("{base}/console/items/{first}/report")).await?;
        anyhow::ensure!(text_of(&c, "#filing").await? == "LN-DEMO-0001", "the source system's filing number");
        let rows = c.find_all(Locator::Css("#report-accesses tr[data-leaf]")).await?;
        anyhow::ensure!(rows.len() == 1, "one access in the report");
        let row = rows[0].text().await?;
        anyhow::ensure!(row.contains("bob") && row.contains("test") && row.contains("DOC"), "the access row: {row}");
        let h1 = text_of(&c, "h1").await?;
        anyhow::ensure!(h1.contains("电子证据保管报告") && h1.contains("Custody report"), "both languages: {h1}");
        let embedded = c.find(Locator::Css("#custody-bundle")).await?.prop("textContent").await?.unwrap_or_default();
        std::fs::write(report_bundle.as_path(), embedded)?;
        shot(&c, "console-report").await;
        let pdf = c.print(fantoccini::wd::PrintConfiguration::builder().build().map_err(|e| anyhow::anyhow!("{e:?}"))?).await?;
        anyhow::ensure!(pdf.starts_with(b"%PDF"), "Chromium printed no PDF");
        std::fs::write(screenshots().join("custody-report.pdf"), &pdf)?;
        eprintln!("console: the custody report printed to a {} B PDF", pdf.len());

        // Log out; the session cookie is gone; log in again with the key kept in the browser.
        c.goto(&format!("{base}/console/items")).await?;
        c.find(Locator::Css("#logout")).await?.click().await?;
        // The logout answer (which clears the cookie) has landed once the login page shows.
        c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#login[data-ready='true']")).await?;
        c.goto(&format!("{base}/console/items")).await?;
        anyhow::ensure!(c.current_url().await?.path() == "/console/login", "logged out");
        log_in(&c, &base, None, false).await?;
        anyhow::ensure!(text_of(&c, "#user").await? == "alice", "logged in with the stored key");
        Ok(())
    })
    .await;
    b.close().await;
    // The bundle embedded in the report verifies.
    let out = Command::new(BIN).args(["--json", "verify"]).arg(dir.path().join("report-bundle.json")).arg("--keys").arg(&keys).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true, "the report's embedded bundle: {v}");
}

/// A browser of `user`'s, logged in with their key file (kept in the browser when `remember`).
async fn browser_of(c: &Cluster, user: &str, base: &str) -> (Browser, tempfile::TempDir) {
    let home = browser_home(c, user);
    let b = Browser::start_in(Some(home.path()), &[]).await;
    let key = c.path().join(format!("profiles/{user}.signing.key"));
    log_in(&b.client, base, Some(&key), true).await.unwrap_or_else(|e| panic!("{user} logs in: {e:#}"));
    (b, home)
}

/// Signs the open request `id` on the queue page; the vault's refusal, if any.
async fn sign_in_queue(c: &Client, base: &str, id: &str) -> anyhow::Result<Option<String>> {
    c.goto(&format!("{base}/console/requests")).await?;
    c.find(Locator::Css(&format!("button.sign-request[data-request='{id}']"))).await?.click().await?;
    // Either the page reloads (signed) or the vault's problem shows.
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css("#sign-error:not([hidden])")).await {
            return Ok(Some(e.text().await?));
        }
        let row = c.find(Locator::Css(&format!("tr[data-request='{id}']"))).await;
        let signed = match row {
            Ok(r) => r.find(Locator::Css("button.sign-request")).await.is_err(),
            Err(_) => true, // granted: no longer open
        };
        if signed {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("neither signed nor refused")
}

/// Fetches `item` under `request` on the fetch page at `base` and saves it into
/// `downloads` (as `custody-<item>.bin`); the seconds from the click to the checked clip.
async fn fetch_on_page(c: &Client, base: &str, item: &str, request: &str, downloads: &Path, screenshot: Option<&str>) -> anyhow::Result<f64> {
    c.goto(&format!("{base}/console/items/{item}/fetch?lang=en")).await?;
    anyhow::ensure!(c.find(Locator::Css("#not-leader")).await.is_err(), "the leader's page says it is not the leader");
    c.find(Locator::Css(&format!("button.fetch[data-request='{request}']"))).await?.click().await?;
    c.wait().at_most(Duration::from_secs(600)).for_element(Locator::Css("#fetched:not([hidden]), #sign-error:not([hidden])")).await?;
    if let Ok(e) = c.find(Locator::Css("#sign-error:not([hidden])")).await {
        anyhow::bail!("the fetch failed: {}", e.text().await?);
    }
    if let Some(name) = screenshot {
        shot(c, name).await;
    }
    let secs: f64 = c.find(Locator::Css("#fetched")).await?.attr("data-seconds").await?.unwrap_or_default().parse()?;
    c.find(Locator::Css("#save")).await?.click().await?;
    // Chromium writes `*.crdownload` and renames it when the download is complete.
    let saved = downloads.join(format!("custody-{item}.bin"));
    let until = std::time::Instant::now() + Duration::from_secs(120);
    while !saved.exists() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(saved.exists(), "no download at {}", saved.display());
    Ok(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_officers_and_an_approver_sign_a_request_each_in_their_own_browser() {
    install_policy();
    let mut cluster = Cluster::init(3, "");
    cluster.start_all(3);
    cluster.wait_leader(3);
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    write_clip(&clip, 70_000, 9);
    let item = cluster.deposit("alice", &clip, "case-Q")["item"].as_str().unwrap().to_string();
    let base = format!("https://127.0.0.1:{}", cluster.base_port);

    // Alice files the request in her browser, naming bob.
    let (alice, _h1) = browser_of(&cluster, "alice", &base).await;
    let c = alice.client.clone();
    let (b2, i2) = (base.clone(), item.clone());
    let filed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let id_out = filed.clone();
    alice
        .checked("console-file-request", async move {
            c.goto(&format!("{b2}/console/items/{i2}/request")).await?;
            for (name, value) in [("purpose", "trial preparation"), ("approval_doc", "PSB-2026-117"), ("with", "bob")] {
                c.find(Locator::Css(&format!("[name='{name}']"))).await?.send_keys(value).await?;
            }
            shot(&c, "console-request-form").await;
            c.find(Locator::Css("#file-request")).await?.click().await?;
            c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#filed:not([hidden]), #sign-error:not([hidden])")).await?;
            if let Ok(e) = c.find(Locator::Css("#sign-error:not([hidden])")).await {
                anyhow::bail!("filing failed: {}", e.text().await?);
            }
            let id = c.find(Locator::Css("#filed")).await?.attr("data-request").await?.unwrap_or_default();
            anyhow::ensure!(id.len() == 32, "a request id: {id:?}");
            *id_out.lock().unwrap() = id;
            Ok(())
        })
        .await;
    alice.close().await;
    let id = filed.lock().unwrap().clone();

    // Dave, no participant and no approver, is refused by the vault, not by the page.
    let (dave, _h4) = browser_of(&cluster, "dave", &base).await;
    let c = dave.client.clone();
    let (b2, id2) = (base.clone(), id.clone());
    dave.checked("console-refused", async move {
        let refused = sign_in_queue(&c, &b2, &id2).await?;
        anyhow::ensure!(refused.is_some(), "dave's signature was taken");
        shot(&c, "console-queue-refused").await;
        Ok(())
    })
    .await;
    dave.close().await;

    // Bob signs as the second officer, then carol as the approver: granted.
    for user in ["bob", "carol"] {
        let (b, _home) = browser_of(&cluster, user, &base).await;
        let c = b.client.clone();
        let (b2, id2, u) = (base.clone(), id.clone(), user.to_string());
        b.checked(&format!("console-sign-{user}"), async move {
            if u == "bob" {
                c.goto(&format!("{b2}/console/requests")).await?;
                shot(&c, "console-queue").await;
            }
            let refused = sign_in_queue(&c, &b2, &id2).await?;
            anyhow::ensure!(refused.is_none(), "{u} was refused: {refused:?}");
            Ok(())
        })
        .await;
        b.close().await;
    }
    // Granted after two officers and an approver signed in their browsers: bob fetches under it,
    // in his browser, on the leader's console (the access is recorded there).
    let leader = cluster.wait_leader(3);
    let on_leader = format!("https://127.0.0.1:{}", cluster.base_port + leader as u16 - 1);
    let (bob, _h2) = browser_of(&cluster, "bob", &on_leader).await;
    let c = bob.client.clone();
    let (b2, i2, id2, downloads) = (on_leader.clone(), item.clone(), id.clone(), bob.downloads());
    let other_node = format!("https://127.0.0.1:{}", cluster.base_port + (leader % 3) as u16);
    bob.checked("console-fetch", async move {
        fetch_on_page(&c, &b2, &i2, &id2, &downloads, Some("console-fetch")).await?;
        // Another holder, asked across origins as the page asks: a forged token, and bob's
        // token for a fetch key the access did not record, are refused by the vault.
        let access = c.find(Locator::Css("#fetched")).await?.attr("data-access").await?.unwrap_or_default();
        let other = c.find(Locator::Css("#grants")).await?.attr("data-item").await?.unwrap_or_default();
        let answers = c
            .execute_async(
                r#"const [holder, item, leaf, done] = arguments;
                   const ask = async (token) => {
                     const r = await fetch(`${holder}/console/items/${item}/share`, { method: "POST", credentials: "include",
                       body: JSON.stringify({ token, access_leaf: Number(leaf), fetch_key: "11".repeat(32) }) });
                     return [r.status, (await r.json()).type];
                   };
                   Promise.all([ask("eyJhbGciOiJFZERTQSJ9.e30.AAAA"), ask(sessionStorage.getItem("custody-token"))]).then(done, (e) => done(String(e)));"#,
                vec![json!(other_node), json!(other), json!(access)],
            )
            .await?;
        anyhow::ensure!(
            answers == json!([[401, "urn:custody:unauthenticated"], [403, "urn:custody:not-permitted"]]),
            "another holder's answers: {answers}"
        );
        Ok(())
    })
    .await;
    let saved = bob.downloads().join(format!("custody-{item}.bin"));
    assert_eq!(std::fs::read(&saved).unwrap(), std::fs::read(&clip).unwrap(), "the clip opened in the browser is the one deposited by the CLI");
    bob.close().await;
    // The vault recorded the access before any share was released: bob's signed access is in the trail.
    let shown = cluster.cli_json(&cluster.profile("carol"), &["show", &item]);
    let accesses: Vec<_> = shown["trail"].as_array().unwrap().iter().filter(|e| e["kind"] == "access").collect();
    assert_eq!(accesses.len(), 1, "one access recorded: {shown}");
    assert_eq!(accesses[0]["by"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_sealed_and_deposited_in_the_browser_opens_with_the_cli_fetch() {
    install_policy();
    let mut cluster = Cluster::init(3, "");
    cluster.start_all(3);
    let leader = cluster.wait_leader(3);
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB by default (two chunks and a bit); CUSTODY_CONSOLE_DEPOSIT_MIB for a figure.
    let mib: u64 = std::env::var("CUSTODY_CONSOLE_DEPOSIT_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let clip = dir.path().join("clip.mp4");
    let sha = write_clip(&clip, (mib << 20) + 12_345, 42);
    let base = format!("https://127.0.0.1:{}", cluster.base_port + leader as u16 - 1);
    let (b, _home) = browser_of(&cluster, "alice", &base).await;
    let c = b.client.clone();
    let (b2, clip2) = (base.clone(), clip.clone());
    let result = std::sync::Arc::new(std::sync::Mutex::new((String::new(), 0.0f64)));
    let out = result.clone();
    b.checked("console-deposit", async move {
        c.goto(&format!("{b2}/console/deposit?lang=en")).await?;
        anyhow::ensure!(c.find(Locator::Css("#not-leader")).await.is_err(), "the leader's console says it is not the leader");
        c.find(Locator::Css("#clip")).await?.send_keys(&clip2.display().to_string()).await?;
        for (name, value) in [("case", "case-browser"), ("system", "cam-demo-1"), ("note", "sealed in Chromium")] {
            c.find(Locator::Css(&format!("[name='{name}']"))).await?.send_keys(value).await?;
        }
        c.find(Locator::Css("#deposit-button")).await?.click().await?;
        c.wait().at_most(Duration::from_secs(600)).for_element(Locator::Css("#deposited:not([hidden]), #sign-error:not([hidden])")).await?;
        if let Ok(e) = c.find(Locator::Css("#sign-error:not([hidden])")).await {
            anyhow::bail!("the deposit failed: {}", e.text().await?);
        }
        shot(&c, "console-deposit").await;
        let d = c.find(Locator::Css("#deposited")).await?;
        let item = d.attr("data-item").await?.unwrap_or_default();
        let secs: f64 = d.attr("data-seconds").await?.unwrap_or_default().parse()?;
        *out.lock().unwrap() = (item, secs);
        Ok(())
    })
    .await;
    b.close().await;
    let (item, secs) = result.lock().unwrap().clone();
    let size = (mib << 20) + 12_345;
    // The vault logged what the browser signed: the clip's hash, the case, alice as depositor.
    let shown = cluster.cli_json(&cluster.profile("bob"), &["show", &item]);
    assert_eq!(
        (shown["item"]["sha256"].as_str(), shown["item"]["case"].as_str(), shown["item"]["depositor"].as_str()),
        (Some(sha.as_str()), Some("case-browser"), Some("alice"))
    );
    // Sealed in the browser, opened by the CLI: the holders open their envelopes, the key's commitment holds, every chunk opens.
    let req = cluster.grant(&item, "view");
    let fetched = dir.path().join("fetched.mp4");
    cluster.cli_json(&cluster.profile("bob"), &["fetch", &item, "--request", &req, "--out", fetched.to_str().unwrap()]);
    assert_eq!(std::fs::read(&fetched).unwrap(), std::fs::read(&clip).unwrap(), "the fetched clip is the one deposited in the browser");
    let req2 = cluster.grant(&item, "view");
    let t = std::time::Instant::now();
    cluster.cli_json(&cluster.profile("bob"), &["fetch", &item, "--request", &req2, "--out", dir.path().join("again.mp4").to_str().unwrap()]);
    let cli_fetch = t.elapsed().as_secs_f64();
    // And opened in a browser too (sealed in one, opened in another), for the fetch's figure.
    let req3 = cluster.grant(&item, "view");
    let (bob, _h2) = browser_of(&cluster, "bob", &base).await;
    let (c, b2, i2, downloads) = (bob.client.clone(), base.clone(), item.clone(), bob.downloads());
    let took = std::sync::Arc::new(std::sync::Mutex::new(0.0f64));
    let took2 = took.clone();
    bob.checked("console-fetch-large", async move {
        *took2.lock().unwrap() = fetch_on_page(&c, &b2, &i2, &req3, &downloads, None).await?;
        Ok(())
    })
    .await;
    let browser_fetch = *took.lock().unwrap();
    let saved = bob.downloads().join(format!("custody-{item}.bin"));
    assert_eq!(std::fs::read(&saved).unwrap(), std::fs::read(&clip).unwrap(), "the clip opened in the browser is the one deposited in the browser");
    bob.close().await;
    // The same clip through the CLI, for the figure.
    let t = std::time::Instant::now();
    cluster.deposit("alice", &clip, "case-cli");
    let cli = t.elapsed().as_secs_f64();
    let figure = |what: &str, browser: f64, cli: f64| {
        let (mib, mb) = (size as f64 / (1 << 20) as f64, size as f64 / 1e6);
        eprintln!(
            "console: {what} of {mib:.1} MiB: browser {browser:.2} s ({:.1} MB/s), CLI {cli:.2} s ({:.1} MB/s); ratio {:.2}",
            mb / browser,
            mb / cli,
            cli / browser
        );
    };
    figure("deposit", secs, cli);
    figure("fetch", browser_fetch, cli_fetch);
}

/// Files a registry change on the registry page; its status, or the vault's refusal.
async fn file_on_registry_page(
    c: &Client,
    base: &str,
    form: &str,
    fields: &[(&str, &str)],
    roles: &[&str],
) -> anyhow::Result<Result<String, String>> {
    c.goto(&format!("{base}/console/registry")).await?;
    for (name, value) in fields {
        c.find(Locator::Css(&format!("#{form} [name='{name}']"))).await?.send_keys(value).await?;
    }
    for role in roles {
        c.find(Locator::Css(&format!("#{form} [name='roles'][value='{role}']"))).await?.click().await?;
    }
    c.find(Locator::Css(&format!("#{form} button[type='submit']"))).await?.click().await?;
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#change-filed:not([hidden]), #sign-error:not([hidden])")).await?;
    if let Ok(e) = c.find(Locator::Css("#sign-error:not([hidden])")).await {
        return Ok(Err(e.text().await?));
    }
    Ok(Ok(c.find(Locator::Css("#change-filed")).await?.attr("data-change").await?.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_administrators_register_a_person_in_their_browsers_and_an_officer_cannot() {
    install_policy();
    let mut cluster = Cluster::init(3, "");
    cluster.start_all(3);
    let leader = cluster.wait_leader(3);
    let base = format!("https://127.0.0.1:{}", cluster.base_port + leader as u16 - 1);
    use base64::Engine;
    let frank_key = base64::engine::general_purpose::STANDARD.encode(custody::crypto::SigningKey::from_seed(&[77; 32]).unwrap().public_key());

    // An officer's change is refused by the vault (only administrators file changes).
    let (alice, _h1) = browser_of(&cluster, "alice", &base).await;
    let c = alice.client.clone();
    let (b2, k2) = (base.clone(), frank_key.clone());
    alice
        .checked("console-registry-officer", async move {
            let r = file_on_registry_page(
                &c,
                &b2,
                "add-person",
                &[("name", "mallory"), ("badge", "B-9"), ("unit", "U"), ("public_key", &k2)],
                &["officer"],
            )
            .await?;
            anyhow::ensure!(r.is_err(), "an officer filed a registry change: {r:?}");
            Ok(())
        })
        .await;
    alice.close().await;

    // admin files frank; the change waits for a second administrator.
    let (admin, _h2) = browser_of(&cluster, "admin", &base).await;
    let c = admin.client.clone();
    let (b2, k2) = (base.clone(), frank_key.clone());
    let filed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let out = filed.clone();
    admin
        .checked("console-registry-file", async move {
            let r = file_on_registry_page(
                &c,
                &b2,
                "add-person",
                &[("name", "frank"), ("badge", "B-77"), ("unit", "U-2"), ("public_key", &k2)],
                &["officer", "court"],
            )
            .await?;
            let id = r.map_err(|e| anyhow::anyhow!("admin's change refused: {e}"))?;
            anyhow::ensure!(c.find(Locator::Css("#change-filed")).await?.attr("data-status").await?.as_deref() == Some("pending"), "pending");
            // The filer cannot approve their own change: the page offers no button, and the vault would refuse.
            c.goto(&format!("{b2}/console/registry")).await?;
            anyhow::ensure!(c.find(Locator::Css(&format!("button.sign-change[data-change='{id}']"))).await.is_err(), "a sign button for the filer");
            shot(&c, "console-registry").await;
            *out.lock().unwrap() = id;
            Ok(())
        })
        .await;
    admin.close().await;
    let id = filed.lock().unwrap().clone();

    // admin2 signs it: applied.
    let (admin2, _h3) = browser_of(&cluster, "admin2", &base).await;
    let c = admin2.client.clone();
    let (b2, id2) = (base.clone(), id.clone());
    admin2
        .checked("console-registry-approve", async move {
            c.goto(&format!("{b2}/console/registry")).await?;
            c.find(Locator::Css(&format!("button.sign-change[data-change='{id2}']"))).await?.click().await?;
            c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("tr[data-person='frank'], #sign-error:not([hidden])")).await?;
            if let Ok(e) = c.find(Locator::Css("#sign-error:not([hidden])")).await {
                anyhow::bail!("admin2's approval refused: {}", e.text().await?);
            }
            Ok(())
        })
        .await;
    admin2.close().await;
    let reg = cluster.cli_json(&cluster.profile("admin"), &["registry", "list"]);
    let frank = reg["people"].as_array().unwrap().iter().find(|p| p["name"] == "frank").cloned().unwrap_or_default();
    assert_eq!((frank["badge"].as_str(), frank["public_key"].as_str()), (Some("B-77"), Some(frank_key.as_str())), "{reg}");
    assert_eq!(frank["roles"], serde_json::json!(["officer", "court"]));
}
