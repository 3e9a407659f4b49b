//! The blind CONNECT tunnel: bytes copied both ways between two TCP sockets, untouched.
//!
//! Owns the copy loop's memory policy and the tunnel idle timeout. A tunnel allocates no buffer
//! until its first byte arrives (so thousands of idle tunnels cost only their sockets and a small
//! task), starts with a small buffer and grows it while reads keep filling it (bulk transfers
//! reach 256 KiB reads, which decide loopback throughput). It knows nothing about HTTP or TLS.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

const FIRST_BUF: usize = 16 * 1024;
const MAX_BUF: usize = 256 * 1024;

/// Bytes moved by a finished tunnel, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    pub client_to_server: u64,
    pub server_to_client: u64,
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides closed their sending direction.
    Closed(TunnelStats),
    /// No byte moved in either direction for the idle timeout.
    Idle,
    /// A socket error (reset, broken pipe…).
    Error(io::Error),
}

/// Last-activity clock shared by the two directions: milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Copies `client` ↔ `server` until both directions reach end of stream, an error occurs, or the
/// tunnel is idle for `idle`. Half-closes are passed on: when one side stops sending, the other
/// side's write half is shut down and the reverse direction keeps flowing.
pub async fn run(client: TcpStream, server: TcpStream, idle: Duration) -> TunnelEnd {
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let copy = async {
        tokio::try_join!(
            pump(client_read, server_write, &activity),
            pump(server_read, client_write, &activity)
        )
    };
    let watchdog = async {
        loop {
            let deadline = activity.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        result = copy => match result {
            Ok((up, down)) => TunnelEnd::Closed(TunnelStats { client_to_server: up, server_to_client: down }),
            Err(e) => TunnelEnd::Error(e),
        },
        () = watchdog => TunnelEnd::Idle,
    }
}

/// One direction. Waits for readability before owning any buffer.
async fn pump(from: OwnedReadHalf, mut to: OwnedWriteHalf, activity: &Activity) -> io::Result<u64> {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        from.readable().await?;
        if buf.is_empty() {
            buf = vec![0; FIRST_BUF];
        }
        let n = match from.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // Peer finished sending: pass the half-close on (RFC 9112 §9.6 style orderly close).
            let _ = to.shutdown().await;
            return Ok(total);
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
        activity.touch();
        if n == buf.len() && buf.len() < MAX_BUF {
            buf = vec![0; (buf.len() * 4).min(MAX_BUF)];
        }
    }
}
