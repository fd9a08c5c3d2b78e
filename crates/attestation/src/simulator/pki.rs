//! The simulator's mock Intel PKI: keys from a seed, certificates, CRLs and signed
//! TCB Info / QE Identity collateral, built to the checklist of MOCK-PKI.md.

use dcap_qvl::QuoteCollateralV3;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::json;
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::der;
use crate::error::{Error, Result};

/// FMSPC of the simulated platform.
pub const SIM_FMSPC: [u8; 6] = [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00];
/// CPUSVN of the simulated platform (matched against `sgxtcbcomponents`).
pub const SIM_CPUSVN: [u8; 16] = [2, 2, 2, 2, 2, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0];
/// PCESVN of the simulated platform.
pub const SIM_PCESVN: u16 = 11;
/// TEE_TCB_SVN of the simulated TDX module (byte 1 = 0: no module identity lookup).
pub const SIM_TEE_TCB_SVN: [u8; 16] = [5, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// ISVSVN of the simulated quoting enclave.
pub const SIM_QE_ISVSVN: u16 = 4;
/// MRSIGNER of the simulated quoting enclave.
pub const SIM_QE_MRSIGNER: [u8; 32] = [0x5a; 32];
/// PCE-ID of the simulated platform.
pub const SIM_PCE_ID: [u8; 2] = [0, 0];

/// TCB status the simulator's collateral assigns to the simulated platform.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum SimTcbStatus {
    /// The platform is up to date.
    #[default]
    UpToDate,
    /// Software hardening needed; carries advisory `INTEL-SA-00615`.
    SwHardeningNeeded,
    /// Configuration needed; carries advisory `INTEL-SA-00767`.
    ConfigurationNeeded,
    /// Out of date; carries advisory `INTEL-SA-00837`.
    OutOfDate,
    /// Revoked: verification must fail.
    Revoked,
}

impl SimTcbStatus {
    fn intel_name(self) -> &'static str {
        match self {
            SimTcbStatus::UpToDate => "UpToDate",
            SimTcbStatus::SwHardeningNeeded => "SWHardeningNeeded",
            SimTcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            SimTcbStatus::OutOfDate => "OutOfDate",
            SimTcbStatus::Revoked => "Revoked",
        }
    }

    fn advisories(self) -> &'static [&'static str] {
        match self {
            SimTcbStatus::UpToDate => &[],
            SimTcbStatus::SwHardeningNeeded => &["INTEL-SA-00615"],
            SimTcbStatus::ConfigurationNeeded => &["INTEL-SA-00767"],
            SimTcbStatus::OutOfDate => &["INTEL-SA-00837"],
            SimTcbStatus::Revoked => &["INTEL-SA-00999"],
        }
    }
}

/// How to build the mock PKI and its collateral.
#[derive(Clone, Debug)]
pub struct SimPkiConfig {
    /// Seed every PKI key is derived from.
    pub seed: [u8; 32],
    /// The time the validity windows are anchored at (unix seconds).
    pub now: u64,
    /// TCB status of the platform in the TCB Info.
    pub tcb_status: SimTcbStatus,
    /// How long TCB Info, QE Identity and CRLs stay valid after `now`.
    pub collateral_validity_secs: u64,
    /// MRSIGNERSEAM the TCB Info expects (Intel's is all zeros).
    pub mr_signer_seam: [u8; 48],
}

impl SimPkiConfig {
    /// Defaults: UpToDate, 30 days of collateral validity, Intel's (zero) module signer.
    pub fn new(seed: [u8; 32], now: u64) -> Self {
        SimPkiConfig {
            seed,
            now,
            tcb_status: SimTcbStatus::UpToDate,
            collateral_validity_secs: 30 * 24 * 3600,
            mr_signer_seam: [0u8; 48],
        }
    }
}

/// A P-256 key derived deterministically from a seed and a label.
pub(crate) struct DerivedKey {
    pub(crate) signing: SigningKey,
    pub(crate) rcgen: KeyPair,
}

impl DerivedKey {
    /// HKDF-SHA256(ikm = seed, salt = "cairn-sim/v1", info = label ‖ counter), resampled
    /// with the next counter while the output is not a valid P-256 scalar.
    pub(crate) fn derive(seed: &[u8], label: &str) -> Result<Self> {
        let hk = Hkdf::<Sha256>::new(Some(b"cairn-sim/v1"), seed);
        for counter in 0u32..16 {
            let mut okm = [0u8; 32];
            let mut info = label.as_bytes().to_vec();
            info.extend_from_slice(&counter.to_be_bytes());
            hk.expand(&info, &mut okm)
                .map_err(|e| Error::Simulator(format!("hkdf: {e}")))?;
            if let Ok(secret) = p256::SecretKey::from_slice(&okm) {
                let pkcs8 = secret
                    .to_pkcs8_der()
                    .map_err(|e| Error::Simulator(format!("pkcs8: {e}")))?;
                let rcgen = KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
                    &rcgen::PKCS_ECDSA_P256_SHA256,
                )
                .map_err(sim)?;
                return Ok(DerivedKey {
                    signing: SigningKey::from(&secret),
                    rcgen,
                });
            }
        }
        Err(Error::Simulator(format!("no valid scalar for {label}")))
    }

    /// Raw `x ‖ y` of the public key (64 bytes).
    pub(crate) fn public_raw(&self) -> [u8; 64] {
        let point = self.signing.verifying_key().to_encoded_point(false);
        let mut out = [0u8; 64];
        out.copy_from_slice(&point.as_bytes()[1..65]);
        out
    }

    /// Raw `r ‖ s` ECDSA-SHA256 signature (64 bytes).
    pub(crate) fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        let sig: Signature = self.signing.sign(msg);
        sig.to_bytes().into()
    }
}

pub(crate) fn sim(e: rcgen::Error) -> Error {
    Error::Simulator(e.to_string())
}

pub(crate) fn odt(unix: u64) -> Result<OffsetDateTime> {
    let secs = i64::try_from(unix).map_err(|_| Error::Simulator("time out of range".into()))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| Error::Simulator(e.to_string()))
}

fn rfc3339(unix: u64) -> Result<String> {
    odt(unix)?
        .format(&Rfc3339)
        .map_err(|e| Error::Simulator(e.to_string()))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Cairn TDX Simulator");
    dn.push(DnType::LocalityName, "Nowhere");
    dn.push(DnType::StateOrProvinceName, "CA");
    dn.push(DnType::CountryName, "US");
    dn
}

const DAY: u64 = 24 * 3600;

fn cert_params(cn: &str, serial: u32, now: u64) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    p.not_before = odt(now.saturating_sub(DAY))?;
    p.not_after = odt(now.saturating_add(365 * DAY))?;
    Ok(p)
}

/// Serial numbers of the PKI's certificates (positive, 4 bytes).
const ROOT_SERIAL: u32 = 0x0100_0001;
const PCK_CA_SERIAL: u32 = 0x0100_0002;
const TCB_SIGNER_SERIAL: u32 = 0x0100_0003;

/// The mock Intel PKI and the collateral it signs.
pub struct SimPki {
    config: SimPkiConfig,
    root_der: Vec<u8>,
    root_pem: String,
    pck_ca_params: CertificateParams,
    pck_ca_key: DerivedKey,
    pck_ca_pem: String,
    tcb_signer_pem: String,
    root_crl_der: Vec<u8>,
    pck_crl_der: Vec<u8>,
    tcb_info: String,
    tcb_info_signature: [u8; 64],
    qe_identity: String,
    qe_identity_signature: [u8; 64],
}

impl std::fmt::Debug for SimPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPki")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SimPki {
    /// Build the PKI and sign its collateral.
    pub fn new(config: SimPkiConfig) -> Result<Self> {
        let now = config.now;
        let root_key = DerivedKey::derive(&config.seed, "root")?;
        let pck_ca_key = DerivedKey::derive(&config.seed, "pck-ca")?;
        let tcb_key = DerivedKey::derive(&config.seed, "tcb-signer")?;

        let mut root_params = cert_params("Cairn Simulated SGX Root CA", ROOT_SERIAL, now)?;
        root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = root_params.self_signed(&root_key.rcgen).map_err(sim)?;
        let root_issuer = Issuer::from_params(&root_params, &root_key.rcgen);

        let mut pck_ca_params =
            cert_params("Cairn Simulated SGX PCK Platform CA", PCK_CA_SERIAL, now)?;
        pck_ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        pck_ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pck_ca_cert = pck_ca_params
            .signed_by(&pck_ca_key.rcgen, &root_issuer)
            .map_err(sim)?;

        let mut tcb_params =
            cert_params("Cairn Simulated SGX TCB Signing", TCB_SIGNER_SERIAL, now)?;
        tcb_params.is_ca = IsCa::ExplicitNoCa;
        tcb_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        let tcb_cert = tcb_params
            .signed_by(&tcb_key.rcgen, &root_issuer)
            .map_err(sim)?;

        let crl = |issuer: &Issuer<'_, &KeyPair>, revoked: Vec<RevokedCertParams>| {
            CertificateRevocationListParams {
                this_update: odt(now.saturating_sub(3600))?,
                next_update: odt(now.saturating_add(config.collateral_validity_secs))?,
                crl_number: SerialNumber::from_slice(&[1]),
                issuing_distribution_point: None,
                revoked_certs: revoked,
                key_identifier_method: rcgen::KeyIdMethod::Sha256,
            }
            .signed_by(issuer)
            .map(|c| c.der().to_vec())
            .map_err(sim)
        };
        let root_crl_der = crl(&root_issuer, Vec::new())?;
        let pck_ca_issuer = Issuer::from_params(&pck_ca_params, &pck_ca_key.rcgen);
        let pck_crl_der = crl(&pck_ca_issuer, Vec::new())?;

        let issue = rfc3339(now.saturating_sub(3600))?;
        let next = rfc3339(now.saturating_add(config.collateral_validity_secs))?;
        let tcb_info = tcb_info_json(&config, &issue, &next);
        let qe_identity = qe_identity_json(&issue, &next);
        let tcb_info_signature = tcb_key.sign_raw(tcb_info.as_bytes());
        let qe_identity_signature = tcb_key.sign_raw(qe_identity.as_bytes());

        Ok(SimPki {
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            pck_ca_pem: pck_ca_cert.pem(),
            tcb_signer_pem: tcb_cert.pem(),
            pck_ca_params,
            pck_ca_key,
            root_crl_der,
            pck_crl_der,
            tcb_info,
            tcb_info_signature,
            qe_identity,
            qe_identity_signature,
            config,
        })
    }

    /// The configuration this PKI was built from.
    pub fn config(&self) -> &SimPkiConfig {
        &self.config
    }

    /// The simulated root CA certificate (DER): the trust anchor for
    /// [`crate::Verifier::dangerous_with_simulator_root`].
    pub fn root_ca_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The PCK CA and root, PEM, PCK CA first (what follows the leaf in a quote).
    pub(crate) fn pck_chain_tail_pem(&self) -> String {
        format!("{}{}", self.pck_ca_pem, self.root_pem)
    }

    /// The TCB signer chain, PEM, signer first.
    pub fn tcb_info_issuer_chain(&self) -> String {
        format!("{}{}", self.tcb_signer_pem, self.root_pem)
    }

    /// The PCK CRL issuer chain, PEM.
    pub fn pck_crl_issuer_chain(&self) -> String {
        self.pck_chain_tail_pem()
    }

    /// Root CA CRL (DER).
    pub fn root_ca_crl_der(&self) -> &[u8] {
        &self.root_crl_der
    }

    /// PCK CA CRL (DER).
    pub fn pck_crl_der(&self) -> &[u8] {
        &self.pck_crl_der
    }

    /// The signed `tcbInfo` object, exactly as signed (compact JSON).
    pub fn tcb_info_json(&self) -> &str {
        &self.tcb_info
    }

    /// Raw r‖s signature over [`Self::tcb_info_json`].
    pub fn tcb_info_signature(&self) -> &[u8; 64] {
        &self.tcb_info_signature
    }

    /// The signed `enclaveIdentity` object, exactly as signed (compact JSON).
    pub fn qe_identity_json(&self) -> &str {
        &self.qe_identity
    }

    /// Raw r‖s signature over [`Self::qe_identity_json`].
    pub fn qe_identity_signature(&self) -> &[u8; 64] {
        &self.qe_identity_signature
    }

    /// The collateral in dcap-qvl's shape. `pck_certificate_chain` is `None`, so the
    /// verifier uses the chain the quote carries (MOCK-PKI.md §16.11).
    pub fn collateral(&self) -> QuoteCollateralV3 {
        QuoteCollateralV3 {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain(),
            root_ca_crl: self.root_crl_der.clone(),
            pck_crl: self.pck_crl_der.clone(),
            tcb_info_issuer_chain: self.tcb_info_issuer_chain(),
            tcb_info: self.tcb_info.clone(),
            tcb_info_signature: self.tcb_info_signature.to_vec(),
            qe_identity_issuer_chain: self.tcb_info_issuer_chain(),
            qe_identity: self.qe_identity.clone(),
            qe_identity_signature: self.qe_identity_signature.to_vec(),
            pck_certificate_chain: None,
        }
    }

    /// Issue a PCK leaf for a simulated host on the platform `fmspc`, returning its PEM.
    pub(crate) fn issue_pck_leaf(
        &self,
        host_key: &DerivedKey,
        ppid: &[u8; 16],
        serial: u32,
        fmspc: &[u8; 6],
    ) -> Result<String> {
        let mut p = cert_params(
            "Cairn Simulated SGX PCK Certificate",
            serial,
            self.config.now,
        )?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.extended_key_usages = Vec::<ExtendedKeyUsagePurpose>::new();
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 2, 840, 113741, 1, 13, 1],
            sgx_extension(ppid, ppid, fmspc),
        )];
        let issuer = Issuer::from_params(&self.pck_ca_params, &self.pck_ca_key.rcgen);
        Ok(p.signed_by(&host_key.rcgen, &issuer).map_err(sim)?.pem())
    }
}

/// The SGX extension value (MOCK-PKI.md §8): one SEQUENCE of `SEQUENCE{OID, value}`.
fn sgx_extension(ppid: &[u8; 16], platform_instance_id: &[u8; 16], fmspc: &[u8; 6]) -> Vec<u8> {
    const BASE: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];
    let sub = |arcs: &[u64]| {
        let mut v = BASE.to_vec();
        v.extend_from_slice(arcs);
        der::oid(&v)
    };
    let mut tcb_items: Vec<Vec<u8>> = SIM_CPUSVN
        .iter()
        .enumerate()
        .map(|(i, svn)| der::seq(&[sub(&[2, i as u64 + 1]), der::uint(u64::from(*svn))]))
        .collect();
    tcb_items.push(der::seq(&[sub(&[2, 17]), der::uint(u64::from(SIM_PCESVN))]));
    tcb_items.push(der::seq(&[sub(&[2, 18]), der::octets(&SIM_CPUSVN)]));
    der::seq(&[
        der::seq(&[sub(&[1]), der::octets(ppid)]),
        der::seq(&[sub(&[2]), der::seq(&tcb_items)]),
        der::seq(&[sub(&[3]), der::octets(&SIM_PCE_ID)]),
        der::seq(&[sub(&[4]), der::octets(fmspc)]),
        der::seq(&[sub(&[5]), der::enumerated(0)]),
        der::seq(&[sub(&[6]), der::octets(platform_instance_id)]),
        der::seq(&[
            sub(&[7]),
            der::seq(&[
                der::seq(&[sub(&[7, 1]), der::boolean(false)]),
                der::seq(&[sub(&[7, 2]), der::boolean(false)]),
                der::seq(&[sub(&[7, 3]), der::boolean(false)]),
            ]),
        ]),
    ])
}

fn tcb_level(
    sgx: &[u8; 16],
    pcesvn: u16,
    tdx: &[u8; 16],
    date: &str,
    status: &str,
    advisories: &[&str],
) -> serde_json::Value {
    let comps = |svns: &[u8; 16]| -> Vec<serde_json::Value> {
        svns.iter().map(|s| json!({ "svn": s })).collect()
    };
    let mut level = json!({
        "tcb": {
            "sgxtcbcomponents": comps(sgx),
            "pcesvn": pcesvn,
            "tdxtcbcomponents": comps(tdx),
        },
        "tcbDate": date,
        "tcbStatus": status,
    });
    if !advisories.is_empty() {
        level["advisoryIDs"] = json!(advisories);
    }
    level
}

/// TCB Info for the simulated FMSPC (MOCK-PKI.md §10), compact JSON.
fn tcb_info_json(config: &SimPkiConfig, issue: &str, next: &str) -> String {
    let status = config.tcb_status;
    let mut levels = Vec::new();
    if status != SimTcbStatus::UpToDate {
        // A newer level the platform does not reach, so it is the platform's level that
        // carries `status` (levels are matched highest first).
        let mut sgx = SIM_CPUSVN;
        sgx.iter_mut().for_each(|s| *s = s.saturating_add(1));
        let mut tdx = SIM_TEE_TCB_SVN;
        tdx[0] = tdx[0].saturating_add(1);
        levels.push(tcb_level(
            &sgx,
            SIM_PCESVN + 1,
            &tdx,
            issue,
            "UpToDate",
            &[],
        ));
    }
    levels.push(tcb_level(
        &SIM_CPUSVN,
        SIM_PCESVN,
        &SIM_TEE_TCB_SVN,
        issue,
        status.intel_name(),
        status.advisories(),
    ));
    json!({
        "id": "TDX",
        "version": 3,
        "issueDate": issue,
        "nextUpdate": next,
        "fmspc": hex::encode_upper(SIM_FMSPC),
        "pceId": hex::encode_upper(SIM_PCE_ID),
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tdxModule": {
            "mrsigner": hex::encode_upper(config.mr_signer_seam),
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
        },
        "tdxModuleIdentities": [],
        "tcbLevels": levels,
    })
    .to_string()
}

/// QE Identity of the simulated TD quoting enclave (MOCK-PKI.md §11), compact JSON.
fn qe_identity_json(issue: &str, next: &str) -> String {
    json!({
        "id": "TD_QE",
        "version": 2,
        "issueDate": issue,
        "nextUpdate": next,
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": hex::encode_upper(SIM_QE_MRSIGNER),
        "isvprodid": 2,
        "tcbLevels": [
            { "tcb": { "isvsvn": SIM_QE_ISVSVN }, "tcbDate": issue, "tcbStatus": "UpToDate" }
        ],
    })
    .to_string()
}
