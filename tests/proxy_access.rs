//! Who may use the proxy: `Proxy-Authorization` parsing (RFC 9110 §11) and `[proxy].allow`
//! matched against IPv4, IPv6 and IPv4-mapped client addresses, including from a real
//! non-loopback address in a network namespace the test creates and removes.

mod common;
#[path = "common/gate.rs"]
mod gate;

use base64::Engine as _;
use common::*;

/// `Proxy-Authorization` for `user:pass` with the scheme spelt `scheme` and `gap` between them.
fn credentials(scheme: &str, gap: &str, user_pass: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(user_pass);
    format!("{scheme}{gap}{token}")
}

#[tokio::test]
async fn auth_scheme_is_case_insensitive() {
    // Guards issue 10.8: the Basic scheme matches in any case and after any run of spaces
    // (RFC 9110 §11.1, §11.4); wrong credentials and other schemes stay refused.
    std::env::set_var("MAILTAP_TEST_PROXY_PW_ACCESS", "s3cret");
    let origin = origin().await;
    let mt = start(
        "[proxy.auth]\nusername = \"lab\"\npassword_env = \"MAILTAP_TEST_PROXY_PW_ACCESS\"\n",
        None,
    )
    .await;
    let cases = [
        (credentials("Basic", " ", "lab:s3cret"), "200"),
        (credentials("basic", " ", "lab:s3cret"), "200"),
        (credentials("BASIC", " ", "lab:s3cret"), "200"),
        (credentials("bAsIc", "   ", "lab:s3cret"), "200"),
        (credentials("basic", " ", "lab:wrong"), "407"),
        (credentials("basic", " ", "LAB:s3cret"), "407"),
        (credentials("Bearer", " ", "lab:s3cret"), "407"),
        (credentials("Basicx", " ", "lab:s3cret"), "407"),
        (credentials("basic", "", "lab:s3cret"), "407"),
        ("basic".to_string(), "407"),
    ];
    for (value, want) in cases {
        for connect in [false, true] {
            let request = if connect {
                format!(
                    "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nProxy-Authorization: {value}\r\n\r\n",
                    origin.addr
                )
            } else {
                format!(
                    "GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\nProxy-Authorization: {value}\r\nConnection: close\r\n\r\n",
                    origin.addr
                )
            };
            let mut stream = tokio::net::TcpStream::connect(mt.addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
                .await
                .unwrap();
            let head = String::from_utf8_lossy(&read_head(&mut stream).await).into_owned();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {want}")),
                "{value:?} (CONNECT: {connect}) → {head}"
            );
        }
    }
    mt.shutdown().await;
}

/// A mailtap whose proxy listens on `listen` (data in a temp dir); stopped and awaited by
/// [`Listening::stop`].
struct Listening {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Listening {
    async fn start(listen: &str, extra: &str) -> Listening {
        let dir = tempfile::tempdir().unwrap();
        let mut config = mailtap::config::Config::parse(&format!("{extra}\n")).unwrap();
        config.proxy.listen = listen.parse().unwrap();
        config.paths.data = dir.path().join("data");
        config.paths.logs = dir.path().join("logs");
        config.builtin_smtp.listen = "127.0.0.1:0".parse().unwrap();
        let app = mailtap::app::App::start(&config)
            .await
            .expect("mailtap starts");
        let addr = app.proxy_addr();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        Listening {
            addr,
            stop,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT * 3, self.task)
            .await
            .expect("mailtap stopped")
            .expect("mailtap task did not panic");
    }
}

#[tokio::test]
async fn ipv4_mapped_clients_match_ipv4_allow_entries() {
    // Guards issue 10.10: on an IPv6 socket an IPv4 client is `::ffff:127.0.0.1`; the default
    // allow list (127.0.0.0/8) must still admit it, and the 403 text names it as IPv4.
    let origin = origin().await;
    // A socket bound to the mapped loopback address sees peers exactly as a `[::]` listener
    // does, without listening beyond loopback.
    let mt = Listening::start("[::ffff:127.0.0.1]:0", "").await;
    assert!(mt.addr.is_ipv6(), "{}", mt.addr);
    let proxy = format!("http://127.0.0.1:{}", mt.addr.port());
    let url = format!("http://{}/", origin.addr);
    let (code, out, err) = curl(&["-i", "-x", &proxy, &url]).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    mt.stop().await;
    let mt = Listening::start("[::ffff:127.0.0.1]:0", "[proxy]\nallow = [\"10.0.0.0/8\"]").await;
    let proxy = format!("http://127.0.0.1:{}", mt.addr.port());
    let (_, out, _) = curl(&["-i", "-x", &proxy, &url]).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("127.0.0.1 is not allowed"), "{out}");
    mt.stop().await;
    assert_eq!(origin.seen.lock().unwrap().len(), 1);
}

/// A network namespace joined to the host by a veth pair: the host end has `.1`, the namespace
/// end `.2` of a /30 in 10.200.0.0/16. Both are removed when this is dropped, pass or fail.
struct NetNs {
    name: String,
    host_if: String,
    host_ip: std::net::Ipv4Addr,
    ns_ip: std::net::Ipv4Addr,
}

/// Runs `ip` with `args`; `Err` carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    fn create() -> Result<NetNs, String> {
        let pid = std::process::id();
        // Interface names are at most 15 bytes; the /30 is picked from the pid so that two test
        // processes at once do not collide.
        let tag = pid % 100_000;
        let third = (pid % 250) as u8 + 1;
        let ns = NetNs {
            name: format!("mailtap-test-{pid}"),
            host_if: format!("mtv{tag}h"),
            host_ip: std::net::Ipv4Addr::new(10, 200, third, 1),
            ns_ip: std::net::Ipv4Addr::new(10, 200, third, 2),
        };
        // From here on, Drop removes whatever was made.
        let ns_if = format!("mtv{tag}n");
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns_if])?;
        inside(&["link", "set", &ns_if, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// curl run inside the namespace through `proxy` (bounded); returns the response head.
    async fn curl_via(&self, proxy: &str, url: &str) -> String {
        let out = tokio::time::timeout(
            WAIT * 2,
            tokio::process::Command::new("ip")
                .args(["netns", "exec", &self.name, "curl", "-sS", "-i"])
                .args(["--max-time", "10", "-x", proxy, url])
                .output(),
        )
        .await
        .expect("curl in the namespace finished")
        .expect("ip netns exec runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; then the namespace.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[tokio::test]
async fn allow_list_from_a_real_non_loopback_address() {
    // Guards [proxy].allow against a client that is not loopback: a curl in a network namespace
    // (10.200.x.2 over a veth pair) is admitted or refused by the list, on an IPv4 socket and
    // on an IPv6 socket where it arrives IPv4-mapped.
    let found = gate::find_executable(&gate::search_dirs(), "ip")
        .ok_or_else(|| "the `ip` tool (iproute2) is not installed".to_string());
    let gate = gate::gate(
        gate::ci_env(),
        found,
        gate::is_root(),
        "creating a network namespace",
    );
    if gate::act(gate).is_none() {
        return;
    }
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(e) => panic!("cannot create the test namespace: {e}"),
    };
    let origin = origin().await;
    let url = format!("http://{}/", origin.addr);
    let (host, client) = (ns.host_ip, ns.ns_ip);
    let cases = [
        (format!("{host}:0"), format!("[\"{client}/32\"]"), "200"),
        (
            format!("{host}:0"),
            format!("[\"{host}/32\", \"127.0.0.0/8\"]"),
            "403",
        ),
        (format!("{host}:0"), String::new(), "403"),
        (
            format!("[::ffff:{host}]:0"),
            format!("[\"{client}/32\"]"),
            "200",
        ),
        (
            format!("[::ffff:{host}]:0"),
            format!("[\"::ffff:{client}/128\"]"),
            "200",
        ),
        (format!("[::ffff:{host}]:0"), String::new(), "403"),
        (
            format!("[::ffff:{host}]:0"),
            "[\"10.200.0.0/16\"]".to_string(),
            "200",
        ),
    ];
    let mut forwarded = 0;
    for (listen, allow, want) in cases {
        let extra = if allow.is_empty() {
            String::new()
        } else {
            format!("[proxy]\nallow = {allow}")
        };
        let mt = Listening::start(&listen, &extra).await;
        let proxy = format!("http://{host}:{}", mt.addr.port());
        let head = ns.curl_via(&proxy, &url).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {want}")),
            "listen {listen}, allow {allow:?}: {head}"
        );
        if want == "403" {
            assert!(head.contains(&format!("{client} is not allowed")), "{head}");
        } else {
            forwarded += 1;
        }
        mt.stop().await;
    }
    assert_eq!(origin.seen.lock().unwrap().len(), forwarded);
    assert!(origin
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.peer.ip().is_loopback()));
}
