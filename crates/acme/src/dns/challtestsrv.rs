//! `pebble-challtestsrv`'s management API: `POST /set-txt {"host","value"}` and
//! `POST /clear-txt {"host"}`, host names fully qualified (trailing dot).

use std::time::Duration;

use serde_json::json;

use super::{body, check_host, check_value, excerpt, transport, BoxFuture, DnsProvider};
use crate::error::DnsError;

/// The test DNS server of Debian's `pebble` package, driven over its management port.
#[derive(Debug, Clone)]
pub struct ChallTestSrvDns {
    base: reqwest::Url,
    client: reqwest::Client,
    timeout_secs: u64,
}

impl ChallTestSrvDns {
    /// A provider for the management API at `management_url` (e.g. `http://127.0.0.1:8055`).
    pub fn new(management_url: &str, timeout: Duration) -> Result<Self, DnsError> {
        let base = reqwest::Url::parse(management_url).map_err(|_| DnsError::Invalid {
            what: "management URL",
            value: management_url.chars().take(80).collect(),
        })?;
        let client = crate::http::client(timeout, None).map_err(DnsError::Client)?;
        Ok(ChallTestSrvDns {
            base,
            client,
            timeout_secs: timeout.as_secs(),
        })
    }

    async fn post(
        &self,
        op: &'static str,
        path: &str,
        payload: serde_json::Value,
    ) -> Result<(), DnsError> {
        let url = self.base.join(path).map_err(|_| DnsError::Invalid {
            what: "management URL",
            value: self.base.to_string(),
        })?;
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload.to_string())
            .send()
            .await
            .map_err(transport(op, self.timeout_secs))?;
        let status = resp.status();
        let bytes = body(op, self.timeout_secs, resp).await?;
        if !status.is_success() {
            return Err(DnsError::Status {
                op,
                status: status.as_u16(),
                body: excerpt(&bytes),
            });
        }
        Ok(())
    }
}

impl DnsProvider for ChallTestSrvDns {
    fn set_txt<'a>(&'a self, host: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            check_host(host)?;
            check_value(value)?;
            self.post(
                "set_txt",
                "set-txt",
                json!({ "host": format!("{host}."), "value": value }),
            )
            .await
        })
    }

    fn clear_txt<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            check_host(host)?;
            self.post(
                "clear_txt",
                "clear-txt",
                json!({ "host": format!("{host}.") }),
            )
            .await
        })
    }
}
