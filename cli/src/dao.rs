//! `cairn dao`: upgrade a Governor+Timelock-owned app by vote.
//!
//! ```text
//! cairn dao propose|vote|queue|execute|status --governor G --app A ACTION [--description D]
//!   ACTION: allow HASH | revoke HASH | upgrade FROM TO | call --calldata 0x… (any AppAuth call)
//! cairn dao vote … [--support for|against|abstain] [--wait] [--mine]
//! cairn dao queue|execute … [--wait] [--mine]
//! ```
//!
//! A proposal is identified by its content (targets, calldata, description), so the same
//! ACTION on every step names the same proposal; the default description is derived from
//! the action. `--wait` waits through the voting delay, the voting period and the timelock
//! with a progress bar; `--mine` (anvil only) mines the blocks / advances the clock instead
//! of waiting. Before a vote is sent, the signer's voting power at the snapshot is checked:
//! none is an error and nothing is sent.

use std::time::Duration;

use anyhow::Context as _;
use cairn_onchain::alloy::primitives::{Address, Bytes, U256};
use cairn_onchain::alloy::providers::ext::AnvilApi as _;
use cairn_onchain::alloy::providers::{DynProvider, Provider as _};
use cairn_onchain::{
    AppAuth, CairnGovernor, ChainClient, Dao, Governance, Proposal, ProposalState, Support,
};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::app::parse_b256;
use crate::common::{fail, outln, parse_address, refuse, ChainArgs, Global, Out, Resolved};

/// How often a wait looks at the chain.
const POLL: Duration = Duration::from_millis(500);
/// Longest `--wait` without `--mine` (a week: voting periods and timelocks are long).
const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// `cairn dao`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cairn dao propose --governor 0x… --app 0x… allow 0x<hash>
  cairn dao vote    --governor 0x… --app 0x… allow 0x<hash> --wait
  cairn dao queue   --governor 0x… --app 0x… allow 0x<hash> --wait --mine
  cairn dao execute --governor 0x… --app 0x… allow 0x<hash> --wait --mine
  cairn dao status  --governor 0x… --app 0x… allow 0x<hash> --json")]
pub struct DaoArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The Governor.
    #[arg(long, env = "CAIRN_GOVERNOR", global = true)]
    governor: Option<String>,
    /// The app the proposal calls (its AppAuth, owned by the Governor's timelock).
    #[arg(long, env = "CAIRN_APP", global = true)]
    app: Option<String>,
    /// The proposal's description (default: derived from the action).
    #[arg(long, global = true)]
    description: Option<String>,
    /// Wait until the step is possible (voting delay, period, timelock).
    #[arg(long, global = true)]
    wait: bool,
    /// With --wait, on anvil: mine blocks and advance the clock instead of waiting.
    #[arg(long, global = true)]
    mine: bool,
    #[command(subcommand)]
    cmd: DaoCommand,
}

#[derive(Debug, Subcommand)]
enum DaoCommand {
    /// Submit the proposal.
    Propose {
        #[command(subcommand)]
        action: Action,
    },
    /// Vote on it with the signer's delegated votes.
    Vote {
        /// for, against or abstain.
        #[arg(long, value_enum, default_value = "for", global = true)]
        support: SupportArg,
        #[command(subcommand)]
        action: Action,
    },
    /// Queue a passed proposal in the timelock.
    Queue {
        #[command(subcommand)]
        action: Action,
    },
    /// Execute a queued proposal once the timelock allows.
    Execute {
        #[command(subcommand)]
        action: Action,
    },
    /// State, snapshot, deadline, votes and timelock ETA.
    Status {
        #[command(subcommand)]
        action: Action,
    },
}

/// What the proposal does.
#[derive(Debug, Clone, Subcommand)]
enum Action {
    /// Allow a compose hash on the app (`addComposeHash`).
    Allow {
        /// The compose hash.
        hash: String,
    },
    /// Revoke a compose hash (`removeComposeHash`).
    Revoke {
        /// The compose hash.
        hash: String,
    },
    /// Allow a new compose hash and revoke the old one, in one proposal.
    Upgrade {
        /// The compose hash to revoke.
        from: String,
        /// The compose hash to allow.
        to: String,
    },
    /// Any AppAuth call, as ABI-encoded calldata.
    Call {
        /// The calldata (0x…), e.g. from `cast calldata`.
        #[arg(long)]
        calldata: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SupportArg {
    For,
    Against,
    Abstain,
}

/// Run `cairn dao …`.
pub async fn run(global: &Global, args: DaoArgs, out: Out) -> anyhow::Result<()> {
    let cfg = Resolved::new(global, &args.chain)?;
    let governor = parse_address(
        "--governor",
        args.governor.as_deref().ok_or_else(|| {
            fail("missing the Governor: pass --governor ADDR or set CAIRN_GOVERNOR")
        })?,
    )?;
    let app = parse_address(
        "--app",
        args.app
            .as_deref()
            .ok_or_else(|| fail("missing the app: pass --app ADDR or set CAIRN_APP"))?,
    )?;
    let (step, action) = match &args.cmd {
        DaoCommand::Propose { action } => ("propose", action),
        DaoCommand::Vote { action, .. } => ("vote", action),
        DaoCommand::Queue { action } => ("queue", action),
        DaoCommand::Execute { action } => ("execute", action),
        DaoCommand::Status { action } => ("status", action),
    };
    let proposal = proposal(app, action, args.description.as_deref())?;
    let chain = if step == "status" {
        cfg.reader().await?
    } else {
        cfg.writer().await?
    };
    let gov = Gov::open(&chain, governor).await?;
    let id = gov
        .dao
        .proposal_id(&proposal)
        .await
        .context("computing the proposal id")?;
    let mut tx = None;
    // vote, queue and execute draw their own bar while they wait.
    let _spinner = (step == "propose").then(|| out.progress(None, step));
    match args.cmd {
        DaoCommand::Propose { .. } => {
            let r = gov.dao.propose(&proposal).await.context("proposing")?;
            debug_assert_eq!(r, id);
        }
        DaoCommand::Vote { support, .. } => {
            gov.wait_for(&out, id, &[ProposalState::Active], args.wait, args.mine)
                .await?;
            let voter = chain
                .connection()
                .sender()
                .ok_or_else(|| fail("no signer"))?;
            let snapshot = gov.dao.proposal_snapshot(id).await?;
            let power = gov.votes_of(voter, snapshot).await?;
            if power.is_zero() {
                return Err(refuse(format!(
                    "{voter} has no voting power at the proposal's snapshot (block {snapshot}): \
                     hold tokens and delegate them (to yourself) before the proposal is made"
                )));
            }
            let support = match support {
                SupportArg::For => Support::For,
                SupportArg::Against => Support::Against,
                SupportArg::Abstain => Support::Abstain,
            };
            tx = Some(gov.dao.cast_vote(id, support).await.context("voting")?);
        }
        DaoCommand::Queue { .. } => {
            gov.wait_for(&out, id, &[ProposalState::Succeeded], args.wait, args.mine)
                .await?;
            tx = Some(gov.dao.queue(&proposal).await.context("queueing")?);
        }
        DaoCommand::Execute { .. } => {
            gov.wait_for(&out, id, &[ProposalState::Queued], args.wait, args.mine)
                .await?;
            gov.wait_eta(&out, id, args.wait, args.mine).await?;
            tx = Some(gov.dao.execute(&proposal).await.context("executing")?);
        }
        DaoCommand::Status { .. } => {}
    }
    let status = gov
        .status(
            id,
            &proposal,
            step,
            tx.map(|r| r.transaction_hash.to_string()),
        )
        .await?;
    if out.json {
        return out.json(&status);
    }
    print_status(&out, &status);
    Ok(())
}

fn proposal(app: Address, action: &Action, description: Option<&str>) -> anyhow::Result<Proposal> {
    Ok(match action {
        Action::Allow { hash } | Action::Revoke { hash } => {
            let h = parse_b256("compose hash", hash)?;
            let allow = matches!(action, Action::Allow { .. });
            let verb = if allow { "Allow" } else { "Revoke" };
            let d = description.map_or_else(
                || format!("{verb} compose hash {h} on app {app}"),
                str::to_owned,
            );
            let proposal = Proposal::new(d);
            if allow {
                proposal.call(app, &AppAuth::addComposeHashCall { hash: h })
            } else {
                proposal.call(app, &AppAuth::removeComposeHashCall { hash: h })
            }
        }
        Action::Upgrade { from, to } => {
            let old = parse_b256("compose hash (from)", from)?;
            let new = parse_b256("compose hash (to)", to)?;
            let d = description.map_or_else(
                || format!("Upgrade app {app} from compose hash {old} to {new}"),
                str::to_owned,
            );
            Proposal::new(d)
                .call(app, &AppAuth::addComposeHashCall { hash: new })
                .call(app, &AppAuth::removeComposeHashCall { hash: old })
        }
        Action::Call { calldata } => {
            let data: Bytes = calldata
                .parse()
                .map_err(|_| fail(format!("--calldata {calldata:?}: not 0x-prefixed hex")))?;
            let selector: [u8; 4] = data
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| fail("--calldata: shorter than a 4-byte selector"))?;
            if !AppAuth::AppAuthCalls::SELECTORS.contains(&selector) {
                return Err(fail(format!(
                    "--calldata: selector 0x{} is not an AppAuth function",
                    hex::encode(selector)
                )));
            }
            let d = description.map_or_else(
                || format!("Call 0x{} on app {app} ({data})", hex::encode(selector)),
                str::to_owned,
            );
            let mut p = Proposal::new(d);
            p.targets.push(app);
            p.values.push(U256::ZERO);
            p.calldatas.push(data);
            p
        }
    })
}

/// The Governor, its token and timelock.
struct Gov {
    dao: Dao,
    governor: CairnGovernor::CairnGovernorInstance<DynProvider>,
    provider: DynProvider,
    timeout: Duration,
}

/// `dao …`'s JSON.
#[derive(Serialize)]
struct StatusOut {
    step: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_hash: Option<String>,
    proposal_id: String,
    description: String,
    governor: String,
    timelock: String,
    state: String,
    snapshot_block: Option<u64>,
    deadline_block: Option<u64>,
    /// Unix time from which a queued proposal can execute (0: not queued).
    eta: Option<u64>,
    votes_for: Option<String>,
    votes_against: Option<String>,
    votes_abstain: Option<String>,
    /// Votes needed at the snapshot.
    quorum: Option<String>,
    head_block: u64,
    head_timestamp: u64,
}

impl Gov {
    async fn open(chain: &ChainClient, governor: Address) -> anyhow::Result<Gov> {
        let conn = chain.connection();
        let provider = conn.provider().clone();
        let timeout = conn.call_timeout();
        let g = CairnGovernor::new(governor, provider.clone());
        let code = timed(timeout, provider.get_code_at(governor)).await?;
        if code.is_empty() {
            return Err(fail(format!(
                "--governor {governor}: no contract at that address"
            )));
        }
        let token = timed(timeout, g.token().call())
            .await
            .with_context(|| format!("--governor {governor}: not a Governor (token())"))?;
        let timelock = timed(timeout, g.timelock().call())
            .await
            .with_context(|| format!("--governor {governor}: not a timelocked Governor"))?;
        let dao = conn.dao(Governance {
            token,
            timelock,
            governor,
        });
        Ok(Gov {
            dao,
            governor: g,
            provider,
            timeout,
        })
    }

    async fn votes_of(&self, voter: Address, snapshot: U256) -> anyhow::Result<U256> {
        timed(self.timeout, self.governor.getVotes(voter, snapshot).call()).await
    }

    async fn head(&self) -> anyhow::Result<(u64, u64)> {
        let b = timed(
            self.timeout,
            self.provider.get_block_by_number(Default::default()),
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("the chain has no latest block"))?;
        Ok((b.header.number, b.header.timestamp))
    }

    /// Wait (or mine, on anvil) until the proposal is in one of `want`.
    async fn wait_for(
        &self,
        out: &Out,
        id: U256,
        want: &[ProposalState],
        wait: bool,
        mine: bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        let mut bar: Option<crate::common::Progress> = None;
        loop {
            let state = self
                .dao
                .state(id)
                .await
                .context("reading the proposal state")?;
            if want.contains(&state) {
                return Ok(());
            }
            let waitable = matches!(state, ProposalState::Pending | ProposalState::Active);
            if !waitable || !wait {
                let hint = if waitable {
                    " (pass --wait, and --mine on anvil)"
                } else {
                    ""
                };
                return Err(refuse(format!(
                    "the proposal is {state:?}; this step needs it {:?}{hint}",
                    want[0]
                )));
            }
            let (head, _) = self.head().await?;
            let target = match state {
                ProposalState::Pending => self.dao.proposal_snapshot(id).await?,
                _ => self.dao.proposal_deadline(id).await?,
            };
            let target: u64 = target.try_into().unwrap_or(u64::MAX).saturating_add(1);
            let b = bar.get_or_insert_with(|| out.progress(Some(target), "waiting"));
            b.message(format!("{state:?}: block {head} of {target}"));
            b.set(head);
            if mine && head < target {
                timed(
                    self.timeout,
                    self.provider.anvil_mine(Some(target - head), None),
                )
                .await?;
                continue;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(fail("gave up waiting for the proposal"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait (or advance anvil's clock) until the queued proposal's ETA.
    async fn wait_eta(&self, out: &Out, id: U256, wait: bool, mine: bool) -> anyhow::Result<()> {
        let eta: u64 = self
            .dao
            .proposal_eta(id)
            .await?
            .try_into()
            .unwrap_or(u64::MAX);
        let bar = out.progress(None, "timelock");
        loop {
            let (_, now) = self.head().await?;
            if now >= eta {
                return Ok(());
            }
            if !wait {
                return Err(fail(format!(
                    "the timelock allows execution at {eta} (unix), {}s from the chain's head time; pass --wait (and --mine on anvil)",
                    eta - now
                )));
            }
            bar.message(format!("timelock: {}s left", eta - now));
            if mine {
                timed(self.timeout, self.provider.anvil_increase_time(eta - now)).await?;
                timed(self.timeout, self.provider.anvil_mine(Some(1), None)).await?;
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn status(
        &self,
        id: U256,
        proposal: &Proposal,
        step: &'static str,
        tx_hash: Option<String>,
    ) -> anyhow::Result<StatusOut> {
        let state = self.dao.state(id).await;
        let (head_block, head_timestamp) = self.head().await?;
        let (state, snapshot, deadline, eta, votes, quorum) = match state {
            Ok(s) => {
                let snap = self.dao.proposal_snapshot(id).await?;
                let dead = self.dao.proposal_deadline(id).await?;
                let eta = self.dao.proposal_eta(id).await?;
                let v = timed(self.timeout, self.governor.proposalVotes(id).call()).await?;
                let q = if U256::from(head_block) > snap {
                    timed(self.timeout, self.governor.quorum(snap).call())
                        .await
                        .ok()
                } else {
                    None
                };
                (
                    format!("{s:?}"),
                    snap.try_into().ok(),
                    dead.try_into().ok(),
                    eta.try_into().ok(),
                    Some((v.forVotes, v.againstVotes, v.abstainVotes)),
                    q,
                )
            }
            // OpenZeppelin reverts `state` for an unknown proposal.
            Err(e) if e.as_governor_error().is_some() => {
                ("Unknown".to_owned(), None, None, None, None, None)
            }
            Err(e) => return Err(e).context("reading the proposal state"),
        };
        Ok(StatusOut {
            step,
            tx_hash,
            proposal_id: id.to_string(),
            description: proposal.description.clone(),
            governor: self.dao.addresses().governor.to_string(),
            timelock: self.dao.timelock().to_string(),
            state,
            snapshot_block: snapshot,
            deadline_block: deadline,
            eta,
            votes_for: votes.map(|v| v.0.to_string()),
            votes_against: votes.map(|v| v.1.to_string()),
            votes_abstain: votes.map(|v| v.2.to_string()),
            quorum: quorum.map(|q| q.to_string()),
            head_block,
            head_timestamp,
        })
    }
}

async fn timed<T, E>(
    limit: Duration,
    fut: impl std::future::IntoFuture<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, fut.into_future()).await {
        Ok(r) => r.map_err(anyhow::Error::new),
        Err(_) => Err(anyhow::Error::new(cairn_onchain::Error::Timeout {
            op: "governor read",
            after: limit,
        })),
    }
}

fn print_status(out: &Out, s: &StatusOut) {
    if let Some(tx) = &s.tx_hash {
        outln!("{} (tx {tx})", out.good(s.step));
    }
    outln!("proposal {}", out.bold(&s.proposal_id));
    outln!("  {}", s.description);
    outln!("  state      {}", s.state);
    if let (Some(a), Some(b)) = (s.snapshot_block, s.deadline_block) {
        outln!("  voting     blocks {a}..={b} (head {})", s.head_block);
    }
    if let (Some(f), Some(a), Some(ab)) = (&s.votes_for, &s.votes_against, &s.votes_abstain) {
        outln!(
            "  votes      for {f}, against {a}, abstain {ab}; quorum {}",
            s.quorum.as_deref().unwrap_or("-")
        );
    }
    if let Some(eta) = s.eta.filter(|e| *e > 0) {
        outln!("  eta        {eta} (head time {})", s.head_timestamp);
    }
}
