//! Admission: a registering CVM becomes routable only after every check below, in order;
//! the first that fails refuses it with a named check (docs/gateway.md, "Admission").
//!
//! ```text
//!  0 standing   the gateway itself is allowed, named by KmsAuth, under the chain's root
//!  1 chain      client chain = leaf → app CA → the KMS root registered on chain, for the
//!               leaf's app id, valid now (the handshake proved possession of the leaf key)
//!  2 evidence   the leaf's quote verifies, binds the leaf key, its event log replays to
//!               RTMR3 and measures the same app id
//!  3 OS image   MRTD/RTMR0-2 are a known image's; a measured os-image-hash names it
//!  4 compose    SHA-256(compose sent) = measured compose hash; it enables the gateway;
//!               its port_policy is what the proxy enforces
//!  5 policy     KmsAuth.isAppAllowed(boot info) at head − confirmations
//!  6 admit      routable until revoked, expired or replaced
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_attestation::{
    parse_ra_tls_extensions, spki_of, verify_app_chain, CertRole, OsImageManifest, RaTlsError,
    Usage, VerifiedQuote,
};
use cairn_protocol::compose::{compose_hash, AppCompose};
use cairn_protocol::gateway::{RegisterRequest, RegisterResponse};
use sha2::{Digest, Sha256};

use crate::registry::{block_ref, Admitted, Denial, Instance, Reach};
use crate::reject::{ApiError, Check, Dependency};
use crate::service::Shared;
use cairn_onchain::unix_now;

/// The peer of a registration connection.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    /// The certificate chain it presented, DER, leaf first (the handshake proved it holds
    /// the leaf key).
    pub chain: Arc<Vec<Vec<u8>>>,
    /// Its address: the gateway dials the instance's ports there.
    pub addr: SocketAddr,
}

/// The OS image whose manifest matches the quote's MRTD and RTMR0-2; a measured
/// `os-image-hash` must name the same image ([`cairn_attestation::booted_os_image`]).
pub(crate) fn match_os_image(
    quote: &VerifiedQuote,
    images: &[OsImageManifest],
) -> Result<[u8; 32], ApiError> {
    cairn_attestation::booted_os_image(quote, images)
        .map_err(|e| ApiError::denied(Check::OsImageMeasurements, e.to_string()))
}

/// An evidence failure as an admission refusal (collateral problems are 503: retry).
fn evidence_error(e: RaTlsError) -> ApiError {
    use cairn_attestation::Error as A;
    match e {
        // The step that refused, as the KMS names it ([`cairn_service::EvidenceStep`]).
        RaTlsError::Evidence(inner) => match inner.downcast::<A>() {
            Ok(e) => cairn_service::EvidenceFailure::from(*e).into(),
            Err(other) => ApiError::denied(Check::Quote, other.to_string()),
        },
        e @ RaTlsError::AppIdMismatch { .. } => ApiError::denied(Check::EventLog, e.to_string()),
        e => ApiError::denied(Check::ClientCert, e.to_string()),
    }
}

/// Run admission for `peer` and its request; on success the instance is routable.
pub(crate) async fn admit(
    g: &Shared,
    peer: &Peer,
    req: RegisterRequest,
) -> Result<(Arc<Instance>, RegisterResponse), ApiError> {
    // 0. The gateway's own standing.
    if let Some(reason) = g.policy.self_denied() {
        return Err(ApiError::Unavailable {
            dependency: Dependency::SelfCheck,
            reason,
        });
    }
    let now = unix_now();

    // 1. The chain, to the root KmsAuth registers, for the leaf's app id.
    let leaf = peer
        .chain
        .first()
        .ok_or_else(|| ApiError::denied(Check::ClientCert, "no client certificate"))?;
    let app_id = parse_ra_tls_extensions(leaf)
        .map_err(|e| ApiError::denied(Check::ClientCert, e.to_string()))?
        .app_id
        .ok_or_else(|| ApiError::denied(Check::ClientCert, "the leaf carries no app id"))?;
    verify_app_chain(&g.identity.root, &peer.chain, &app_id, now)
        .map_err(|e| ApiError::denied(Check::Chain, e.to_string()))?;

    // 2. The leaf's own evidence (what the CVM runs).
    let quote = g
        .options
        .verifier
        .verify_ra_tls_cert(leaf, Some(Usage::AppCustom), g.options.pccs.as_deref(), now)
        .await
        .map_err(evidence_error)?;
    if quote.app_id().0 != app_id {
        return Err(ApiError::denied(
            Check::EventLog,
            "the measured app id is not the certificate's",
        ));
    }

    // 3. The OS image.
    let os_image_hash = match_os_image(&quote, &g.options.os_images)?;

    // 4. The compose: the measured one, enabling the gateway; its port policy.
    if compose_hash(req.app_compose.as_bytes()) != quote.compose_hash().0 {
        return Err(ApiError::denied(
            Check::Compose,
            "the app-compose.json sent is not the one the CVM measured",
        ));
    }
    let compose = AppCompose::parse(req.app_compose.as_bytes())
        .map_err(|e| ApiError::denied(Check::Compose, e.to_string()))?;
    if !compose.gateway_enabled {
        return Err(ApiError::denied(
            Check::GatewayDisabled,
            "the measured compose does not enable the gateway (gateway_enabled)",
        ));
    }
    req.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;

    // 5. The chain's verdict at the pinned block.
    let boot = cairn_kms_client::boot_info(&quote, os_image_hash);
    let at = g.chain.policy_block().await?;
    g.chain.is_app_allowed(&boot, at).await?;

    // 6. Routable.
    let instance_id = quote.instance_id().as_bytes().to_vec();
    let key = match <[u8; 20]>::try_from(instance_id.as_slice()) {
        Ok(id) => id,
        Err(_) => {
            let spki = spki_of(leaf, CertRole::Leaf)
                .map_err(|e| ApiError::denied(Check::ClientCert, e.to_string()))?;
            let digest: [u8; 32] = Sha256::digest(spki).into();
            let mut key = [0u8; 20];
            key.copy_from_slice(&digest[..20]);
            key
        }
    };
    let instance = g.registry.upsert(Admitted {
        app_id,
        instance_id: instance_id.clone(),
        key,
        reach: Reach {
            address: peer.addr.ip(),
            port_map: req.port_map,
            policy: compose.effective_port_policy(),
        },
        boot,
        allowed_at: at,
    });
    let limits = &g.options.registration;
    Ok((
        instance,
        RegisterResponse {
            app_id,
            instance_id,
            policy_block: block_ref(at),
            reregister_after_secs: limits.reregister_after.as_secs(),
            expires_in_secs: limits.ttl.as_secs(),
        },
    ))
}

/// Record a refused registration (for the status page and the metrics).
pub(crate) fn record_refusal(g: &Shared, peer: &Peer, e: &ApiError) {
    let (outcome, code) = match e {
        ApiError::Denied { check, .. } => ("denied", check.code()),
        ApiError::Unavailable { dependency, .. } => ("unavailable", dependency.code()),
        ApiError::BadRequest { .. } => ("bad_request", "bad_request"),
        _ => ("error", "internal"),
    };
    g.metrics.registration(outcome, code);
    let app_id = peer
        .chain
        .first()
        .and_then(|leaf| parse_ra_tls_extensions(leaf).ok())
        .and_then(|ev| ev.app_id);
    let reason = e.body().error.message;
    tracing::info!(peer = %peer.addr, app_id = ?app_id.map(hex::encode), %code, %reason, "registration refused");
    g.registry.record_denial(Denial {
        app_id,
        instance_id: Vec::new(),
        code: code.to_owned(),
        reason,
        block: None,
        at: std::time::Instant::now(),
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider, OsImageHash};
    use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
    use cairn_attestation::{Collateral, EventLog, Tee, Verifier};

    use super::*;

    /// A verified simulator quote of a TD booted on `image`, its log measured up to
    /// `system-ready` with `measured` as the os-image-hash (none: boot events only).
    fn quote_on(image: &OsImage, measured: Option<OsImageHash>) -> VerifiedQuote {
        let now = unix_now();
        let pki = Arc::new(SimPki::new(SimPkiConfig::new([7; 32], now)).unwrap());
        let tdx =
            SimTdx::new(Arc::clone(&pki), SimHostConfig::new([1; 32], image.clone())).unwrap();
        let compose = ComposeHash::of_compose(b"{}");
        let app = AppId::from_compose_hash(&compose);
        let mut log = EventLog::new();
        log.measure_boot(&tdx, &app, &compose, &InstanceId::derive(&[1], &app))
            .unwrap();
        if let Some(h) = measured {
            log.measure_system_ready(&tdx, &h, &KeyProvider::kms(&[1, 2, 3]))
                .unwrap();
        }
        let report_data = [9u8; 64];
        let quote = tdx.quote(&report_data).unwrap();
        Verifier::dangerous_with_simulator_root(pki.root_ca_der())
            .with_collateral(Collateral::new(pki.collateral()).unwrap())
            .verify(&quote, &log.to_json(), &report_data, now)
            .unwrap()
    }

    fn check(r: Result<[u8; 32], ApiError>) -> Option<Check> {
        match r {
            Err(ApiError::Denied { check, .. }) => Some(check),
            _ => None,
        }
    }

    #[test]
    fn only_a_known_os_image_matches_and_a_measured_hash_must_name_it() {
        let ours = OsImage::example("cairn-os", "1.0");
        let other = OsImage::example("other-os", "2.0");
        let q = quote_on(&ours, None);
        assert_eq!(
            match_os_image(&q, &[other.manifest(), ours.manifest()]).unwrap(),
            ours.os_image_hash().0
        );
        assert_eq!(
            check(match_os_image(&q, &[other.manifest()])),
            Some(Check::OsImageMeasurements)
        );
        // the TD measured the hash of another image than its measurements show
        let lying = quote_on(&ours, Some(other.os_image_hash()));
        assert_eq!(
            check(match_os_image(&lying, &[ours.manifest(), other.manifest()])),
            Some(Check::OsImageMeasurements)
        );
        let honest = quote_on(&ours, Some(ours.os_image_hash()));
        assert!(match_os_image(&honest, &[ours.manifest()]).is_ok());
    }

    #[test]
    fn evidence_failures_map_to_their_checks() {
        use cairn_attestation::Error as A;
        let wrap = |e: A| RaTlsError::Evidence(Box::new(e));
        let check = |e: ApiError| match e {
            ApiError::Denied { check, .. } => Some(check),
            _ => None,
        };
        assert_eq!(
            check(evidence_error(wrap(A::ReportDataMismatch))),
            Some(Check::ReportData)
        );
        assert_eq!(
            check(evidence_error(wrap(A::MalformedEventLog("x".into())))),
            Some(Check::EventLog)
        );
        assert!(matches!(
            evidence_error(wrap(A::NoCollateral)),
            ApiError::Unavailable {
                dependency: Dependency::Collateral,
                ..
            }
        ));
        assert_eq!(
            check(evidence_error(RaTlsError::MissingExtension("quote"))),
            Some(Check::ClientCert)
        );
        assert_eq!(
            check(evidence_error(RaTlsError::AppIdMismatch {
                cert: "a".into(),
                verified: "b".into()
            })),
            Some(Check::EventLog)
        );
    }
}
