//! The bounded per-host cache of TLS acceptors built from minted leaf certificates.
//!
//! Owns the cache's bound (least recently used entry evicted first), entry refresh (a leaf is
//! re-minted once half its validity has passed) and counters of hits and mints. Minting runs
//! outside the lock, so a slow mint never blocks lookups of other hosts; two concurrent misses
//! for one host may both mint, and the second result wins (harmless). It does not decide which
//! hosts are decrypted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_native_tls::TlsAcceptor;

use super::ca::{CaError, CertAuthority};

/// Why no acceptor could be had for a host.
#[derive(Debug)]
pub enum LeafError {
    /// The CA could not sign a leaf for this host.
    Mint(CaError),
    /// OpenSSL refused the minted certificate or key.
    Tls {
        host: String,
        source: native_tls::Error,
    },
}

impl std::fmt::Display for LeafError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeafError::Mint(e) => write!(f, "{e}"),
            LeafError::Tls { host, source } => {
                write!(f, "cannot build a TLS acceptor for {host}: {source}")
            }
        }
    }
}

impl std::error::Error for LeafError {}

struct Entry {
    acceptor: TlsAcceptor,
    minted: Instant,
    last_used: u64,
}

struct Inner {
    map: HashMap<String, Entry>,
    clock: u64,
    hits: u64,
    mints: u64,
}

/// Counters, for tests and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub mints: u64,
}

/// Host → acceptor, at most `capacity` entries.
pub struct LeafCache {
    inner: Mutex<Inner>,
    capacity: usize,
    validity_days: u32,
    refresh_after: Duration,
}

impl LeafCache {
    /// A cache of at most `capacity` (≥ 1) hosts whose leaves are valid for `validity_days`.
    pub fn new(capacity: usize, validity_days: u32) -> LeafCache {
        LeafCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                clock: 0,
                hits: 0,
                mints: 0,
            }),
            capacity: capacity.max(1),
            validity_days,
            refresh_after: Duration::from_secs(u64::from(validity_days) * 86_400 / 2),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the map consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The acceptor for `host` (lower-cased): the cached one when it is fresh, else a newly
    /// minted one, which is cached (evicting the least recently used host when full).
    pub fn acceptor(&self, ca: &CertAuthority, host: &str) -> Result<TlsAcceptor, LeafError> {
        let key = host.to_ascii_lowercase();
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            let fresh = inner
                .map
                .get_mut(&key)
                .filter(|e| e.minted.elapsed() < self.refresh_after)
                .map(|e| {
                    e.last_used = now;
                    e.acceptor.clone()
                });
            if let Some(acceptor) = fresh {
                inner.hits += 1;
                return Ok(acceptor);
            }
        }
        let started = Instant::now();
        let leaf = ca.mint(&key, self.validity_days).map_err(LeafError::Mint)?;
        let tls_err = |source| LeafError::Tls {
            host: key.clone(),
            source,
        };
        let identity =
            native_tls::Identity::from_pkcs8(leaf.chain_pem.as_bytes(), leaf.key_pem.as_bytes())
                .map_err(tls_err)?;
        let acceptor = TlsAcceptor::from(native_tls::TlsAcceptor::new(identity).map_err(tls_err)?);
        tracing::debug!(host = %key, micros = started.elapsed().as_micros() as u64, "leaf certificate minted");
        let mut inner = self.lock();
        inner.mints += 1;
        inner.clock += 1;
        let now = inner.clock;
        if !inner.map.contains_key(&key) && inner.map.len() >= self.capacity {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.map.remove(&oldest);
            }
        }
        inner.map.insert(
            key,
            Entry {
                acceptor: acceptor.clone(),
                minted: Instant::now(),
                last_used: now,
            },
        );
        Ok(acceptor)
    }

    /// Current size and counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.map.len(),
            hits: inner.hits,
            mints: inner.mints,
        }
    }

    /// True when `host` has a cached entry.
    pub fn contains(&self, host: &str) -> bool {
        self.lock().map.contains_key(&host.to_ascii_lowercase())
    }
}
