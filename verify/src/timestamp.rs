//! RFC 3161 trusted time for checkpoints (docs/AUDIT_FORMATS.md, "Trusted
//! time"): the request the leader sends a time-stamping authority, the checks
//! it runs on the reply before it keeps the token, and the court's offline
//! check of a token against the TSA certificate it trusts.
//!
//! The ASN.1 types are RustCrypto's (`x509-tsp`, `cms`, `x509-cert`, `der`),
//! strict DER; the signature is checked with `ring` ([`crate::crypto`]). This
//! module is the crate's one importer of those four crates.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Int, OctetString, SetOfVec};
use der::oid::db::rfc5911::{ID_CONTENT_TYPE, ID_MESSAGE_DIGEST, ID_SIGNED_DATA};
use der::oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_EC_PUBLIC_KEY, ID_SHA_256, RSA_ENCRYPTION, SECP_256_R_1, SHA_256_WITH_RSA_ENCRYPTION};
use der::oid::ObjectIdentifier;
use der::{Any, Decode, DecodePem, Encode};
use serde::{Deserialize, Serialize};
use x509_cert::Certificate;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::crypto::{self, Digest};

/// id-ct-TSTInfo (RFC 3161 §2.4.2).
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// id-ce-subjectKeyIdentifier (RFC 5280 §4.2.1.2).
const ID_CE_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
/// id-ce-extKeyUsage (RFC 5280 §4.2.1.12).
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// id-kp-timeStamping (RFC 5280 §4.2.1.12).
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

/// The media type of a request (RFC 3161 §3.4).
pub const QUERY_TYPE: &str = "application/timestamp-query";
/// The media type of an answer (RFC 3161 §3.4).
pub const REPLY_TYPE: &str = "application/timestamp-reply";
/// Largest token a bundle or a reply may carry: a TSA certificate chain and a
/// signature fit in a few KiB; this leaves room for a long chain.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a request, a reply or a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("not DER of the expected ASN.1 type: {0}")]
    Der(String),
    #[error("the TSA did not grant the request (PKIStatus {0})")]
    NotGranted(u8),
    #[error("the reply carries no token")]
    NoToken,
    #[error("{0}")]
    Token(String),
    #[error("the token is for another message imprint")]
    WrongImprint,
    #[error("the token's nonce is not the one sent")]
    WrongNonce,
    #[error("the token's signature does not verify under the TSA certificate")]
    BadSignature,
    #[error("the TSA certificate: {0}")]
    Certificate(String),
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
}

fn der(e: der::Error) -> TimestampError {
    TimestampError::Der(e.to_string())
}

fn token(detail: impl Into<String>) -> TimestampError {
    TimestampError::Token(detail.into())
}

/// The imprint a checkpoint is stamped over: SHA-256 of its signed text (the
/// note body up to and including the root-hash line's newline).
pub fn imprint(checkpoint_text: &str) -> Digest {
    crypto::sha256(checkpoint_text.as_bytes())
}

fn message_imprint(imprint: &Digest) -> Result<MessageImprint, TimestampError> {
    Ok(MessageImprint {
        hash_algorithm: x509_cert::spki::AlgorithmIdentifier { oid: ID_SHA_256, parameters: Some(Any::null()) },
        hashed_message: OctetString::new(imprint.to_vec()).map_err(der)?,
    })
}

/// The nonce as an INTEGER: 8 bytes, the first in 0x01..=0x7f, so that the
/// encoding is minimal and positive whatever the random bits were.
fn nonce_int(nonce: u64) -> Result<Int, TimestampError> {
    let n = (nonce & 0x7fff_ffff_ffff_ffff) | 0x0100_0000_0000_0000;
    Int::new(&n.to_be_bytes()).map_err(der)
}

/// A DER `TimeStampReq` (RFC 3161 §2.4.1): version 1, SHA-256 imprint, no
/// policy, `nonce`, certReq TRUE, no extensions.
pub fn request(imprint: &Digest, nonce: u64) -> Result<Vec<u8>, TimestampError> {
    let req = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: message_imprint(imprint)?,
        req_policy: None,
        nonce: Some(nonce_int(nonce)?),
        cert_req: true,
        extensions: None,
    };
    req.to_der().map_err(der)
}

/// The leader's checks of a TSA's reply (docs/AUDIT_FORMATS.md, "How the
/// cluster asks"): granted, a SignedData TSTInfo token for exactly `imprint`
/// and `nonce`. Answers the token's DER (the ContentInfo). The signature is
/// the court's to check, with the certificate it trusts.
pub fn accept_reply(reply: &[u8], imprint: &Digest, nonce: u64) -> Result<Vec<u8>, TimestampError> {
    let resp = TimeStampResp::from_der(reply).map_err(der)?;
    let status = resp.status.status as u8;
    if status > 1 {
        return Err(TimestampError::NotGranted(status));
    }
    let ci = resp.time_stamp_token.ok_or(TimestampError::NoToken)?;
    let token = ci.to_der().map_err(der)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TimestampError::TooLarge);
    }
    let (_, tst) = open(&ci)?;
    if !same_imprint(&tst.message_imprint, imprint) {
        return Err(TimestampError::WrongImprint);
    }
    if tst.nonce.as_ref() != Some(&nonce_int(nonce)?) {
        return Err(TimestampError::WrongNonce);
    }
    Ok(token)
}

/// Is `token_der` a SignedData TSTInfo token for exactly `imprint`? The
/// structural check the vault runs before it stores or serves a token; the
/// signature is not checked (that takes the TSA certificate a court trusts).
pub fn token_imprint(token_der: &[u8], imprint: &Digest) -> Result<(), TimestampError> {
    if token_der.len() > MAX_TOKEN_BYTES {
        return Err(TimestampError::TooLarge);
    }
    let (_, tst) = open(&ContentInfo::from_der(token_der).map_err(der)?)?;
    if !same_imprint(&tst.message_imprint, imprint) {
        return Err(TimestampError::WrongImprint);
    }
    Ok(())
}

/// A token's SignedData and the TSTInfo it encapsulates.
fn open(ci: &ContentInfo) -> Result<(SignedData, TstInfo), TimestampError> {
    if ci.content_type != ID_SIGNED_DATA {
        return Err(token(format!("content type {} is not id-signedData", ci.content_type)));
    }
    let sd: SignedData = ci.content.decode_as().map_err(der)?;
    if sd.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(token(format!("eContentType {} is not id-ct-TSTInfo", sd.encap_content_info.econtent_type)));
    }
    let econtent = sd.encap_content_info.econtent.as_ref().ok_or_else(|| token("no eContent"))?;
    let octets: OctetString = econtent.decode_as().map_err(der)?;
    let tst = TstInfo::from_der(octets.as_bytes()).map_err(der)?;
    Ok((sd, tst))
}

/// A TSA certificate a court trusts, read from PEM or DER.
#[derive(Clone, Debug)]
pub struct TsaCertificate(Certificate);

impl TsaCertificate {
    pub fn parse(bytes: &[u8]) -> Result<Self, TimestampError> {
        let cert = if bytes.starts_with(b"-----BEGIN") {
            Certificate::from_pem(bytes).map_err(|e| TimestampError::Certificate(e.to_string()))?
        } else {
            Certificate::from_der(bytes).map_err(|e| TimestampError::Certificate(e.to_string()))?
        };
        Ok(TsaCertificate(cert))
    }

    /// Is the certificate for time-stamping (RFC 3161 §2.3: an
    /// extendedKeyUsage extension, critical, holding only id-kp-timeStamping)?
    fn for_time_stamping(&self) -> Result<(), TimestampError> {
        let eku = self.0.tbs_certificate.extensions.iter().flatten().find(|e| e.extn_id == ID_CE_EXT_KEY_USAGE);
        let Some(eku) = eku else {
            return Err(TimestampError::Certificate("no extendedKeyUsage extension (RFC 3161 §2.3 requires id-kp-timeStamping)".into()));
        };
        let usages = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(eku.extn_value.as_bytes()).map_err(der)?;
        if !eku.critical || usages.0 != [ID_KP_TIME_STAMPING] {
            return Err(TimestampError::Certificate("its extendedKeyUsage is not id-kp-timeStamping alone, critical (RFC 3161 §2.3)".into()));
        }
        Ok(())
    }

    /// The subject, as RFC 4514 text.
    pub fn subject(&self) -> String {
        self.0.tbs_certificate.subject.to_string()
    }

    fn names(&self, sid: &SignerIdentifier) -> bool {
        let tbs = &self.0.tbs_certificate;
        match sid {
            SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber { issuer, serial_number }) => {
                *issuer == tbs.issuer && *serial_number == tbs.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => tbs
                .extensions
                .iter()
                .flatten()
                .filter(|e| e.extn_id == ID_CE_SUBJECT_KEY_IDENTIFIER)
                .any(|e| OctetString::from_der(e.extn_value.as_bytes()).is_ok_and(|v| v.as_bytes() == ski.0.as_bytes())),
        }
    }

    /// Does `signature` over `message` verify under this certificate's key,
    /// by the SignerInfo's algorithm? ECDSA P-256 with SHA-256, or RSA
    /// PKCS#1 v1.5 with SHA-256; nothing else.
    fn verifies(&self, si: &SignerInfo, message: &[u8]) -> Result<bool, TimestampError> {
        let spki = &self.0.tbs_certificate.subject_public_key_info;
        let key = spki.subject_public_key.as_bytes().ok_or_else(|| TimestampError::Certificate("the public key is not whole bytes".into()))?;
        let sig = si.signature.as_bytes();
        let alg = si.signature_algorithm.oid;
        if spki.algorithm.oid == ID_EC_PUBLIC_KEY {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            if curve != Some(SECP_256_R_1) {
                return Err(TimestampError::Certificate("an EC key on a curve other than P-256".into()));
            }
            if alg != ECDSA_WITH_SHA_256 {
                return Err(token(format!("signature algorithm {alg} with an EC P-256 key (ecdsa-with-SHA256 expected)")));
            }
            Ok(crypto::verify_ecdsa_p256_sha256(key, message, sig))
        } else if spki.algorithm.oid == RSA_ENCRYPTION {
            if alg != RSA_ENCRYPTION && alg != SHA_256_WITH_RSA_ENCRYPTION {
                return Err(token(format!("signature algorithm {alg} with an RSA key (PKCS#1 v1.5 with SHA-256 expected)")));
            }
            Ok(crypto::verify_rsa_pkcs1_sha256(key, message, sig))
        } else {
            Err(TimestampError::Certificate(format!("key algorithm {} (EC P-256 or RSA expected)", spki.algorithm.oid)))
        }
    }
}

/// What a verified token says, as `custody verify --json` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stamp {
    /// The TSTInfo's genTime, RFC 3339 UTC.
    pub gen_time: String,
    /// The TSTInfo's serial number, lowercase hex of its two's-complement bytes.
    pub serial: String,
    /// The TSA policy the token names (dotted OID).
    pub policy: String,
    /// The subject of the certificate the signature verified under (RFC 4514).
    pub tsa: String,
}

fn attribute(attrs: &SetOfVec<x509_cert::attr::Attribute>, oid: ObjectIdentifier) -> Result<&Any, TimestampError> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    match (found.next(), found.next()) {
        (Some(a), None) if a.values.len() == 1 => a.values.iter().next().ok_or_else(|| token("empty attribute")),
        (None, _) => Err(token(format!("no signed attribute {oid}"))),
        _ => Err(token(format!("signed attribute {oid} is not exactly one value"))),
    }
}

/// The court's check of a token (docs/AUDIT_FORMATS.md, "Checking a token"):
/// a SignedData with one SignerInfo naming `cert`, signed attributes binding
/// the TSTInfo by content type and SHA-256 digest, a signature over them that
/// verifies under `cert`'s key, and a TSTInfo for exactly `imprint`.
pub fn check_token(token_der: &[u8], cert: &TsaCertificate, imprint: &Digest) -> Result<Stamp, TimestampError> {
    if token_der.len() > MAX_TOKEN_BYTES {
        return Err(TimestampError::TooLarge);
    }
    cert.for_time_stamping()?;
    let ci = ContentInfo::from_der(token_der).map_err(der)?;
    let (sd, tst) = open(&ci)?;
    let mut signers = sd.signer_infos.0.iter();
    let si = match (signers.next(), signers.next()) {
        (Some(si), None) => si,
        _ => return Err(token(format!("{} SignerInfos (exactly one expected)", sd.signer_infos.0.len()))),
    };
    if !cert.names(&si.sid) {
        return Err(token("the SignerInfo names another certificate than the TSA certificate given"));
    }
    if si.digest_alg.oid != ID_SHA_256 {
        return Err(token(format!("digest algorithm {} (SHA-256 expected)", si.digest_alg.oid)));
    }
    let attrs = si.signed_attrs.as_ref().ok_or_else(|| token("no signed attributes"))?;
    let ct: ObjectIdentifier = attribute(attrs, ID_CONTENT_TYPE)?.decode_as().map_err(der)?;
    if ct != ID_CT_TST_INFO {
        return Err(token(format!("signed content-type {ct} is not id-ct-TSTInfo")));
    }
    let md: OctetString = attribute(attrs, ID_MESSAGE_DIGEST)?.decode_as().map_err(der)?;
    let econtent: OctetString = sd.encap_content_info.econtent.as_ref().ok_or_else(|| token("no eContent"))?.decode_as().map_err(der)?;
    if md.as_bytes() != crypto::sha256(econtent.as_bytes()) {
        return Err(token("the signed message-digest is not the SHA-256 of the TSTInfo"));
    }
    // RFC 5652 §5.4: the signature is over the DER of the attributes as a SET OF.
    let signed = attrs.to_der().map_err(der)?;
    if !cert.verifies(si, &signed)? {
        return Err(TimestampError::BadSignature);
    }
    if !same_imprint(&tst.message_imprint, imprint) {
        return Err(TimestampError::WrongImprint);
    }
    let secs = tst.gen_time.to_unix_duration().as_secs();
    Ok(Stamp {
        gen_time: crate::trail::rfc3339_ms(secs.saturating_mul(1000)).ok_or_else(|| token("genTime past the year 9999"))?,
        serial: hex::encode(tst.serial_number.as_bytes()),
        policy: tst.policy.to_string(),
        tsa: cert.subject(),
    })
}

/// SHA-256 imprints compare equal whether the parameters are absent or NULL
/// (RFC 3161 leaves it to the requester; a TSA echoes what it was sent).
fn same_imprint(m: &MessageImprint, imprint: &Digest) -> bool {
    m.hash_algorithm.oid == ID_SHA_256
        && m.hash_algorithm.parameters.as_ref().is_none_or(|p| *p == Any::null())
        && m.hashed_message.as_bytes() == imprint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_the_der_rfc_3161_names() {
        let d = crypto::sha256(b"abc");
        let req = request(&d, 0x0123_4567_89ab_cdef).unwrap();
        let back = TimeStampReq::from_der(&req).unwrap();
        assert_eq!(back.version, TspVersion::V1);
        assert!(back.cert_req);
        assert_eq!(back.message_imprint.hashed_message.as_bytes(), d);
        // The nonce is positive and minimal whatever the random bits.
        for n in [0u64, u64::MAX, 1 << 63, 0x00ff] {
            let i = nonce_int(n).unwrap();
            assert_eq!(i.as_bytes().len(), 8);
            assert!((0x01..=0x7f).contains(&i.as_bytes()[0]));
        }
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        let d = crypto::sha256(b"abc");
        assert!(accept_reply(b"", &d, 1).is_err());
        assert!(accept_reply(&[0x30, 0x03, 0x02, 0x01, 0x00], &d, 1).is_err());
        assert!(TsaCertificate::parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
        assert!(check_token(b"\x30\x00", &cert("ec.crt"), &d).is_err());
    }

    // Vectors made with OpenSSL 3.0 (`openssl ts -reply`, tests/vectors/tsa/README.md):
    // request.tsq was written by hand from RFC 3161 and read back by `openssl ts -query -text`.
    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/vectors/tsa/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }
    fn cert(name: &str) -> TsaCertificate {
        TsaCertificate::parse(&vector(name)).unwrap()
    }
    const NONCE: u64 = 0x0123_4567_89ab_cdef;
    fn checkpoint_imprint() -> Digest {
        imprint(std::str::from_utf8(&vector("checkpoint.txt")).unwrap())
    }

    #[test]
    fn our_request_is_byte_for_byte_the_hand_written_der() {
        assert_eq!(request(&checkpoint_imprint(), NONCE).unwrap(), vector("request.tsq"));
    }

    #[test]
    fn openssl_tokens_check_under_their_certificates_ec_and_rsa() {
        for (reply, certs) in [("ec-reply.tsr", ["ec.crt", "ec.der"]), ("rsa-reply.tsr", ["rsa.crt", "rsa.crt"])] {
            let token = accept_reply(&vector(reply), &checkpoint_imprint(), NONCE).unwrap();
            for c in certs {
                let stamp = check_token(&token, &cert(c), &checkpoint_imprint()).unwrap_or_else(|e| panic!("{reply} under {c}: {e}"));
                assert_eq!(stamp.gen_time, "2026-12-05T04:50:44Z");
                assert_eq!(stamp.policy, "1.3.6.1.4.1.99999.1");
                assert!(stamp.tsa.contains("custody test vector TSA"), "{}", stamp.tsa);
            }
        }
    }

    #[test]
    fn the_leader_refuses_a_reply_for_another_nonce_or_imprint() {
        let r = vector("ec-reply.tsr");
        assert_eq!(accept_reply(&r, &checkpoint_imprint(), NONCE + 1), Err(TimestampError::WrongNonce));
        assert_eq!(accept_reply(&r, &crypto::sha256(b"another checkpoint"), NONCE), Err(TimestampError::WrongImprint));
    }

    #[test]
    fn a_court_refuses_another_checkpoint_another_tsa_or_altered_bytes() {
        let token = accept_reply(&vector("ec-reply.tsr"), &checkpoint_imprint(), NONCE).unwrap();
        let ec = cert("ec.crt");
        assert_eq!(check_token(&token, &ec, &crypto::sha256(b"another checkpoint")), Err(TimestampError::WrongImprint));
        // Another TSA's certificate: not the one the SignerInfo names.
        assert!(matches!(check_token(&token, &cert("rsa.crt"), &checkpoint_imprint()), Err(TimestampError::Token(_))));
        // A certificate that is not for time-stamping (a CA's, say) is refused whatever it signed.
        assert!(
            matches!(check_token(&token, &cert("ca.crt"), &checkpoint_imprint()), Err(TimestampError::Certificate(e)) if e.contains("extendedKeyUsage"))
        );
        // The TSTInfo's genTime moved by a second: the signed digest no longer matches.
        let at = token.windows(15).position(|w| w == b"20261205045044Z").unwrap();
        let mut later = token.clone();
        later[at + 13] = b'5';
        assert!(matches!(check_token(&later, &ec, &checkpoint_imprint()), Err(TimestampError::Token(e)) if e.contains("message-digest")));
        // A signature byte changed (the token ends with the signature's last INTEGER).
        let mut forged = token.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(check_token(&forged, &ec, &checkpoint_imprint()), Err(TimestampError::BadSignature));
    }
}
