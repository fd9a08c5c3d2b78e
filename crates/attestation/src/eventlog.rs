//! RTMR3 runtime events: digest, replay, the JSON event log, boot-order checks and the
//! identities the boot events carry (FORMATS.md "Runtime events").

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::consts::{
    BOOT_EVENT_ORDER, ENCRYPTED_ENV_HASH_INDEX, EVENT_APP_ID, EVENT_BOOT_MR_DONE,
    EVENT_COMPOSE_HASH, EVENT_ENCRYPTED_ENV_HASH, EVENT_INSTANCE_ID, EVENT_KEY_PROVIDER,
    EVENT_OS_IMAGE_HASH, EVENT_SYSTEM_PREPARING, EVENT_SYSTEM_READY, MAX_EVENTS, MAX_EVENT_LOG_LEN,
    MAX_EVENT_NAME_LEN, MAX_EVENT_PAYLOAD_LEN, MIN_BOOT_EVENTS, RUNTIME_EVENT_IMR,
    RUNTIME_EVENT_TYPE,
};
use crate::error::{check_len, Error, Result};
use crate::ids::{AppId, ComposeHash, InstanceId, KeyProvider, Measurement48, OsImageHash};
use crate::tee::Tee;

/// One runtime event extended into RTMR3.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RuntimeEvent {
    /// UTF-8 event name, e.g. `compose-hash`.
    pub name: String,
    /// Raw payload bytes.
    pub payload: Vec<u8>,
}

impl RuntimeEvent {
    /// A new event.
    pub fn new(name: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        RuntimeEvent {
            name: name.into(),
            payload: payload.into(),
        }
    }

    /// `SHA-384(u32_le(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)`.
    pub fn digest(&self) -> [u8; 48] {
        Sha384::new()
            .chain_update(RUNTIME_EVENT_TYPE.to_le_bytes())
            .chain_update(b":")
            .chain_update(self.name.as_bytes())
            .chain_update(b":")
            .chain_update(&self.payload)
            .finalize()
            .into()
    }
}

/// Extend a 48-byte register: `SHA-384(rtmr ‖ digest)`.
pub fn extend(rtmr: &[u8; 48], digest: &[u8; 48]) -> [u8; 48] {
    Sha384::new()
        .chain_update(rtmr)
        .chain_update(digest)
        .finalize()
        .into()
}

/// Replay events into RTMR3, starting from 48 zero bytes.
pub fn replay_rtmr3(events: &[RuntimeEvent]) -> [u8; 48] {
    events
        .iter()
        .fold([0u8; 48], |rtmr, e| extend(&rtmr, &e.digest()))
}

/// One event as JSON, the shape the guest agent returns.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventJson {
    imr: u32,
    event_type: u32,
    digest: String,
    event: String,
    event_payload: String,
}

/// Serialise events as the event-log JSON array of FORMATS.md.
pub fn to_json(events: &[RuntimeEvent]) -> Vec<u8> {
    let items: Vec<EventJson> = events
        .iter()
        .map(|e| EventJson {
            imr: RUNTIME_EVENT_IMR,
            event_type: RUNTIME_EVENT_TYPE,
            digest: hex::encode(e.digest()),
            event: e.name.clone(),
            event_payload: hex::encode(&e.payload),
        })
        .collect();
    serde_json::to_vec(&items).unwrap_or_default()
}

/// Parse an event-log JSON array, bounded by [`MAX_EVENT_LOG_LEN`] and [`MAX_EVENTS`].
///
/// Every entry must be an RTMR3 runtime event (`imr` 3, `event_type` 0x08000001) whose
/// recorded `digest` equals the digest of its name and payload.
pub fn from_json(bytes: &[u8]) -> Result<Vec<RuntimeEvent>> {
    check_len("event log", bytes.len(), MAX_EVENT_LOG_LEN)?;
    let items: Vec<EventJson> =
        serde_json::from_slice(bytes).map_err(|e| Error::MalformedEventLog(e.to_string()))?;
    check_len("event count", items.len(), MAX_EVENTS)?;
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        if item.imr != RUNTIME_EVENT_IMR || item.event_type != RUNTIME_EVENT_TYPE {
            return Err(Error::MalformedEventLog(format!(
                "event {index}: imr {} / event_type {:#x} is not an RTMR3 runtime event",
                item.imr, item.event_type
            )));
        }
        check_len("event name", item.event.len(), MAX_EVENT_NAME_LEN)?;
        if item.event_payload.len() > 2 * MAX_EVENT_PAYLOAD_LEN {
            return Err(Error::TooLarge {
                what: "event payload",
                len: item.event_payload.len() / 2,
                max: MAX_EVENT_PAYLOAD_LEN,
            });
        }
        let payload = hex::decode(&item.event_payload)
            .map_err(|e| Error::MalformedEventLog(format!("event {index}: payload: {e}")))?;
        let mut recorded = [0u8; 48];
        hex::decode_to_slice(&item.digest, &mut recorded)
            .map_err(|e| Error::MalformedEventLog(format!("event {index}: digest: {e}")))?;
        let event = RuntimeEvent {
            name: item.event,
            payload,
        };
        if event.digest() != recorded {
            return Err(Error::EventDigestMismatch {
                index,
                name: event.name,
            });
        }
        events.push(event);
    }
    Ok(events)
}

/// The identities carried by the boot events, decoded and checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BootIdentity {
    /// From `app-id`.
    pub app_id: AppId,
    /// From `compose-hash`.
    pub compose_hash: ComposeHash,
    /// From `instance-id`.
    pub instance_id: InstanceId,
    /// From `os-image-hash`, when measured.
    pub os_image_hash: Option<OsImageHash>,
    /// From `key-provider`, when measured.
    pub key_provider: Option<KeyProvider>,
    /// The raw `key-provider` payload (empty when not measured); input of `mr_system`.
    pub key_provider_payload: Vec<u8>,
    /// Whether `system-ready` was measured.
    pub system_ready: bool,
    /// The `encrypted-env-hash` payload when measured: SHA-256 of the `.encrypted-env`
    /// blob, or empty when the guest had none. `None`: not measured (dstack guests).
    pub encrypted_env_hash: Option<Vec<u8>>,
}

fn exact<const N: usize>(name: &'static str, payload: &[u8]) -> Result<[u8; N]> {
    <[u8; N]>::try_from(payload).map_err(|_| Error::EventPayload {
        name,
        reason: format!("expected {N} bytes, got {}", payload.len()),
    })
}

fn empty(name: &'static str, payload: &[u8]) -> Result<()> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(Error::EventPayload {
            name,
            reason: format!("expected an empty payload, got {} bytes", payload.len()),
        })
    }
}

/// Check the boot order and decode the boot identities.
///
/// The log must start with the boot sequence of FORMATS.md, in order, at least up to
/// `boot-mr-done` (a guest asks for keys before it measures `os-image-hash`). The system
/// events after `boot-mr-done` follow in order as far as they go; once `system-ready` is
/// measured, any application events may follow.
pub fn decode_boot_identity(events: &[RuntimeEvent]) -> Result<BootIdentity> {
    // The optional `encrypted-env-hash` sits right before `boot-mr-done`.
    let has_env = events
        .get(ENCRYPTED_ENV_HASH_INDEX)
        .is_some_and(|e| e.name == EVENT_ENCRYPTED_ENV_HASH);
    let mut order: Vec<&'static str> = BOOT_EVENT_ORDER.to_vec();
    if has_env {
        order.insert(ENCRYPTED_ENV_HASH_INDEX, EVENT_ENCRYPTED_ENV_HASH);
    }
    let min_events = MIN_BOOT_EVENTS + usize::from(has_env);
    // Length of the boot prefix actually present.
    let mut boot_len = 0;
    for (index, expected) in order.iter().enumerate() {
        match events.get(index) {
            Some(e) if e.name == *expected => boot_len = index + 1,
            Some(e) => {
                // A boot event out of order, or an application event before system-ready.
                return Err(Error::EventOrder {
                    index,
                    expected,
                    found: e.name.clone(),
                });
            }
            None if index < min_events => {
                return Err(Error::EventOrder {
                    index,
                    expected,
                    found: String::new(),
                })
            }
            None => break,
        }
    }
    // Position of the k-th event of BOOT_EVENT_ORDER in this log.
    let at = |k: usize| {
        if has_env && k >= ENCRYPTED_ENV_HASH_INDEX {
            k + 1
        } else {
            k
        }
    };
    let p = |k: usize| {
        events
            .get(at(k))
            .map(|e| e.payload.as_slice())
            .unwrap_or(&[])
    };
    empty(EVENT_SYSTEM_PREPARING, p(0))?;
    let app_id = AppId(exact::<20>(EVENT_APP_ID, p(1))?);
    let compose_hash = ComposeHash(exact::<32>(EVENT_COMPOSE_HASH, p(2))?);
    let instance_id = InstanceId::from_payload(p(3)).ok_or_else(|| Error::EventPayload {
        name: EVENT_INSTANCE_ID,
        reason: format!("expected 20 bytes or none, got {}", p(3).len()),
    })?;
    let encrypted_env_hash = if has_env {
        let payload = events
            .get(ENCRYPTED_ENV_HASH_INDEX)
            .map(|e| e.payload.clone())
            .unwrap_or_default();
        if !(payload.is_empty() || payload.len() == 32) {
            return Err(Error::EventPayload {
                name: EVENT_ENCRYPTED_ENV_HASH,
                reason: format!("expected 32 bytes or none, got {}", payload.len()),
            });
        }
        Some(payload)
    } else {
        None
    };
    empty(EVENT_BOOT_MR_DONE, p(4))?;
    let os_image_hash = if boot_len > at(5) {
        Some(OsImageHash(exact::<32>(EVENT_OS_IMAGE_HASH, p(5))?))
    } else {
        None
    };
    let (key_provider, key_provider_payload) = if boot_len > at(6) {
        let kp: KeyProvider = serde_json::from_slice(p(6)).map_err(|e| Error::EventPayload {
            name: EVENT_KEY_PROVIDER,
            reason: e.to_string(),
        })?;
        (Some(kp), p(6).to_vec())
    } else {
        (None, Vec::new())
    };
    let system_ready = boot_len > at(7);
    if system_ready {
        empty(EVENT_SYSTEM_READY, p(7))?;
    }
    Ok(BootIdentity {
        app_id,
        compose_hash,
        instance_id,
        os_image_hash,
        key_provider,
        key_provider_payload,
        system_ready,
        encrypted_env_hash,
    })
}

/// The `encrypted-env-hash` payload for a host share's `.encrypted-env`: SHA-256 of the
/// blob's exact bytes, or empty when there is none.
pub fn encrypted_env_hash_payload(blob: Option<&[u8]>) -> Vec<u8> {
    blob.map(|b| sha2::Sha256::digest(b).to_vec())
        .unwrap_or_default()
}

/// An event log that records each event and extends RTMR3 through a [`Tee`].
///
/// This is what a guest uses to measure its boot: `measure` extends first and records
/// only when the extension succeeded, so the log never claims an event RTMR3 lacks.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    events: Vec<RuntimeEvent>,
}

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extend RTMR3 with the event's digest, then record the event.
    pub fn measure(
        &mut self,
        tee: &dyn Tee,
        name: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<()> {
        let event = RuntimeEvent::new(name, payload);
        check_len("event name", event.name.len(), MAX_EVENT_NAME_LEN)?;
        check_len("event payload", event.payload.len(), MAX_EVENT_PAYLOAD_LEN)?;
        check_len("event count", self.events.len() + 1, MAX_EVENTS)?;
        tee.extend_rtmr3(&event.digest())?;
        self.events.push(event);
        Ok(())
    }

    /// Measure the boot-time events `system-preparing` … `boot-mr-done`.
    pub fn measure_boot(
        &mut self,
        tee: &dyn Tee,
        app_id: &AppId,
        compose_hash: &ComposeHash,
        instance_id: &InstanceId,
    ) -> Result<()> {
        self.measure(tee, EVENT_SYSTEM_PREPARING, Vec::new())?;
        self.measure(tee, EVENT_APP_ID, app_id.0.to_vec())?;
        self.measure(tee, EVENT_COMPOSE_HASH, compose_hash.0.to_vec())?;
        self.measure(tee, EVENT_INSTANCE_ID, instance_id.as_bytes().to_vec())?;
        self.measure(tee, EVENT_BOOT_MR_DONE, Vec::new())
    }

    /// Measure the boot-time events with the `encrypted-env-hash` of the host share's
    /// `.encrypted-env` (`None`: no such file) between `instance-id` and `boot-mr-done`.
    pub fn measure_boot_with_encrypted_env(
        &mut self,
        tee: &dyn Tee,
        app_id: &AppId,
        compose_hash: &ComposeHash,
        instance_id: &InstanceId,
        encrypted_env: Option<&[u8]>,
    ) -> Result<()> {
        self.measure(tee, EVENT_SYSTEM_PREPARING, Vec::new())?;
        self.measure(tee, EVENT_APP_ID, app_id.0.to_vec())?;
        self.measure(tee, EVENT_COMPOSE_HASH, compose_hash.0.to_vec())?;
        self.measure(tee, EVENT_INSTANCE_ID, instance_id.as_bytes().to_vec())?;
        self.measure(
            tee,
            EVENT_ENCRYPTED_ENV_HASH,
            encrypted_env_hash_payload(encrypted_env),
        )?;
        self.measure(tee, EVENT_BOOT_MR_DONE, Vec::new())
    }

    /// Measure `os-image-hash`, `key-provider` and `system-ready`.
    pub fn measure_system_ready(
        &mut self,
        tee: &dyn Tee,
        os_image_hash: &OsImageHash,
        key_provider: &KeyProvider,
    ) -> Result<()> {
        self.measure(tee, EVENT_OS_IMAGE_HASH, os_image_hash.0.to_vec())?;
        self.measure(tee, EVENT_KEY_PROVIDER, key_provider.to_payload())?;
        self.measure(tee, EVENT_SYSTEM_READY, Vec::new())
    }

    /// The recorded events.
    pub fn events(&self) -> &[RuntimeEvent] {
        &self.events
    }

    /// RTMR3 as replayed from the recorded events.
    pub fn rtmr3(&self) -> Measurement48 {
        Measurement48(replay_rtmr3(&self.events))
    }

    /// The event-log JSON.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(&self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_preparing_digest_matches_formats_check_value() {
        let d = hex::encode(RuntimeEvent::new(EVENT_SYSTEM_PREPARING, Vec::new()).digest());
        assert!(d.starts_with("f9974020ef50"), "{d}");
        assert!(d.ends_with("72fff624"), "{d}");
    }

    #[test]
    fn known_answer_vectors_from_docs_attestation_md() {
        assert_eq!(
            hex::encode(RuntimeEvent::new(EVENT_SYSTEM_PREPARING, Vec::new()).digest()),
            "f9974020ef507068183313d0ca808e0d1ca9b2d1ad0c61f5784e7157c362c06536f5ddacdad4451693f48fcc72fff624"
        );
        assert_eq!(
            hex::encode(replay_rtmr3(&boot())),
            "81366171ccbe27af1ce2ff7ca38435af23ae23e49dca6bb4806827f30d7d69e072f422a625e7c404f4cb7a06a1792ccf"
        );
    }

    fn boot() -> Vec<RuntimeEvent> {
        vec![
            RuntimeEvent::new(EVENT_SYSTEM_PREPARING, vec![]),
            RuntimeEvent::new(EVENT_APP_ID, vec![1; 20]),
            RuntimeEvent::new(EVENT_COMPOSE_HASH, vec![2; 32]),
            RuntimeEvent::new(EVENT_INSTANCE_ID, vec![3; 20]),
            RuntimeEvent::new(EVENT_BOOT_MR_DONE, vec![]),
        ]
    }

    fn with_env(payload: Vec<u8>) -> Vec<RuntimeEvent> {
        let mut e = boot();
        e.insert(
            ENCRYPTED_ENV_HASH_INDEX,
            RuntimeEvent::new(EVENT_ENCRYPTED_ENV_HASH, payload),
        );
        e
    }

    #[test]
    fn the_encrypted_env_hash_before_boot_mr_done_decodes_and_keeps_the_identities() {
        let mut events = with_env(vec![9; 32]);
        events.push(RuntimeEvent::new(EVENT_OS_IMAGE_HASH, vec![4; 32]));
        events.push(RuntimeEvent::new(
            EVENT_KEY_PROVIDER,
            br#"{"name":"kms","id":"00"}"#.to_vec(),
        ));
        events.push(RuntimeEvent::new(EVENT_SYSTEM_READY, vec![]));
        // an app may emit the same name after system-ready; lookups stop before it
        events.push(RuntimeEvent::new(EVENT_ENCRYPTED_ENV_HASH, vec![8; 32]));
        let id = decode_boot_identity(&events).unwrap();
        assert_eq!(id.encrypted_env_hash, Some(vec![9; 32]));
        assert_eq!(id.app_id, AppId([1; 20]));
        assert_eq!(id.os_image_hash, Some(OsImageHash([4; 32])));
        assert!(id.system_ready);
        // no env: an empty payload; not measured at all: None
        assert_eq!(
            decode_boot_identity(&with_env(vec![]))
                .unwrap()
                .encrypted_env_hash,
            Some(vec![])
        );
        assert_eq!(
            decode_boot_identity(&boot()).unwrap().encrypted_env_hash,
            None
        );
        // a replaced blob is another event digest, so another RTMR3
        assert_ne!(
            replay_rtmr3(&with_env(encrypted_env_hash_payload(Some(b"honest")))),
            replay_rtmr3(&with_env(encrypted_env_hash_payload(Some(b"swapped"))))
        );
        assert_ne!(
            replay_rtmr3(&with_env(encrypted_env_hash_payload(Some(b"honest")))),
            replay_rtmr3(&with_env(encrypted_env_hash_payload(None)))
        );
    }

    /// docs/protocol.md "Encrypted env measurement" vector (computed with Python's
    /// hashlib from the FORMATS.md digest formula).
    #[test]
    fn encrypted_env_hash_vector_from_docs_protocol_md() {
        let payload = encrypted_env_hash_payload(Some(b"CAIRNENV1 example"));
        assert_eq!(
            hex::encode(&payload),
            "37cacb606d740dfd72c1480203524bacd8e4d37a2d348f0be24899a39c5bfef6"
        );
        assert_eq!(
            hex::encode(RuntimeEvent::new(EVENT_ENCRYPTED_ENV_HASH, payload).digest()),
            "3542d4b092f60a70aab948927c3a73a0f769560ed7279fcec4aa28e6c133c3b3\
             02610152d3eff3286b605fcfea485798"
        );
        assert_eq!(
            hex::encode(
                RuntimeEvent::new(EVENT_ENCRYPTED_ENV_HASH, encrypted_env_hash_payload(None))
                    .digest()
            ),
            "070d11a709d99a98c74cf26b74a9e05fba5788226d2f3f444ca0bb0763cadb15\
             5dbdcf9841c0ec10d21ff55db2b0bef6"
        );
    }

    #[test]
    fn the_encrypted_env_hash_anywhere_else_or_malformed_is_refused() {
        // after boot-mr-done, before system-ready
        let mut late = boot();
        late.push(RuntimeEvent::new(EVENT_ENCRYPTED_ENV_HASH, vec![9; 32]));
        let err = decode_boot_identity(&late).unwrap_err();
        assert!(matches!(err, Error::EventOrder { index: 5, .. }), "{err}");
        // before instance-id
        let mut early = boot();
        early.insert(3, RuntimeEvent::new(EVENT_ENCRYPTED_ENV_HASH, vec![9; 32]));
        let err = decode_boot_identity(&early).unwrap_err();
        assert!(matches!(err, Error::EventOrder { index: 3, .. }), "{err}");
        // twice
        let mut twice = with_env(vec![9; 32]);
        twice.insert(5, RuntimeEvent::new(EVENT_ENCRYPTED_ENV_HASH, vec![9; 32]));
        let err = decode_boot_identity(&twice).unwrap_err();
        assert!(matches!(err, Error::EventOrder { index: 5, .. }), "{err}");
        // not a SHA-256
        let err = decode_boot_identity(&with_env(vec![9; 31])).unwrap_err();
        assert!(
            matches!(
                err,
                Error::EventPayload {
                    name: EVENT_ENCRYPTED_ENV_HASH,
                    ..
                }
            ),
            "{err}"
        );
        // the env event does not replace boot-mr-done
        let mut no_done = with_env(vec![9; 32]);
        no_done.pop();
        let err = decode_boot_identity(&no_done).unwrap_err();
        assert!(matches!(err, Error::EventOrder { index: 5, .. }), "{err}");
    }

    #[test]
    fn json_round_trips_and_replays() {
        let events = boot();
        let json = to_json(&events);
        let back = from_json(&json).unwrap();
        assert_eq!(back, events);
        let manual = events.iter().fold([0u8; 48], |r, e| {
            let mut h = Sha384::new();
            h.update(r);
            h.update(e.digest());
            h.finalize().into()
        });
        assert_eq!(replay_rtmr3(&back), manual);
    }

    #[test]
    fn json_with_a_wrong_digest_is_rejected() {
        let mut v: serde_json::Value = serde_json::from_slice(&to_json(&boot())).unwrap();
        v[1]["event_payload"] = serde_json::Value::String(hex::encode([9u8; 20]));
        let err = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(err, Error::EventDigestMismatch { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn json_of_another_imr_is_rejected() {
        let mut v: serde_json::Value = serde_json::from_slice(&to_json(&boot())).unwrap();
        v[0]["imr"] = 2.into();
        let err = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, Error::MalformedEventLog(_)), "{err}");
    }

    #[test]
    fn oversized_event_log_is_rejected_before_parsing() {
        let big = vec![b' '; MAX_EVENT_LOG_LEN + 1];
        assert!(matches!(
            from_json(&big),
            Err(Error::TooLarge {
                what: "event log",
                ..
            })
        ));
    }

    #[test]
    fn boot_identity_decodes_prefix_through_boot_mr_done() {
        let id = decode_boot_identity(&boot()).unwrap();
        assert_eq!(id.app_id, AppId([1; 20]));
        assert_eq!(id.compose_hash, ComposeHash([2; 32]));
        assert_eq!(id.os_image_hash, None);
        assert!(!id.system_ready);
    }

    #[test]
    fn swapped_boot_events_are_an_order_error() {
        let mut e = boot();
        e.swap(1, 2);
        assert!(matches!(
            decode_boot_identity(&e),
            Err(Error::EventOrder {
                index: 1,
                expected: EVENT_APP_ID,
                ..
            })
        ));
    }

    #[test]
    fn truncated_boot_log_is_an_order_error() {
        let e = &boot()[..3];
        assert!(matches!(
            decode_boot_identity(e),
            Err(Error::EventOrder { index: 3, .. })
        ));
    }

    #[test]
    fn app_event_before_system_ready_is_an_order_error() {
        let mut e = boot();
        e.push(RuntimeEvent::new("my-app-event", vec![1]));
        assert!(matches!(
            decode_boot_identity(&e),
            Err(Error::EventOrder { index: 5, .. })
        ));
    }

    #[test]
    fn app_events_after_system_ready_are_allowed() {
        let mut e = boot();
        e.push(RuntimeEvent::new(EVENT_OS_IMAGE_HASH, vec![4; 32]));
        e.push(RuntimeEvent::new(
            EVENT_KEY_PROVIDER,
            KeyProvider::kms(&[1, 2]).to_payload(),
        ));
        e.push(RuntimeEvent::new(EVENT_SYSTEM_READY, vec![]));
        e.push(RuntimeEvent::new("app-event", vec![5]));
        e.push(RuntimeEvent::new(EVENT_APP_ID, vec![6; 20]));
        let id = decode_boot_identity(&e).unwrap();
        assert_eq!(id.app_id, AppId([1; 20]), "lookups stop at system-ready");
        assert_eq!(id.os_image_hash, Some(OsImageHash([4; 32])));
        assert_eq!(id.key_provider, Some(KeyProvider::kms(&[1, 2])));
        assert!(id.system_ready);
    }

    #[test]
    fn wrong_payload_size_is_a_payload_error() {
        let mut e = boot();
        e[1].payload = vec![1; 19];
        assert!(matches!(
            decode_boot_identity(&e),
            Err(Error::EventPayload {
                name: EVENT_APP_ID,
                ..
            })
        ));
    }
}
