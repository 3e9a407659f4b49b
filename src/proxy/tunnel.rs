//! The blind CONNECT tunnel: bytes copied both ways between two TCP sockets, untouched.
//!
//! Owns the copy loop's memory policy, the tunnel idle timeout and when a tunnel counts as idle
//! at shutdown. A tunnel allocates no buffer
//! and no descriptor until its first byte arrives (so thousands of idle tunnels cost only their
//! two sockets and a small task), starts with a small buffer and grows it while reads keep
//! filling it. On Linux a direction whose reads fill the largest buffer is bulk: it switches to
//! zero-copy `splice(2)` through a per-direction pipe (created then, never before), falling back
//! to the buffer when no pipe can be had; elsewhere the buffer does all the copying. It knows
//! nothing about HTTP or TLS.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

const FIRST_BUF: usize = 16 * 1024;
const MAX_BUF: usize = 256 * 1024;
/// At shutdown a tunnel is closed once it is idle: nothing moved yet, or the last bytes went to
/// the client (an answer delivered) and nothing has moved for this long. A tunnel whose last
/// bytes went to the server (a request the origin is still working on) keeps the shutdown grace
/// period, as do transfers that keep moving.
const SHUTDOWN_QUIET: Duration = Duration::from_secs(1);
/// How often a tunnel waiting for its origin's answer rechecks at shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Bytes moved by a finished tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    pub client_to_server: u64,
    pub server_to_client: u64,
    /// How many of `client_to_server` went through `splice(2)` rather than a buffer.
    pub client_to_server_spliced: u64,
    /// How many of `server_to_client` went through `splice(2)` rather than a buffer.
    pub server_to_client_spliced: u64,
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides closed their sending direction.
    Closed(TunnelStats),
    /// No byte moved in either direction for the idle timeout.
    Idle,
    /// The proxy shut down while the tunnel was idle (see [`run`]).
    Shutdown,
    /// A socket error (reset, broken pipe…).
    Error(io::Error),
}

/// Which way the last bytes of a tunnel went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Browser → origin (a request, or part of one).
    ToServer = 1,
    /// Origin → browser (an answer).
    ToClient = 2,
}

/// Last-activity clock shared by the two directions: milliseconds since `start`, and which way
/// the last bytes went (0 while none moved).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    last_direction: AtomicU8,
}

impl Activity {
    fn touch(&self, direction: Direction) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
        self.last_direction
            .store(direction as u8, Ordering::Relaxed);
    }
    /// True when closing now would cut nothing in progress: no byte moved yet, or the last
    /// bytes were an answer to the client and the tunnel has been quiet for `quiet`.
    fn idle_for_shutdown(&self, quiet: Duration) -> bool {
        match self.last_direction.load(Ordering::Relaxed) {
            0 => true,
            d if d == Direction::ToClient as u8 => Instant::now() >= self.last() + quiet,
            _ => false,
        }
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Bytes one direction moved: in total, and of those through `splice(2)`.
#[derive(Debug, Default, Clone, Copy)]
struct Moved {
    total: u64,
    spliced: u64,
}

/// Copies `client` ↔ `server` until both directions reach end of stream, an error occurs, or the
/// tunnel is idle for `idle`. Half-closes are passed on: when one side stops sending, the other
/// side's write half is shut down and the reverse direction keeps flowing.
///
/// Once `stop` turns true (or its sender is gone) the tunnel ends as soon as it is idle for
/// shutdown: at once when no byte moved or the last bytes were an answer delivered more than
/// [`SHUTDOWN_QUIET`] ago; a tunnel whose origin still owes an answer, or whose transfer keeps
/// moving, runs on (the accept loop's grace period bounds it).
pub async fn run(
    client: TcpStream,
    server: TcpStream,
    idle: Duration,
    stop: watch::Receiver<bool>,
) -> TunnelEnd {
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        last_direction: AtomicU8::new(0),
    };
    let copy = async {
        tokio::try_join!(
            pump(&client, &server, &activity, Direction::ToServer),
            pump(&server, &client, &activity, Direction::ToClient)
        )
    };
    let stopping = async {
        let mut stop = stop;
        // An error means the accept loop is gone: that is a shutdown too.
        let _ = stop.wait_for(|stopping| *stopping).await;
        loop {
            if activity.idle_for_shutdown(SHUTDOWN_QUIET) {
                return;
            }
            let quiet_from = activity.last() + SHUTDOWN_QUIET;
            let now = Instant::now();
            let wait = if quiet_from > now {
                (quiet_from - now).min(SHUTDOWN_QUIET)
            } else {
                SHUTDOWN_POLL
            };
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
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
            Ok((up, down)) => TunnelEnd::Closed(TunnelStats {
                client_to_server: up.total,
                server_to_client: down.total,
                client_to_server_spliced: up.spliced,
                server_to_client_spliced: down.spliced,
            }),
            Err(e) => TunnelEnd::Error(e),
        },
        () = watchdog => TunnelEnd::Idle,
        () = stopping => TunnelEnd::Shutdown,
    }
}

/// One direction. Waits for readability before owning any buffer; on Linux hands over to
/// `splice_pump` once a read fills the largest buffer.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    activity: &Activity,
    direction: Direction,
) -> io::Result<Moved> {
    let mut buf: Vec<u8> = Vec::new();
    let mut moved = Moved::default();
    // Set when a read filled the largest buffer. On Linux that asks for a pipe to splice
    // through; without one (or off Linux) the buffer keeps copying, and the next full read asks
    // again (descriptors may have been freed by then).
    let mut bulk = false;
    loop {
        if bulk {
            bulk = false;
            #[cfg(target_os = "linux")]
            match crate::sys::Pipe::new() {
                Ok(pipe) => {
                    drop(buf);
                    return splice_pump(from, to, pipe, activity, direction, moved).await;
                }
                // Out of descriptors or pipe quota (EMFILE near the fd limit): the buffer
                // keeps working.
                Err(e) => {
                    tracing::debug!(error = %e, "no pipe for splice; copying through a buffer")
                }
            }
        }
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
            shutdown_write(to);
            return Ok(moved);
        }
        write_all(to, &buf[..n]).await?;
        moved.total += n as u64;
        activity.touch(direction);
        if n == buf.len() {
            if buf.len() < MAX_BUF {
                buf = vec![0; (buf.len() * 4).min(MAX_BUF)];
            } else {
                bulk = true;
            }
        }
    }
}

/// Writes all of `data` to a socket shared with the reverse direction's reader.
async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Shuts down the sending half of `to`; errors (already closed, reset) are of no consequence
/// because the reverse direction reports its own.
fn shutdown_write(to: &TcpStream) {
    if let Err(e) = crate::sys::shutdown_write(to) {
        tracing::debug!(error = %e, "shutdown(SHUT_WR) failed");
    }
}

/// The bulk path of one direction: socket → pipe → socket without copying to user space.
/// The pipe is filled only when empty, so `EAGAIN` on the way in always means the socket has
/// nothing to read, and on the way out that the destination socket is full.
#[cfg(target_os = "linux")]
async fn splice_pump(
    from: &TcpStream,
    to: &TcpStream,
    pipe: crate::sys::Pipe,
    activity: &Activity,
    direction: Direction,
    mut moved: Moved,
) -> io::Result<Moved> {
    use crate::sys::splice;
    use tokio::io::Interest;
    loop {
        from.readable().await?;
        let n = match from.try_io(Interest::READABLE, || splice(from, &pipe.write, pipe.size)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            shutdown_write(to);
            return Ok(moved);
        }
        let mut pending = n;
        while pending > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(&pipe.read, to, pending)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => {
                    pending -= sent.min(pending);
                    activity.touch(direction);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        moved.total += n as u64;
        moved.spliced += n as u64;
    }
}

#[cfg(test)]
mod tests {
    //! The tunnel's stats are not visible through the proxy, so the splice decision is checked
    //! here on loopback socket pairs (everything on 127.0.0.1:0, every wait bounded).
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(20);

    /// Two connected loopback sockets.
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Sends `up` from the browser side (then half-closes), reads it all at the origin side,
    /// then sends `down` back (then closes); returns what each end received and the tunnel end.
    async fn exchange(up: Vec<u8>, down: Vec<u8>) -> (Vec<u8>, Vec<u8>, TunnelEnd) {
        let (mut browser, client) = socket_pair().await;
        let (server, mut origin) = socket_pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let tunnel =
            tokio::spawn(async move { run(client, server, Duration::from_secs(30), stop).await });
        let origin_side = tokio::spawn(async move {
            let mut got = Vec::new();
            origin.read_to_end(&mut got).await.unwrap();
            origin.write_all(&down).await.unwrap();
            origin.shutdown().await.unwrap();
            got
        });
        let (mut r, mut w) = browser.split();
        let send = async {
            w.write_all(&up).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = r.read_to_end(&mut back);
        let ((), read) = tokio::time::timeout(WAIT, async { tokio::join!(send, recv) })
            .await
            .expect("exchange did not finish");
        read.unwrap();
        let got = tokio::time::timeout(WAIT, origin_side)
            .await
            .unwrap()
            .unwrap();
        let end = tokio::time::timeout(WAIT, tunnel).await.unwrap().unwrap();
        (got, back, end)
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8 ^ seed).collect()
    }

    #[tokio::test]
    async fn splice_engages_only_for_bulk_and_keeps_bytes_and_half_close() {
        // Guards the lazy splice switch: small transfers stay on the buffer (no pipe), bulk ones
        // splice, and in every case bytes, counts and the half-close in the middle are exact.
        for (up_len, down_len, expect_up_spliced, expect_down_spliced) in [
            (0usize, 0usize, false, false),
            (1, 0, false, false),
            (100, 5_000, false, false),
            (FIRST_BUF * 3, 10, false, false),
            (16 << 20, 0, true, false),
            (7, 16 << 20, false, true),
            (16 << 20, (16 << 20) + 1, true, true),
        ] {
            let (up, down) = (bytes(up_len, 0x5a), bytes(down_len, 0xa5));
            let (got, back, end) = exchange(up.clone(), down.clone()).await;
            assert!(
                got == up,
                "upload changed ({up_len} sent, {} got)",
                got.len()
            );
            assert!(
                back == down,
                "download changed ({down_len}, {})",
                back.len()
            );
            let TunnelEnd::Closed(stats) = end else {
                panic!("tunnel ended with {end:?} for {up_len}/{down_len}");
            };
            assert_eq!(stats.client_to_server, up_len as u64);
            assert_eq!(stats.server_to_client, down_len as u64);
            assert_eq!(
                stats.client_to_server_spliced > 0,
                expect_up_spliced,
                "{stats:?}"
            );
            assert_eq!(
                stats.server_to_client_spliced > 0,
                expect_down_spliced,
                "{stats:?}"
            );
            assert!(stats.client_to_server_spliced <= stats.client_to_server);
            assert!(stats.server_to_client_spliced <= stats.server_to_client);
        }
    }
}
