//! mailtap's own certificate authority: created on first run (ECDSA P-256), stored under
//! `[paths].data/ca/` with the private key readable by the owner only, reloaded on later runs,
//! and used to sign short-lived per-host leaf certificates.
//!
//! Owns the CA files, their fingerprints and leaf minting. It does not cache leaves (`leaf`),
//! decide which hosts are decrypted (`policy`) or speak TLS.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SecureRandom as _;

/// File name of the CA certificate (PEM) inside the CA directory.
pub const CA_CERT_FILE: &str = "mailtap-ca.pem";
/// File name of the CA private key (PKCS#8 PEM, mode 0600) inside the CA directory.
pub const CA_KEY_FILE: &str = "mailtap-ca.key.pem";

/// How long the CA itself is valid.
const CA_VALIDITY_DAYS: i64 = 3650;
/// How far a certificate's notBefore is set back, so clients with a clock slightly behind
/// accept it.
const BACKDATE_DAYS: i64 = 1;

/// Why the CA could not be loaded, created, or used.
#[derive(Debug)]
pub enum CaError {
    /// A file or directory could not be read or written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stored file does not hold what it should (bad PEM, key not matching, not a CA…).
    Invalid { path: PathBuf, reason: String },
    /// The certificate file exists but the key file does not: refusing to replace a CA that
    /// browsers may already trust.
    KeyMissing { cert: PathBuf, key: PathBuf },
    /// Generating or signing a certificate failed.
    Sign {
        subject: String,
        source: rcgen::Error,
    },
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CaError::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
            CaError::KeyMissing { cert, key } => write!(
                f,
                "{} exists but its key {} does not; move the certificate away to create a new CA",
                cert.display(),
                key.display()
            ),
            CaError::Sign { subject, source } => {
                write!(f, "cannot sign a certificate for {subject}: {source}")
            }
        }
    }
}

impl std::error::Error for CaError {}

/// A minted leaf certificate: PEM chain (leaf first, then the CA) and its PKCS#8 key.
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf").finish_non_exhaustive()
    }
}

/// The loaded CA.
pub struct CertAuthority {
    cert_path: PathBuf,
    cert_pem: String,
    cert_der: Vec<u8>,
    spki_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Loads the CA stored in `dir`, or creates one there when `dir` holds none. The key file
    /// is written with mode 0600 and the directory with 0700. A certificate without its key is
    /// an error (never silently replaced); a key without its certificate is a creation that was
    /// interrupted, and is replaced.
    pub fn load_or_create(dir: &Path) -> Result<CertAuthority, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => CertAuthority::load(&cert_path, &key_path),
            (true, false) => Err(CaError::KeyMissing {
                cert: cert_path,
                key: key_path,
            }),
            _ => CertAuthority::create(dir, &cert_path, &key_path),
        }
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<CertAuthority, CaError> {
        let read = |p: &Path| {
            fs::read_to_string(p).map_err(|source| CaError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        warn_if_readable_by_others(key_path);
        let invalid = |p: &Path, reason: String| CaError::Invalid {
            path: p.to_path_buf(),
            reason,
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(key_path, format!("not a usable private key: {e}")))?;
        let spki_der = key.subject_public_key_info();
        let cert_der = pem_body(&cert_pem, "CERTIFICATE")
            .ok_or_else(|| invalid(cert_path, "no PEM CERTIFICATE block".into()))?;
        if !contains(&cert_der, &spki_der) {
            return Err(invalid(
                cert_path,
                format!(
                    "the certificate does not match the key {}",
                    key_path.display()
                ),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| invalid(cert_path, format!("not a usable CA certificate: {e}")))?;
        tracing::debug!(path = %cert_path.display(), "CA loaded");
        Ok(CertAuthority {
            cert_path: cert_path.to_path_buf(),
            cert_pem,
            cert_der,
            spki_der,
            issuer,
        })
    }

    fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<CertAuthority, CaError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        crate::private_fs::create_dir_all(dir).map_err(io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        }
        let sign_err = |source| CaError::Sign {
            subject: "the mailtap CA".into(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "mailtap CA");
        dn.push(DnType::OrganizationName, "mailtap (local interception CA)");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        set_validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key).map_err(sign_err)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        // Key first, then certificate: a certificate on disk always has its key beside it.
        write_private(key_path, key_pem.as_bytes())?;
        write_atomic(cert_path, cert_pem.as_bytes(), 0o644)?;
        tracing::info!(path = %cert_path.display(), "created a new mailtap CA");
        CertAuthority::load(cert_path, key_path)
    }

    /// Path of the CA certificate (PEM).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the certificate DER as colon-separated upper-case hex (what browsers show).
    pub fn fingerprint_sha256(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }

    /// Base64 SHA-256 of the SubjectPublicKeyInfo: the value Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub fn spki_sha256_base64(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.spki_der);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }

    /// Mints a leaf for `host` (a DNS name, or an IP literal → IP SAN): serverAuth only, valid
    /// from a day ago for `validity_days`, signed by this CA, with a fresh P-256 key.
    pub fn mint(&self, host: &str, validity_days: u32) -> Result<Leaf, CaError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let sign_err = |source| CaError::Sign {
            subject: bare.to_string(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
        let mut params = CertificateParams::new(vec![bare.to_string()]).map_err(sign_err)?;
        let mut dn = DistinguishedName::new();
        // X.520 limits commonName to 64 characters; the SAN is what clients check anyway.
        if bare.len() <= 64 {
            dn.push(DnType::CommonName, bare);
        }
        dn.push(DnType::OrganizationName, "mailtap");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(&mut params, i64::from(validity_days));
        let cert = params.signed_by(&key, &self.issuer).map_err(sign_err)?;
        Ok(Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Sets notBefore to the start of the UTC day a day back and notAfter `days` days from now
/// (whole UTC days).
fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = Utc::now();
    let day = |t: chrono::DateTime<Utc>| {
        // Month and day always fit in u8.
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    params.not_before = day(now - chrono::Duration::days(BACKDATE_DAYS));
    params.not_after = day(now + chrono::Duration::days(days));
}

/// 16 random bytes with the top bit clear (a positive INTEGER, RFC 5280 §4.1.2.2).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // The system RNG failing is not recoverable in any useful way; a time-based serial is
    // still unique enough for leaves that live a week.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// The DER inside the first PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Writes the key through a temporary file created with mode 0600, then renames it in place.
fn write_private(path: &Path, data: &[u8]) -> Result<(), CaError> {
    write_atomic(path, data, 0o600)
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CaError::Io { path: p, source }
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(data).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))
}

fn warn_if_readable_by_others(key_path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(key_path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %key_path.display(), "the CA key is readable by other users; chmod 600 it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bodies_are_found_or_refused() {
        // Guards PEM parsing of the stored certificate, hostile inputs included.
        let good = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_body(good, "CERTIFICATE"), Some(vec![0, 1, 2, 3]));
        for bad in [
            "",
            "-----BEGIN CERTIFICATE-----\nAAEC",
            "-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
            "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----",
        ] {
            assert_eq!(pem_body(bad, "CERTIFICATE"), None, "{bad:?}");
        }
    }

    #[test]
    fn serials_are_positive_and_distinct() {
        // Guards RFC 5280 §4.1.2.2: positive serials, unique per certificate.
        let a = random_serial().to_bytes();
        let b = random_serial().to_bytes();
        assert_ne!(a, b);
        assert!(a[0] & 0x80 == 0 && a[0] != 0 && a.len() == 16);
    }

    #[test]
    fn validity_is_backdated_and_bounded() {
        // Guards the leaf window: starts before now, ends `days` ahead.
        let mut p = CertificateParams::default();
        set_validity(&mut p, 7);
        let today = Utc::now();
        let today = rcgen::date_time_ymd(today.year(), today.month() as u8, today.day() as u8);
        assert_eq!((today - p.not_before).whole_days(), 1);
        assert_eq!((p.not_after - today).whole_days(), 7);
    }
}
