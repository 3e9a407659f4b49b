//! The `mailtap` command: parses arguments, loads the configuration, starts logging and runs
//! [`mailtap::app::App`] until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mailtap::app::App;
use mailtap::config::Config;

/// An HTTP forward proxy that intercepts webmail "send" requests and relays the mail over SMTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without it every default applies.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address, overriding `[proxy].listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and exit (non-zero with the key and reason when invalid).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print mailtap's CA certificate path and fingerprints (creating the CA under
    /// `[paths].data/ca/` when there is none yet).
    Ca,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::load(file) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mailtap: {e}");
                ExitCode::from(2)
            }
        };
    }
    let load = |path: &Option<PathBuf>| match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    if let Some(Command::Ca) = &cli.command {
        return match load(&cli.config) {
            Ok(config) => print_ca(&config),
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
    raise_fd_limit();
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
        match &cli.config {
            Some(path) => println!("  config file: {}", path.display()),
            None => println!("  config file: none (built-in defaults)"),
        }
        if config.mitm.enabled {
            println!("  CA (HTTPS):  http://{addr}/ca.crt  (details: mailtap ca)");
        }
        app.run(signals.shutdown()).await;
        ExitCode::SUCCESS
    })
}

/// `mailtap ca`: where the CA is and how to recognise it.
fn print_ca(config: &Config) -> ExitCode {
    let dir = mailtap::proxy::mitm::ca_dir(&config.paths.data);
    match mailtap::proxy::mitm::CertAuthority::load_or_create(&dir) {
        Ok(ca) => {
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

/// Ctrl-C and SIGTERM, registered before the banner so that no early signal is missed.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
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

/// Each connection and tunnel needs descriptors; lift the soft limit to the hard one.
fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
