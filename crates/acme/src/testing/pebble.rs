//! Pebble and pebble-challtestsrv, started for one test on free loopback ports and killed
//! when dropped. Pebble's own HTTPS listener uses a certificate from a CA this harness
//! makes (rcgen); the ACME client trusts only that CA (`ca_roots`).
//!
//! Fails loudly when the binaries are missing: `scripts/setup.sh` installs Debian's
//! `pebble` package, which ships both.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use tempfile::TempDir;
use tokio::process::{Child, Command};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running Pebble (the ACME CA) and pebble-challtestsrv (its DNS server, whose TXT
/// records the tests set through [`ChallTestSrvDns`](crate::ChallTestSrvDns)), in a
/// temp dir; both processes are killed when this is dropped.
#[derive(Debug)]
pub struct Pebble {
    _dir: TempDir,
    /// `https://127.0.0.1:P/dir`.
    pub directory_url: String,
    /// Pebble's management API (`https://127.0.0.1:M`).
    pub management_url: String,
    /// challtestsrv's management API (`http://127.0.0.1:C`).
    pub challtestsrv_url: String,
    /// The CA (PEM file) that signed Pebble's listener certificate.
    pub listener_ca: PathBuf,
    listener_ca_der: Vec<u8>,
    _pebble: Child,
    _chall: Child,
}

/// A TCP port free on 127.0.0.1 (and, for DNS, free for UDP too).
fn free_port(udp_too: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !udp_too || UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn require(bin: &str) {
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: install Debian's `pebble` package (scripts/setup.sh does)"
    );
}

/// Write a CA and a `localhost`/`127.0.0.1` leaf it signs; returns the CA's DER.
fn listener_pki(dir: &Path) -> Vec<u8> {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "pebble listener test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("listener-ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("listener.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("listener.key"), leaf_key.serialize_pem()).unwrap();
    ca_cert.der().to_vec()
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

impl Pebble {
    /// Starts both on free loopback ports and waits (to a deadline) until they listen;
    /// panics when the binaries are missing or they do not come up.
    pub async fn start() -> Pebble {
        require(PEBBLE);
        require(CHALLTESTSRV);
        // A port picked free can be taken before the child binds it: retry with new ports.
        for attempt in 0..3 {
            if let Some(p) = Self::try_start().await {
                return p;
            }
            eprintln!("pebble did not come up (attempt {attempt}), retrying on new ports");
        }
        panic!("pebble did not start on three sets of free ports");
    }

    async fn try_start() -> Option<Pebble> {
        let dir = tempfile::tempdir().unwrap();
        let ca_der = listener_pki(dir.path());
        let (dns, chall_mgmt, acme, mgmt, http01, tls01) = (
            free_port(true),
            free_port(false),
            free_port(false),
            free_port(false),
            free_port(false),
            free_port(false),
        );
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                "certificate": dir.path().join("listener.pem"),
                "privateKey": dir.path().join("listener.key"),
                "httpPort": http01,
                "tlsPort": tls01,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());

        let mut chall = Command::new(CHALLTESTSRV)
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pebble-challtestsrv");
        let mut pebble = Command::new(PEBBLE)
            .args(["-config", config_path.to_str().unwrap()])
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // every order runs the DNS-01 challenge (no reuse of earlier authorizations)
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pebble");

        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if port_open(acme).await && port_open(mgmt).await && port_open(chall_mgmt).await {
                break;
            }
            let exited = pebble.try_wait().ok().flatten().is_some()
                || chall.try_wait().ok().flatten().is_some();
            if exited || Instant::now() > deadline {
                for f in [
                    "pebble.log",
                    "pebble.err",
                    "challtestsrv.log",
                    "challtestsrv.err",
                ] {
                    let text = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
                    eprintln!("--- {f}\n{text}");
                }
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Pebble {
            directory_url: format!("https://127.0.0.1:{acme}/dir"),
            management_url: format!("https://127.0.0.1:{mgmt}"),
            challtestsrv_url: format!("http://127.0.0.1:{chall_mgmt}"),
            listener_ca: dir.path().join("listener-ca.pem"),
            listener_ca_der: ca_der,
            _dir: dir,
            _pebble: pebble,
            _chall: chall,
        })
    }

    fn https(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_der(&self.listener_ca_der).unwrap()])
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Pebble's issuing root (`GET /roots/0` on the management API), DER.
    pub async fn issuing_root(&self) -> Vec<u8> {
        let pem = self
            .https()
            .get(format!("{}/roots/0", self.management_url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(&pem)
            .unwrap()
            .to_vec()
    }
}
