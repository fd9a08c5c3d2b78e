//! Hostile KMSes for the guest's negative tests. Each is the world's real KMS node — the
//! same `cairn_kms::Node`, router and accept loop (`TestNet::serve_disguised`) — with
//! exactly one thing changed: the TLS certificate it presents, or one field of one answer
//! rewritten by a layer in front of the real router (a sign-cert leaf re-issued with the
//! app CA key the test derives from the cluster's master secret, as a compromised KMS
//! could). Nothing here answers in the KMS's place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use cairn_attestation::ids::{AppId, InstanceId};
use cairn_attestation::simulator::OsImage;
use cairn_attestation::{ExtensionValues, RaTlsCert, RaTlsCertBuilder, Usage};
use cairn_kms::testing::{pki, root_keys, RunningKms, TestNet};
use cairn_kms::{AppKeys, CaKeys, MasterSecret, Node};
use cairn_protocol::api::{MetaResponse, SignCertResponse, PATH_META, PATH_SIGN_CERT};
use rcgen::{DnType, ExtendedKeyUsagePurpose, SanType};
use tokio::sync::watch;

use crate::world::root_keys_of;

/// What is wrong with a KMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Nothing: the honest KMS.
    None,
    /// Presents a plain self-signed certificate (no evidence) instead of its RA-TLS one.
    PlainCert,
    /// Presents an RA-TLS certificate of its own TD, issued by the genuine root CA, with
    /// usage `app:custom` instead of `kms:rpc`.
    WrongUsage,
    /// A fake KMS: presents a valid `kms:rpc` RA-TLS certificate of its own TD that is
    /// self-signed, not issued by the root CA; the real router behind it returns the
    /// genuine root CA certificate (which is public).
    SelfSignedTls,
    /// `meta` serves the manifest of another OS image than the one its quote measured.
    WrongImage,
    /// sign-cert leaves re-issued by the genuine app CA without the caller's quote and
    /// event log (the guest must not hand such a leaf out as RA-TLS).
    LeafWithoutEvidence,
    /// sign-cert leaves re-issued by the genuine app CA without the app id extension.
    LeafWithoutAppId,
    /// sign-cert chains whose leaf and app CA come from another cluster's app CA (the
    /// genuine root CA kept last).
    ForeignChain,
    /// sign-cert leaves re-issued by the genuine app CA valid for a year from now
    /// (back-dated an hour), whatever validity the caller asked for.
    IgnoresValidity,
    /// sign-cert requests held in front of the router until [`SignCertGate::open`]
    /// (to keep agent requests in flight), then answered by the real KMS.
    StallSignCert,
}

/// The gate of a [`Hostile::StallSignCert`] KMS.
#[derive(Clone)]
pub struct SignCertGate {
    /// sign-cert requests that reached the gate.
    pub arrived: Arc<AtomicU64>,
    open: Arc<watch::Sender<bool>>,
}

impl SignCertGate {
    /// Let the held requests (and every later one) through.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }

    /// sign-cert requests that reached the gate so far.
    pub fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::SeqCst)
    }
}

/// A node of `net` on host `host_seed` (bootstrapped, registered), served as `hostile`
/// says; guests of `app_id` are the ones whose answers a layer rewrites.
pub async fn start(
    net: &TestNet,
    host_seed: u8,
    app_id: AppId,
    hostile: Hostile,
) -> (RunningKms, Option<SignCertGate>) {
    let (opts, dir) = net.prepare(host_seed, &pki()).await;
    let tee = Arc::clone(&opts.tee);
    let event_log = opts.event_log.clone();
    let node = Node::open(opts).await.unwrap();
    let router = cairn_kms::router(Arc::clone(&node));
    let kms_cert = |usage: Usage| {
        RaTlsCertBuilder::new(usage)
            .common_name("Cairn KMS")
            .event_log(&event_log)
    };
    let mut gate = None;
    // Another certificate in front of the real router, or the node's own certificate
    // and the real router behind a layer.
    let (cert, app) = match hostile {
        Hostile::None => return (net.serve_node(node, dir).await, None),
        Hostile::PlainCert => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["kms".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let plain = RaTlsCert::from_parts(cert.der().clone(), key.serialize_der());
            (Some(plain), router)
        }
        Hostile::WrongUsage => {
            let cert = kms_cert(Usage::AppCustom)
                .build_signed_by(tee.as_ref(), &root_keys().ca().issuer())
                .unwrap();
            (Some(cert), router)
        }
        Hostile::SelfSignedTls => {
            let cert = kms_cert(Usage::KmsRpc).build(tee.as_ref()).unwrap();
            (Some(cert), router)
        }
        Hostile::WrongImage => (None, router.layer(middleware::from_fn(serve_another_image))),
        Hostile::LeafWithoutEvidence
        | Hostile::LeafWithoutAppId
        | Hostile::ForeignChain
        | Hostile::IgnoresValidity => {
            let reissue = Reissue::new(hostile, app_id);
            let layer = middleware::from_fn_with_state(reissue, reissue_sign_cert);
            (None, router.layer(layer))
        }
        Hostile::StallSignCert => {
            let (open, _) = watch::channel(false);
            let g = SignCertGate {
                arrived: Arc::new(AtomicU64::new(0)),
                open: Arc::new(open),
            };
            gate = Some(g.clone());
            let layer = middleware::from_fn_with_state(g, hold_sign_cert);
            (None, router.layer(layer))
        }
    };
    let own = node.server_cert();
    let cert = cert.as_ref().unwrap_or(&own);
    (net.serve_disguised(node, dir, cert, app).await, gate)
}

/// Rewrite the JSON body of a successful answer to `path` with `f`; everything else
/// passes untouched.
async fn rewrite<T>(req: Request, next: Next, path: &str, f: impl FnOnce(&mut T)) -> Response
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let matches = req.uri().path() == path;
    let resp = next.run(req).await;
    if !matches || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let mut value: T = serde_json::from_slice(&bytes).unwrap();
    f(&mut value);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(serde_json::to_vec(&value).unwrap()))
}

async fn serve_another_image(req: Request, next: Next) -> Response {
    rewrite(req, next, PATH_META, |meta: &mut MetaResponse| {
        let other = OsImage::example("cairn-os", "0.9").manifest().to_bytes();
        meta.os_image_manifest = String::from_utf8(other).unwrap();
    })
    .await
}

async fn hold_sign_cert(State(gate): State<SignCertGate>, req: Request, next: Next) -> Response {
    if req.uri().path() == PATH_SIGN_CERT {
        gate.arrived.fetch_add(1, Ordering::SeqCst);
        let mut open = gate.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
    next.run(req).await
}

/// How [`reissue_sign_cert`] re-issues a leaf.
#[derive(Clone)]
struct Reissue {
    hostile: Hostile,
    /// The CA that re-signs the leaf: the app's genuine app CA, or another cluster's.
    ca: Arc<AppKeys>,
}

impl Reissue {
    fn new(hostile: Hostile, app_id: AppId) -> Reissue {
        let master = match hostile {
            Hostile::ForeignChain => [0x77; 32],
            _ => crate::world::MASTER,
        };
        let ca = AppKeys::derive(
            &MasterSecret::from_bytes(master),
            &root_keys_of(master),
            &app_id,
            &InstanceId::None,
        )
        .unwrap();
        Reissue {
            hostile,
            ca: Arc::new(ca),
        }
    }
}

async fn reissue_sign_cert(State(r): State<Reissue>, req: Request, next: Next) -> Response {
    rewrite(req, next, PATH_SIGN_CERT, |resp: &mut SignCertResponse| {
        let chain = &mut resp.certificate_chain;
        let a_year = (r.hostile == Hostile::IgnoresValidity).then(|| {
            // Back-dated as the real KMS back-dates its leaves: a leaf from "now" may be
            // a second ahead of the guest's clock when it checks the chain.
            let now = time::OffsetDateTime::now_utc();
            (
                now - time::Duration::hours(1),
                now + time::Duration::days(365),
            )
        });
        chain[0] = reissue(
            &chain[0],
            r.ca.ca(),
            r.hostile != Hostile::LeafWithoutEvidence,
            r.hostile != Hostile::LeafWithoutAppId,
            a_year,
        );
        if r.hostile == Hostile::ForeignChain {
            chain[1] = r.ca.ca().cert_pem().to_owned();
        }
    })
    .await
}

/// The KMS-issued `leaf` (PEM) signed again by `ca`: same key, subject, names and usages,
/// the same validity unless `validity` says otherwise; the caller's quote and event log
/// and the app id copied only when asked.
fn reissue(
    leaf: &str,
    ca: &CaKeys,
    evidence: bool,
    app_id: bool,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) -> String {
    let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).unwrap();
    let ev = cairn_attestation::parse_ra_tls_extensions(&pem.contents).unwrap();
    let mut params = rcgen::CertificateParams::default();
    if let Some(cn) = cert.subject().iter_common_name().next() {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str().unwrap());
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                params
                    .subject_alt_names
                    .push(SanType::DnsName((*d).try_into().unwrap()));
            }
        }
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if eku.value.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
    }
    (params.not_before, params.not_after) = validity.unwrap_or((
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
    ));
    params.custom_extensions = cairn_attestation::ra_tls_extensions(ExtensionValues {
        quote: evidence.then_some(ev.quote.as_slice()),
        event_log: evidence.then_some(ev.event_log.as_slice()),
        app_id: if app_id { ev.app_id.as_ref() } else { None },
        usage: Some(Usage::AppCustom),
    });
    let key = rcgen::SubjectPublicKeyInfo::from_der(cert.public_key().raw).unwrap();
    params.signed_by(&key, &ca.issuer()).unwrap().pem()
}
