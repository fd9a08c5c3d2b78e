//! Root-key rotation by vote (docs/rotation.md): generation 1 → 2 with a transition
//! window, on two nodes; before, during and after the window; the old master erased.

use cairn_kms::testing::{held_generations, open_live_store};
use cairn_kms::{Error, MasterSecret, RootKeys, SecretStore, SECRETS_DIR};
use cairn_protocol::api::{AppKeyRequest, AppKeyResponse, PreviousGeneration, PATH_APP_KEY};
use cairn_tlog::{ReleaseKind, ReleaseRecord};
use hyper::{Method, StatusCode};

use crate::world::{answer, pki, ErrorAnswer, Running, World, CONFIRMATIONS, MASTER};

const NEW_MASTER: [u8; 32] = [0x77; 32];
const WINDOW_SECS: u64 = 3600;

async fn ask(
    node: &Running,
    cert: &cairn_attestation::RaTlsCert,
    previous: Option<PreviousGeneration>,
) -> Result<AppKeyResponse, ErrorAnswer> {
    let req = AppKeyRequest {
        previous_generation: previous,
        ..AppKeyRequest::default()
    };
    node.client(Some(cert))
        .await
        .call(Method::POST, PATH_APP_KEY, Some(&req))
        .await
        .map_err(answer)
}

fn held(node: &Running) -> Vec<u64> {
    held_generations(node.dir.path())
}

fn store_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(store_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn generation_of(node: &Running, index: u64) -> (ReleaseKind, u32) {
    let rec = ReleaseRecord::decode(&node.node.log().entry(index).unwrap()).unwrap();
    (rec.kind, rec.key_generation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voted_rotation_serves_both_generations_in_its_window_then_erases_the_old_one() {
    let w = World::new().await;
    let a = w.start(0xE1).await;
    let b = w.start(0xE2).await;
    let guest = w.guest(0x41);
    let cert = guest.cert();

    // Before: generation 1 alone; asking for a previous generation that does not exist
    // is a typed refusal when required, nothing when optional.
    let before = ask(&a, &cert, Some(PreviousGeneration::IfServed))
        .await
        .unwrap();
    assert_eq!(
        (before.key_generation, before.previous.is_none()),
        (1, true)
    );
    let refused = ask(&a, &cert, Some(PreviousGeneration::Required))
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body.error.code, "denied.key_generation");

    // Node A generates generation 2 as pending: nothing changes until the chain says so.
    {
        let store = open_live_store(a.dir.path());
        store
            .add_generation(MasterSecret::from_bytes(NEW_MASTER), 2)
            .unwrap();
    }
    a.node.sync_generations().await.unwrap();
    assert_eq!(
        a.node.key_generation(),
        1,
        "a pending generation is not served"
    );
    // and is not handed to peers before the vote.
    let b_opts = w.options(b.dir.path(), 0xE2, &pki());
    match cairn_kms::onboard_generation(&b_opts, a.addr, 2).await {
        Err(Error::OnboardRefused { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }

    // Governance rotates with a one-hour window (the owner here; DaoFlow.t.sol and
    // cairn-onchain's governance tests vote the same call).
    let new_root = RootKeys::derive(&MasterSecret::from_bytes(NEW_MASTER)).unwrap();
    let until = w.head_timestamp().await + WINDOW_SECS;
    w.rotate_root_keys(2, &new_root.k256_public(), &new_root.ca().spki_der(), until)
        .await;
    w.mine(CONFIRMATIONS).await;
    a.node.sync_generations().await.unwrap();

    // During: A serves generation 2 and, on request, generation 1 of the same app, with
    // a log entry for each generation; its TLS certificate is now under the new root.
    assert_eq!(a.node.key_generation(), 2);
    assert_eq!(a.node.previous_generation(), Some((1, until)));
    let mut conn = a.client(Some(&cert)).await;
    let during = conn
        .app_key_with(&AppKeyRequest {
            previous_generation: Some(PreviousGeneration::IfServed),
            ..AppKeyRequest::default()
        })
        .await
        .unwrap()
        .keys;
    assert_eq!(during.key_generation, 2);
    assert_ne!(*during.app_key, *before.app_key);
    assert_eq!(during.root_ca_cert, new_root.ca().cert_pem());
    let previous = during.previous.as_ref().expect("window open");
    assert_eq!(previous.key_generation, 1);
    assert_eq!(previous.valid_until, until);
    assert_eq!(*previous.app_key, *before.app_key);
    assert_eq!(*previous.disk_key, *before.disk_key);
    assert_eq!(*previous.env_secret, *before.env_secret);
    assert_eq!(previous.kms_signature, before.kms_signature);
    assert_eq!(
        generation_of(&a, during.receipt.log_index),
        (ReleaseKind::AppKey, 2)
    );
    assert_eq!(
        generation_of(&a, previous.receipt.log_index),
        (ReleaseKind::AppKey, 1)
    );
    // Without asking, only generation 2.
    let plain = ask(&a, &cert, None).await.unwrap();
    assert!(plain.previous.is_none());

    // B does not hold generation 2 yet: it refuses (guests fail over to A) …
    let down = ask(&b, &cert, None).await.unwrap_err();
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.body.error.code, "unavailable.key_generation");
    // … until its operator stops it, onboards generation 2 from A (checked against the
    // chain; `cairn-kms onboard --generation 2 A`) and starts it again.
    let b_dir = b.stop().await;
    let report = cairn_kms::onboard_generation(&b_opts, a.addr, 2)
        .await
        .unwrap();
    assert_eq!(report.key_generation, 2);
    let b = w.serve(w.options(b_dir.path(), 0xE2, &pki()), b_dir).await;
    assert_eq!(held(&b), vec![1, 2]);
    assert_eq!(b.node.previous_generation(), Some((1, until)));
    let local =
        ReleaseRecord::decode(&b.node.log().entry(report.local_log_index).unwrap()).unwrap();
    assert_eq!(
        (local.kind, local.key_generation),
        (ReleaseKind::KmsOnboardReceipt, 2)
    );
    let on_b = ask(&b, &cert, Some(PreviousGeneration::Required))
        .await
        .unwrap();
    assert_eq!(on_b.key_generation, 2);
    assert_eq!(*on_b.app_key, *during.app_key);
    assert_eq!(*on_b.previous.as_ref().unwrap().app_key, *before.app_key);

    // After the window: generation 1 is refused and its master erased on both nodes.
    w.increase_time(WINDOW_SECS).await;
    w.mine(CONFIRMATIONS).await;
    for node in [&a, &b] {
        node.node.sync_generations().await.unwrap();
        assert_eq!(held(node), vec![2], "generation 1 erased");
        assert_eq!(node.node.previous_generation(), None);
        let refused = ask(node, &cert, Some(PreviousGeneration::Required))
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.body.error.code, "denied.key_generation");
        let after = ask(node, &cert, Some(PreviousGeneration::IfServed))
            .await
            .unwrap();
        assert_eq!((after.key_generation, after.previous.is_none()), (2, true));
        assert_eq!(*after.app_key, *during.app_key);
        let bytes = store_bytes(&node.dir.path().join(SECRETS_DIR));
        assert!(
            !bytes.windows(32).any(|w| w == MASTER),
            "no store file still holds generation 1's master"
        );
    }
    // A retired generation is not handed out by onboarding either (404), and a held
    // one is refused before anything is asked.
    let c_dir = tempfile::tempdir().unwrap();
    let c_opts = w.options(c_dir.path(), 0xE4, &pki());
    w.register_kms(&c_opts, None).await;
    SecretStore::open(c_dir.path().join(SECRETS_DIR))
        .unwrap()
        .install(MasterSecret::from_bytes(NEW_MASTER), 2)
        .unwrap();
    match cairn_kms::onboard_generation(&c_opts, a.addr, 1).await {
        Err(Error::OnboardRefused { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
    match cairn_kms::onboard_generation(&c_opts, a.addr, 2).await {
        Err(Error::GenerationHeld { generation: 2 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(held_generations(c_dir.path()), vec![2]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reopened_after_the_window_erases_the_retired_master_at_open() {
    let w = World::new().await;
    let a = w.start(0xE3).await;
    {
        let store = open_live_store(a.dir.path());
        store
            .add_generation(MasterSecret::from_bytes(NEW_MASTER), 2)
            .unwrap();
    }
    let new_root = RootKeys::derive(&MasterSecret::from_bytes(NEW_MASTER)).unwrap();
    let until = w.head_timestamp().await + WINDOW_SECS;
    w.rotate_root_keys(2, &new_root.k256_public(), &new_root.ca().spki_der(), until)
        .await;
    let dir = a.stop().await;
    assert_eq!(held_generations(dir.path()).len(), 2);
    w.increase_time(WINDOW_SECS).await;
    w.mine(CONFIRMATIONS).await;
    let a = w.serve(w.options(dir.path(), 0xE3, &pki()), dir).await;
    assert_eq!(a.node.key_generation(), 2);
    assert_eq!(held(&a), vec![2]);
    a.stop().await;
}
