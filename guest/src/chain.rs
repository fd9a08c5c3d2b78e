//! X.509 chain checks that tie a KMS connection to the KMS root CA (DESIGN.md §5, §7).
//!
//! RA-TLS evidence proves *what* the KMS peer runs, not *which* key family it serves: any
//! TDX VM can produce a valid `kms:rpc` quote. What names the KMS is its root CA, and the
//! real KMS's TLS server certificate is issued by that root CA (kms/src/node.rs). So the
//! guest requires the peer's end-entity certificate to carry a P-256 ECDSA-SHA256
//! signature by the root CA it returned, and that root is then what the `key_provider_id`
//! pin is compared with and what the `key-provider` event measures. Likewise a
//! `sign-cert` chain must be leaf → app CA → that same root, every signature checked.
//!
//! Only signatures, issuer/subject names and the CA basic constraint are checked; validity
//! periods are not (the root and app CA certificates are deterministic and long-lived).

use p256::ecdsa::signature::Verifier as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256;

/// Largest PEM certificate accepted from a KMS response.
pub const MAX_CERT_PEM_LEN: usize = 64 * 1024;

/// A certificate (DER) from PEM text.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    if pem.len() > MAX_CERT_PEM_LEN {
        return Err(format!("certificate PEM of {} bytes", pem.len()));
    }
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("PEM: {e}"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("PEM label {:?}", pem.label));
    }
    Ok(pem.contents)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".to_owned());
    }
    Ok(cert)
}

/// Check that `child` (DER) is signed by `issuer` (DER): the issuer is a CA, the names
/// match, and the ECDSA-P256-SHA256 signature over the child's TBS verifies with the
/// issuer's key.
pub fn verify_issued_by(child: &[u8], issuer: &[u8]) -> Result<(), String> {
    let child = parse(child)?;
    let issuer = parse(issuer)?;
    match issuer.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => return Err("the issuer certificate is not a CA".to_owned()),
    }
    if child.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(format!(
            "issued by {:?}, not by {:?}",
            child.issuer().to_string(),
            issuer.subject().to_string()
        ));
    }
    if child.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(format!(
            "signature algorithm {} is not ecdsa-with-SHA256",
            child.signature_algorithm.algorithm
        ));
    }
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&issuer.public_key().subject_public_key.data)
            .map_err(|_| "the issuer key is not a P-256 point".to_owned())?;
    let sig = p256::ecdsa::Signature::from_der(&child.signature_value.data)
        .map_err(|_| "malformed ECDSA signature".to_owned())?;
    key.verify(child.tbs_certificate.as_ref(), &sig)
        .map_err(|_| "the signature does not verify with the issuer's key".to_owned())
}

/// DER SubjectPublicKeyInfo of a certificate.
pub fn spki(der: &[u8]) -> Result<Vec<u8>, String> {
    Ok(parse(der)?.public_key().raw.to_vec())
}

/// A KMS root CA certificate: a self-signed P-256 CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsRoot {
    der: Vec<u8>,
    spki: Vec<u8>,
}

impl KmsRoot {
    /// Parse a root CA certificate (PEM) and check it is a self-signed P-256 CA.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let der = pem_to_der(pem)?;
        verify_issued_by(&der, &der).map_err(|e| format!("root CA is not self-signed: {e}"))?;
        let spki = spki(&der)?;
        Ok(KmsRoot { der, spki })
    }

    /// The root CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The root CA's DER SubjectPublicKeyInfo (what `key_provider_id` pins).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// Check that `end_entity` (DER) is issued directly by this root.
    pub fn verify_issued(&self, end_entity: &[u8]) -> Result<(), String> {
        verify_issued_by(end_entity, &self.der)
    }

    /// Check a `sign-cert` chain (PEM, leaf first): leaf → app CA → this root, with an
    /// optional trailing copy of this root. Returns the leaf's SPKI (DER).
    pub fn verify_app_chain(&self, chain: &[String]) -> Result<Vec<u8>, String> {
        let ders = chain
            .iter()
            .map(|p| pem_to_der(p))
            .collect::<Result<Vec<_>, _>>()?;
        let (leaf, app_ca) = match ders.as_slice() {
            [leaf, app_ca] => (leaf, app_ca),
            [leaf, app_ca, root] if root == &self.der => (leaf, app_ca),
            [_, _, _] => return Err("the chain ends in another root CA".to_owned()),
            _ => {
                return Err(format!(
                    "{} certificates; expected leaf, app CA[, root]",
                    ders.len()
                ))
            }
        };
        verify_issued_by(app_ca, &self.der).map_err(|e| format!("app CA: {e}"))?;
        verify_issued_by(leaf, app_ca).map_err(|e| format!("leaf: {e}"))?;
        spki(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn ca(name: &str) -> (KeyPair, CertificateParams, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        (key, params, pem)
    }

    fn leaf(issuer: &Issuer<'_, KeyPair>) -> (KeyPair, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap()
            .pem();
        (key, pem)
    }

    #[test]
    fn a_root_issued_cert_verifies_and_a_self_signed_one_does_not() {
        let (rk, rp, rpem) = ca("root");
        let root = KmsRoot::from_pem(&rpem).unwrap();
        let (_, issued) = leaf(&Issuer::new(rp, rk));
        root.verify_issued(&pem_to_der(&issued).unwrap()).unwrap();

        // Same subject name as the root, own key: the names match, the signature does not.
        let (ok, op, _) = ca("root");
        let (_, forged) = leaf(&Issuer::new(op, ok));
        let err = root
            .verify_issued(&pem_to_der(&forged).unwrap())
            .unwrap_err();
        assert!(err.contains("does not verify"), "{err}");

        let (_, _, other) = ca("other");
        let err = root
            .verify_issued(&pem_to_der(&other).unwrap())
            .unwrap_err();
        assert!(err.contains("issued by"), "{err}");
    }

    #[test]
    fn a_tampered_tbs_fails() {
        let (rk, rp, rpem) = ca("root");
        let root = KmsRoot::from_pem(&rpem).unwrap();
        let (_, issued) = leaf(&Issuer::new(rp, rk));
        let mut der = pem_to_der(&issued).unwrap();
        // Flip a byte of the SAN "x" inside the TBS.
        let i = der.iter().rposition(|&b| b == b'x').unwrap();
        der[i] = b'y';
        assert!(root.verify_issued(&der).is_err());
    }

    #[test]
    fn a_non_ca_issuer_and_a_non_self_signed_root_are_refused() {
        let (rk, rp, _) = ca("root");
        let (_, leaf_pem) = leaf(&Issuer::new(rp, rk));
        let err = KmsRoot::from_pem(&leaf_pem).unwrap_err();
        assert!(err.starts_with("root CA is not self-signed"), "{err}");

        let nk = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut np = CertificateParams::default();
        np.distinguished_name.push(DnType::CommonName, "not a ca");
        let non_ca = np.self_signed(&nk).unwrap();
        let (_, child) = leaf(&Issuer::new(np, nk));
        let err = verify_issued_by(&pem_to_der(&child).unwrap(), non_ca.der()).unwrap_err();
        assert_eq!(err, "the issuer certificate is not a CA");
    }

    #[test]
    fn app_chains_must_end_at_this_root() {
        let (rk, rp, rpem) = ca("root");
        let root = KmsRoot::from_pem(&rpem).unwrap();
        let root_issuer = Issuer::new(rp, rk);
        let app_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut app = CertificateParams::default();
        app.distinguished_name.push(DnType::CommonName, "app");
        app.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let app_pem = app.clone().signed_by(&app_key, &root_issuer).unwrap().pem();
        let (leaf_key, leaf_pem) = leaf(&Issuer::new(app, app_key));
        use rcgen::PublicKeyData;
        let spki = root
            .verify_app_chain(&[leaf_pem.clone(), app_pem.clone(), rpem.clone()])
            .unwrap();
        assert_eq!(spki, leaf_key.subject_public_key_info());
        root.verify_app_chain(&[leaf_pem.clone(), app_pem.clone()])
            .unwrap();

        let (_, _, other_root) = ca("root");
        assert_eq!(
            root.verify_app_chain(&[leaf_pem.clone(), app_pem.clone(), other_root]),
            Err("the chain ends in another root CA".to_owned())
        );
        assert_eq!(
            root.verify_app_chain(std::slice::from_ref(&leaf_pem)),
            Err("1 certificates; expected leaf, app CA[, root]".to_owned())
        );
        // An app CA from another root.
        let (ok, op, opem) = ca("root");
        let other = KmsRoot::from_pem(&opem).unwrap();
        let err = other.verify_app_chain(&[leaf_pem, app_pem]).unwrap_err();
        assert!(err.starts_with("app CA:"), "{err}");
        drop((ok, op));
    }
}
