//! HTTPS on the edge against the real thing: Debian's `pebble` (an RFC 8555
//! ACME server) and `pebble-challtestsrv` (its DNS), started here on free
//! ports with a configuration written here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{APP_START, Control, Edge, WEB_IMAGE, free_port};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use serde_json::json;

const DOMAIN: &str = "berth.test";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pebble and its DNS, with a root to trust for Pebble's own HTTPS and the
/// root of the certificates it issues.
struct Pebble {
    dir: PathBuf,
    directory: String,
    https_root: PathBuf,
    challtestsrv: String,
    dns: String,
    _procs: Vec<Proc>,
}

fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Proc(
        cmd.stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e} (apt-get install pebble)")),
    )
}

/// Waits until `port` accepts, failing at once (with the program's log) if
/// the program that should listen there has exited.
fn wait_port(port: u16, proc: &mut Proc, dir: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = || std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!(
                "{name} exited ({status}) before listening on {port}:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} ({name}):\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Pebble {
    fn start(dir: &Path, validity_s: Option<u64>) -> Pebble {
        std::fs::create_dir_all(dir).unwrap();
        // A CA for Pebble's HTTPS listeners.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "pebble test root");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
        std::fs::write(dir.join("pebble.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("pebble.key"), key.serialize_pem()).unwrap();
        let https_root = dir.join("pebble-https-root.pem");
        std::fs::write(&https_root, ca_cert.pem()).unwrap();

        let (acme, mgmt, dns, dns_mgmt) = (free_port(), free_port(), free_port(), free_port());
        let mut config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.join("pebble.pem"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(v) = validity_s {
            config["pebble"]["certificateValidityPeriod"] = json!(v);
        }
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let challtestsrv = spawn(
            dir,
            "challtestsrv",
            Command::new("pebble-challtestsrv").args([
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ]),
        );
        let pebble = spawn(
            dir,
            "pebble",
            Command::new("pebble")
                .args([
                    "-config",
                    dir.join("pebble.json").to_str().unwrap(),
                    "-dnsserver",
                    &format!("127.0.0.1:{dns}"),
                ])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
        );
        let (mut challtestsrv, mut pebble) = (challtestsrv, pebble);
        wait_port(acme, &mut pebble, dir, "pebble");
        wait_port(mgmt, &mut pebble, dir, "pebble");
        wait_port(dns_mgmt, &mut challtestsrv, dir, "challtestsrv");
        Pebble {
            dir: dir.to_path_buf(),
            directory: format!("https://localhost:{acme}/dir"),
            https_root,
            challtestsrv: format!("http://127.0.0.1:{dns_mgmt}"),
            dns: format!("127.0.0.1:{dns}"),
            _procs: vec![challtestsrv, pebble],
        }
        .with_issuing_root(mgmt)
    }

    /// Downloads the root of the certificates Pebble issues (made anew at
    /// every Pebble start).
    fn with_issuing_root(self, mgmt: u16) -> Pebble {
        let pem = https_get_raw(mgmt, "localhost", &self.https_root, "/roots/0");
        std::fs::write(self.dir.join("issuing-root.pem"), pem).unwrap();
        self
    }

    fn issuing_root(&self) -> PathBuf {
        self.dir.join("issuing-root.pem")
    }

    fn edge_env(&self) -> Vec<(String, String)> {
        vec![
            ("BERTH_TLS".into(), "acme".into()),
            ("BERTH_PREVIEW_DOMAIN".into(), DOMAIN.into()),
            ("BERTH_ACME_DIRECTORY".into(), self.directory.clone()),
            (
                "BERTH_ACME_CA_ROOT".into(),
                self.https_root.display().to_string(),
            ),
            ("BERTH_ACME_EMAIL".into(), "ops@berth.test".into()),
            ("BERTH_DNS_PROPAGATION_RESOLVER".into(), self.dns.clone()),
            ("BERTH_DNS_PROPAGATION_TIMEOUT".into(), "60".into()),
        ]
    }
}

/// A TLS connection that verifies the chain against `ca` and the name `sni`.
struct TlsConn {
    stream: SslStream<TcpStream>,
}

impl TlsConn {
    fn open(port: u16, sni: &str, ca: &Path) -> Result<TlsConn, String> {
        let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
        builder.set_ca_file(ca).unwrap();
        builder.set_verify(SslVerifyMode::PEER);
        builder.set_alpn_protos(b"\x08http/1.1").unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let stream = builder
            .build()
            .connect(sni, tcp)
            .map_err(|e| e.to_string())?;
        Ok(TlsConn { stream })
    }

    fn serial(&self) -> String {
        let cert = self.stream.ssl().peer_certificate().unwrap();
        cert.serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_string()
    }

    fn version(&self) -> &'static str {
        self.stream.ssl().version_str()
    }

    /// One keep-alive request; returns (status, body).
    fn get(&mut self, host: &str, path: &str) -> (u16, String) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(&mut self.stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn https_get_raw(port: u16, host: &str, ca: &Path, path: &str) -> String {
    let mut conn = TlsConn::open(port, host, ca).unwrap();
    let (status, body) = conn.get(host, path);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn stack(edge_env: Vec<(String, String)>) -> (Control, Edge, String, u16) {
    common::ensure_web_image();
    let control =
        Control::start(&[("BERTH_IMAGE", WEB_IMAGE), ("BERTH_PREVIEW_DOMAIN", DOMAIN)]).await;
    let https = free_port();
    let mut env: Vec<(&str, &str)> = edge_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let bind = format!("127.0.0.1:{https}");
    env.push(("BERTH_EDGE_HTTPS_BIND", &bind));
    let edge = Edge::start(&control, &env).await;
    let id = control
        .create(json!({"ports": [3000], "start": APP_START}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    (control, edge, id, https)
}

/// Waits until the edge serves a certificate that `ca` validates for
/// `host`, and the app behind it answers; returns that (kept-alive) connection.
async fn wait_served(https: u16, host: &str, ca: &Path, edge: &Edge) -> (TlsConn, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut conn) = TlsConn::open(https, host, ca) {
            let (status, body) = conn.get(host, "/");
            if status == 200 {
                return (conn, body);
            }
        }
        assert!(
            Instant::now() < deadline,
            "not served over HTTPS in time\n{}",
            edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_acme_wildcard_certificate_serves_previews_and_renews_in_place() {
    let tmp = std::env::temp_dir().join(format!("berth-pebble-{}", std::process::id()));
    let pebble = Pebble::start(&tmp, None);
    let mut env = pebble.edge_env();
    env.push(("BERTH_DNS_PROVIDER".into(), "challtestsrv".into()));
    env.push(("BERTH_CHALLTESTSRV_URL".into(), pebble.challtestsrv.clone()));
    let (control, edge, id, https) = stack(env).await;
    let host = edge.preview_host(&id, 3000);

    // Obtained over DNS-01 and served for the sandbox's preview host,
    // validated against Pebble's root.
    let (mut conn, body) = wait_served(https, &host, &pebble.issuing_root(), &edge).await;
    assert!(matches!(conn.version(), "TLSv1.2" | "TLSv1.3"));
    assert_eq!(body, format!("hello from {id}"));
    let first = conn.serial();
    // The apex is covered too.
    assert!(TlsConn::open(https, DOMAIN, &pebble.issuing_root()).is_ok());
    assert_eq!(
        edge.metric("berth_edge_certificate_renewals_total{result=\"ok\"}")
            .await,
        1.0
    );
    assert!(
        edge.metric("berth_edge_certificate_expiry_timestamp_seconds")
            .await
            > 1.7e9
    );
    // Kept on disk, key owner-only; the TXT records are gone.
    let acme_dir = control.data_dir.join("edge/acme");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(acme_dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(acme_dir.join("account.json").exists());
    let dns = berth_edge::tls::propagation::Propagation {
        resolver: Some(pebble.dns.parse().unwrap()),
        timeout: Duration::from_secs(1),
        poll: Duration::from_millis(100),
    };
    assert!(
        dns.txt_values(&format!("_acme-challenge.{DOMAIN}"))
            .await
            .unwrap()
            .is_empty(),
        "the TXT records were cleaned up"
    );

    // Plain HTTP redirects to HTTPS.
    let r = edge.get(&host, "/some/path?x=1").await;
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://{host}:{https}/some/path?x=1")
    );

    // A renewal swaps the certificate in memory: new handshakes get the new
    // one, and the connection opened before keeps working.
    let renew = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/tls/renew", edge.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(renew.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    let second = loop {
        let fresh = TlsConn::open(https, &host, &pebble.issuing_root()).unwrap();
        if fresh.serial() != first {
            break fresh.serial();
        }
        assert!(Instant::now() < deadline, "no renewal\n{}", edge.log_text());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_ne!(first, second);
    assert_eq!(
        conn.serial(),
        first,
        "the old connection keeps its certificate"
    );
    assert_eq!(conn.get(&host, "/").0, 200, "and stays up");
    assert_eq!(
        edge.metric("berth_edge_certificate_renewals_total{result=\"ok\"}")
            .await,
        2.0
    );
    drop(conn);
    drop(edge);

    // A restart with the same CA directory serves the kept certificate
    // without ordering one.
    let restart = |directory: String| {
        let mut env = pebble.edge_env();
        env.retain(|(k, _)| k != "BERTH_ACME_DIRECTORY");
        env.push(("BERTH_ACME_DIRECTORY".into(), directory));
        env.push(("BERTH_DNS_PROVIDER".into(), "challtestsrv".into()));
        env.push(("BERTH_CHALLTESTSRV_URL".into(), pebble.challtestsrv.clone()));
        let https = free_port();
        env.push(("BERTH_EDGE_HTTPS_BIND".into(), format!("127.0.0.1:{https}")));
        (env, https)
    };
    let (env, https) = restart(pebble.directory.clone());
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let edge = Edge::start(&control, &refs).await;
    let (conn, _) = wait_served(https, &host, &pebble.issuing_root(), &edge).await;
    assert_eq!(
        conn.serial(),
        second,
        "the kept certificate is served again"
    );
    assert_eq!(
        edge.metric("berth_edge_certificate_renewals_total{result=\"ok\"}")
            .await,
        0.0
    );
    drop(conn);
    drop(edge);

    // Another directory (staging → production, say): a new certificate is
    // ordered at start, the kept one is not served on.
    let (env, https) = restart(format!("{}?production", pebble.directory));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let edge = Edge::start(&control, &refs).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(conn) = TlsConn::open(https, &host, &pebble.issuing_root()) {
            if conn.serial() != second {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new certificate\n{}",
            edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(edge.log_text().contains("issued by another ACME directory"));
    drop(edge);
    drop(control);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test]
async fn a_failing_dns_provider_leaves_the_old_certificate_serving_and_says_so() {
    let tmp = std::env::temp_dir().join(format!("berth-pebble-fail-{}", std::process::id()));
    let pebble = Pebble::start(&tmp, None);
    // An exec hook that talks to challtestsrv, until a flag file says to fail.
    let flag = tmp.join("fail");
    let hook = tmp.join("dns-hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\n[ -e {flag} ] && {{ echo 'the DNS API is down' >&2; exit 1; }}\n\
             case \"$1\" in\n  present) body='{{\"host\":\"'\"$2\"'.\",\"value\":\"'\"$3\"'\"}}'; path=set-txt ;;\n  \
             cleanup) body='{{\"host\":\"'\"$2\"'.\"}}'; path=clear-txt ;;\nesac\n\
             exec curl -sf -X POST -d \"$body\" {url}/$path\n",
            flag = flag.display(),
            url = pebble.challtestsrv
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut env = pebble.edge_env();
    env.push(("BERTH_DNS_PROVIDER".into(), "exec".into()));
    env.push(("BERTH_DNS_EXEC".into(), hook.display().to_string()));
    let (control, edge, id, https) = stack(env).await;
    let host = edge.preview_host(&id, 3000);
    let (conn, _) = wait_served(https, &host, &pebble.issuing_root(), &edge).await;
    let serial = conn.serial();

    std::fs::write(&flag, "").unwrap();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/tls/renew", edge.admin))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while edge
        .metric("berth_edge_certificate_renewals_total{result=\"failed\"}")
        .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the failure was not reported\n{}",
            edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        edge.log_text().contains("the DNS API is down"),
        "the cause is logged"
    );
    let mut after =
        TlsConn::open(https, &host, &pebble.issuing_root()).expect("still a valid certificate");
    assert_eq!(after.serial(), serial, "the old certificate keeps serving");
    assert_eq!(after.get(&host, "/").0, 200);
    drop(control);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test]
async fn local_mode_serves_a_certificate_that_chains_to_the_local_ca() {
    let (control, edge, id, https) = stack(vec![
        ("BERTH_TLS".into(), "local".into()),
        ("BERTH_PREVIEW_DOMAIN".into(), DOMAIN.into()),
    ])
    .await;
    let host = edge.preview_host(&id, 3000);
    let ca = control.data_dir.join("edge/tls-local/local-ca.pem");
    assert!(ca.exists());
    assert!(
        edge.log_text().contains("local-ca.pem"),
        "the CA's path is logged"
    );
    let (_, body) = wait_served(https, &host, &ca, &edge).await;
    assert_eq!(body, format!("hello from {id}"));
    // HTTP/2 is offered first.
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    builder.set_ca_file(&ca).unwrap();
    builder.set_alpn_protos(b"\x02h2\x08http/1.1").unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", https)).unwrap();
    let h2 = builder.build().connect(&host, tcp).unwrap();
    assert_eq!(h2.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    // TLS 1.1 is refused.
    let mut old = SslConnector::builder(SslMethod::tls()).unwrap();
    old.set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_1))
        .unwrap();
    old.set_verify(SslVerifyMode::NONE);
    let tcp = TcpStream::connect(("127.0.0.1", https)).unwrap();
    assert!(old.build().connect(&host, tcp).is_err());
}
