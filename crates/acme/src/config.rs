//! [`AcmeConfig`]: the `[acme]` table the gateway's TOML embeds (`docs/gateway.md`,
//! "Certificates: file or ACME", lists every key and default).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::consts::{
    DEFAULT_CHECK_INTERVAL, DEFAULT_DNS_PROPAGATION, DEFAULT_ORDER_TIMEOUT,
    DEFAULT_RENEW_AFTER_FRACTION, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_INITIAL,
    DEFAULT_RETRY_MAX,
};
use crate::dns::{ChallTestSrvDns, CloudflareConfig, CloudflareDns, DnsProvider};
use crate::error::{Error, Result};

/// Which DNS provider publishes the challenge records.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "provider", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DnsConfig {
    /// Cloudflare's API.
    Cloudflare(CloudflareConfig),
    /// `pebble-challtestsrv` (tests and local development only).
    Challtestsrv {
        /// Its management API, e.g. `http://127.0.0.1:8055`.
        management_url: String,
    },
}

impl DnsConfig {
    /// Build the provider, every call bounded by `timeout`.
    pub fn build(&self, timeout: Duration) -> Result<Arc<dyn DnsProvider>> {
        let err = |source| Error::Dns {
            op: "configure",
            host: String::new(),
            source,
        };
        Ok(match self {
            DnsConfig::Cloudflare(c) => Arc::new(CloudflareDns::new(c, timeout).map_err(err)?),
            DnsConfig::Challtestsrv { management_url } => {
                Arc::new(ChallTestSrvDns::new(management_url, timeout).map_err(err)?)
            }
        })
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

fn d_fraction() -> f64 {
    DEFAULT_RENEW_AFTER_FRACTION
}
fn d_retry_initial() -> u64 {
    secs(DEFAULT_RETRY_INITIAL)
}
fn d_retry_max() -> u64 {
    secs(DEFAULT_RETRY_MAX)
}
fn d_check() -> u64 {
    secs(DEFAULT_CHECK_INTERVAL)
}
fn d_request() -> u64 {
    secs(DEFAULT_REQUEST_TIMEOUT)
}
fn d_order() -> u64 {
    secs(DEFAULT_ORDER_TIMEOUT)
}
fn d_propagation() -> u64 {
    secs(DEFAULT_DNS_PROPAGATION)
}

/// ACME for the gateway's base domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's directory URL (Let's Encrypt:
    /// `https://acme-v02.api.letsencrypt.org/directory`).
    pub directory_url: String,
    /// The base domain: the certificate names `*.<base_domain>` and `<base_domain>`.
    pub base_domain: String,
    /// A PEM file of the only roots trusted for the CA's HTTPS endpoint (default: the
    /// platform's trust store). Tests point it at Pebble's listener certificate.
    #[serde(default)]
    pub ca_roots: Option<PathBuf>,
    /// Where the certificate, its key and the published document are kept across
    /// restarts (none: kept in memory only, a restart orders a new certificate).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Renew after this fraction of the certificate's lifetime, in (0, 1).
    #[serde(default = "d_fraction")]
    pub renew_after_fraction: f64,
    /// First retry delay after a failed issuance, seconds (doubles each failure).
    #[serde(default = "d_retry_initial")]
    pub retry_initial_secs: u64,
    /// Longest retry delay, seconds.
    #[serde(default = "d_retry_max")]
    pub retry_max_secs: u64,
    /// How often the renewal task checks whether renewal is due, seconds.
    #[serde(default = "d_check")]
    pub check_interval_secs: u64,
    /// Timeout of one HTTP request (CA, DNS provider), seconds.
    #[serde(default = "d_request")]
    pub request_timeout_secs: u64,
    /// Bound on one whole issuance, seconds.
    #[serde(default = "d_order")]
    pub order_timeout_secs: u64,
    /// Wait between publishing the TXT records and asking the CA to validate, seconds.
    #[serde(default = "d_propagation")]
    pub dns_propagation_secs: u64,
    /// The DNS provider.
    pub dns: DnsConfig,
}

impl AcmeConfig {
    /// A configuration with every default, for `directory_url`, `base_domain` and `dns`.
    pub fn new(directory_url: &str, base_domain: &str, dns: DnsConfig) -> Self {
        AcmeConfig {
            directory_url: directory_url.to_owned(),
            base_domain: base_domain.to_owned(),
            ca_roots: None,
            state_dir: None,
            renew_after_fraction: DEFAULT_RENEW_AFTER_FRACTION,
            retry_initial_secs: d_retry_initial(),
            retry_max_secs: d_retry_max(),
            check_interval_secs: d_check(),
            request_timeout_secs: d_request(),
            order_timeout_secs: d_order(),
            dns_propagation_secs: d_propagation(),
            dns,
        }
    }

    /// The names on the certificate: `*.<base>` and `<base>`.
    pub fn names(&self) -> Vec<String> {
        let base = self.base_domain.trim_end_matches('.').to_ascii_lowercase();
        vec![format!("*.{base}"), base]
    }

    /// Check every value; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let cfg = |key, reason: &str| Error::Config {
            key,
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(&self.directory_url)
            .map_err(|e| cfg("directory_url", &e.to_string()))?;
        if url.scheme() != "https" {
            return Err(cfg("directory_url", "must be https"));
        }
        let base = self.base_domain.trim_end_matches('.');
        if base.starts_with("*.") || crate::dns::check_host(base).is_err() || !base.contains('.') {
            return Err(cfg(
                "base_domain",
                "must be a DNS name with at least two labels, without a wildcard",
            ));
        }
        if !(self.renew_after_fraction > 0.0 && self.renew_after_fraction < 1.0) {
            return Err(cfg("renew_after_fraction", "must be in (0, 1)"));
        }
        if self.retry_initial_secs == 0 || self.retry_max_secs < self.retry_initial_secs {
            return Err(cfg(
                "retry_initial_secs",
                "must be > 0 and at most retry_max_secs",
            ));
        }
        for (key, v) in [
            ("check_interval_secs", self.check_interval_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("order_timeout_secs", self.order_timeout_secs),
        ] {
            if v == 0 {
                return Err(cfg(key, "must be > 0"));
            }
        }
        Ok(())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns() -> DnsConfig {
        DnsConfig::Challtestsrv {
            management_url: "http://127.0.0.1:1".to_owned(),
        }
    }

    #[test]
    fn toml_with_defaults_parses_and_unknown_keys_are_refused() {
        let c: AcmeConfig = toml::from_str(
            r#"
directory_url = "https://acme.example/dir"
base_domain = "gw.example.com"
[dns]
provider = "cloudflare"
zone_id = "abc123"
api_token = "secret-token"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.names(), ["*.gw.example.com", "gw.example.com"]);
        assert!(!format!("{c:?}").contains("secret-token"));
        let bad = toml::from_str::<AcmeConfig>(
            "directory_url = \"https://a/b\"\nbase_domain = \"a.b\"\nrenew_fraction = 0.5\n[dns]\nprovider = \"challtestsrv\"\nmanagement_url = \"http://x\"\n",
        );
        assert!(bad.unwrap_err().to_string().contains("renew_fraction"));
    }

    #[test]
    fn invalid_values_name_their_key() {
        let base = AcmeConfig::new("https://a.example/dir", "gw.example.com", dns());
        base.validate().unwrap();
        type Mutation = Box<dyn Fn(&mut AcmeConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "directory_url",
                Box::new(|c| c.directory_url = "http://a/dir".into()),
            ),
            (
                "base_domain",
                Box::new(|c| c.base_domain = "*.gw.example.com".into()),
            ),
            (
                "base_domain",
                Box::new(|c| c.base_domain = "localhost".into()),
            ),
            (
                "renew_after_fraction",
                Box::new(|c| c.renew_after_fraction = 1.0),
            ),
            ("retry_initial_secs", Box::new(|c| c.retry_initial_secs = 0)),
            ("order_timeout_secs", Box::new(|c| c.order_timeout_secs = 0)),
        ];
        for (key, mutate) in cases {
            let mut c = base.clone();
            mutate(&mut c);
            match c.validate() {
                Err(Error::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
