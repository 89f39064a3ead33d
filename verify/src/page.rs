//! The court's page (`custody verify --page`, `custody-verify --page`, and
//! `GET /verify` on a node): one self-contained HTML file that runs every
//! check of [`crate::bundle::verify`] in a browser, offline, with WebCrypto's
//! SHA-256 and Ed25519. Its script is `page/verify.js`; the cases on which it
//! and this crate must agree are `tests/vectors/bundles/`.

const TEMPLATE: &str = include_str!("../page/verify.html");
/// The page's Content-Security-Policy: no request of any kind, only its own
/// inline script and style. In the page's `<meta>`, and the header a node serves it with.
pub const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'";
const SCRIPT: &str = include_str!("../page/verify.js");

/// The page's script alone (`CustodyVerify`): the console loads it for its
/// streamed SHA-256.
pub fn script() -> &'static str {
    SCRIPT
}

/// The page, script inlined: nothing else to fetch.
pub fn html() -> String {
    TEMPLATE.replacen("/*CSP*/", CSP, 1).replacen("/*VERIFY_JS*/", SCRIPT, 1).replacen("/*VERSION*/", env!("CARGO_PKG_VERSION"), 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_is_one_file_that_fetches_nothing() {
        let page = super::html();
        assert!(!page.contains("/*VERIFY_JS*/") && page.contains("const CustodyVerify"));
        // Only the two inline scripts; no src=, no link to anything outside.
        assert_eq!(page.matches("<script").count(), 2);
        for outside in ["src=", "<link", "http://", "https://", "fetch(", "XMLHttpRequest", "WebSocket", "import("] {
            assert!(!page.contains(outside), "the page refers outside itself: {outside}");
        }
        assert!(page.contains("default-src 'none'"), "the CSP forbids every request");
        // The script ends nowhere but at its own tag.
        assert_eq!(super::SCRIPT.matches("</script").count(), 0);
    }
}
