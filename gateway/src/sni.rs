//! Where a connection goes, from its SNI: `<id>[-<port>][s].<base_domain>` (dstack's
//! scheme, DESIGN.md §8).
//!
//! - `<id>` is 40 hex digits: an app id (load-balanced over the app's instances) or an
//!   instance id (that instance only);
//! - `-<port>` is the app's port, 1–65535, decimal without leading zeros; without it the
//!   port is [`DEFAULT_TERMINATE_PORT`] (80) when terminating and
//!   [`DEFAULT_PASSTHROUGH_PORT`] (443) in passthrough, as in dstack;
//! - a trailing `s` on the first label means TLS passthrough: the gateway forwards the
//!   client's bytes untouched and the app terminates TLS itself; otherwise the gateway
//!   terminates TLS with its own certificate.
//!
//! Names compare case-insensitively; anything else (no SNI, another domain, a deeper
//! name, a bad id or port) is a [`SniError`], answered with a TLS alert.

/// Port used when the SNI names none and the gateway terminates TLS.
pub const DEFAULT_TERMINATE_PORT: u16 = 80;
/// Port used when the SNI names none in passthrough.
pub const DEFAULT_PASSTHROUGH_PORT: u16 = 443;
/// Length of an id label (20 bytes, hex).
const ID_HEX_LEN: usize = 40;

/// How the gateway handles a connection's TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Terminate TLS at the gateway (its certificate) and forward over TLS to the app,
    /// verifying the app's KMS-issued certificate.
    Terminate,
    /// Forward the client's TLS bytes untouched; the app terminates.
    Passthrough,
}

impl Mode {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Terminate => "terminate",
            Mode::Passthrough => "passthrough",
        }
    }
}

/// A parsed SNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// An app id or an instance id (20 bytes).
    pub id: [u8; 20],
    /// The app's port.
    pub port: u16,
    /// Terminate or pass through.
    pub mode: Mode,
}

/// Why an SNI names nothing this gateway routes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SniError {
    /// The ClientHello has no server name.
    #[error("no SNI")]
    Missing,
    /// The name is not `<label>.<base_domain>`.
    #[error("{0:?} is not under the base domain")]
    NotUnderBase(String),
    /// The id is not 40 hex digits.
    #[error("{0:?}: the id is not 40 hex digits")]
    BadId(String),
    /// The port is not a decimal 1–65535 without leading zeros.
    #[error("{0:?}: bad port")]
    BadPort(String),
}

impl SniError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            SniError::Missing => "no_sni",
            SniError::NotUnderBase(_) => "other_domain",
            SniError::BadId(_) | SniError::BadPort(_) => "bad_name",
        }
    }
}

/// Longest name kept in an error.
const MAX_NAME_IN_ERROR: usize = 80;

fn clip(s: &str) -> String {
    s.chars().take(MAX_NAME_IN_ERROR).collect()
}

/// Parse `sni` under `base_domain` (lowercase, no trailing dot). See the module docs.
pub fn parse(sni: Option<&str>, base_domain: &str) -> Result<Route, SniError> {
    let name = sni.ok_or(SniError::Missing)?;
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label = name
        .strip_suffix(base_domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|label| !label.is_empty() && !label.contains('.'))
        .ok_or_else(|| SniError::NotUnderBase(clip(&name)))?;
    // hex digits never include `s`, so a trailing `s` is always the passthrough flag
    let (label, mode) = match label.strip_suffix('s') {
        Some(rest) => (rest, Mode::Passthrough),
        None => (label, Mode::Terminate),
    };
    let (id_hex, port) = match label.split_once('-') {
        Some((id, port)) => (id, Some(port)),
        None => (label, None),
    };
    if id_hex.len() != ID_HEX_LEN {
        return Err(SniError::BadId(clip(&name)));
    }
    let mut id = [0u8; 20];
    hex::decode_to_slice(id_hex, &mut id).map_err(|_| SniError::BadId(clip(&name)))?;
    let port = match port {
        None => match mode {
            Mode::Terminate => DEFAULT_TERMINATE_PORT,
            Mode::Passthrough => DEFAULT_PASSTHROUGH_PORT,
        },
        Some(p) => {
            let ok = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            match p.parse::<u16>() {
                Ok(n) if ok && n != 0 && !p.starts_with('0') => n,
                _ => return Err(SniError::BadPort(clip(&name))),
            }
        }
    };
    Ok(Route { id, port, mode })
}

/// Whether `sni` is the base domain itself (the gateway's own pages: the ACME document).
pub fn is_base(sni: Option<&str>, base_domain: &str) -> bool {
    sni.is_some_and(|n| {
        n.strip_suffix('.')
            .unwrap_or(n)
            .eq_ignore_ascii_case(base_domain)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "gw.example.com";
    const ID: &str = "00112233445566778899aabbccddeeff00112233";

    fn id() -> [u8; 20] {
        let mut b = [0u8; 20];
        hex::decode_to_slice(ID, &mut b).unwrap();
        b
    }

    #[test]
    fn app_and_instance_names_parse_like_dstack() {
        let ok = |sni: &str, port, mode| {
            assert_eq!(
                parse(Some(sni), BASE),
                Ok(Route {
                    id: id(),
                    port,
                    mode
                }),
                "{sni}"
            )
        };
        ok(&format!("{ID}.{BASE}"), 80, Mode::Terminate);
        ok(&format!("{ID}s.{BASE}"), 443, Mode::Passthrough);
        ok(&format!("{ID}-8080.{BASE}"), 8080, Mode::Terminate);
        ok(&format!("{ID}-8443s.{BASE}"), 8443, Mode::Passthrough);
        ok(
            &format!("{}-1.{BASE}.", ID.to_uppercase()),
            1,
            Mode::Terminate,
        );
        ok(
            &format!("{ID}-65535s.GW.Example.COM"),
            65535,
            Mode::Passthrough,
        );
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        assert_eq!(parse(None, BASE), Err(SniError::Missing));
        for sni in [
            "example.com".to_owned(),
            BASE.to_owned(),
            format!("{ID}.other.com"),
            format!("a.{ID}.{BASE}"),
            format!("{ID}.x{BASE}"),
        ] {
            assert!(
                matches!(parse(Some(&sni), BASE), Err(SniError::NotUnderBase(_))),
                "{sni}"
            );
        }
        for sni in [
            format!("{}.{BASE}", &ID[..39]),
            format!("{}0.{BASE}", ID),
            format!("{}g.{BASE}", &ID[..39]),
            format!("-80.{BASE}"),
        ] {
            assert!(
                matches!(parse(Some(&sni), BASE), Err(SniError::BadId(_))),
                "{sni}"
            );
        }
        for port in ["0", "65536", "080", "", "8o", "+80", "123456"] {
            let sni = format!("{ID}-{port}.{BASE}");
            assert!(
                matches!(parse(Some(&sni), BASE), Err(SniError::BadPort(_))),
                "{sni}"
            );
        }
    }

    #[test]
    fn the_base_domain_itself_is_the_gateways_own() {
        assert!(is_base(Some("GW.example.com."), BASE));
        assert!(!is_base(Some(&format!("{ID}.{BASE}")), BASE));
        assert!(!is_base(None, BASE));
    }

    proptest::proptest! {
        #[test]
        fn random_names_never_panic(name in "\\PC{0,300}") {
            let _ = parse(Some(&name), BASE);
        }
    }
}
