//! SMTP client session setup and teardown: connect, greeting, EHLO/HELO, TLS, AUTH, RSET, QUIT.
//!
//! Owns the order of the session-level dialogue (RFC 5321 §3.1–3.2, RFC 3207, RFC 4954) and the
//! rule that security is never downgraded silently (STARTTLS missing → error; AUTH in clear →
//! error unless allowed). Mail transactions live in [`super::send`]; no file I/O here.

use super::config::{secs, ClientConfig, Secret, TlsMode};
use super::conn::{connector, handshake, Conn};
use super::error::{Error, Stage};
use super::transcript::{TlsInfo, Transcript, TranscriptEvent};
use crate::smtp::io::{Duplex, Stream};
use crate::smtp::proto::auth::{self, Mechanism};
use crate::smtp::proto::caps::Capabilities;
use crate::smtp::proto::reply::Reply;
use std::fmt;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Inputs to [`Session::connect`] that are not configuration: secrets and loaded certificates.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// The AUTH password (from the variable named by `password_env`).
    pub password: Option<Secret>,
    /// Extra trusted roots (the parsed `extra_roots` PEM files).
    pub extra_roots: Vec<native_tls::Certificate>,
    /// Dial this address instead of resolving `host` (the `[resolve]` table); TLS still
    /// verifies the configured name.
    pub addr: Option<SocketAddr>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("extra_roots", &self.extra_roots.len())
            .field("addr", &self.addr)
            .finish()
    }
}

/// An open, greeted (and, as configured, encrypted and authenticated) SMTP session.
pub struct Session {
    pub(crate) conn: Conn,
    pub(crate) caps: Capabilities,
    pub(crate) cfg: ClientConfig,
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) greeting: Reply,
    /// Mail transactions attempted on this session (RSET precedes every one after the first).
    pub(crate) transactions: u64,
    /// Set after an I/O, timeout or protocol error: the dialogue state is unknown.
    pub(crate) broken: bool,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.remote)
            .field("tls", &self.tls)
            .field("caps", &self.caps)
            .field("transactions", &self.transactions)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Session {
    /// Connects and runs greeting → EHLO (HELO on 500/502) → STARTTLS + EHLO or implicit TLS →
    /// AUTH, as `cfg` says. On success the session is ready for [`Session::send`]. Every wire
    /// line goes to `t`; on failure `t` also gets [`TranscriptEvent::Error`].
    #[tracing::instrument(skip_all, fields(host = %cfg.host, port = cfg.effective_port(), tls = ?cfg.tls))]
    pub async fn connect(
        cfg: &ClientConfig,
        opts: &ConnectOptions,
        t: &mut dyn Transcript,
    ) -> Result<Session, Error> {
        let r = Self::connect_inner(cfg, opts, t).await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "SMTP session setup failed");
            t.event(TranscriptEvent::Error(e));
        }
        r
    }

    async fn connect_inner(
        cfg: &ClientConfig,
        opts: &ConnectOptions,
        t: &mut dyn Transcript,
    ) -> Result<Session, Error> {
        cfg.validate().map_err(Error::Config)?;
        let to = &cfg.timeouts;
        let port = cfg.effective_port();
        let connect_limit = secs(to.connect_secs);
        let dial = async {
            match opts.addr {
                Some(a) => TcpStream::connect(a).await,
                None => TcpStream::connect((cfg.host.as_str(), port)).await,
            }
        };
        let tcp = match timeout(connect_limit, dial).await {
            Err(_) => {
                return Err(Error::Timeout {
                    stage: Stage::Connect,
                    after: connect_limit,
                })
            }
            Ok(Err(source)) => {
                return Err(Error::Io {
                    stage: Stage::Connect,
                    source,
                })
            }
            Ok(Ok(s)) => s,
        };
        let io = |source| Error::Io {
            stage: Stage::Connect,
            source,
        };
        tcp.set_nodelay(true).map_err(io)?;
        let local = tcp.local_addr().map_err(io)?;
        let remote = tcp.peer_addr().map_err(io)?;
        t.event(TranscriptEvent::Connected {
            local,
            remote,
            server_name: &cfg.host,
        });
        let tls_connector = match cfg.tls {
            TlsMode::None => None,
            _ => Some(connector(&opts.extra_roots)?),
        };
        let mut tls = None;
        let stream = match (&cfg.tls, &tls_connector) {
            (TlsMode::Implicit, Some(c)) => {
                let (s, info) = handshake(tcp, c, cfg.server_name(), connect_limit).await?;
                t.event(TranscriptEvent::Tls(&info));
                tls = Some(info);
                s
            }
            _ => Stream::Plain(tcp),
        };
        let ends = (local, remote);
        Self::dialogue(stream, ends, cfg, opts, tls_connector.as_ref(), tls, t).await
    }

    /// Runs the session dialogue — greeting → EHLO (HELO on 500/502) → AUTH — over a stream the
    /// caller dialled (and encrypted, if at all): a `tokio::io::duplex` in tests, a socket set
    /// up elsewhere. `cfg.tls` must be `none` (TLS needs the TCP socket [`Session::connect`]
    /// dials); `ends` are the (local, remote) addresses the transcript and the session report.
    pub async fn over(
        stream: impl Duplex + 'static,
        ends: (SocketAddr, SocketAddr),
        cfg: &ClientConfig,
        opts: &ConnectOptions,
        t: &mut dyn Transcript,
    ) -> Result<Session, Error> {
        let r = async {
            cfg.validate().map_err(Error::Config)?;
            if cfg.tls != TlsMode::None {
                return Err(Error::Config(
                    "Session::over runs without TLS (tls = \"none\"); Session::connect does TLS"
                        .into(),
                ));
            }
            t.event(TranscriptEvent::Connected {
                local: ends.0,
                remote: ends.1,
                server_name: &cfg.host,
            });
            let stream = Stream::Other(Box::new(stream));
            Self::dialogue(stream, ends, cfg, opts, None, None, t).await
        }
        .await;
        if let Err(e) = &r {
            t.event(TranscriptEvent::Error(e));
        }
        r
    }

    /// The dialogue after the stream is open: greeting, EHLO, STARTTLS (with `tls_connector`),
    /// AUTH.
    async fn dialogue(
        stream: Stream,
        (local, remote): (SocketAddr, SocketAddr),
        cfg: &ClientConfig,
        opts: &ConnectOptions,
        tls_connector: Option<&native_tls::TlsConnector>,
        mut tls: Option<TlsInfo>,
        t: &mut dyn Transcript,
    ) -> Result<Session, Error> {
        let to = &cfg.timeouts;
        let mut conn = Conn::new(stream, cfg.max_reply_bytes, cfg.max_reply_lines);
        let greeting = conn
            .read_reply(Stage::Greeting, secs(to.greeting_secs), t)
            .await?;
        if greeting.code != 220 {
            return Err(Error::Reply {
                stage: Stage::Greeting,
                command: None,
                reply: greeting,
            });
        }
        let mut caps = hello(&mut conn, cfg, t).await?;
        if let (TlsMode::Starttls, Some(c)) = (&cfg.tls, tls_connector) {
            if !caps.starttls {
                return Err(Error::Tls {
                    stage: Stage::StartTls,
                    detail: "server does not offer STARTTLS and tls = \"starttls\" is configured"
                        .into(),
                });
            }
            let limit = secs(to.command_secs);
            let reply = conn
                .command(Stage::StartTls, "STARTTLS", "STARTTLS", limit, t)
                .await?;
            if reply.code != 220 {
                return Err(Error::Reply {
                    stage: Stage::StartTls,
                    command: Some("STARTTLS".into()),
                    reply,
                });
            }
            let (upgraded, info) = conn.upgrade(c, cfg.server_name(), limit).await?;
            conn = upgraded;
            t.event(TranscriptEvent::Tls(&info));
            tls = Some(info);
            // RFC 3207 §4.2: discard all knowledge from before TLS and EHLO again.
            caps = hello(&mut conn, cfg, t).await?;
        }
        if let Some(user) = &cfg.username {
            authenticate(&mut conn, cfg, &caps, user, opts.password.as_ref(), t).await?;
        }
        Ok(Session {
            conn,
            caps,
            cfg: cfg.clone(),
            tls,
            greeting,
            transactions: 0,
            broken: false,
            local,
            remote,
        })
    }

    /// What the server announced in its latest EHLO (empty after a HELO fallback).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    /// TLS facts when the session is encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }
    /// The server's 220 greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }
    /// Local and remote socket addresses.
    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }
    /// False once an I/O, timeout or protocol error left the dialogue in an unknown state.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Sends RSET and expects 250: aborts any open transaction.
    pub async fn reset(&mut self, t: &mut dyn Transcript) -> Result<(), Error> {
        let r = self.reset_inner(t).await;
        self.note(&r, t);
        r
    }

    pub(crate) async fn reset_inner(&mut self, t: &mut dyn Transcript) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Unusable);
        }
        let limit = secs(self.cfg.timeouts.command_secs);
        let reply = self
            .conn
            .command(Stage::Rset, "RSET", "RSET", limit, t)
            .await?;
        if !reply.is_positive() {
            return Err(Error::Reply {
                stage: Stage::Rset,
                command: Some("RSET".into()),
                reply,
            });
        }
        Ok(())
    }

    /// Sends NOOP and expects 2yz: a cheap liveness check before reusing a pooled session.
    pub async fn noop(&mut self, t: &mut dyn Transcript) -> Result<(), Error> {
        let r = self.noop_inner(t).await;
        self.note(&r, t);
        r
    }

    async fn noop_inner(&mut self, t: &mut dyn Transcript) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Unusable);
        }
        let limit = secs(self.cfg.timeouts.command_secs);
        let reply = self
            .conn
            .command(Stage::Noop, "NOOP", "NOOP", limit, t)
            .await?;
        if !reply.is_positive() {
            return Err(Error::Reply {
                stage: Stage::Noop,
                command: Some("NOOP".into()),
                reply,
            });
        }
        Ok(())
    }

    /// Sends QUIT, reads the reply (any code is accepted) and closes the connection.
    pub async fn quit(mut self, t: &mut dyn Transcript) -> Result<Reply, Error> {
        if self.broken {
            self.conn.shutdown().await;
            return Err(Error::Unusable);
        }
        let limit = secs(self.cfg.timeouts.command_secs);
        let r = self
            .conn
            .command(Stage::Quit, "QUIT", "QUIT", limit, t)
            .await;
        self.conn.shutdown().await;
        match &r {
            Ok(_) => t.event(TranscriptEvent::Closed),
            Err(e) => t.event(TranscriptEvent::Error(e)),
        }
        r
    }

    /// Records an error in the transcript and marks the session broken when its state is unknown.
    pub(crate) fn note<T>(&mut self, r: &Result<T, Error>, t: &mut dyn Transcript) {
        if let Err(e) = r {
            if matches!(
                e,
                Error::Io { .. }
                    | Error::Timeout { .. }
                    | Error::Closed { .. }
                    | Error::Protocol { .. }
            ) || e.reply().is_some_and(|r| r.code == 421)
            {
                self.broken = true;
            }
            tracing::debug!(error = %e, "SMTP transaction error");
            t.event(TranscriptEvent::Error(e));
        }
    }
}

/// EHLO, falling back to HELO when the server does not know EHLO (RFC 5321 §3.2: 500/502).
async fn hello(
    conn: &mut Conn,
    cfg: &ClientConfig,
    t: &mut dyn Transcript,
) -> Result<Capabilities, Error> {
    let limit = secs(cfg.timeouts.command_secs);
    let ehlo = format!("EHLO {}", cfg.helo());
    let reply = conn.command(Stage::Ehlo, &ehlo, &ehlo, limit, t).await?;
    if reply.is_positive() {
        return Ok(Capabilities::from_ehlo(&reply));
    }
    if reply.code != 500 && reply.code != 502 {
        return Err(Error::Reply {
            stage: Stage::Ehlo,
            command: Some(ehlo),
            reply,
        });
    }
    let helo = format!("HELO {}", cfg.helo());
    let reply = conn.command(Stage::Ehlo, &helo, &helo, limit, t).await?;
    if !reply.is_positive() {
        return Err(Error::Reply {
            stage: Stage::Ehlo,
            command: Some(helo),
            reply,
        });
    }
    Ok(Capabilities::default())
}

/// AUTH PLAIN (preferred) or LOGIN. Payload lines reach the transcript only as `<redacted>`.
async fn authenticate(
    conn: &mut Conn,
    cfg: &ClientConfig,
    caps: &Capabilities,
    user: &str,
    password: Option<&Secret>,
    t: &mut dyn Transcript,
) -> Result<(), Error> {
    if !conn.is_tls() && !cfg.allow_plaintext_auth {
        return Err(Error::Config(
            "refusing AUTH over an unencrypted connection (set smtp.allow_plaintext_auth)".into(),
        ));
    }
    let Some(pass) = password else {
        let var = cfg.password_env.as_deref().unwrap_or("?");
        return Err(Error::Config(format!(
            "smtp.username is set but the password variable {var} is not set"
        )));
    };
    let mech = if caps.has_auth("PLAIN") {
        Mechanism::Plain
    } else if caps.has_auth("LOGIN") {
        Mechanism::Login
    } else {
        return Err(Error::Config(format!(
            "server offers no AUTH PLAIN or LOGIN (offers: {})",
            caps.auth.join(" ")
        )));
    };
    let limit = secs(cfg.timeouts.command_secs);
    let fail = |command: &str, reply| Error::Reply {
        stage: Stage::Auth,
        command: Some(command.to_string()),
        reply,
    };
    let (shown, last) = match mech {
        Mechanism::Plain => {
            let cmd = format!("AUTH PLAIN {}", auth::plain_response(user, pass.expose()));
            let shown = "AUTH PLAIN <redacted>";
            (
                shown,
                conn.command(Stage::Auth, &cmd, shown, limit, t).await?,
            )
        }
        Mechanism::Login => {
            let r = conn
                .command(Stage::Auth, "AUTH LOGIN", "AUTH LOGIN", limit, t)
                .await?;
            if r.code != 334 {
                return Err(fail("AUTH LOGIN", r));
            }
            let r = conn
                .command(Stage::Auth, &auth::login_step(user), "<redacted>", limit, t)
                .await?;
            if r.code != 334 {
                return Err(fail("<redacted>", r));
            }
            let r = conn
                .command(
                    Stage::Auth,
                    &auth::login_step(pass.expose()),
                    "<redacted>",
                    limit,
                    t,
                )
                .await?;
            ("<redacted>", r)
        }
    };
    if last.code != 235 {
        return Err(fail(shown, last));
    }
    Ok(())
}
