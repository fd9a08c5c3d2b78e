//! `cairn attest verify`: verify a TDX quote with its event log, offline, and print the
//! identities (the job of dstack's verifier service).
//!
//! ```text
//! cairn attest verify <FILE|-> [--event-log FILE] [--report-data HEX]
//!                     [--collateral FILE | --trust intel [--pccs-url URL] | --trust simulator]
//!                     [--at UNIX]
//! ```
//!
//! Input: a guest agent `GetQuote` response (`{"quote","event_log","report_data",…}`), an
//! `Attest` response (`{"attestation": hex}`), the attestation document inside it
//! (`{"version","quote","event_log","vm_config"}`), or a raw quote (binary, or hex text)
//! with `--event-log`. Checks (cairn-attestation's `Verifier`): the quote's signature chain
//! to the trust root, collateral validity at `--at`, debug TD and MRSIGNERSEAM, RTMR3 equal
//! to the event log's replay, and — when the document carries report data or
//! `--report-data` is given — the quoted report data. The TCB status and advisories are
//! printed, not judged: policy is the chain's.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use cairn_attestation::{Collateral, PccsClient, Verifier};
use cairn_protocol::agent::{AttestResponse, Attestation, GetQuoteResponse};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::common::{
    fail, outln, read_bounded, Global, KmsTrust, Out, DEFAULT_PCCS_URL, DEFAULT_SIM_PKI_SEED,
};

/// Largest input read (a quote and its event log are well below).
const MAX_INPUT: u64 = 1024 * 1024;

/// `cairn attest`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cairn attest verify quote.json --collateral collateral.json
  curl --unix-socket /var/run/dstack.sock http://localhost/GetQuote?report_data=00 | cairn attest verify -
  cairn attest verify attest.json --trust simulator --json")]
pub struct AttestArgs {
    #[command(subcommand)]
    cmd: AttestCommand,
}

#[derive(Debug, Subcommand)]
enum AttestCommand {
    /// Verify a quote with its event log and print the identities.
    Verify(VerifyArgs),
    /// Inside a CVM: a quote over report data, from the guest agent (`GetQuote`); prints
    /// the agent's JSON answer, which `attest verify` takes.
    Quote {
        /// Up to 64 bytes of report data, hex (zero-padded).
        #[arg(long, default_value = "")]
        report_data: String,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Inside a CVM: extend RTMR3 with an application event (`EmitEvent`).
    Extend {
        /// The event name.
        #[arg(long)]
        event: String,
        /// The payload, hex.
        #[arg(long, conflicts_with = "payload_text")]
        payload: Option<String>,
        /// The payload as UTF-8 text.
        #[arg(long)]
        payload_text: Option<String>,
        #[command(flatten)]
        agent: AgentArgs,
    },
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The guest agent's unix socket.
    #[arg(
        long,
        env = "CAIRN_AGENT_SOCKET",
        default_value = "/var/run/dstack.sock"
    )]
    agent: PathBuf,
}

/// Largest agent answer read.
const MAX_AGENT_ANSWER: usize = 1024 * 1024;
/// How long the agent may take (a quote goes through the TDX quoting enclave).
const AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `POST /<method>` with a JSON body on the agent's unix socket: (status, body).
async fn agent_call(
    socket: &std::path::Path,
    method: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use http_body_util::{BodyExt as _, Full, Limited};
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
            crate::common::unavailable(format!("guest agent {}: {e}", socket.display()))
        })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let req = hyper::Request::post(format!("/{method}"))
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(hyper::body::Bytes::from(serde_json::to_vec(
                body,
            )?)))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_AGENT_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the agent's answer: {e}"))?
            .to_bytes();
        driver.abort();
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("the agent's {method} answer is not JSON"))?;
        anyhow::Ok((status, v))
    };
    tokio::time::timeout(AGENT_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            crate::common::unavailable(format!(
                "guest agent {} did not answer within {AGENT_TIMEOUT:?}",
                socket.display()
            ))
        })?
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The evidence file, or `-` for stdin.
    input: String,
    /// The event log (JSON) for a raw quote.
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// The report data the quote must carry (64 bytes hex; shorter is zero-padded).
    #[arg(long)]
    report_data: Option<String>,
    /// Collateral from a file (JSON, as a PCCS serves it) instead of a PCCS.
    #[arg(long, conflicts_with = "pccs_url")]
    collateral: Option<PathBuf>,
    /// The trust root: Intel's, or the TDX simulator's (development only).
    #[arg(long, value_enum, default_value = "intel")]
    trust: KmsTrust,
    /// The PCCS for --trust intel without --collateral.
    #[arg(long, env = "CAIRN_PCCS_URL")]
    pccs_url: Option<String>,
    /// The simulator PKI seed for --trust simulator.
    #[arg(long, env = "CAIRN_SIM_PKI_SEED", default_value = DEFAULT_SIM_PKI_SEED)]
    sim_pki_seed: String,
    /// Verify as of this unix time (default: now).
    #[arg(long)]
    at: Option<u64>,
}

/// `attest verify`'s JSON.
#[derive(Serialize)]
struct VerifiedOut {
    verified: bool,
    tcb_status: String,
    advisory_ids: Vec<String>,
    mrtd: String,
    rtmr0: String,
    rtmr1: String,
    rtmr2: String,
    /// Equal to the replay of the event log (checked).
    rtmr3: String,
    report_data: String,
    app_id: String,
    compose_hash: String,
    /// Hex; empty for `no_instance_id`.
    instance_id: String,
    os_image_hash: Option<String>,
    key_provider: Option<String>,
    device_id: String,
    mr_system: String,
    mr_aggregated: String,
    events: Vec<EventOut>,
    /// The evidence stays valid until (collateral and PCK certificate), unix seconds.
    valid_until: u64,
}

#[derive(Serialize)]
struct EventOut {
    name: String,
    payload: String,
}

/// Run `cairn attest …`.
pub async fn run(_global: &Global, args: AttestArgs, out: Out) -> anyhow::Result<()> {
    let v = match args.cmd {
        AttestCommand::Verify(v) => v,
        AttestCommand::Quote {
            report_data: rd,
            agent,
        } => {
            report_data("--report-data", &rd)?;
            let (status, answer) = agent_call(
                &agent.agent,
                "GetQuote",
                &serde_json::json!({ "report_data": rd }),
            )
            .await?;
            if status != 200 {
                return Err(crate::common::refuse(format!(
                    "the agent refused GetQuote ({status}): {answer}"
                )));
            }
            // The agent's answer is the output, in either mode: `attest verify` reads it.
            return out.json(&answer);
        }
        AttestCommand::Extend {
            event,
            payload,
            payload_text,
            agent,
        } => {
            let payload = match (payload, payload_text) {
                (Some(h), _) => {
                    hex::decode(h.trim_start_matches("0x"))
                        .map_err(|_| fail("--payload: not hex"))?;
                    h.trim_start_matches("0x").to_owned()
                }
                (None, Some(t)) => hex::encode(t.as_bytes()),
                (None, None) => return Err(fail("give --payload HEX or --payload-text TEXT")),
            };
            let (status, answer) = agent_call(
                &agent.agent,
                "EmitEvent",
                &serde_json::json!({ "event": event, "payload": payload }),
            )
            .await?;
            if status != 200 {
                return Err(crate::common::refuse(format!(
                    "the agent refused EmitEvent ({status}): {answer}"
                )));
            }
            if out.json {
                return out.json(
                    &serde_json::json!({ "extended": true, "event": event, "payload": payload }),
                );
            }
            outln!("{} RTMR3 with event {event:?}", out.good("extended"));
            return Ok(());
        }
    };
    let raw = if v.input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        if buf.len() as u64 > MAX_INPUT {
            return Err(fail(format!("stdin: larger than {MAX_INPUT} bytes")));
        }
        buf
    } else {
        read_bounded(std::path::Path::new(&v.input), MAX_INPUT)?
    };
    let (quote, event_log, doc_report_data) = evidence(&raw, &v)?;
    let expected_rd = match (&v.report_data, doc_report_data) {
        (Some(h), _) => Some(report_data("--report-data", h)?),
        (None, Some(h)) => Some(report_data("the document's report_data", &h)?),
        (None, None) => None,
    };
    let now = v.at.unwrap_or_else(cairn_onchain::unix_now);
    let (verifier, collateral) = match (&v.collateral, v.trust) {
        (Some(f), trust) => {
            let c = Collateral::from_file(f).map_err(|e| fail(format!("{}: {e}", f.display())))?;
            let verifier = match trust {
                KmsTrust::Intel => Verifier::intel(),
                KmsTrust::Simulator => simulator(&v.sim_pki_seed, now)?.0,
            };
            (verifier, Some(c))
        }
        (None, KmsTrust::Simulator) => {
            let (verifier, c) = simulator(&v.sim_pki_seed, now)?;
            (verifier, Some(c))
        }
        (None, KmsTrust::Intel) => (Verifier::intel(), None),
    };
    // Without expected report data, bind to what the quote carries (printed below).
    let rd = match expected_rd {
        Some(rd) => rd,
        None => match &collateral {
            Some(c) => verifier.verify_quote(&quote, c, now)?.report_data().0,
            None => {
                return Err(fail(
                    "a raw quote without report data needs --report-data when collateral comes from a PCCS",
                ))
            }
        },
    };
    let verified = match &collateral {
        Some(c) => verifier.verify_with(&quote, &event_log, &rd, c, now),
        None => {
            let url = v.pccs_url.as_deref().unwrap_or(DEFAULT_PCCS_URL);
            let pccs =
                PccsClient::new(url).map_err(|e| fail(format!("--pccs-url {url:?}: {e}")))?;
            verifier
                .verify_with_pccs(&pccs, &quote, &event_log, &rd, now)
                .await
        }
    }
    .context("the evidence does not verify")?;
    let m = verified.measurements();
    let [r0, r1, r2, r3] = verified.rtmrs();
    let result = VerifiedOut {
        verified: true,
        tcb_status: verified.tcb_status().to_owned(),
        advisory_ids: verified.advisory_ids().to_vec(),
        mrtd: m.mrtd.to_hex(),
        rtmr0: r0.to_hex(),
        rtmr1: r1.to_hex(),
        rtmr2: r2.to_hex(),
        rtmr3: r3.to_hex(),
        report_data: hex::encode(verified.report_data().0),
        app_id: verified.app_id().to_string(),
        compose_hash: verified.compose_hash().to_string(),
        instance_id: hex::encode(verified.instance_id().as_bytes()),
        os_image_hash: verified.os_image_hash().map(ToString::to_string),
        key_provider: verified.key_provider().map(|k| format!("{k:?}")),
        device_id: verified.device_id().to_string(),
        mr_system: verified.mr_system().to_string(),
        mr_aggregated: verified.mr_aggregated().to_string(),
        events: verified
            .events()
            .iter()
            .map(|e| EventOut {
                name: e.name.clone(),
                payload: hex::encode(&e.payload),
            })
            .collect(),
        valid_until: verified.valid_until(),
    };
    if out.json {
        return out.json(&result);
    }
    outln!("{} (TCB {})", out.good("verified"), result.tcb_status);
    for (k, v) in [
        ("app id", &result.app_id),
        ("compose hash", &result.compose_hash),
        ("instance id", &result.instance_id),
        ("device id", &result.device_id),
        ("mr_system", &result.mr_system),
        ("mr_aggregated", &result.mr_aggregated),
        ("MRTD", &result.mrtd),
        ("RTMR3", &result.rtmr3),
    ] {
        outln!("  {k:<14} {v}");
    }
    outln!(
        "  {:<14} {}",
        "OS image",
        result.os_image_hash.as_deref().unwrap_or("-")
    );
    if !result.advisory_ids.is_empty() {
        outln!("  {:<14} {}", "advisories", result.advisory_ids.join(", "));
    }
    outln!("  RTMR3 = replay of {} events", result.events.len());
    Ok(())
}

/// (quote, event log JSON, report data hex if the document carries it).
fn evidence(raw: &[u8], v: &VerifyArgs) -> anyhow::Result<(Vec<u8>, Vec<u8>, Option<String>)> {
    let unhex = |what: &str, s: &str| {
        hex::decode(s.trim().trim_start_matches("0x")).map_err(|_| fail(format!("{what}: not hex")))
    };
    let text = std::str::from_utf8(raw).ok().map(str::trim);
    if let Some(t) = text.filter(|t| t.starts_with('{')) {
        if let Ok(q) = serde_json::from_str::<GetQuoteResponse>(t) {
            return Ok((
                unhex("quote", &q.quote)?,
                q.event_log.into_bytes(),
                Some(q.report_data),
            ));
        }
        let doc: Attestation = match serde_json::from_str::<AttestResponse>(t) {
            Ok(a) => {
                let bytes = unhex("attestation", &a.attestation)?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| fail(format!("the attestation document: {e}")))?
            }
            Err(_) => serde_json::from_str(t).map_err(|e| {
                fail(format!(
                    "{}: JSON, but not a GetQuote or Attest response or an attestation document: {e}",
                    v.input
                ))
            })?,
        };
        return Ok((
            unhex("quote", &doc.quote)?,
            doc.event_log.into_bytes(),
            None,
        ));
    }
    let log = v
        .event_log
        .as_ref()
        .ok_or_else(|| fail("a raw quote needs --event-log FILE"))?;
    let event_log = read_bounded(log, MAX_INPUT)?;
    let quote = match text.filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'x')) {
        Some(t) => unhex("quote", t)?,
        None => raw.to_vec(),
    };
    Ok((quote, event_log, None))
}

fn report_data(what: &str, h: &str) -> anyhow::Result<[u8; 64]> {
    let bytes = hex::decode(h.trim().trim_start_matches("0x"))
        .map_err(|_| fail(format!("{what}: not hex")))?;
    if bytes.len() > 64 {
        return Err(fail(format!("{what}: more than 64 bytes")));
    }
    let mut rd = [0u8; 64];
    rd[..bytes.len()].copy_from_slice(&bytes);
    Ok(rd)
}

fn simulator(seed_hex: &str, now: u64) -> anyhow::Result<(Verifier, Collateral)> {
    use cairn_attestation::simulator::{SimPki, SimPkiConfig};
    let mut seed = [0u8; 32];
    hex::decode_to_slice(seed_hex.trim_start_matches("0x"), &mut seed)
        .map_err(|_| fail("--sim-pki-seed: 32 bytes of hex"))?;
    let pki = SimPki::new(SimPkiConfig::new(seed, now)).context("simulator PKI")?;
    let c = Collateral::new(pki.collateral()).context("simulator collateral")?;
    Ok((
        Verifier::dangerous_with_simulator_root(pki.root_ca_der()),
        c,
    ))
}
