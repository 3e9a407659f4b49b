//! mailtap's CA and leaves on disk and in memory: created once and reused across restarts (same
//! fingerprint, key 0600), refused when half missing, the leaf shape browsers require, the leaf
//! cache bound, and the `mailtap ca` command.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use mailtap::app::App;
use mailtap::config::Config;
use mailtap::proxy::mitm::{CertAuthority, LeafCache, CA_CERT_FILE, CA_KEY_FILE};
use x509_parser::extensions::GeneralName;

/// Starts mailtap on port 0 with data under `data`, fetches `/ca.der`, stops it.
async fn served_ca_der(data: &Path) -> Vec<u8> {
    let mut config = Config::parse("").unwrap();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.builtin_smtp.listen = "127.0.0.1:0".parse().unwrap();
    config.paths.data = data.to_path_buf();
    config.paths.logs = data.join("logs");
    let app = App::start(&config).await.expect("mailtap starts");
    let addr = app.proxy_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let (status, der, err) = common::curl(&[&format!("http://{addr}/ca.der")]).await;
    assert_eq!(status, 0, "{err}");
    let _ = tx.send(());
    tokio::time::timeout(common::WAIT, task)
        .await
        .unwrap()
        .unwrap();
    der
}

#[tokio::test]
async fn the_ca_survives_a_restart_with_its_key_private() {
    // Guards CA persistence: the second run serves the same certificate, the key stays 0600.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = served_ca_der(&data).await;
    let second = served_ca_der(&data).await;
    assert!(!first.is_empty());
    assert_eq!(first, second, "same CA after a restart");
    let ca = CertAuthority::load_or_create(&data.join("ca")).unwrap();
    assert_eq!(ca.cert_der(), &first[..]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.join("ca").join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&data.join("ca")), 0o700);
    }
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_not_replaced() {
    // Guards against silently replacing a CA browsers trust: startup fails naming the key file.
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("data").join("ca");
    let original = CertAuthority::load_or_create(&ca_dir)
        .unwrap()
        .cert_pem()
        .to_string();
    std::fs::remove_file(ca_dir.join(CA_KEY_FILE)).unwrap();
    let mut config = Config::parse("").unwrap();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.builtin_smtp.listen = "127.0.0.1:0".parse().unwrap();
    config.paths.data = dir.path().join("data");
    let err = App::start(&config)
        .await
        .err()
        .expect("startup refused")
        .to_string();
    assert!(err.contains(CA_KEY_FILE), "{err}");
    let kept = std::fs::read_to_string(ca_dir.join(CA_CERT_FILE)).unwrap();
    assert_eq!(kept, original, "the certificate file is untouched");
    // A mismatched key is refused too.
    std::fs::write(
        ca_dir.join(CA_KEY_FILE),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err = CertAuthority::load_or_create(&ca_dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn leaves_have_the_shape_browsers_require() {
    // Guards the leaf: SAN (DNS or IP), serverAuth, not a CA, backdated, short, CA-signed chain.
    let dir = tempfile::tempdir().unwrap();
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let now = chrono::Utc::now().timestamp();
    for (host, want_ip) in [
        ("mail.example.test", None),
        ("[::1]", Some(vec![0u8; 15])),
        ("127.0.0.1", Some(vec![127, 0, 0, 1])),
    ] {
        let leaf = ca.mint(host, 7).unwrap();
        let (rest, pem) = x509_parser::pem::parse_x509_pem(leaf.chain_pem.as_bytes()).unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(rest).unwrap();
        assert_eq!(ca_pem.contents, ca.cert_der(), "chain carries the CA");
        let cert = pem.parse_x509().unwrap();
        let issuer = ca_pem.parse_x509().unwrap();
        assert_eq!(cert.issuer(), issuer.subject());
        assert!(
            cert.verify_signature(Some(issuer.public_key())).is_ok(),
            "{host}"
        );
        let eku = cert
            .extended_key_usage()
            .unwrap()
            .expect("EKU present")
            .value;
        assert!(eku.server_auth && !eku.any, "{host}");
        let bc = cert.basic_constraints().unwrap().map(|b| b.value.ca);
        assert_eq!(bc, Some(false), "{host}");
        let v = cert.validity();
        let (nb, na) = (v.not_before.timestamp(), v.not_after.timestamp());
        assert!(
            nb < now - 3600 && nb > now - 3 * 86_400,
            "{host}: backdated a little"
        );
        assert!(
            na > now + 6 * 86_400 && na <= now + 8 * 86_400,
            "{host}: about a week"
        );
        let san = cert.subject_alternative_name().unwrap().expect("SAN").value;
        match (&san.general_names[..], &want_ip) {
            ([GeneralName::DNSName(name)], None) => assert_eq!(*name, host),
            ([GeneralName::IPAddress(ip)], Some(want)) if want.len() == 4 => {
                assert_eq!(*ip, &want[..])
            }
            ([GeneralName::IPAddress(ip)], Some(_)) => assert_eq!(ip.len(), 16, "IPv6 SAN"),
            (other, _) => panic!("{host}: SAN {other:?}"),
        }
    }
}

#[test]
fn the_leaf_cache_is_bounded_and_least_recently_used_goes_first() {
    // Guards the cache bound and its eviction order, and that hits do not mint.
    let dir = tempfile::tempdir().unwrap();
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let cache = LeafCache::new(3, 7);
    let t0 = Instant::now();
    for i in 0..10 {
        cache.acceptor(&ca, &format!("h{i}.example.test")).unwrap();
        assert!(cache.stats().entries <= 3);
    }
    let mint_each = t0.elapsed() / 10;
    assert_eq!(cache.stats().entries, 3);
    assert_eq!(cache.stats().mints, 10);
    let t1 = Instant::now();
    cache.acceptor(&ca, "H7.example.test").unwrap();
    let hit = t1.elapsed();
    assert_eq!(cache.stats().mints, 10, "a cached host is not minted again");
    assert_eq!(cache.stats().hits, 1);
    cache.acceptor(&ca, "new.example.test").unwrap();
    assert!(
        !cache.contains("h8.example.test"),
        "h8 was the least recently used"
    );
    assert!(cache.contains("h7.example.test") && cache.contains("h9.example.test"));
    assert!(!cache.contains("h0.example.test"));
    println!("leaf mint ≈ {mint_each:?} per host, cache hit {hit:?}");
    assert!(hit < Duration::from_millis(50));
}

#[test]
fn mailtap_ca_prints_path_and_fingerprints() {
    // Guards `mailtap ca`: it creates the CA once and prints the path, the SHA-256 fingerprint
    // and the SPKI hash of the stored key (what Chromium's spki list takes).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("mailtap.toml");
    std::fs::write(
        &config,
        format!("[paths]\ndata = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailtap"))
            .args(["--config", config.to_str().unwrap(), "ca"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    let ca = CertAuthority::load_or_create(&data.join("ca")).unwrap();
    assert!(
        first.contains(&data.join("ca").join(CA_CERT_FILE).display().to_string()),
        "{first}"
    );
    assert!(first.contains(&ca.fingerprint_sha256()), "{first}");
    let key = std::fs::read_to_string(data.join("ca").join(CA_KEY_FILE)).unwrap();
    let spki =
        rcgen::PublicKeyData::subject_public_key_info(&rcgen::KeyPair::from_pem(&key).unwrap());
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
    let want = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    assert!(
        first.contains(&format!("--ignore-certificate-errors-spki-list={want}")),
        "{first}"
    );
    assert_eq!(run(), first, "the second run shows the same CA");
}

#[tokio::test]
async fn unusable_extra_roots_stop_startup_naming_the_file() {
    // Guards [mitm].extra_roots: a missing file or one without a certificate is a start error.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for (path, why) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (junk, "junk.pem"),
    ] {
        let mut config = Config::parse("").unwrap();
        config.proxy.listen = "127.0.0.1:0".parse().unwrap();
        config.builtin_smtp.listen = "127.0.0.1:0".parse().unwrap();
        config.paths.data = dir.path().join("data");
        config.mitm.extra_roots = vec![path.clone()];
        let err = App::start(&config)
            .await
            .err()
            .expect("startup refused")
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains(why),
            "{err}"
        );
    }
}
