//! DAO governance: deploy an `ERC20Votes` token + `TimelockController` + `Governor`, and
//! drive proposals (propose → vote → queue → execute).

use std::future::IntoFuture;

use alloy::primitives::{aliases::U48, keccak256, Address, Bytes, B256, U256};
use alloy::providers::DynProvider;
use alloy::sol_types::SolCall;

use crate::bindings::{AppAuth, CairnGovernor, CairnToken, KmsAuth, TimelockController};
use crate::connection::Connection;
use crate::error::{Error, Result, Target};
use crate::wrappers::contract_sends;

/// Parameters of a new DAO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GovernanceParams {
    /// Token name.
    pub token_name: String,
    /// Token symbol.
    pub token_symbol: String,
    /// Receives the whole initial supply.
    pub initial_holder: Address,
    /// Initial supply (token base units).
    pub initial_supply: U256,
    /// Blocks between a proposal and the start of voting.
    pub voting_delay_blocks: u32,
    /// Blocks the vote stays open.
    pub voting_period_blocks: u32,
    /// Votes needed to propose.
    pub proposal_threshold: U256,
    /// Quorum as a percentage of the supply at the snapshot.
    pub quorum_percent: u8,
    /// Timelock delay in seconds.
    pub timelock_delay_secs: u64,
}

impl GovernanceParams {
    /// Small devnet parameters: 1 block delay, 5 blocks voting, 4% quorum, 1 hour timelock.
    pub fn devnet(initial_holder: Address) -> Self {
        Self {
            token_name: "Cairn DAO".into(),
            token_symbol: "CAIRN".into(),
            initial_holder,
            initial_supply: U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18u64)),
            voting_delay_blocks: 1,
            voting_period_blocks: 5,
            proposal_threshold: U256::ZERO,
            quorum_percent: 4,
            timelock_delay_secs: 3600,
        }
    }
}

/// Addresses of a deployed DAO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Governance {
    /// The `CairnToken` (ERC20Votes).
    pub token: Address,
    /// The `TimelockController` (owns the DAO's contracts).
    pub timelock: Address,
    /// The `CairnGovernor`.
    pub governor: Address,
}

/// A vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Support {
    /// Against.
    Against = 0,
    /// For.
    For = 1,
    /// Abstain.
    Abstain = 2,
}

/// OpenZeppelin `IGovernor.ProposalState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposalState {
    /// Voting not started.
    Pending,
    /// Voting open.
    Active,
    /// Canceled.
    Canceled,
    /// Failed.
    Defeated,
    /// Passed, not queued.
    Succeeded,
    /// Queued in the timelock.
    Queued,
    /// Expired.
    Expired,
    /// Executed.
    Executed,
}

impl ProposalState {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Pending,
            1 => Self::Active,
            2 => Self::Canceled,
            3 => Self::Defeated,
            4 => Self::Succeeded,
            5 => Self::Queued,
            6 => Self::Expired,
            7 => Self::Executed,
            _ => return None,
        })
    }
}

/// A governance proposal: calls the timelock makes once it passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Call targets.
    pub targets: Vec<Address>,
    /// ETH values.
    pub values: Vec<U256>,
    /// Calldata of each call.
    pub calldatas: Vec<Bytes>,
    /// Human-readable description (its keccak256 identifies the proposal).
    pub description: String,
}

impl Proposal {
    /// An empty proposal.
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            targets: vec![],
            values: vec![],
            calldatas: vec![],
            description: description.into(),
        }
    }

    /// Adds a call without value.
    pub fn call(mut self, target: Address, call: &impl SolCall) -> Self {
        self.targets.push(target);
        self.values.push(U256::ZERO);
        self.calldatas.push(call.abi_encode().into());
        self
    }

    /// A proposal that allows `hash` on the app `app_id` (`addComposeHash`).
    pub fn add_compose_hash(app_id: Address, hash: B256, description: impl Into<String>) -> Self {
        Self::new(description).call(app_id, &AppAuth::addComposeHashCall { hash })
    }

    /// A proposal that rotates the KMS root keys of `kms_auth` to `generation`, keeping
    /// the replaced generation served until `previous_valid_until` (unix seconds;
    /// `KmsAuth.rotateKmsRootKeys`).
    pub fn rotate_kms_root_keys(
        kms_auth: Address,
        generation: u32,
        k256_pubkey: Bytes,
        ca_pubkey: Bytes,
        previous_valid_until: u64,
        description: impl Into<String>,
    ) -> Self {
        Self::new(description).call(
            kms_auth,
            &KmsAuth::rotateKmsRootKeysCall {
                generation,
                k256Pubkey: k256_pubkey,
                caPubkey: ca_pubkey,
                previousValidUntil: previous_valid_until,
            },
        )
    }

    /// keccak256 of the description (what queue/execute take).
    pub fn description_hash(&self) -> B256 {
        keccak256(self.description.as_bytes())
    }
}

/// A handle on a deployed DAO.
#[derive(Clone, Debug)]
pub struct Dao {
    conn: Connection,
    addresses: Governance,
    token: CairnToken::CairnTokenInstance<DynProvider>,
    governor: CairnGovernor::CairnGovernorInstance<DynProvider>,
}

impl Connection {
    /// Deploys token, timelock and governor; gives the governor the timelock's proposer
    /// and canceller roles, lets anyone execute, and renounces the deployer's admin role.
    pub async fn deploy_governance(&self, params: &GovernanceParams) -> Result<Dao> {
        let me = self.require_sender("deploy_governance")?;
        let p = self.provider();
        let token = self
            .deploy(
                "deploy CairnToken",
                CairnToken::deploy_builder(
                    p,
                    params.token_name.clone(),
                    params.token_symbol.clone(),
                    params.initial_holder,
                    params.initial_supply,
                ),
            )
            .await?;
        let timelock = self
            .deploy(
                "deploy TimelockController",
                TimelockController::deploy_builder(
                    p,
                    U256::from(params.timelock_delay_secs),
                    vec![],
                    vec![Address::ZERO],
                    me,
                ),
            )
            .await?;
        let governor = self
            .deploy(
                "deploy CairnGovernor",
                CairnGovernor::deploy_builder(
                    p,
                    token,
                    timelock,
                    U48::from(params.voting_delay_blocks),
                    params.voting_period_blocks,
                    params.proposal_threshold,
                    U256::from(params.quorum_percent),
                ),
            )
            .await?;
        let tl = TimelockController::new(timelock, p.clone());
        // The role ids as the timelock defines them (read, not recomputed).
        macro_rules! role {
            ($name:ident) => {
                self.view(
                    concat!("TimelockController.", stringify!($name)),
                    Target::Timelock,
                    timelock,
                    tl.$name().call(),
                )
                .await?
            };
        }
        let (proposer, canceller) = (role!(PROPOSER_ROLE), role!(CANCELLER_ROLE));
        let admin = role!(DEFAULT_ADMIN_ROLE);
        for role in [proposer, canceller] {
            let grant = tl.grantRole(role, governor);
            self.send("TimelockController.grantRole", Target::Timelock, grant)
                .await?;
        }
        let renounce = tl.renounceRole(admin, me);
        self.send(
            "TimelockController.renounceRole",
            Target::Timelock,
            renounce,
        )
        .await?;
        let addresses = Governance {
            token,
            timelock,
            governor,
        };
        tracing::info!(?addresses, "DAO deployed");
        Ok(self.dao(addresses))
    }

    /// A handle on an existing DAO.
    pub fn dao(&self, addresses: Governance) -> Dao {
        Dao {
            conn: self.clone(),
            addresses,
            token: CairnToken::new(addresses.token, self.provider().clone()),
            governor: CairnGovernor::new(addresses.governor, self.provider().clone()),
        }
    }
}

impl Dao {
    /// The DAO's addresses.
    pub fn addresses(&self) -> Governance {
        self.addresses
    }

    /// The timelock address (the owner of the DAO's contracts).
    pub fn timelock(&self) -> Address {
        self.addresses.timelock
    }

    fn connection(&self) -> &Connection {
        &self.conn
    }

    fn token(&self) -> &CairnToken::CairnTokenInstance<DynProvider> {
        &self.token
    }

    fn governor(&self) -> &CairnGovernor::CairnGovernorInstance<DynProvider> {
        &self.governor
    }

    /// A governor view call at the latest block.
    async fn governor_view<T>(
        &self,
        op: &'static str,
        call: impl IntoFuture<Output = alloy::contract::Result<T>>,
    ) -> Result<T> {
        let governor = self.addresses.governor;
        self.conn.view(op, Target::Governor, governor, call).await
    }

    contract_sends! { "CairnToken", Target::Other, connection, token;
        /// Transfers voting tokens from the signer.
        transfer_tokens(to: Address, amount: U256) => transfer(to, amount);
        /// Delegates the signer's votes to `delegatee` (needed before voting power counts).
        delegate(delegatee: Address) => delegate(delegatee);
    }

    /// Submits a proposal; returns its id.
    pub async fn propose(&self, proposal: &Proposal) -> Result<U256> {
        let p = proposal.clone();
        let call = self
            .governor
            .propose(p.targets, p.values, p.calldatas, p.description);
        self.conn
            .send("CairnGovernor.propose", Target::Governor, call)
            .await?;
        self.proposal_id(proposal).await
    }

    /// The id of a proposal (`getProposalId`).
    pub async fn proposal_id(&self, proposal: &Proposal) -> Result<U256> {
        let call = self.governor.getProposalId(
            proposal.targets.clone(),
            proposal.values.clone(),
            proposal.calldatas.clone(),
            proposal.description_hash(),
        );
        self.governor_view("CairnGovernor.getProposalId", call.call())
            .await
    }

    contract_sends! { "CairnGovernor", Target::Governor, connection, governor;
        /// Casts the signer's vote.
        cast_vote(proposal_id: U256, support: Support) => castVote(proposal_id, support as u8);
        /// Queues a passed proposal in the timelock.
        queue(p: &Proposal)
            => queue(p.targets.clone(), p.values.clone(), p.calldatas.clone(), p.description_hash());
        /// Executes a queued proposal after the timelock delay.
        execute(p: &Proposal)
            => execute(p.targets.clone(), p.values.clone(), p.calldatas.clone(), p.description_hash());
    }

    /// The proposal's state (at the latest block: governance flow, not release policy).
    pub async fn state(&self, proposal_id: U256) -> Result<ProposalState> {
        let op = "CairnGovernor.state";
        let raw = self
            .governor_view(op, self.governor.state(proposal_id).call())
            .await?;
        ProposalState::from_u8(raw).ok_or_else(|| Error::Contract {
            op,
            message: format!("unknown proposal state {raw}"),
        })
    }

    /// The block at which voting ends.
    pub async fn proposal_deadline(&self, proposal_id: U256) -> Result<U256> {
        let call = self.governor.proposalDeadline(proposal_id);
        self.governor_view("CairnGovernor.proposalDeadline", call.call())
            .await
    }

    /// The snapshot block of the proposal (voting starts after it).
    pub async fn proposal_snapshot(&self, proposal_id: U256) -> Result<U256> {
        let call = self.governor.proposalSnapshot(proposal_id);
        self.governor_view("CairnGovernor.proposalSnapshot", call.call())
            .await
    }

    /// The unix time from which a queued proposal can execute.
    pub async fn proposal_eta(&self, proposal_id: U256) -> Result<U256> {
        let call = self.governor.proposalEta(proposal_id);
        self.governor_view("CairnGovernor.proposalEta", call.call())
            .await
    }
}
