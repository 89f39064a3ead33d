//! Development PKI (`rcgen`): a cluster CA, node certificates naming their
//! node, and client certificates naming their user. Production deployments
//! bring certificates from their own CA; the vault only needs the files.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use time::OffsetDateTime;

use crate::limits::DEV_CERT_VALID_DAYS;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the CA certificate: {0}")]
    Ca(String),
}

/// Valid from an hour ago (clocks differ) for `days`, but never past `cap`.
fn validity(params: &mut CertificateParams, days: u32, cap: Option<OffsetDateTime>) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    let end = now + time::Duration::days(i64::from(days));
    params.not_after = cap.map_or(end, |c| end.min(c));
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.display().to_string(), source }
}

/// Writes a secret file readable by its owner only (mode 0600), refusing to
/// overwrite an existing one.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_err(path))?;
    f.write_all(contents).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(io_err(path))
}

/// Writes `contents` to `path` through a temporary file and a rename, so a
/// node reading it sees the old file or the new one, never half of one.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// [`write_atomic`] for a secret: the temporary file is made mode 0600
/// (refusing one left over), fsynced, renamed over `path`, and the
/// directory fsynced so the rename survives a power loss.
pub fn write_secret_atomic(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_secret(&tmp, contents)?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    }
    Ok(())
}

/// One certificate the CA revoked, as `revoked.json` in its directory lists them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RevokedCert {
    /// The certificate's serial number, lowercase hex.
    pub serial: String,
    /// Its subject (RFC 4514), for people.
    pub subject: String,
    /// When it was revoked (RFC 3339 UTC).
    pub revoked_at: String,
}

/// The file the CA's revocation list is written to, next to `ca.pem`.
pub const CRL_FILE: &str = "crl.pem";
/// The list of revoked certificates the CRL is made from.
pub const REVOKED_FILE: &str = "revoked.json";
/// How long a CRL says it is current. Nodes do not refuse a stale one (a CA
/// that cannot re-sign must not stop the cluster); each revocation re-signs it.
const CRL_VALID_DAYS: i64 = 30;

/// A certificate and its key as written to disk.
#[derive(Clone, Debug)]
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The dev CA: its certificate file and its signing key.
pub struct DevCa {
    pub cert_path: PathBuf,
    cert_pem: String,
    key: KeyPair,
    /// The CA certificate's notAfter: nothing it issues outlives it.
    not_after: OffsetDateTime,
}

impl DevCa {
    /// Creates a new CA as `dir/ca.pem` and `dir/ca.key`, valid for `days`
    /// (what it issues never outlives it).
    pub fn create(dir: &Path, cluster_name: &str, days: u32) -> Result<DevCa, PkiError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, format!("custody dev CA ({cluster_name})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, days, None);
        let not_after = params.not_after;
        let cert = params.self_signed(&key)?;
        let cert_path = dir.join("ca.pem");
        write_public(&cert_path, &cert.pem())?;
        write_secret(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
        Ok(DevCa { cert_path, cert_pem: cert.pem(), key, not_after })
    }

    /// Loads the CA written by [`DevCa::create`].
    pub fn load(dir: &Path) -> Result<DevCa, PkiError> {
        let cert_path = dir.join("ca.pem");
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_path = dir.join("ca.key");
        let key = KeyPair::from_pem(&fs::read_to_string(&key_path).map_err(io_err(&key_path))?)?;
        let der = crate::tls::load_certs(&cert_path).map_err(|e| PkiError::Ca(e.to_string()))?;
        let (_, until) = crate::tls::validity_of(der[0].as_ref()).map_err(|e| PkiError::Ca(e.to_string()))?;
        let not_after = OffsetDateTime::from_unix_timestamp(until).map_err(|e| PkiError::Ca(e.to_string()))?;
        if not_after <= OffsetDateTime::now_utc() {
            return Err(PkiError::Ca(format!("{} expired at {not_after}", cert_path.display())));
        }
        Ok(DevCa { cert_path, cert_pem, key, not_after })
    }

    fn issue(&self, params: CertificateParams, days: u32, out_cert: &Path, out_key: &Path) -> Result<IssuedFiles, PkiError> {
        let key = KeyPair::generate()?;
        self.certify(params, &key, days, out_cert)?;
        write_secret(out_key, key.serialize_pem().as_bytes())?;
        Ok(IssuedFiles { cert: out_cert.to_path_buf(), key: out_key.to_path_buf() })
    }

    /// Signs a certificate for `key` and writes it to `out_cert`.
    fn certify(&self, mut params: CertificateParams, key: &impl rcgen::PublicKeyData, days: u32, out_cert: &Path) -> Result<(), PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        validity(&mut params, days, Some(self.not_after));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A random serial (rcgen's default derives it from the key, so a
        // certificate renewed over the same key would share the old one's
        // serial, and revoking the old would revoke the new).
        let mut serial = crate::crypto::random_bytes::<16>().map_err(|e| PkiError::Ca(e.to_string()))?;
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params.signed_by(key, &issuer)?;
        if let Some(p) = out_cert.parent() {
            fs::create_dir_all(p).map_err(io_err(p))?;
        }
        write_public(out_cert, &cert.pem())
    }

    /// A server certificate's names: `name`, localhost, 127.0.0.1 and `hosts`.
    fn server_params(name: String, hosts: &[String]) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::new(vec![name, "localhost".to_string()])?;
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        for h in hosts {
            params.subject_alt_names.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(h.as_str().try_into()?),
            });
        }
        Ok(params)
    }

    fn node_params(id: u64, hosts: &[String]) -> Result<CertificateParams, PkiError> {
        let mut params = Self::server_params(crate::tls::node_dns_name(id), hosts)?;
        params.distinguished_name.push(DnType::CommonName, format!("custody node {id}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    }

    /// Node `id`'s certificate with a new key that is not written anywhere:
    /// answers the key as PKCS#8 DER, for the node's sealed file (docs/KEYS.md §8).
    pub fn issue_sealed_node(&self, id: u64, days: u32, hosts: &[String], out_cert: &Path) -> Result<Vec<u8>, PkiError> {
        let key = KeyPair::generate()?;
        self.certify(Self::node_params(id, hosts)?, &key, days, out_cert)?;
        Ok(key.serialize_der())
    }

    /// A new certificate for node `id` over the key of `old_der` (a sealed
    /// node's key never leaves its sealed file, so renewal keeps it).
    pub fn renew_node_same_key(&self, id: u64, days: u32, hosts: &[String], old_der: &[u8], out_cert: &Path) -> Result<(), PkiError> {
        let spki = rcgen::SubjectPublicKeyInfo::from_der(&crate::tls::spki_of(old_der).map_err(|e| PkiError::Ca(e.to_string()))?)?;
        self.certify(Self::node_params(id, hosts)?, &spki, days, out_cert)
    }

    /// Node `id`'s seal certificate (docs/KEYS.md §8): server use only, it
    /// names `sealed.node-<id>.custody`, localhost, 127.0.0.1 and `hosts`,
    /// never `node-<id>.custody`; its key is kept in the clear.
    pub fn issue_seal_cert(&self, id: u64, days: u32, hosts: &[String], out_cert: &Path, out_key: &Path) -> Result<IssuedFiles, PkiError> {
        let mut params = Self::server_params(crate::tls::sealed_node_dns_name(id), hosts)?;
        params.distinguished_name.push(DnType::CommonName, format!("custody node {id} (sealed)"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, days, out_cert, out_key)
    }

    /// The revoked certificates recorded in this CA's directory.
    pub fn revoked(&self) -> Result<Vec<RevokedCert>, PkiError> {
        let path = self.cert_path.with_file_name(REVOKED_FILE);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| PkiError::Ca(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Records `revoked` and writes the CRL over all of them (`crl.pem`, its
    /// number the count of revocations), both atomically. Answers the CRL's path.
    pub fn write_crl(&self, revoked: &[RevokedCert]) -> Result<PathBuf, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let now = OffsetDateTime::now_utc();
        let mut list = Vec::new();
        for r in revoked {
            let serial = hex::decode(&r.serial).map_err(|e| PkiError::Ca(format!("serial {}: {e}", r.serial)))?;
            let at = time::OffsetDateTime::parse(&r.revoked_at, &time::format_description::well_known::Rfc3339).unwrap_or(now);
            list.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(serial),
                revocation_time: at,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(CRL_VALID_DAYS),
            crl_number: rcgen::SerialNumber::from(revoked.len() as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs: list,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer)?;
        let json = serde_json::to_vec_pretty(revoked).map_err(|e| PkiError::Ca(e.to_string()))?;
        write_atomic(&self.cert_path.with_file_name(REVOKED_FILE), &json)?;
        let path = self.cert_path.with_file_name(CRL_FILE);
        write_atomic(&path, crl.pem()?.as_bytes())?;
        Ok(path)
    }

    /// A node certificate: server and client use, names `node-<id>.custody`,
    /// `localhost` and the loopback address.
    pub fn issue_node(&self, id: u64, out_cert: &Path, out_key: &Path) -> Result<IssuedFiles, PkiError> {
        self.issue_node_for(id, DEV_CERT_VALID_DAYS, &[], out_cert, out_key)
    }

    /// [`DevCa::issue_node`], valid for `days`, also naming `hosts` (DNS
    /// names or IP addresses: where clients reach the node).
    pub fn issue_node_for(&self, id: u64, days: u32, hosts: &[String], out_cert: &Path, out_key: &Path) -> Result<IssuedFiles, PkiError> {
        self.issue(Self::node_params(id, hosts)?, days, out_cert, out_key)
    }

    /// A user's client certificate: client use only, subject CN = the user name.
    pub fn issue_user(&self, name: &str, out_cert: &Path, out_key: &Path) -> Result<IssuedFiles, PkiError> {
        self.issue_user_for(name, DEV_CERT_VALID_DAYS, out_cert, out_key)
    }

    /// [`DevCa::issue_user`], valid for `days`.
    pub fn issue_user_for(&self, name: &str, days: u32, out_cert: &Path, out_key: &Path) -> Result<IssuedFiles, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, days, out_cert, out_key)
    }
}

/// A PKCS#12 file (the one home of `p12-keystore`) holding `cert_der` and
/// its PKCS#8 key, with `chain` after it (the CA), encrypted with `password`:
/// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and an HMAC-SHA256 MAC, which
/// browsers import (`custody certs export-p12`).
pub fn export_p12(alias: &str, cert_der: &[u8], key_pkcs8: &[u8], chain: &[Vec<u8>], password: &str) -> Result<Vec<u8>, PkiError> {
    let err = |e: p12_keystore::error::Error| PkiError::Ca(format!("PKCS#12: {e}"));
    let mut certs = vec![p12_keystore::Certificate::from_der(cert_der).map_err(err)?];
    for c in chain {
        certs.push(p12_keystore::Certificate::from_der(c).map_err(err)?);
    }
    let key = p12_keystore::PrivateKey::from_der(key_pkcs8).map_err(err)?;
    let id = crate::crypto::sha256(cert_der);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(alias, p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(id.to_vec(), key, certs)));
    store
        .writer(password)
        .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha256)
        .encryption_iterations(100_000)
        .mac_iterations(100_000)
        .write()
        .map_err(err)
}
