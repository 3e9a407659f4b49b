//! Test helper: a private, throw-away Postfix instance on 127.0.0.1:<free port>.
//!
//! Owns starting and stopping one Postfix per test with its own config, queue, data and
//! mailbox directories under a temp dir (never the system service, never port 25), and
//! reading delivered maildir files and the instance's log back. Whether a test may skip when
//! Postfix is missing is `gate.rs`'s rule (never under `CI=true`); every test crate that
//! includes this file also declares `mod gate` for it. It does not speak SMTP: the
//! tests drive `mailtap::smtp` against it. Private instances run in parallel (each has its own
//! `queue_directory`, `data_directory`, `syslog_name` and port), so there is no global lock.
#![allow(dead_code)]

use mailtap::smtp::{certificates_from_pem, ClientConfig, ConnectOptions, Timeouts, TlsMode};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::gate::{act, ci_env, find_executable, gate, is_root, search_dirs};

/// Postfix's `message_size_limit` (and so its EHLO `SIZE`) in every instance.
pub const SIZE_LIMIT: u64 = 200_000;
/// The virtual mailbox domains every instance serves.
pub const DOMAINS: [&str; 3] = ["a.test", "b.test", "c.test"];
/// Known mailboxes: address → maildir path under the mail base (trailing `/` = maildir).
pub const MAILBOXES: [(&str, &str); 4] = [
    ("alice@a.test", "a.test/alice/"),
    ("bob@b.test", "b.test/bob/"),
    ("carol@c.test", "c.test/carol/"),
    ("张三@c.test", "c.test/zhangsan/"),
];
/// Upper bound for start-up, delivery and shutdown waits.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where the Postfix programs were found.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `postfix` control command.
    pub postfix: PathBuf,
    /// `smtp-sink` (same package), for throughput runs; `None` if absent.
    pub smtp_sink: Option<PathBuf>,
}

/// Finds `postfix` (required) and `smtp-sink` (optional) in `dirs`.
pub fn find_binaries(dirs: &[PathBuf]) -> Result<Binaries, String> {
    let postfix = find_executable(dirs, "postfix").ok_or_else(|| {
        format!("no executable `postfix` in {dirs:?} (install the `postfix` package)")
    })?;
    Ok(Binaries {
        postfix,
        smtp_sink: find_executable(dirs, "smtp-sink"),
    })
}

/// Postfix from `dirs`, gated: `Some` to run, `None` to skip (printed); panics when `ci` and
/// Postfix (or root, which a private master needs) is missing.
pub fn require_in(ci: bool, dirs: &[PathBuf]) -> Option<Binaries> {
    let g = gate(
        ci,
        find_binaries(dirs),
        is_root(),
        "starting a private Postfix master",
    );
    act(g)
}

/// [`require_in`] for this process's environment.
pub fn require() -> Option<Binaries> {
    require_in(ci_env(), &search_dirs())
}

/// Why an instance could not be started.
#[derive(Debug)]
pub enum StartError {
    Io {
        what: String,
        source: std::io::Error,
    },
    Command {
        what: String,
        detail: String,
    },
    NoGreeting {
        port: u16,
        log: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Io { what, source } => write!(f, "{what}: {source}"),
            StartError::Command { what, detail } => write!(f, "{what}: {detail}"),
            StartError::NoGreeting { port, log } => {
                write!(f, "no 220 greeting on 127.0.0.1:{port}; maillog:\n{log}")
            }
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// A running private Postfix; stopped (and its master killed if need be) on drop.
pub struct Postfix {
    pub addr: SocketAddr,
    /// PEM of the self-signed `localhost` certificate smtpd offers after STARTTLS.
    pub cert_pem: String,
    dir: tempfile::TempDir,
    bins: Binaries,
}

/// `uid` and primary `gid` of `user` from /etc/passwd.
fn user_ids(user: &str) -> Result<(u32, u32), StartError> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(io("read /etc/passwd"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| StartError::Command {
            what: "look up the postfix user".into(),
            detail: format!("no user {user:?} in /etc/passwd"),
        })
}

fn free_port() -> Result<u16, StartError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind a probe port"))?;
    Ok(l.local_addr().map_err(io("probe port address"))?.port())
}

/// Waits (bounded by `limit`) for a line starting with `220` on `addr`.
pub fn wait_greeting(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("220") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn main_cf(base: &Path, port: u16, ids: (u32, u32)) -> String {
    let b = base.display();
    let domains = DOMAINS.join(" ");
    format!(
        "compatibility_level = 3.6\n\
         queue_directory = {b}/queue\n\
         data_directory = {b}/data\n\
         mail_owner = postfix\n\
         setgid_group = postdrop\n\
         syslog_name = mailtap-test-{port}\n\
         maillog_file = {b}/maillog\n\
         maillog_file_prefixes = {b}\n\
         myhostname = mx.test\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         mydestination =\n\
         mynetworks = 127.0.0.0/8\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
         smtpd_reject_unlisted_recipient = yes\n\
         smtpd_peername_lookup = no\n\
         message_size_limit = {SIZE_LIMIT}\n\
         virtual_mailbox_domains = {domains}\n\
         virtual_mailbox_base = {b}/mail\n\
         virtual_mailbox_maps = texthash:{b}/etc/vmailbox\n\
         virtual_uid_maps = static:{uid}\n\
         virtual_gid_maps = static:{gid}\n\
         virtual_minimum_uid = 1\n\
         smtputf8_enable = yes\n\
         smtpd_tls_security_level = may\n\
         smtpd_tls_cert_file = {b}/etc/cert.pem\n\
         smtpd_tls_key_file = {b}/etc/key.pem\n\
         smtpd_tls_received_header = yes\n\
         default_transport = error:no outbound mail from a test instance\n\
         relay_transport = error:no outbound mail from a test instance\n\
         notify_classes =\n\
         alias_maps =\n\
         alias_database =\n\
         biff = no\n",
        uid = ids.0,
        gid = ids.1,
    )
}

fn master_cf(port: u16) -> String {
    // Columns: service type private unpriv chroot wakeup maxproc command. No chroot anywhere.
    let services = [
        format!("127.0.0.1:{port} inet n - n - - smtpd"),
        "cleanup unix n - n - 0 cleanup".into(),
        "qmgr unix n - n 300 1 qmgr".into(),
        "tlsmgr unix - - n 1000? 1 tlsmgr".into(),
        "rewrite unix - - n - - trivial-rewrite".into(),
        "bounce unix - - n - 0 bounce".into(),
        "defer unix - - n - 0 bounce".into(),
        "trace unix - - n - 0 bounce".into(),
        "verify unix - - n - 1 verify".into(),
        "flush unix n - n 1000? 0 flush".into(),
        "proxymap unix - - n - - proxymap".into(),
        "showq unix n - n - - showq".into(),
        "error unix - - n - - error".into(),
        "retry unix - - n - - error".into(),
        "discard unix - - n - - discard".into(),
        "virtual unix - n n - - virtual".into(),
        "anvil unix - - n - 1 anvil".into(),
        "scache unix - - n - 1 scache".into(),
        "postlog unix-dgram n - n - 1 postlogd".into(),
    ];
    services.join("\n") + "\n"
}

/// Runs `cmd` to completion, bounded by `limit` (killed after it). Returns stdout+stderr.
fn run_bounded(mut cmd: Command, what: &str, limit: Duration) -> Result<String, StartError> {
    let out_path = tempfile::NamedTempFile::new().map_err(io("temp file"))?;
    let out = out_path.reopen().map_err(io("temp file"))?;
    let err = out.try_clone().map_err(io("temp file"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(format!("spawn {what}")))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().map_err(io(format!("wait for {what}")))? {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartError::Command {
                    what: what.into(),
                    detail: format!("still running after {limit:?}; killed"),
                });
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let text = std::fs::read_to_string(out_path.path()).unwrap_or_default();
    if status.success() {
        Ok(text)
    } else {
        Err(StartError::Command {
            what: what.into(),
            detail: format!("{status}; output: {text}"),
        })
    }
}

impl Postfix {
    /// Starts a private instance and waits (bounded) for its 220. Retries on a fresh port
    /// when the probed port was taken in between (bounded: 3 attempts).
    pub fn start(bins: &Binaries) -> Result<Postfix, StartError> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(bins) {
                Ok(p) => return Ok(p),
                Err(e @ StartError::NoGreeting { .. }) => last = Some(e),
                Err(e @ StartError::Command { .. }) if e.to_string().contains("in use") => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StartError::Command {
            what: "start postfix".into(),
            detail: "no attempt made".into(),
        }))
    }

    fn start_once(bins: &Binaries) -> Result<Postfix, StartError> {
        use std::os::unix::fs::{chown, PermissionsExt};
        let dir = tempfile::Builder::new()
            .prefix("mailtap-postfix-")
            .tempdir()
            .map_err(io("create temp dir"))?;
        let base = dir.path().to_path_buf();
        // Postfix's daemons run as the postfix user and must traverse into the base.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod base"))?;
        // Every ancestor must be searchable by the postfix user (a 0700 TMPDIR is not).
        for anc in base.ancestors().skip(1) {
            let mode = std::fs::metadata(anc)
                .map_err(io(format!("stat {}", anc.display())))?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                return Err(StartError::Command {
                    what: "prepare the instance directory".into(),
                    detail: format!(
                        "{} (mode {mode:o}) is not searchable by the postfix user; \
                         set TMPDIR to a world-searchable directory such as /tmp",
                        anc.display()
                    ),
                });
            }
        }
        let ids = user_ids("postfix")?;
        for sub in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir(base.join(sub)).map_err(io(format!("mkdir {sub}")))?;
        }
        chown(base.join("data"), Some(ids.0), Some(ids.1)).map_err(io("chown data"))?;
        chown(base.join("mail"), Some(ids.0), Some(ids.1)).map_err(io("chown mail"))?;
        let ck =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).map_err(|e| {
                StartError::Command {
                    what: "mint test certificate".into(),
                    detail: e.to_string(),
                }
            })?;
        let cert_pem = ck.cert.pem();
        let port = free_port()?;
        let etc = base.join("etc");
        let files = [
            ("cert.pem", cert_pem.clone()),
            ("key.pem", ck.signing_key.serialize_pem()),
            ("main.cf", main_cf(&base, port, ids)),
            ("master.cf", master_cf(port)),
            (
                "vmailbox",
                MAILBOXES
                    .iter()
                    .map(|(a, p)| format!("{a} {p}\n"))
                    .collect(),
            ),
        ];
        for (name, text) in files {
            std::fs::write(etc.join(name), text).map_err(io(format!("write {name}")))?;
        }
        std::fs::set_permissions(etc.join("key.pem"), std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod key"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let pf = Postfix {
            addr,
            cert_pem,
            dir,
            bins: bins.clone(),
        };
        let mut cmd = Command::new(&bins.postfix);
        cmd.arg("-c").arg(&etc).arg("start");
        if let Err(e) = run_bounded(cmd, "postfix start", WAIT) {
            return Err(StartError::Command {
                what: e.to_string(),
                detail: format!("maillog:\n{}", pf.maillog()),
            });
        }
        if !wait_greeting(addr, WAIT) {
            return Err(StartError::NoGreeting {
                port,
                log: pf.maillog(),
            });
        }
        tracing::info!(%addr, dir = %base.display(), "private postfix started");
        Ok(pf)
    }

    /// The instance's base directory (etc/, queue/, data/, mail/, maillog).
    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// The instance's log so far (postlogd writes it; empty if none yet).
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// A client config for this instance: host `localhost` (the certificate's name), `tls` as
    /// given, short timeouts.
    pub fn client_cfg(&self, tls: TlsMode) -> ClientConfig {
        ClientConfig {
            host: "localhost".into(),
            port: Some(self.addr.port()),
            tls,
            helo_name: Some("client.test".into()),
            timeouts: Timeouts::uniform(15),
            ..Default::default()
        }
    }

    /// Connect options dialing this instance and trusting its certificate.
    pub fn connect_opts(&self) -> ConnectOptions {
        ConnectOptions {
            addr: Some(self.addr),
            extra_roots: certificates_from_pem(self.cert_pem.as_bytes()).unwrap_or_default(),
            ..Default::default()
        }
    }

    /// The maildir `new/` directory of a known mailbox, `None` for unknown addresses.
    pub fn maildir(&self, address: &str) -> Option<PathBuf> {
        let (_, rel) = MAILBOXES.iter().find(|(a, _)| *a == address)?;
        Some(self.dir.path().join("mail").join(rel).join("new"))
    }

    /// Every delivered message in `address`'s mailbox, oldest file name first.
    pub fn messages(&self, address: &str) -> Vec<Vec<u8>> {
        let Some(dir) = self.maildir(address) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }

    /// Waits (bounded by [`WAIT`]) until `address` holds at least `n` messages; returns them,
    /// or an error quoting the maillog.
    pub fn wait_messages(&self, address: &str, n: usize) -> Result<Vec<Vec<u8>>, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.messages(address);
            if got.len() >= n {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{address}: {} of {n} messages after {WAIT:?}; maillog:\n{}",
                    got.len(),
                    self.maillog()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded by [`WAIT`]) for a maillog line containing every one of `needles`
    /// (postlogd writes asynchronously); returns it, or an error quoting the log.
    pub fn wait_log_line(&self, needles: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.maillog();
            if let Some(l) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return Ok(l.to_string());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no maillog line with {needles:?} after {WAIT:?}:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn master_pid(&self) -> Option<i32> {
        let p = self.dir.path().join("queue/pid/master.pid");
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let mut cmd = Command::new(&self.bins.postfix);
        cmd.arg("-c").arg(self.dir.path().join("etc")).arg("stop");
        if let Err(e) = run_bounded(cmd, "postfix stop", WAIT) {
            eprintln!("postfix stop failed ({e}); killing the master");
        }
        // Leftovers: the master we started, if `stop` did not end it (its children exit when
        // the master goes away). Only this instance's own pid file is consulted, and the pid
        // must still be a Postfix master (not a zombie, not a reused pid).
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid.is_some_and(is_master) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pid) = pid.filter(|p| *p > 1 && is_master(*p)) {
            eprintln!("postfix master {pid} still running after stop; SIGKILL");
            // SAFETY: plain kill(2) on the pid this instance's master wrote.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// True when `pid` is a live process whose command line is Postfix's `master`.
fn is_master(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
            argv0.ends_with(b"/master") || argv0 == b"master"
        })
        .unwrap_or(false)
}
