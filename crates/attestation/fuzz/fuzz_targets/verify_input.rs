//! Fuzz the quote + event-log entry point, `Verifier::verify_with`.
//!
//! Input byte 0 selects the mode:
//! - even: raw — bytes 1..3 (u16 LE) split the rest into a quote and an event log;
//! - odd: structured — a valid simulator quote and event log, with the input XORed into
//!   them at input-chosen offsets, so mutations reach deep into dcap-qvl and the replay.
#![no_main]

use std::sync::{Arc, OnceLock};

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
use cairn_attestation::{eventlog, Collateral, EventLog, Tee, Verifier};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_790_000_000;

struct World {
    verifier: Verifier,
    collateral: Collateral,
    quote: Vec<u8>,
    log: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let pki = Arc::new(SimPki::new(SimPkiConfig::new([7; 32], NOW)).expect("pki"));
        let tdx = SimTdx::new(
            Arc::clone(&pki),
            SimHostConfig::new([1; 32], OsImage::example("cairn-os", "0.1.0")),
        )
        .expect("tdx");
        let ch = ComposeHash::of_compose(b"{}");
        let app = AppId::from_compose_hash(&ch);
        let mut log = EventLog::new();
        log.measure_boot(&tdx, &app, &ch, &InstanceId::None)
            .expect("boot");
        log.measure_system_ready(
            &tdx,
            &tdx.os_image().os_image_hash(),
            &KeyProvider::kms(&[1]),
        )
        .expect("ready");
        World {
            verifier: Verifier::dangerous_with_simulator_root(pki.root_ca_der()),
            collateral: Collateral::new(pki.collateral()).expect("collateral"),
            quote: tdx.quote(&[1; 64]).expect("quote"),
            log: log.to_json(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if rest.len() < 2 {
            return;
        }
        let split = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (quote, log) = rest[2..].split_at(split);
        let _ = eventlog::from_json(log);
        let _ = w
            .verifier
            .verify_with(quote, log, &[1; 64], &w.collateral, NOW);
    } else {
        let mut quote = w.quote.clone();
        let mut log = w.log.clone();
        // Pairs of (u16 LE offset, xor byte); the top offset bit picks the event log.
        for chunk in rest.chunks_exact(3) {
            let off = usize::from(u16::from_le_bytes([chunk[0], chunk[1]]));
            let target = if off & 0x8000 != 0 {
                &mut log
            } else {
                &mut quote
            };
            let len = target.len();
            if len > 0 {
                target[(off & 0x7fff) % len] ^= chunk[2];
            }
        }
        if rest.len() % 3 == 1 {
            quote.truncate(usize::from(rest[0]) * 24);
        }
        let r = w
            .verifier
            .verify_with(&quote, &log, &[1; 64], &w.collateral, NOW);
        // Unmodified inputs must verify; modified ones may only verify if the
        // modification was a no-op on the bytes.
        if quote == w.quote && log == w.log {
            assert!(r.is_ok(), "valid evidence rejected: {:?}", r.err());
        }
    }
});
