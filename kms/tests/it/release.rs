//! The release path end to end: anvil + contracts + simulator evidence + real RA-TLS.

use std::time::{Duration, Instant};

use cairn_attestation::{parse_ra_tls_extensions, ra_tls_report_data, RaTlsCert};
use cairn_kms::unix_now;
use cairn_kms_client::KmsConnection;
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::alloy::primitives::B256;
use cairn_onchain::{recorded_boot_info, BootInfo};
use cairn_protocol::api::{
    AppKeyResponse, InclusionProofResponse, LogEntriesResponse, MetaResponse, PATH_LOG_ENTRIES,
    PATH_LOG_INCLUSION, PATH_META,
};
use cairn_protocol::sig;
use cairn_tlog::{
    leaf_hash, verify_inclusion, CheckpointVerifier, Hash, RecordVersion, ReleaseKind,
    ReleaseRecord,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::world::{image, pki, verifier_for, World, CONFIRMATIONS};

/// The boot info of `cert`'s evidence, verified here (not by the KMS).
fn boot_info_of_cert(cert: &RaTlsCert) -> BootInfo {
    let (_, x509) = X509Certificate::from_der(cert.cert_der.as_ref()).unwrap();
    let report_data = ra_tls_report_data(x509.tbs_certificate.subject_pki.raw);
    let evidence = parse_ra_tls_extensions(cert.cert_der.as_ref()).unwrap();
    let verified = verifier_for(&pki())
        .verify(
            &evidence.quote,
            &evidence.event_log,
            &report_data,
            unix_now(),
        )
        .unwrap();
    cairn_kms_client::boot_info(&verified, image().os_image_hash().0)
}

pub use crate::world::app_key;

/// Check a receipt: the checkpoint is signed by the node, the entry at `log_index` is
/// an app-key record for `app_id`, and its inclusion proof verifies against the
/// checkpoint's root.
pub async fn check_receipt(
    client: &mut KmsConnection,
    node_address: [u8; 20],
    r: &AppKeyResponse,
    app_id: [u8; 20],
) -> ReleaseRecord {
    let meta: MetaResponse = client.get(PATH_META).await.unwrap();
    assert_eq!(meta.node_address, node_address);
    let origin = r.receipt.checkpoint.lines().next().unwrap();
    let cp = CheckpointVerifier::new(origin, Address::from(node_address))
        .unwrap()
        .open(r.receipt.checkpoint.as_bytes())
        .unwrap();
    let i = r.receipt.log_index;
    assert!(i < cp.size());
    let entries: LogEntriesResponse = client
        .get(&format!("{PATH_LOG_ENTRIES}?start={i}&end={}", i + 1))
        .await
        .unwrap();
    let entry = &entries.entries[0].0;
    let proof: InclusionProofResponse = client
        .get(&format!(
            "{PATH_LOG_INCLUSION}?index={i}&size={}",
            cp.size()
        ))
        .await
        .unwrap();
    let hashes: Vec<Hash> = proof.hashes.iter().map(|h| Hash(h.0)).collect();
    verify_inclusion(&leaf_hash(entry), i, cp.size(), &hashes, &cp.root()).unwrap();
    let record = ReleaseRecord::decode(entry).unwrap();
    assert_eq!(record.kind, ReleaseKind::AppKey);
    assert_eq!(record.boot.app_id.into_array(), app_id);
    assert_eq!(record.kms_node.into_array(), node_address);
    assert_eq!(record.policy_block_number, r.receipt.policy_block_number);
    assert_eq!(record.policy_block_hash.0, r.receipt.policy_block_hash);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_app_gets_keys_signed_by_the_root_key_registered_on_chain() {
    let (w, kms, guest, cert, mut client) = World::serving_guest(0xA1, 0x01).await;
    let r = app_key(&mut client).await.unwrap();

    // The KMS signature recovers to the k256 key registered on chain.
    let app_pub = sig::compressed(
        k256::ecdsa::SigningKey::from_bytes((&*r.app_key).into())
            .unwrap()
            .verifying_key(),
    );
    let recovered =
        sig::recover_kms_app_key_signer(&guest.app_id.0, &app_pub, &r.kms_signature).unwrap();
    let at = w.client.policy_block().await.unwrap();
    let on_chain = w.client.root_keys(at).await.unwrap().unwrap();
    assert_eq!(
        on_chain.k256_pubkey.as_ref(),
        sig::compressed(&recovered).as_slice()
    );
    assert_eq!(r.key_generation, 1);
    assert_eq!(r.os_image_hash, crate::world::image().os_image_hash().0);

    // Logged, with a verifiable receipt.
    let record = check_receipt(&mut client, kms.node.address(), &r, guest.app_id.0).await;
    assert_eq!(record.chain_id, w.chain_id());
    // Version 2: the whole boot info the chain judged, as an independent verification
    // of the guest's certificate gives it (mrSystem and the advisory ids included).
    assert_eq!(record.version, RecordVersion::V2);
    assert_eq!(record.boot, recorded_boot_info(&boot_info_of_cert(&cert)));
    assert_eq!(record.boot.tcb_status, "UpToDate");
    assert_ne!(record.boot.mr_system, B256::ZERO);
    assert_eq!(
        kms.node.metrics().releases("app_key", "released", "none"),
        1
    );
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_keys_across_requests_connections_and_a_restart() {
    let (w, kms, guest, cert, mut c1) = World::serving_guest(0xA2, 0x02).await;
    let a = app_key(&mut c1).await.unwrap();
    let b = app_key(&mut c1).await.unwrap();
    // A new certificate (new key, new quote) of the same instance.
    let mut c2 = kms.client(Some(&guest.cert())).await;
    let c = app_key(&mut c2).await.unwrap();
    for other in [&b, &c] {
        assert_eq!(*other.app_key, *a.app_key);
        assert_eq!(*other.disk_key, *a.disk_key);
        assert_eq!(*other.env_secret, *a.env_secret);
        assert_eq!(other.kms_signature, a.kms_signature);
    }
    assert_eq!(
        (
            a.receipt.log_index,
            b.receipt.log_index,
            c.receipt.log_index
        ),
        (0, 1, 2)
    );
    drop((c1, c2));

    let address = kms.node.address();
    let dir = kms.stop().await;
    let opts = w.options(dir.path(), 0xA2, &crate::world::pki());
    let kms = w.serve(opts, dir).await;
    assert_eq!(
        kms.node.address(),
        address,
        "restart keeps the node identity"
    );
    assert_eq!(kms.node.log().size(), 3, "restart keeps the log");
    let mut c3 = kms.client(Some(&cert)).await;
    let d = app_key(&mut c3).await.unwrap();
    assert_eq!(*d.app_key, *a.app_key);
    assert_eq!(*d.disk_key, *a.disk_key);
    assert_eq!(d.receipt.log_index, 3);
    check_receipt(&mut c3, address, &d, guest.app_id.0).await;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_of_the_app_gets_the_app_keys_but_its_own_disk_key() {
    let (w, kms) = World::serving(0xA3).await;
    let a = app_key(&mut kms.client(Some(&w.guest(0x03).cert())).await)
        .await
        .unwrap();
    let b = app_key(&mut kms.client(Some(&w.guest(0x04).cert())).await)
        .await
        .unwrap();
    assert_eq!(*a.app_key, *b.app_key);
    assert_eq!(*a.env_secret, *b.env_secret);
    assert_ne!(*a.disk_key, *b.disk_key);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_gets_anchored_on_chain_from_the_node_address() {
    let (w, kms) = World::serving(0xA4).await;
    let mut client = w.released_client(&kms, 0x05).await;
    app_key(&mut client).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        w.mine(1).await;
        if let Some(anchor) = w.latest_anchor_of(kms.node.address()).await {
            if anchor.tree_size == 2 {
                assert_eq!(anchor.root_hash.0, kms.node.log().root_at(2).unwrap().0);
                break;
            }
        }
        assert!(Instant::now() < deadline, "checkpoint not anchored in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = CONFIRMATIONS;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_from_a_pccs_serves_releases() {
    use cairn_attestation::simulator::SimPccs;
    use cairn_attestation::testing::ServedPccs;
    use cairn_attestation::{PccsClient, Verifier};
    use cairn_kms::CollateralSource;

    let w = World::new().await;
    let served = ServedPccs::start(SimPccs::new(crate::world::pki())).await;

    let (mut opts, dir) = w.prepare(0xA5, &crate::world::pki()).await;
    opts.verifier =
        Verifier::dangerous_with_simulator_root(crate::world::pki().root_ca_der()).into();
    opts.collateral = CollateralSource::Pccs(PccsClient::new(served.url()).unwrap().into());
    let kms = w.serve(opts, dir).await;

    let guest = w.guest(0x06);
    let r = app_key(&mut kms.client(Some(&guest.cert())).await)
        .await
        .unwrap();
    assert_eq!(r.receipt.log_index, 0);
    kms.stop().await;
    served.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_is_a_kms_rpc_ra_tls_cert_issued_by_the_root_ca() {
    use cairn_attestation::{parse_ra_tls_extensions, Usage};
    use p256::ecdsa::signature::Verifier as _;
    use x509_parser::prelude::*;

    let (_w, kms) = World::serving(0xA6).await;
    let client = kms.client(None).await;
    let server_der = client.peer().cert_der().to_vec();
    assert_eq!(server_der, kms.node.server_cert().cert_der.to_vec());
    // The one chain check every client of the KMS runs (cairn-kms-client's app_key).
    cairn_attestation::RootCa::from_der(kms.node.root_keys().ca().cert_der().to_vec())
        .unwrap()
        .verify_issued(&server_der, cairn_kms::unix_now())
        .unwrap();
    let ev = parse_ra_tls_extensions(&server_der).unwrap();
    assert_eq!(ev.usage, Some(Usage::KmsRpc));
    let (_, leaf) = X509Certificate::from_der(&server_der).unwrap();
    let root_der = kms.node.root_keys().ca().cert_der().to_vec();
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    assert_eq!(leaf.issuer(), root.subject());
    let root_key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&root.public_key().subject_public_key.data)
            .unwrap();
    let sig = p256::ecdsa::Signature::from_der(&leaf.signature_value.data).unwrap();
    root_key
        .verify(leaf.tbs_certificate.as_ref(), &sig)
        .unwrap();
    kms.stop().await;
}
