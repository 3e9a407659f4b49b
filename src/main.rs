//! The `mailtap` command: parses arguments, loads the configuration, starts logging and runs
//! [`mailtap::app::App`] until Ctrl-C or SIGTERM.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mailtap::app::App;
use mailtap::config::Config;

/// An HTTP forward proxy that intercepts webmail "send" requests and relays the mail over SMTP.
#[derive(Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Configuration file (TOML). Without it every default applies.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Proxy listen address (IP:port), overriding `[proxy].listen` (default 127.0.0.1:8800).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Built-in SMTP server listen address (IP:port), overriding `[builtin_smtp].listen`
    /// (default 127.0.0.1:2525).
    #[arg(long, value_name = "ADDR")]
    smtp_listen: Option<SocketAddr>,
    /// Data directory (spool/, mailbox/, ca/), overriding `[paths].data` (default ./data).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Transcript directory (Log-*.txt), overriding `[paths].logs` (default ./logs).
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

const AFTER_HELP: &str = "\
Examples:
  mailtap                                   proxy on 127.0.0.1:8800, built-in SMTP server on :2525
  mailtap --listen 127.0.0.1:3128 --smtp-listen 127.0.0.1:2526
  mailtap --data ~/mailtap/data --logs ~/mailtap/logs
  mailtap --config mailtap.toml             settings from a file (see samples/mailtap.toml)
  mailtap check-config mailtap.toml         validate a file and exit
  mailtap ca                                where the HTTPS interception CA is, its fingerprints
  RUST_LOG=debug mailtap                    per-connection detail on stderr

Files (relative paths are relative to the directory mailtap is started in; the banner
prints them absolute):
  ./data    the mail spool (data/spool), the built-in server's mailbox (data/mailbox, .eml)
            and the CA (data/ca) — --data DIR or [paths].data
  ./logs    one Log-<time>.txt transcript per mail — --logs DIR or [paths].logs

Environment:
  RUST_LOG  log filter for the lines on stderr (default info; e.g. debug, mailtap=trace)";

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and exit (non-zero with the file, key, line and reason
    /// when invalid).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print mailtap's CA certificate path and fingerprints (creating the CA under
    /// `[paths].data/ca/` when there is none yet, and saying so).
    Ca {
        /// Configuration file whose `[paths].data` holds the CA.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory holding ca/ (default ./data, or `[paths].data`).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

/// `path` made absolute against the working directory (unchanged when that fails), so that
/// what mailtap prints does not depend on where it was started.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::load(file) {
            Ok(_) => {
                println!("{}: OK", absolute(file).display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mailtap: {e}");
                ExitCode::from(2)
            }
        };
    }
    let load = |path: Option<&PathBuf>| match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    if let Some(Command::Ca { config, data }) = &cli.command {
        return match load(config.as_ref().or(cli.config.as_ref())) {
            Ok(mut c) => {
                if let Some(data) = data.as_ref().or(cli.data.as_ref()) {
                    c.paths.data = data.clone();
                }
                print_ca(&c)
            }
            Err(e) => {
                eprintln!("mailtap: {e}");
                ExitCode::from(2)
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_timer(mailtap::clock::LocalTimer)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mailtap: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(listen) = cli.listen {
        config.proxy.listen = listen;
    }
    if let Some(listen) = cli.smtp_listen {
        if config.smtp.is_some() {
            eprintln!(
                "mailtap: --smtp-listen has no effect: [smtp] is configured, so the built-in \
                 SMTP server does not start"
            );
        }
        config.builtin_smtp.listen = listen;
    }
    if let Some(data) = &cli.data {
        config.paths.data = data.clone();
    }
    if let Some(logs) = &cli.logs {
        config.paths.logs = logs.clone();
    }
    // Everything printed from here on (banner, console, transcripts) names absolute paths.
    config.paths.data = absolute(&config.paths.data);
    config.paths.logs = absolute(&config.paths.logs);
    if let Err(e) = config.validate() {
        eprintln!("mailtap: {e}");
        return ExitCode::from(2);
    }
    let ca_cert =
        mailtap::proxy::mitm::ca_dir(&config.paths.data).join(mailtap::proxy::mitm::CA_CERT_FILE);
    let had_ca = ca_cert.exists();
    mailtap::sys::raise_fd_limit();
    // Large freed blocks go back to the OS (see `sys::tune_allocator`); before any thread starts.
    mailtap::sys::tune_allocator();
    // A bounded blocking pool: spool fsyncs run there, and every extra thread keeps its own
    // malloc arena (unbounded, memory grew with the number of mails relayed).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(config.proxy.effective_worker_threads())
        .max_blocking_threads(16)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailtap: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let app = match App::start(&config).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("mailtap: {e}");
                return ExitCode::FAILURE;
            }
        };
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mailtap: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = app.proxy_addr();
        println!(
            "mailtap {} — HTTP proxy listening on {addr}",
            env!("CARGO_PKG_VERSION")
        );
        println!("  PAC file:    http://{addr}/proxy.pac");
        let (smtp_host, smtp_port, builtin) = app.smtp_upstream();
        if builtin {
            println!(
                "  SMTP relay:  built-in SMTP server on {smtp_host}:{smtp_port} (mailbox: {})",
                config.paths.data.join("mailbox").display()
            );
        } else {
            println!("  SMTP relay:  {smtp_host}:{smtp_port}");
        }
        println!("  transcripts: {}/Log-*.txt", config.paths.logs.display());
        println!("  data:        {}", config.paths.data.display());
        match &cli.config {
            Some(path) => println!("  config file: {}", absolute(path).display()),
            None => println!("  config file: none (built-in defaults)"),
        }
        if config.mitm.enabled {
            println!(
                "  CA (HTTPS):  {}  (also http://{addr}/ca.crt; details: mailtap ca)",
                ca_cert.display()
            );
            if !had_ca && ca_cert.exists() {
                announce_new_ca(&ca_cert);
            }
        }
        app.run(signals.shutdown()).await;
        ExitCode::SUCCESS
    })
}

/// `mailtap ca`: where the CA is and how to recognise it.
fn print_ca(config: &Config) -> ExitCode {
    let dir = absolute(&mailtap::proxy::mitm::ca_dir(&config.paths.data));
    let cert = dir.join(mailtap::proxy::mitm::CA_CERT_FILE);
    let had_ca = cert.exists();
    match mailtap::proxy::mitm::CertAuthority::load_or_create(&dir) {
        Ok(ca) => {
            if !had_ca {
                announce_new_ca(ca.cert_path());
            }
            println!("CA certificate:      {}", ca.cert_path().display());
            println!("SHA-256 fingerprint: {}", ca.fingerprint_sha256());
            println!("SPKI SHA-256:        {}", ca.spki_sha256_base64());
            println!(
                "  (Chromium: --ignore-certificate-errors-spki-list={})",
                ca.spki_sha256_base64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailtap: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Says on stderr, so it is not missed, that a CA was just created and where: a browser that
/// trusts a CA from another data directory does not trust this one.
fn announce_new_ca(cert: &Path) {
    eprintln!(
        "mailtap: *** created a NEW certificate authority: {} ***\n\
         mailtap: no CA existed in that data directory. Browsers that trusted a mailtap CA from \
         another data directory do not trust this one; use --data DIR (or [paths].data) to \
         reuse an existing CA.",
        cert.display()
    );
}

/// Ctrl-C and SIGTERM, registered before the banner so that no early signal is missed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// Resolves on the first signal; a second one exits at once.
    async fn shutdown(mut self) {
        self.recv().await;
        eprintln!("mailtap: shutting down (press Ctrl-C again to exit at once)");
        tokio::spawn(async move {
            self.recv().await;
            std::process::exit(130);
        });
    }
}
