//! The one importer of `rustls` (and its hyper and tokio glue): TLS 1.3 with
//! mutual authentication on the `ring` provider, for every connection a node
//! accepts or makes. Knows nothing of routes, Raft or items; it tells callers
//! who the authenticated peer is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;

pub use tokio_rustls::server::TlsStream as ServerTlsStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Pem { path: String, detail: String },
    #[error("TLS configuration rejected: {0}")]
    Config(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("the peer presented no usable certificate identity: {0}")]
    Identity(String),
}

/// Whom a certificate names: a node or a person. This is a reading of a
/// certificate, not a proof that anyone holds it (any module may parse one,
/// e.g. the CLI its own profile's); what a connection proved is an
/// [`AuthenticatedPeer`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A vault node: its certificate carries the DNS name `node-<id>.custody`.
    Node(u64),
    /// A person (or tool) with a client certificate: its subject common name.
    User(String),
}

/// The peer of a connection whose TLS 1.3 handshake completed: it presented a
/// certificate the cluster CA issued and proved it holds its key. Its fields
/// are private and only [`Acceptor::accept`] makes one, so whoever holds an
/// `AuthenticatedPeer` holds what a handshake proved, not a name someone wrote.
#[derive(Clone, Debug)]
pub struct AuthenticatedPeer {
    identity: PeerIdentity,
    cert_sha256: [u8; 32],
    /// The certificate itself (DER), checked again when the trust changes.
    cert: Arc<Vec<u8>>,
}

impl AuthenticatedPeer {
    /// Whom the certificate names.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The SHA-256 of the peer's certificate (what session tokens are bound to).
    pub fn cert_sha256(&self) -> &[u8; 32] {
        &self.cert_sha256
    }
}

/// The DNS name a node's certificate carries.
pub fn node_dns_name(id: u64) -> String {
    format!("node-{id}.custody")
}

/// The name node `id`'s seal certificate carries, and only it.
pub fn sealed_node_dns_name(id: u64) -> String {
    format!("sealed.node-{id}.custody")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.display().to_string(), detail: e.to_string() }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path).map_err(|e| pem_err(path, e))?.collect::<Result<_, _>>().map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(path, e))
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Files that make up one party's TLS identity.
#[derive(Clone, Debug)]
pub struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A node's server side: TLS 1.3 only, a client certificate from the CA required.
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(files.ca)?), provider()).build().map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(files.cert)?, load_key(files.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client side (CLI or node-to-node): TLS 1.3 only, the server checked
/// against the CA, our own certificate presented.
pub fn client_config(files: &TlsFiles<'_>) -> Result<Arc<ClientConfig>, TlsError> {
    // No ALPN here: the HTTPS connector offers http/1.1 itself.
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(files.ca)?)
        .with_client_auth_cert(load_certs(files.cert)?, load_key(files.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// The files of a node's TLS identity and trust, kept so that they can be
/// read again: `crl`, when set, is a PEM file of certificate revocation lists
/// from the CA (`custody certs revoke` writes it).
#[derive(Clone, Debug)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: KeySource,
    pub crl: Option<PathBuf>,
}

/// Where a node's TLS private key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A PEM file, read again when it changes (an unsealed node).
    File(PathBuf),
    /// PKCS#8 DER held in memory: a sealed node's key, from its unsealed
    /// secrets (docs/KEYS.md §8). A renewed certificate must certify it.
    Held(Arc<crate::crypto::Secret<Vec<u8>>>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "File({})", p.display()),
            KeySource::Held(_) => f.write_str("Held(<secret>)"),
        }
    }
}

impl KeySource {
    fn load(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        match self {
            KeySource::File(p) => load_key(p),
            KeySource::Held(k) => Ok(PrivateKeyDer::Pkcs8(k.as_slice().to_vec().into())),
        }
    }

    /// The key's PKCS#8 bytes (what a node signs its binding with).
    pub fn pkcs8(&self) -> Result<crate::crypto::Secret<Vec<u8>>, TlsError> {
        match self {
            KeySource::File(p) => pkcs8_of(p).map(crate::crypto::Secret::new),
            KeySource::Held(k) => Ok(crate::crypto::Secret::new(k.as_slice().to_vec())),
        }
    }

    fn describe(&self) -> String {
        match self {
            KeySource::File(p) => p.display().to_string(),
            KeySource::Held(_) => "the sealed key".into(),
        }
    }
}

/// What one reading of [`TlsPaths`] gave.
struct Loaded {
    /// Modification time and length of each file, to see a change.
    stamp: Vec<Option<(std::time::SystemTime, u64)>>,
    key: Arc<rustls::sign::CertifiedKey>,
    clients: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    servers: Arc<rustls::client::WebPkiServerVerifier>,
    revoked: usize,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("revoked", &self.revoked).finish_non_exhaustive()
    }
}

fn stamp(paths: &TlsPaths) -> Vec<Option<(std::time::SystemTime, u64)>> {
    let key = match &paths.key {
        KeySource::File(p) => Some(p),
        KeySource::Held(_) => None,
    };
    [Some(&paths.ca), Some(&paths.cert), key, paths.crl.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// Reads a PEM file of CRLs; answers them and how many certificates they revoke.
pub fn load_crls(path: &Path) -> Result<(Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, usize), TlsError> {
    use rustls::pki_types::CertificateRevocationListDer;
    let crls: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_file_iter(path).map_err(|e| pem_err(path, e))?.collect::<Result<_, _>>().map_err(|e| pem_err(path, e))?;
    if crls.is_empty() {
        return Err(pem_err(path, "no certificate revocation list in the file"));
    }
    let mut revoked = 0;
    for c in &crls {
        let (_, crl) = x509_parser::parse_x509_crl(c.as_ref()).map_err(|e| pem_err(path, e))?;
        revoked += crl.iter_revoked_certificates().count();
    }
    Ok((crls, revoked))
}

fn load(paths: &TlsPaths) -> Result<Loaded, TlsError> {
    let stamp = stamp(paths);
    let roots = Arc::new(roots(&paths.ca)?);
    let (crls, revoked) = match &paths.crl {
        Some(p) => load_crls(p)?,
        None => (Vec::new(), 0),
    };
    let key = rustls::sign::CertifiedKey::from_der(load_certs(&paths.cert)?, paths.key.load()?, &provider())
        .map_err(|e| TlsError::Config(format!("{} with {}: {e}", paths.cert.display(), paths.key.describe())))?;
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .with_crls(crls.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Loaded { stamp, key: Arc::new(key), clients, servers, revoked })
}

/// A node's TLS identity and trust, read from [`TlsPaths`] and read again
/// when a file changes ([`Reloading::reload_if_changed`]): a renewed
/// certificate, or a new revocation list, takes effect on the next
/// handshake, with no restart. Connections already open stay as they are.
#[derive(Debug)]
pub struct Reloading {
    paths: TlsPaths,
    current: std::sync::RwLock<Arc<Loaded>>,
    /// Bumped at each new reading, so open connections check their peers again.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Reloading {
    pub fn load(paths: TlsPaths) -> Result<Arc<Reloading>, TlsError> {
        let loaded = load(&paths)?;
        Ok(Arc::new(Reloading { paths, current: std::sync::RwLock::new(Arc::new(loaded)), generation: tokio::sync::watch::Sender::new(0) }))
    }

    fn now(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The private key in use, as PKCS#8.
    pub fn key_pkcs8(&self) -> Result<crate::crypto::Secret<Vec<u8>>, TlsError> {
        self.paths.key.pkcs8()
    }

    /// How many certificates the loaded revocation lists revoke.
    pub fn revoked(&self) -> usize {
        self.now().revoked
    }

    /// Reads the files again if any changed since the last reading. `Ok(true)`
    /// when the new reading is in use; an error (a half-written file, a key
    /// that does not match its certificate) leaves the last good one in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        if stamp(&self.paths) == self.now().stamp {
            return Ok(false);
        }
        let loaded = Arc::new(load(&self.paths)?);
        match self.current.write() {
            Ok(mut c) => *c = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// The server side: TLS 1.3 only, a client certificate from the CA
    /// required and checked against the revocation lists.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let side = Arc::new(ServerSide(self.clone()));
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(side.clone())
            .with_cert_resolver(side);
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // No session resumption: a resumed session skips the certificate
        // check, so a peer revoked since would get back in.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    /// The client side of node-to-node calls: the server checked against the
    /// CA and the revocation lists, this node's current certificate presented.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, TlsError> {
        let side = Arc::new(ClientSide(self.clone()));
        let mut cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(side.clone())
            .with_client_cert_resolver(side);
        // Every connection checks the server's certificate in full (see above).
        cfg.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(cfg))
    }
}

/// [`Reloading`] as a server sees it: its certificate, and the check of clients'.
#[derive(Debug)]
struct ServerSide(Arc<Reloading>);

impl rustls::server::ResolvesServerCert for ServerSide {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.now().key.clone())
    }
}

impl rustls::server::danger::ClientCertVerifier for ServerSide {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // No hints: a client presents the one certificate it has.
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.0.now().clients.verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.now().clients.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.now().clients.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.now().clients.supported_verify_schemes()
    }
}

/// [`Reloading`] as a client sees it: its certificate, and the check of servers'.
#[derive(Debug)]
struct ClientSide(Arc<Reloading>);

impl rustls::client::ResolvesClientCert for ClientSide {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.now().key.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::client::danger::ServerCertVerifier for ClientSide {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0.now().servers.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.now().servers.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.now().servers.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.now().servers.supported_verify_schemes()
    }
}

/// A client-side TLS configuration, passed around without naming rustls.
pub type ClientTls = Arc<ClientConfig>;

/// An HTTPS connector for hyper's client that speaks only TLS 1.3 with our client certificate.
pub type HttpsConnector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector<NodeNames>>;

/// Where each node name `node-<id>.custody` points, so that a node calls
/// another by the name its certificate must carry: a URL made by
/// [`NodeNames::pin`] has that name as its host, the connector resolves it to
/// the address the caller gave, and rustls then checks the server's
/// certificate against that name. A member that answers at an address meant
/// for another (a wrong route or membership address) fails the handshake.
/// Any other host name resolves through the system resolver as usual.
#[derive(Clone, Debug, Default)]
pub struct NodeNames(Arc<std::sync::RwLock<std::collections::HashMap<String, String>>>);

impl NodeNames {
    /// The base URL to call node `id` by, given where to reach it (`addr`,
    /// `https://host:port`): `https://node-<id>.custody:port`, with `host`
    /// remembered as where that name points. An address of another form is
    /// answered unchanged (and checked against its own host name).
    pub fn pin(&self, id: u64, addr: &str) -> String {
        self.pin_name(node_dns_name(id), addr)
    }

    /// [`NodeNames::pin`] for node `id` while sealed: its seal certificate
    /// names `sealed.node-<id>.custody` (docs/KEYS.md §8).
    pub fn pin_sealed(&self, id: u64, addr: &str) -> String {
        self.pin_name(sealed_node_dns_name(id), addr)
    }

    fn pin_name(&self, name: String, addr: &str) -> String {
        let Some(rest) = addr.strip_prefix("https://") else { return addr.to_string() };
        let rest = rest.trim_end_matches('/');
        let Some((host, port)) = rest.rsplit_once(':').filter(|(h, p)| !h.is_empty() && !h.contains('/') && p.parse::<u16>().is_ok()) else {
            return addr.to_string();
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if let Ok(mut names) = self.0.write() {
            if names.get(&name) != Some(&host) {
                names.insert(name.clone(), host);
            }
        }
        format!("https://{name}:{port}")
    }

    fn host_for(&self, name: &str) -> String {
        self.0.read().ok().and_then(|n| n.get(name).cloned()).unwrap_or_else(|| name.to_string())
    }
}

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for NodeNames {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let host = self.host_for(name.as_str());
        Box::pin(async move {
            // The connector sets the URL's port on each address.
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(addrs.into_iter())
        })
    }
}

pub fn https_connector(cfg: Arc<ClientConfig>, names: NodeNames) -> HttpsConnector {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(names);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
    // HTTP/1.1 on a pool of kept-alive connections: for many small JSON calls
    // (and for Raft's RPCs) it costs about a tenth less CPU per call than
    // HTTP/2 here, which is what the small-records figure is bound by
    // (`custody bench`); large transfers stream the same either way.
    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((*cfg).clone()).https_only().enable_http1().wrap_connector(http)
}

/// The connector to an object store (`[chunks] backend = "s3"`, docs/STORAGE.md): plain HTTP, or
/// HTTPS with the server checked against `ca` (PEM). No client certificate: the store
/// authenticates each request by its signature (SigV4).
pub fn object_store_connector(ca: Option<&Path>) -> Result<ObjectStoreConnector, TlsError> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
    let roots = match ca {
        Some(ca) => roots(ca)?,
        None => RootCertStore::empty(),
    };
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(cfg).https_or_http().enable_http1().wrap_connector(http))
}

/// What [`object_store_connector`] makes.
pub type ObjectStoreConnector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// Accepts TLS connections and names the authenticated peer.
#[derive(Clone)]
pub struct Acceptor {
    tls: tokio_rustls::TlsAcceptor,
    reloading: Option<Arc<Reloading>>,
}

impl Acceptor {
    pub fn new(cfg: Arc<ServerConfig>) -> Self {
        Acceptor { tls: tokio_rustls::TlsAcceptor::from(cfg), reloading: None }
    }

    /// An acceptor over [`Reloading::server_config`], whose connections can
    /// learn that their peer's certificate was revoked ([`Acceptor::until_untrusted`]).
    pub fn reloading(r: &Arc<Reloading>) -> Result<Self, TlsError> {
        Ok(Acceptor { tls: tokio_rustls::TlsAcceptor::from(r.server_config()?), reloading: Some(r.clone()) })
    }

    /// Resolves when a new reading of the TLS files (a revocation list, a
    /// new CA) no longer accepts `peer`'s certificate: the caller then closes
    /// the connection, so a revocation reaches connections already open.
    /// Never resolves for an acceptor that does not reload.
    pub async fn until_untrusted(&self, peer: &AuthenticatedPeer) {
        let Some(r) = &self.reloading else { return std::future::pending().await };
        let mut rx = r.generation.subscribe();
        while rx.changed().await.is_ok() {
            let der = CertificateDer::from(peer.cert.as_slice());
            if r.now().clients.verify_client_cert(&der, &[], rustls::pki_types::UnixTime::now()).is_err() {
                return;
            }
        }
        std::future::pending().await
    }

    /// Completes the handshake. A peer without a certificate chaining to the
    /// CA never gets here: rustls aborts the handshake.
    /// The one maker of an [`AuthenticatedPeer`].
    pub async fn accept(&self, tcp: TcpStream) -> Result<(ServerTlsStream<TcpStream>, AuthenticatedPeer), TlsError> {
        let stream = self.tls.accept(tcp).await.map_err(TlsError::Handshake)?;
        let cert =
            stream.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or_else(|| TlsError::Identity("no client certificate".into()))?;
        let identity = identity_of(cert.as_ref())?;
        let cert_sha256 = crate::crypto::sha256(cert.as_ref());
        let cert = Arc::new(cert.to_vec());
        Ok((stream, AuthenticatedPeer { identity, cert_sha256, cert }))
    }
}

/// Reads the identity out of a CA-verified end-entity certificate.
pub fn identity_of(der: &[u8]) -> Result<PeerIdentity, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Identity(e.to_string()))?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                if let Some(id) = dns.strip_prefix("node-").and_then(|r| r.strip_suffix(".custody")).and_then(|n| n.parse::<u64>().ok()) {
                    return Ok(PeerIdentity::Node(id));
                }
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| TlsError::Identity("certificate has no common name".into()))?;
    Ok(PeerIdentity::User(cn.to_string()))
}

/// Checks that the CA in `ca` issued `der` (its signature chains to the CA;
/// checked as of the certificate's own start, so an expired one still
/// counts: it may be revoked or replaced all the same).
pub fn issued_by(ca: &Path, der: &[u8]) -> Result<(), TlsError> {
    let (from, _) = validity_of(der)?;
    let at = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(from).unwrap_or(0) + 1));
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider()).build().map_err(|e| TlsError::Config(e.to_string()))?;
    verifier
        .verify_client_cert(&CertificateDer::from(der.to_vec()), &[], at)
        .map_err(|e| TlsError::Identity(format!("not issued by this CA: {e}")))?;
    Ok(())
}

/// A certificate's serial number (lowercase hex of its bytes), subject and
/// issuer (RFC 4514 text).
pub fn serial_subject_issuer(der: &[u8]) -> Result<(String, String, String), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Identity(e.to_string()))?;
    Ok((hex::encode(cert.raw_serial()), cert.subject().to_string(), cert.issuer().to_string()))
}

/// The DNS names and IP addresses a node certificate names besides its node
/// name, `localhost` and 127.0.0.1: the hosts clients reach it at.
pub fn san_hosts(der: &[u8]) -> Result<Vec<String>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Identity(e.to_string()))?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let host = match name {
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                    _ => continue,
                },
                _ => continue,
            };
            if host != "localhost" && host != "127.0.0.1" && !(host.starts_with("node-") && host.ends_with(".custody")) {
                out.push(host);
            }
        }
    }
    Ok(out)
}

/// A certificate's SubjectPublicKeyInfo, DER.
pub fn spki_of(der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Identity(e.to_string()))?;
    Ok(cert.public_key().raw.to_vec())
}

/// A certificate's validity period as unix seconds: (notBefore, notAfter).
pub fn validity_of(der: &[u8]) -> Result<(i64, i64), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Identity(e.to_string()))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// The PKCS#8 bytes of a private key file (what a node signs its binding with).
pub fn pkcs8_of(path: &Path) -> Result<Vec<u8>, TlsError> {
    match load_key(path)? {
        PrivateKeyDer::Pkcs8(k) => Ok(k.secret_pkcs8_der().to_vec()),
        _ => Err(pem_err(path, "the key is not in PKCS#8 form (BEGIN PRIVATE KEY)")),
    }
}

/// The kind and raw bytes of a certificate's public key.
pub fn certificate_key(der: &[u8]) -> Result<(crate::crypto::CertKeyKind, Vec<u8>), TlsError> {
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Identity(e.to_string()))?;
    let spki = cert.public_key();
    let raw = spki.subject_public_key.data.to_vec();
    let alg = &spki.algorithm;
    if alg.algorithm == OID_SIG_ED25519 {
        return Ok((crate::crypto::CertKeyKind::Ed25519, raw));
    }
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY && alg.parameters.as_ref().and_then(|p| p.as_oid().ok()).is_some_and(|o| o == OID_EC_P256) {
        return Ok((crate::crypto::CertKeyKind::EcdsaP256, raw));
    }
    Err(TlsError::Identity("the certificate's key is neither ECDSA P-256 nor Ed25519".into()))
}

/// Checks that `der` is a node certificate the CA in `ca` issued for node `id`,
/// valid now (the chain, the validity period and the name `node-<id>.custody`).
pub fn verify_node_certificate(ca: &Path, der: &[u8], id: u64) -> Result<(), TlsError> {
    use rustls::client::danger::ServerCertVerifier;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(node_dns_name(id)).map_err(|e| TlsError::Config(e.to_string()))?;
    verifier
        .verify_server_cert(&CertificateDer::from(der.to_vec()), &[], &name, &[], rustls::pki_types::UnixTime::now())
        .map_err(|e| TlsError::Identity(format!("not a certificate of node {id} from this cluster's CA: {e}")))?;
    Ok(())
}
