//! TLS interception of listed hosts with mailtap's own CA (the way mitmproxy does it).
//!
//! A CONNECT whose host the [`DecryptPolicy`] lists is answered 200 as usual, then mailtap
//! accepts TLS on the tunnel with a per-host leaf signed by its CA and serves HTTP/1.1 inside it
//! with the same request handling as plain proxy requests (origin-form targets become
//! `https://<connect-authority><path>`). Requests that are not intercepted go on to the real
//! origin over verified TLS. Every other CONNECT stays a blind tunnel.
//!
//! Owns the CA (`ca`), leaf minting and its bounded cache (`leaf`), the decrypt decision
//! (`policy`), the upstream TLS connector (`upstream`) and serving a decrypted tunnel (`serve`).
//! It does not decide what is intercepted inside the tunnel: that is the interceptor's job, as
//! for plain HTTP.

mod ca;
mod config;
mod leaf;
mod policy;
pub(super) mod serve;
mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use ca::{CaError, CertAuthority, Leaf, CA_CERT_FILE, CA_KEY_FILE};
pub use config::MitmConfig;
pub use leaf::{CacheStats, LeafCache, LeafError};
pub use policy::DecryptPolicy;
pub use upstream::{TlsConn, TlsDialer, UpstreamError, UpstreamTls};

/// Why interception could not be set up.
#[derive(Debug)]
pub enum MitmError {
    Ca(CaError),
    Upstream(UpstreamError),
}

impl std::fmt::Display for MitmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MitmError::Ca(e) => write!(f, "mailtap CA: {e}"),
            MitmError::Upstream(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MitmError {}

/// The CA directory under a data directory: `<data>/ca`.
pub fn ca_dir(data: &Path) -> PathBuf {
    data.join("ca")
}

/// Everything a decrypted tunnel needs. Shared by all connections.
pub struct Mitm {
    ca: CertAuthority,
    leaves: LeafCache,
    policy: DecryptPolicy,
    upstream: Arc<UpstreamTls>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Mitm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mitm")
            .field("ca", &self.ca)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Mitm {
    /// Loads (or creates) the CA under `<data>/ca`, reads the extra roots and sets the policy:
    /// `rule_hosts` (the interceptor's HTTPS hosts) plus `decrypt_hosts`, minus `never_decrypt`.
    pub fn open(
        config: &MitmConfig,
        data: &Path,
        rule_hosts: Vec<crate::hostpat::HostPattern>,
    ) -> Result<Mitm, MitmError> {
        let ca = CertAuthority::load_or_create(&ca_dir(data)).map_err(MitmError::Ca)?;
        let upstream =
            Arc::new(UpstreamTls::new(&config.extra_roots).map_err(MitmError::Upstream)?);
        let mut hosts = rule_hosts;
        hosts.extend(config.decrypt_hosts.iter().cloned());
        Ok(Mitm {
            ca,
            leaves: LeafCache::new(config.leaf_cache_size, config.leaf_validity_days),
            policy: DecryptPolicy::new(hosts, config.never_decrypt.clone()),
            upstream,
            handshake_timeout: config.handshake_timeout(),
        })
    }

    /// True when a CONNECT to `host` is decrypted.
    pub fn should_decrypt(&self, host: &str) -> bool {
        self.policy.should_decrypt(host)
    }

    /// The decrypt policy.
    pub fn policy(&self) -> &DecryptPolicy {
        &self.policy
    }

    /// The CA.
    pub fn ca(&self) -> &CertAuthority {
        &self.ca
    }

    /// The acceptor for `host` (cached or freshly minted).
    pub fn acceptor(&self, host: &str) -> Result<tokio_native_tls::TlsAcceptor, LeafError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.leaves.acceptor(&self.ca, bare)
    }

    /// Leaf cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.leaves.stats()
    }

    /// The verified TLS client for origins.
    pub fn upstream(&self) -> Arc<UpstreamTls> {
        self.upstream.clone()
    }

    /// Deadline for the browser's handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
}
