//! A gateway "CVM" on the TDX simulator: its boot measured into RTMR3, quotes the real
//! verifier accepts (with the simulator root, configured by name).

use std::sync::{Arc, Mutex};

use cairn_acme::{Attestor, BoxFuture};
use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimTdx};
use cairn_attestation::{EventLog, Tee};
use cairn_protocol::agent::GetQuoteResponse;

// The mock Intel PKI (anchored at the wall clock) and the real verifier trusting its root.
pub use cairn_attestation::testing::{sim_pki as pki, sim_verifier as verifier, unix_now};

/// A booted simulated CVM of `app_id` that quotes like the guest agent's `GetQuote`.
pub struct SimGateway {
    tee: Arc<SimTdx>,
    log: Mutex<EventLog>,
    /// How many quotes it made.
    pub quotes: Mutex<u32>,
}

impl SimGateway {
    pub fn boot(app_id: AppId, host_seed: u8) -> Arc<Self> {
        let os = OsImage::example("cairn-os", "1.0");
        let tee =
            Arc::new(SimTdx::new(pki(), SimHostConfig::new([host_seed; 32], os.clone())).unwrap());
        let mut log = EventLog::new();
        let compose = ComposeHash([0xC0; 32]);
        log.measure_boot(
            tee.as_ref(),
            &app_id,
            &compose,
            &InstanceId::derive(&[host_seed; 16], &app_id),
        )
        .unwrap();
        log.measure_system_ready(
            tee.as_ref(),
            &os.os_image_hash(),
            &KeyProvider::kms(b"kms root spki"),
        )
        .unwrap();
        Arc::new(SimGateway {
            tee,
            log: Mutex::new(log),
            quotes: Mutex::new(0),
        })
    }

    pub fn quote_now(&self, report_data: [u8; 64]) -> GetQuoteResponse {
        *self.quotes.lock().unwrap() += 1;
        let quote = self.tee.quote(&report_data).unwrap();
        let log = self.log.lock().unwrap().to_json();
        GetQuoteResponse {
            quote: hex::encode(quote),
            event_log: String::from_utf8(log).unwrap(),
            report_data: hex::encode(report_data),
            vm_config: "{}".to_owned(),
        }
    }
}

impl Attestor for SimGateway {
    fn quote<'a>(
        &'a self,
        report_data: [u8; 64],
    ) -> BoxFuture<'a, cairn_acme::Result<GetQuoteResponse>> {
        Box::pin(async move { Ok(self.quote_now(report_data)) })
    }
}

/// An attestor whose TEE is gone.
pub struct BrokenAttestor;

impl Attestor for BrokenAttestor {
    fn quote<'a>(&'a self, _: [u8; 64]) -> BoxFuture<'a, cairn_acme::Result<GetQuoteResponse>> {
        Box::pin(async move {
            Err(cairn_acme::Error::Agent {
                method: "GetQuote",
                reason: "connect /var/run/dstack.sock: no such file".to_owned(),
            })
        })
    }
}
