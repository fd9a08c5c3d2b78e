//! Cloudflare's v4 API (`https://api.cloudflare.com/client/v4`), with an API token
//! (`Authorization: Bearer …`) scoped to DNS edit on one zone:
//!
//! - add: `POST /zones/{zone_id}/dns_records` `{"type":"TXT","name","content","ttl"}`
//! - list: `GET /zones/{zone_id}/dns_records?type=TXT&name=…&page=…&per_page=100`
//! - delete: `DELETE /zones/{zone_id}/dns_records/{id}`
//!
//! Every answer is the envelope `{"success","errors":[{"code","message"}],"messages",
//! "result"}` (lists add `result_info.total_pages`); `success: false` is an error carrying
//! the codes and messages.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{body, check_host, check_value, excerpt, transport, BoxFuture, DnsProvider};
use crate::consts::{CLOUDFLARE_API_BASE, DEFAULT_TXT_TTL, MAX_LIST_PAGES};
use crate::error::DnsError;

/// An API token: zeroized on drop, never shown by `Debug`.
#[derive(Clone)]
pub struct ApiToken(Zeroizing<String>);

impl ApiToken {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        ApiToken(Zeroizing::new(token))
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for ApiToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ApiToken::new)
    }
}

/// How the gateway reaches Cloudflare. `Debug` redacts the token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudflareConfig {
    /// The API base (default Cloudflare's; a different one for a proxy or a test server).
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// The zone that holds the base domain.
    pub zone_id: String,
    /// An API token with `Zone.DNS:Edit` on that zone.
    pub api_token: ApiToken,
    /// TTL of the TXT records, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_api_base() -> String {
    CLOUDFLARE_API_BASE.to_owned()
}

fn default_ttl() -> u32 {
    DEFAULT_TXT_TTL
}

/// Cloudflare DNS. `Debug` redacts the token.
#[derive(Clone)]
pub struct CloudflareDns {
    base: reqwest::Url,
    zone_id: String,
    token: Zeroizing<String>,
    ttl: u32,
    client: reqwest::Client,
    timeout_secs: u64,
}

impl std::fmt::Debug for CloudflareDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareDns")
            .field("base", &self.base.as_str())
            .field("zone_id", &self.zone_id)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
    result_info: Option<ResultInfo>,
}

#[derive(Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_pages: u32,
}

#[derive(Deserialize)]
struct Record {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    name: String,
}

#[derive(Serialize)]
struct NewRecord<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    name: &'a str,
    content: &'a str,
    ttl: u32,
}

/// An identifier that may go into a URL path: 1-64 ASCII alphanumerics.
fn check_id(what: &'static str, id: &str) -> Result<(), DnsError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(DnsError::Invalid {
            what,
            value: id.chars().take(80).collect(),
        })
    }
}

impl CloudflareDns {
    /// A provider for `config`, each request bounded by `timeout`.
    pub fn new(config: &CloudflareConfig, timeout: Duration) -> Result<Self, DnsError> {
        check_id("zone id", &config.zone_id)?;
        let mut base = reqwest::Url::parse(&config.api_base).map_err(|_| DnsError::Invalid {
            what: "API base",
            value: config.api_base.chars().take(80).collect(),
        })?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(CloudflareDns {
            base,
            zone_id: config.zone_id.clone(),
            token: config.api_token.0.clone(),
            ttl: config.ttl,
            client: crate::http::client(timeout, None).map_err(DnsError::Client)?,
            timeout_secs: timeout.as_secs(),
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, DnsError> {
        self.base.join(path).map_err(|_| DnsError::Invalid {
            what: "API base",
            value: self.base.to_string(),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<Envelope<T>, DnsError> {
        let resp = req
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .map_err(transport(op, self.timeout_secs))?;
        let status = resp.status();
        let bytes = body(op, self.timeout_secs, resp).await?;
        // An error status usually still carries the envelope with the API's reasons.
        match serde_json::from_slice::<Envelope<T>>(&bytes) {
            Ok(env) if !env.success || !status.is_success() => Err(DnsError::Api {
                op,
                errors: env
                    .errors
                    .into_iter()
                    .map(|e| (e.code, e.message))
                    .collect(),
            }),
            Ok(env) => Ok(env),
            Err(_) if !status.is_success() => Err(DnsError::Status {
                op,
                status: status.as_u16(),
                body: excerpt(&bytes),
            }),
            Err(source) => Err(DnsError::Malformed { op, source }),
        }
    }

    async fn list_txt(&self, host: &str) -> Result<Vec<Record>, DnsError> {
        let url = self.url(&format!("zones/{}/dns_records", self.zone_id))?;
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let mut page_url = url.clone();
            page_url
                .query_pairs_mut()
                .append_pair("type", "TXT")
                .append_pair("name", host)
                .append_pair("per_page", "100")
                .append_pair("page", &page.to_string());
            let req = self.client.get(page_url);
            let env: Envelope<Vec<Record>> = self.call("list", req).await?;
            out.extend(env.result.unwrap_or_default().into_iter().filter(|r| {
                r.kind == "TXT" && r.name.trim_end_matches('.').eq_ignore_ascii_case(host)
            }));
            let total = env.result_info.map_or(1, |i| i.total_pages);
            if page >= total || page >= MAX_LIST_PAGES {
                return Ok(out);
            }
            page += 1;
        }
    }
}

impl DnsProvider for CloudflareDns {
    fn set_txt<'a>(&'a self, host: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            check_host(host)?;
            check_value(value)?;
            let url = self.url(&format!("zones/{}/dns_records", self.zone_id))?;
            let record = NewRecord {
                kind: "TXT",
                name: host,
                content: value,
                ttl: self.ttl,
            };
            let body = serde_json::to_vec(&record).map_err(|source| DnsError::Malformed {
                op: "set_txt",
                source,
            })?;
            let req = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let _: Envelope<serde_json::Value> = self.call("set_txt", req).await?;
            Ok(())
        })
    }

    fn clear_txt<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            check_host(host)?;
            for record in self.list_txt(host).await? {
                check_id("record id", &record.id)?;
                let url = self.url(&format!("zones/{}/dns_records/{}", self.zone_id, record.id))?;
                let _: Envelope<serde_json::Value> =
                    self.call("clear_txt", self.client.delete(url)).await?;
            }
            Ok(())
        })
    }
}
