//! One ACME order by DNS-01 (RFC 8555 §7.4, §8.4), in the order the spec gives:
//! new order → for each pending authorization publish `_acme-challenge.<domain>` TXT →
//! wait for propagation → mark every challenge ready → poll the order → finalize with
//! our CSR → download the chain. The TXT records are removed whatever the outcome.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};

use crate::dns::DnsProvider;
use crate::error::{Error, Result};

/// What one order needs.
pub(crate) struct OrderRequest<'a> {
    /// The names, e.g. `["*.gw.example.com", "gw.example.com"]`.
    pub names: &'a [String],
    /// The CSR (DER) over the new key, naming `names`.
    pub csr_der: &'a [u8],
    /// Wait between publishing TXT records and asking for validation.
    pub propagation: Duration,
    /// How long to poll the order (validation, then issuance).
    pub poll_timeout: Duration,
}

fn problem_text(p: &instant_acme::Problem) -> String {
    format!(
        "{}: {}",
        p.r#type.as_deref().unwrap_or("unknown problem"),
        p.detail.as_deref().unwrap_or("no detail")
    )
}

/// Issue a certificate; returns the PEM chain.
pub(crate) async fn issue(
    account: &Account,
    dns: &dyn DnsProvider,
    req: &OrderRequest<'_>,
) -> Result<String> {
    let identifiers = req
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect::<Vec<_>>();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(Error::acme("creating the order"))?;

    let mut hosts: Vec<String> = Vec::new();
    let outcome = validate_and_finalize(&mut order, dns, req, &mut hosts).await;
    // Clean up every name we wrote to, whatever happened; a cleanup failure is logged, not
    // allowed to hide the outcome.
    hosts.sort();
    hosts.dedup();
    for host in &hosts {
        if let Err(e) = dns.clear_txt(host).await {
            tracing::warn!(%host, error = %e, "could not remove the challenge TXT record");
        }
    }
    outcome
}

async fn validate_and_finalize(
    order: &mut Order,
    dns: &dyn DnsProvider,
    req: &OrderRequest<'_>,
    hosts: &mut Vec<String>,
) -> Result<String> {
    let mut pending = 0usize;
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(Error::acme("fetching an authorization"))?;
            let identifier = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(Error::AuthorizationInvalid {
                        identifier,
                        problem: format!("authorization is {other:?} before any challenge"),
                    })
                }
            }
            let domain = match authz.identifier().identifier {
                Identifier::Dns(d) => d.clone(),
                _ => return Err(Error::NoDns01Challenge { identifier }),
            };
            let challenge =
                authz
                    .challenge(ChallengeType::Dns01)
                    .ok_or_else(|| Error::NoDns01Challenge {
                        identifier: identifier.clone(),
                    })?;
            let value = challenge.key_authorization().dns_value();
            let host = format!("_acme-challenge.{domain}");
            hosts.push(host.clone());
            dns.set_txt(&host, &value)
                .await
                .map_err(|source| Error::Dns {
                    op: "set_txt",
                    host: host.clone(),
                    source,
                })?;
            pending += 1;
        }
    }

    if pending > 0 && !req.propagation.is_zero() {
        tokio::time::sleep(req.propagation).await;
    }

    // The CA validates a challenge as soon as it is marked ready, so a wrong record for
    // one identifier can fail the order before the next identifier's challenge is
    // marked: the CA then refuses that call, and the reason is on the failed
    // authorization, which `diagnose` reports.
    let mut refused = None;
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(Error::acme("fetching an authorization"))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let identifier = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(ChallengeType::Dns01)
                .ok_or(Error::NoDns01Challenge { identifier })?;
            if let Err(e) = challenge.set_ready().await {
                refused = Some(e);
                break;
            }
        }
    }
    match refused {
        None => {}
        Some(instant_acme::Error::Api(problem)) => {
            return Err(diagnose(order, "invalid".to_owned(), Some(problem_text(&problem))).await)
        }
        Some(source) => {
            return Err(Error::Acme {
                context: "marking the challenge ready",
                source,
            })
        }
    }

    let poll = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .backoff(1.5)
        .timeout(req.poll_timeout);
    let status = order.poll_ready(&poll).await;
    match status {
        Ok(OrderStatus::Ready) => {}
        Ok(other) => return Err(diagnose(order, format!("{other:?}"), None).await),
        Err(instant_acme::Error::Api(problem)) => {
            return Err(diagnose(order, "invalid".to_owned(), Some(problem_text(&problem))).await)
        }
        Err(e) => {
            return Err(Error::Acme {
                context: "waiting for validation",
                source: e,
            })
        }
    }

    order
        .finalize_csr(req.csr_der)
        .await
        .map_err(Error::acme("finalizing the order"))?;
    order
        .poll_certificate(&poll)
        .await
        .map_err(Error::acme("downloading the certificate"))
}

/// Name the authorization that failed (and the CA's reason), else the order's state.
async fn diagnose(order: &mut Order, status: String, order_problem: Option<String>) -> Error {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let Ok(mut authz) = authz else { continue };
        let identifier = authz.identifier().to_string();
        let state = match authz.refresh().await {
            Ok(s) => s,
            Err(_) => continue,
        };
        if state.status == AuthorizationStatus::Invalid {
            let problem = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref().map(problem_text))
                .or_else(|| order_problem.clone())
                .unwrap_or_else(|| "no detail from the CA".to_owned());
            return Error::AuthorizationInvalid {
                identifier,
                problem,
            };
        }
    }
    Error::OrderFailed {
        status,
        problem: order_problem.unwrap_or_else(|| "no detail from the CA".to_owned()),
    }
}
