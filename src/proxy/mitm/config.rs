//! The `[mitm]` configuration section: which CONNECT hosts are decrypted, how upstream
//! certificates are verified, and the leaf-certificate cache bounds.
//!
//! Owns the section's keys, defaults and validation. It reads no files (extra roots are read
//! when the proxy starts) and makes no decisions about connections.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::hostpat::HostPattern;

/// `[mitm]`: TLS interception of webmail hosts with mailtap's own CA.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MitmConfig {
    /// Master switch. Off: every CONNECT is a blind tunnel and no CA is created.
    pub enabled: bool,
    /// Hosts decrypted besides those of the interception rules (`host` or `*.domain`, which
    /// also matches the bare domain).
    pub decrypt_hosts: Vec<HostPattern>,
    /// Hosts never decrypted, even when a rule or `decrypt_hosts` names them (this list wins).
    pub never_decrypt: Vec<HostPattern>,
    /// PEM files of extra CAs trusted for upstream origins, on top of the system roots.
    pub extra_roots: Vec<PathBuf>,
    /// Most per-host leaf certificates kept in memory; the least recently used goes first.
    pub leaf_cache_size: usize,
    /// Validity of a minted leaf certificate, in days (it is also backdated by one day).
    pub leaf_validity_days: u32,
    /// Time allowed for the browser's TLS handshake inside a decrypted tunnel.
    pub handshake_timeout_secs: u64,
}

impl Default for MitmConfig {
    fn default() -> Self {
        MitmConfig {
            enabled: true,
            decrypt_hosts: Vec::new(),
            never_decrypt: Vec::new(),
            extra_roots: Vec::new(),
            leaf_cache_size: 1000,
            leaf_validity_days: 7,
            handshake_timeout_secs: 10,
        }
    }
}

impl MitmConfig {
    /// The browser handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// Checks the values serde cannot. The error names the key and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.leaf_cache_size == 0 {
            return Err(("mitm.leaf_cache_size", "must be greater than 0".into()));
        }
        if !(1..=397).contains(&self.leaf_validity_days) {
            return Err((
                "mitm.leaf_validity_days",
                format!("{} is not between 1 and 397", self.leaf_validity_days),
            ));
        }
        if self.handshake_timeout_secs == 0 {
            return Err((
                "mitm.handshake_timeout_secs",
                "must be greater than 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_are_host_patterns() {
        // Guards validation of [mitm] host lists at deserialisation: the key and value named.
        let c: MitmConfig =
            toml::from_str("decrypt_hosts = [\"Mail.Example.test\", \"*.x.test\", \"::1\"]")
                .unwrap();
        let shown: Vec<String> = c.decrypt_hosts.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["mail.example.test", "*.x.test", "::1"]);
        let e = toml::from_str::<MitmConfig>("never_decrypt = [\"a/b\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("never_decrypt") && e.contains("\"a/b\""), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        // Guards that each invalid value is reported with its key.
        type Change = fn(&mut MitmConfig);
        let cases: [(Change, &str); 3] = [
            (|c| c.leaf_cache_size = 0, "mitm.leaf_cache_size"),
            (|c| c.leaf_validity_days = 0, "mitm.leaf_validity_days"),
            (
                |c| c.handshake_timeout_secs = 0,
                "mitm.handshake_timeout_secs",
            ),
        ];
        for (change, key) in cases {
            let mut c = MitmConfig::default();
            change(&mut c);
            assert_eq!(c.validate().unwrap_err().0, key);
        }
        assert!(MitmConfig::default().validate().is_ok());
    }
}
