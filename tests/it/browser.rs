//! Issue 17, the court's page in a real browser: Debian's `chromium`, driven
//! through `chromedriver` (WebDriver) by `fantoccini`. The page must reach
//! the verdict of `custody verify` on every shared vector
//! (verify/tests/vectors/bundles/), check a real cluster's bundle and clip
//! through its own file inputs with the cluster gone, and be refused to a
//! browser without a client certificate. Screenshots go to
//! `<target>/browser-screenshots/`; a failing test leaves one named after it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::harness::{free_ports, wait_until, write_clip, Cluster, BIN};

/// A headless Chromium under its own chromedriver and profile directory.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where screenshots are kept: beside the test binary's target directory.
pub fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap_or(Path::new(".")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; `args` are added to
    /// Chromium's command line.
    pub async fn start(args: &[&str]) -> Browser {
        Browser::start_in(None, args).await
    }

    /// As [`Browser::start`], with `HOME` set to `home` for chromedriver and
    /// Chromium: its NSS database (`home/.pki/nssdb`) holds the certificates
    /// this browser has (tests/it/console.rs puts a user's there).
    pub async fn start_in(home: Option<&Path>, args: &[&str]) -> Browser {
        for bin in ["chromium", "chromedriver"] {
            let found = Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().map(|o| o.status.success()).unwrap_or(false);
            assert!(found, "`{bin}` is not installed: `apt-get install chromium chromium-driver` (.ci/run does)");
        }
        let port = free_ports(1);
        let mut driver = Command::new("chromedriver");
        if let Some(home) = home {
            driver.env("HOME", home);
        }
        let driver = driver.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start chromedriver");
        wait_until("chromedriver to listen", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        let profile = tempfile::Builder::new().prefix("custody-chromium-").tempdir().unwrap();
        let mut chrome_args: Vec<String> = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        chrome_args.push(format!("--user-data-dir={}", profile.path().display()));
        chrome_args.extend(args.iter().map(|s| s.to_string()));
        let mut caps = serde_json::Map::new();
        // Downloads go to the profile's `downloads/`, without asking (`Browser::downloads`).
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let prefs = json!({ "download.default_directory": downloads, "download.prompt_for_download": false });
        caps.insert("goog:chromeOptions".into(), json!({ "args": chrome_args, "prefs": prefs }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with Chromium");
        Browser { client, driver, _profile: profile }
    }

    /// Where this browser's downloads land.
    pub fn downloads(&self) -> PathBuf {
        self._profile.path().join("downloads")
    }

    /// Saves a PNG of the page as `<screenshots>/<name>.png`.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let path = screenshots().join(format!("{name}.png"));
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(&path, png).unwrap();
        }
        path
    }

    /// Runs `body`; on a panic or an error, keeps a screenshot named
    /// `failed-<name>` and fails with the cause.
    pub async fn checked<F>(&self, name: &str, body: F)
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let outcome = tokio::spawn(body).await;
        let cause = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => format!("{e}"),
        };
        let shot = self.shot(&format!("failed-{name}")).await;
        panic!("{name}: {cause} (screenshot: {})", shot.display());
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Milliseconds from navigation start to the load event, as the browser measured.
async fn load_ms(c: &Client) -> f64 {
    let v = c.execute("const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;", vec![]).await.unwrap();
    v.as_f64().unwrap_or(f64::NAN)
}

/// The page as `custody verify --page` prints it, written to `dir`.
fn page_file(dir: &Path) -> PathBuf {
    let out = Command::new(BIN).args(["verify", "--page"]).output().unwrap();
    assert!(out.status.success(), "custody verify --page: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, custody_verify::page::html().into_bytes(), "the CLI prints the crate's page");
    let path = dir.join("verify.html");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// What two verdicts must agree on: valid, item, and each check's name and ok.
fn verdict(v: &Value) -> Value {
    let checks: Vec<Value> = v["checks"].as_array().map(|cs| cs.iter().map(|c| json!([c["name"], c["ok"]])).collect()).unwrap_or_default();
    json!({ "valid": v["valid"], "item": v["item"], "checks": checks })
}

const RUN_VERIFY: &str = r#"
const [bundle, keys, clip, witnessKeys, minWitnesses, done] = arguments;
const bytes = Uint8Array.from(atob(bundle), (c) => c.charCodeAt(0));
CustodyVerify.verify({ bundle: bytes, keys, clipSha256: clip, witnessKeys, minWitnesses })
  .then((r) => done(r), (e) => done({ error: String(e && e.message) }));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_court_page_reaches_the_verifiers_verdict_on_every_shared_vector() {
    let dir = tempfile::tempdir().unwrap();
    let page = page_file(dir.path());
    let b = Browser::start(&[]).await;
    let c = b.client.clone();
    b.checked("court-page-vectors", async move {
        c.goto(&file_url(&page)).await?;
        eprintln!("court page: loaded in {:.1} ms ({} bytes)", load_ms(&c).await, std::fs::metadata(&page)?.len());
        // The streamed SHA-256 the page hashes clips with, against WebCrypto's
        // digest: lengths around the block and padding edges, fed in odd pieces.
        let sha = c
            .execute_async(
                r#"const done = arguments[0];
                (async () => {
                  const bad = [];
                  for (const n of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 65537, 3 << 20]) {
                    const data = new Uint8Array(n);
                    for (let i = 0; i < n; i++) data[i] = (i * 131 + (i >> 8) * 7) & 255;
                    const want = CustodyVerify.hex(await CustodyVerify.sha256(data));
                    const h = new CustodyVerify.Sha256();
                    for (let at = 0, step = 1; at < n; at += step, step = step * 3 + 1) h.update(data.subarray(at, Math.min(n, at + step)));
                    const got = CustodyVerify.hex(h.finish());
                    if (got !== want) bad.push([n, got, want]);
                  }
                  const abc = new CustodyVerify.Sha256();
                  abc.update(new TextEncoder().encode("abc"));
                  if (CustodyVerify.hex(abc.finish()) !== "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") bad.push("abc");
                  return bad;
                })().then(done, (e) => done(String(e)));"#,
                vec![],
            )
            .await?;
        anyhow::ensure!(sha == json!([]), "the page's SHA-256 differs from WebCrypto's: {sha}");
        // How fast the page hashes a clip (a 256 MiB Blob, read as a File is).
        let rate = c
            .execute_async(
                r#"const done = arguments[0];
                const piece = new Uint8Array(8 << 20).map((_, i) => i * 7);
                const blob = new Blob(Array(32).fill(piece));
                const t = performance.now();
                CustodyVerify.fileSha256(blob).then(() => done(blob.size / 1e6 / ((performance.now() - t) / 1000)), (e) => done(String(e)));"#,
                vec![],
            )
            .await?;
        eprintln!("court page: hashes a clip at {:.0} MB/s (256 MiB, streamed in 8 MiB pieces)", rate.as_f64().unwrap_or(f64::NAN));

        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("verify/tests/vectors/bundles");
        let mut n = 0;
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(&vectors)?.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
        paths.sort();
        for path in paths {
            let v: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            use base64::Engine;
            let bundle = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec_pretty(&v["bundle"])?);
            let args = vec![json!(bundle), v["keys"].clone(), v["clip_sha256"].clone(), v["witness_keys"].clone(), v["min_witnesses"].clone()];
            let got = c.execute_async(RUN_VERIFY, args).await?;
            anyhow::ensure!(got.get("error").is_none(), "{}: the page could not read the inputs: {}", path.display(), got["error"]);
            anyhow::ensure!(
                verdict(&got) == verdict(&v),
                "{}: the page's verdict differs from the verifier's\npage: {}\nfile: {}",
                path.display(),
                verdict(&got),
                verdict(&v)
            );
            n += 1;
        }
        anyhow::ensure!(n >= 60, "only {n} vectors");
        // Inputs that are not a bundle, or not keys, are a reading error, never a verdict.
        for (bundle, keys, what) in [
            ("{}", v_keys(&vectors)?, "not a bundle"),
            ("{\"format\":1,\"format\":2}", v_keys(&vectors)?, "a name twice"),
            ("{}", "no keys here".into(), "not keys"),
        ] {
            use base64::Engine;
            let args = vec![json!(base64::engine::general_purpose::STANDARD.encode(bundle)), json!(keys), Value::Null, Value::Null, Value::Null];
            let got = c.execute_async(RUN_VERIFY, args).await?;
            anyhow::ensure!(got.get("error").is_some(), "{what}: the page gave a verdict: {got}");
        }
        eprintln!("court page: agreed with the verifier on {n} vectors");
        Ok(())
    })
    .await;
    b.close().await;
}

/// The keys file of any vector (they all pin the same test node).
fn v_keys(dir: &Path) -> anyhow::Result<String> {
    let first = std::fs::read_dir(dir)?.map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "json")).unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(first)?)?;
    Ok(v["keys"].as_str().unwrap().to_string())
}

/// The page, driven as a judge would: files chosen, the button pressed; the
/// report it shows (the JSON under "Report") and the rows of its table.
async fn verify_in_page(c: &Client, page: &Path, files: &[(&str, &Path)]) -> anyhow::Result<Value> {
    c.goto(&file_url(page)).await?;
    for (id, path) in files {
        c.find(Locator::Css(&format!("#{id}"))).await?.send_keys(&path.display().to_string()).await?;
    }
    c.find(Locator::Css("#verify")).await?.click().await?;
    c.wait().at_most(Duration::from_secs(60)).for_element(Locator::Css("#verdict:not([hidden]), #error:not([hidden])")).await?;
    let error = c.find(Locator::Css("#error")).await?;
    anyhow::ensure!(error.attr("hidden").await?.is_some(), "the page showed an error: {}", error.text().await?);
    let report: Value = serde_json::from_str(&c.find(Locator::Css("#report")).await?.prop("textContent").await?.unwrap_or_default())?;
    let rows = c.find_all(Locator::Css("#checks tbody tr")).await?;
    anyhow::ensure!(rows.len() == report["checks"].as_array().map_or(0, |a| a.len()), "the table shows every check of the report");
    let valid = c.find(Locator::Css("#verdict")).await?.attr("data-valid").await?;
    anyhow::ensure!(valid.as_deref() == Some(if report["valid"] == true { "true" } else { "false" }), "the verdict shown is the report's");
    Ok(report)
}

fn cli_verify(bundle: &Path, keys: &Path, clip: &Path) -> Value {
    let out = Command::new(BIN).args(["--json", "verify"]).arg(bundle).arg("--keys").arg(keys).arg("--file").arg(clip).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_court_page_checks_a_real_bundle_offline_and_needs_a_client_certificate_when_served() {
    let mut cluster = Cluster::init(3, "");
    cluster.start_all(3);
    cluster.wait_leader(3);
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    write_clip(&clip, 3 << 20, 17);
    let item = cluster.deposit("alice", &clip, "case-17")["item"].as_str().unwrap().to_string();
    let req = cluster.grant(&item, "view");
    let fetched = dir.path().join("fetched.mp4");
    cluster.cli_json(&cluster.profile("bob"), &["fetch", &item, "--request", &req, "--out", fetched.to_str().unwrap()]);
    let bundle = dir.path().join("bundle.json");
    let dave = cluster.profile("dave");
    wait_until("a bundle whose checkpoint covers the access", Duration::from_secs(30), || {
        cluster.cli_json(&dave, &["proof", &item, "--out", bundle.to_str().unwrap()]);
        let b: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
        (b["trail"].as_array().unwrap().len() >= 5).then_some(())
    });
    let keys = dir.path().join("keys.txt");
    let k = cluster.cli_json(&dave, &["cluster", "keys"]);
    let lines: Vec<String> =
        k["ranges"].as_array().unwrap().iter().map(|r| format!("{} from={}", r["key"].as_str().unwrap(), r["from_size"])).collect();
    std::fs::write(&keys, lines.join("\n") + "\n").unwrap();

    // Served at /verify to a client of the cluster's CA: the same file.
    let served = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = cluster.connect_as("dave", 1).await;
        tls.write_all(b"GET /verify HTTP/1.1\r\nhost: node\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        String::from_utf8(out).unwrap()
    };
    let (head, body) = served.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200") && head.to_lowercase().contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(body.contains(&custody_verify::page::html()), "GET /verify serves the page of custody verify --page");

    // A browser without a client certificate gets no page at all (the server's
    // certificate is let through, so the client certificate is the only reason).
    let url = format!("https://127.0.0.1:{}/verify", cluster.base_port);
    let stranger = Browser::start(&["--ignore-certificate-errors"]).await;
    let c = stranger.client.clone();
    stranger
        .checked("court-page-no-client-certificate", async move {
            let _ = c.goto(&url).await; // an error page, or a navigation error
            let source = c.source().await?;
            anyhow::ensure!(
                !source.contains("CustodyVerify") && !source.contains("custody-verify-version"),
                "a browser without a certificate got the page"
            );
            Ok(())
        })
        .await;
    stranger.shot("court-page-no-client-certificate").await;
    stranger.close().await;

    // Offline: the cluster is gone; the judge has the page and the files.
    let page = page_file(dir.path());
    drop(cluster);
    let mut forged: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    forged["item"]["case"] = json!("case-forged");
    let forged_path = dir.path().join("forged.json");
    std::fs::write(&forged_path, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
    let altered_clip = dir.path().join("altered.mp4");
    let mut bytes = std::fs::read(&clip).unwrap();
    bytes[1 << 20] ^= 1;
    std::fs::write(&altered_clip, bytes).unwrap();

    let b = Browser::start(&[]).await;
    let c = b.client.clone();
    let shots = b.client.clone();
    let (page2, bundle2, keys2, clip2) = (page.clone(), bundle.clone(), keys.clone(), clip.clone());
    b.checked("court-page-real-bundle", async move {
        let t = Instant::now();
        let good = verify_in_page(&c, &page2, &[("bundle", &bundle2), ("keys", &keys2), ("clip", &clip2)]).await?;
        eprintln!(
            "court page: a real bundle and a 3 MiB clip checked in {:.0} ms (page load {:.1} ms)",
            t.elapsed().as_secs_f64() * 1e3,
            load_ms(&c).await
        );
        let cli = cli_verify(&bundle2, &keys2, &clip2);
        anyhow::ensure!(good["valid"] == true, "the honest bundle: {}", good);
        anyhow::ensure!(verdict(&good) == verdict(&cli), "page and CLI differ on the honest bundle:\n{}\n{}", verdict(&good), verdict(&cli));
        let _ = shots.screenshot().await.map(|png| std::fs::write(screenshots().join("court-page-valid.png"), png));
        for (what, bundle, clip, failing) in
            [("a forged case", &forged_path, &clip2, "item case"), ("an altered clip", &bundle2, &altered_clip, "clip sha256")]
        {
            let report = verify_in_page(&c, &page2, &[("bundle", bundle), ("keys", &keys2), ("clip", clip)]).await?;
            let cli = cli_verify(bundle, &keys2, clip);
            anyhow::ensure!(report["valid"] == false, "{what}: the page found it valid");
            anyhow::ensure!(verdict(&report) == verdict(&cli), "{what}: page and CLI differ:\n{}\n{}", verdict(&report), verdict(&cli));
            let failed: Vec<&str> =
                report["checks"].as_array().unwrap().iter().filter(|c| c["ok"] == false).filter_map(|c| c["name"].as_str()).collect();
            anyhow::ensure!(failed == [failing], "{what}: failed checks {failed:?}");
        }
        let _ = shots.screenshot().await.map(|png| std::fs::write(screenshots().join("court-page-invalid.png"), png));
        // The switch to English keeps the verdict.
        c.find(Locator::Css("#lang-en")).await?.click().await?;
        let v = c.find(Locator::Css("#verdict")).await?.text().await?;
        anyhow::ensure!(v.starts_with("INVALID"), "the English verdict: {v}");
        Ok(())
    })
    .await;
    b.close().await;
}
