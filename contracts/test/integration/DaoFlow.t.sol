// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IGovernor} from "@openzeppelin/contracts/governance/IGovernor.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnToken} from "../../src/governance/CairnToken.sol";
import {CairnGovernor} from "../../src/governance/CairnGovernor.sol";
import {CairnTestBase} from "../utils/CairnTestBase.sol";

/// @dev The DAO flow of DESIGN.md §4: propose addComposeHash → vote → queue → execute after the
/// timelock delay → the KMS releases keys to the new compose hash, and not one block earlier.
contract DaoFlowTest is CairnTestBase {
    uint48 internal constant VOTING_DELAY = 1; // blocks
    uint32 internal constant VOTING_PERIOD = 50; // blocks
    uint256 internal constant TIMELOCK_DELAY = 1 days; // seconds
    uint64 internal constant TIMELOCK_DELAY_U64 = 1 days;
    uint256 internal constant SUPPLY = 1_000_000e18;
    uint8 internal constant AGAINST = 0; // GovernorCountingSimple support values
    uint8 internal constant FOR = 1;

    address internal kmsOwner = makeAddr("KmsOwner");
    address internal voter = makeAddr("Voter");
    address internal minority = makeAddr("Minority");
    CairnToken internal token;
    TimelockController internal timelock;
    CairnGovernor internal governor;
    KmsAuth internal kms;
    AppAuth internal app;

    function setUp() public {
        vm.warp(1_700_000_000);
        vm.roll(1000);
        token = new CairnToken("Cairn DAO", "CAIRN", voter, SUPPLY);
        vm.prank(voter);
        assertTrue(token.transfer(minority, SUPPLY / 10), "transfer");
        vm.prank(voter);
        token.delegate(voter);
        vm.prank(minority);
        token.delegate(minority);

        address[] memory none = new address[](0);
        address[] memory anyone = new address[](1); // address(0): anyone may execute
        timelock = new TimelockController(TIMELOCK_DELAY, none, anyone, address(this));
        governor = new CairnGovernor(token, timelock, VOTING_DELAY, VOTING_PERIOD, 0, 4);
        timelock.grantRole(timelock.PROPOSER_ROLE(), address(governor));
        timelock.grantRole(timelock.CANCELLER_ROLE(), address(governor));
        timelock.renounceRole(timelock.DEFAULT_ADMIN_ROLE(), address(this));

        kms = _deployKmsAuth(kmsOwner, address(new AppAuth()));
        vm.prank(kmsOwner);
        kms.addOsImageHash(OS_IMAGE);
        // The DAO's app: the timelock is the owner from the start.
        app = AppAuth(kms.deployAndRegisterApp(address(timelock), false, true, bytes32(0), COMPOSE_HASH));
        vm.roll(block.number + 1); // delegations are checkpointed in the past
    }

    function _proposal(bytes memory call)
        internal
        view
        returns (address[] memory targets, uint256[] memory values, bytes[] memory calldatas)
    {
        targets = new address[](1);
        targets[0] = address(app);
        values = new uint256[](1);
        calldatas = new bytes[](1);
        calldatas[0] = call;
    }

    /// A proposal of two calls to `target`: accept its pending ownership, then `call`.
    function _acceptOwnershipThen(address target, bytes memory call)
        internal
        pure
        returns (address[] memory targets, uint256[] memory values, bytes[] memory calldatas)
    {
        targets = new address[](2);
        targets[0] = target;
        targets[1] = target;
        values = new uint256[](2);
        calldatas = new bytes[](2);
        calldatas[0] = abi.encodeCall(Ownable2StepUpgradeable.acceptOwnership, ());
        calldatas[1] = call;
    }

    /// `voter` (the majority) votes `voterSupport`, then `minority` votes `minoritySupport`.
    function _castVotes(uint256 id, uint8 voterSupport, uint8 minoritySupport) internal {
        vm.prank(voter);
        governor.castVote(id, voterSupport);
        vm.prank(minority);
        governor.castVote(id, minoritySupport);
    }

    /// `voter` proposes it; returns the id.
    function _proposeAsVoter(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        string memory description
    ) internal returns (uint256) {
        vm.prank(voter);
        return governor.propose(targets, values, calldatas, description);
    }

    /// `voter` proposes and votes for it; returns the id once voting has closed.
    function _proposeAndPass(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        string memory description
    ) internal returns (uint256 id) {
        id = _proposeAsVoter(targets, values, calldatas, description);
        vm.roll(block.number + VOTING_DELAY + 1);
        vm.prank(voter);
        governor.castVote(id, 1);
        vm.roll(block.number + VOTING_PERIOD + 1);
    }

    function _kmsVerdict(bytes32 hash) internal view returns (bool, string memory) {
        return kms.isAppAllowed(_bootInfo(address(app), hash, DEVICE_ID));
    }

    function test_DaoVoteUnlocksNewComposeHash() public {
        (address[] memory targets, uint256[] memory values, bytes[] memory calldatas) =
            _proposal(abi.encodeCall(AppAuth.addComposeHash, (COMPOSE_HASH_2)));
        string memory description = "Upgrade the app to compose v2";
        bytes32 descriptionHash = keccak256(bytes(description));

        uint256 id = _proposeAsVoter(targets, values, calldatas, description);
        assertEq(uint8(governor.state(id)), uint8(IGovernor.ProposalState.Pending), "pending");

        vm.roll(block.number + VOTING_DELAY + 1);
        assertEq(uint8(governor.state(id)), uint8(IGovernor.ProposalState.Active), "active");
        _castVotes(id, FOR, AGAINST);

        vm.roll(block.number + VOTING_PERIOD + 1);
        assertEq(uint8(governor.state(id)), uint8(IGovernor.ProposalState.Succeeded), "succeeded");
        (bool ok, string memory reason) = _kmsVerdict(COMPOSE_HASH_2);
        _assertVerdict(ok, reason, false, "Compose hash not allowed");

        governor.queue(targets, values, calldatas, descriptionHash);
        assertEq(uint8(governor.state(id)), uint8(IGovernor.ProposalState.Queued), "queued");
        (ok, reason) = _kmsVerdict(COMPOSE_HASH_2);
        _assertVerdict(ok, reason, false, "Compose hash not allowed");

        // One second before the timelock delay ends, execution is refused.
        vm.warp(block.timestamp + TIMELOCK_DELAY - 1);
        bytes32 opId = timelock.hashOperationBatch(targets, values, calldatas, 0, _salt(descriptionHash));
        vm.expectRevert(
            abi.encodeWithSelector(
                TimelockController.TimelockUnexpectedOperationState.selector,
                opId,
                // forge-lint: disable-next-line(incorrect-shift) -- OpenZeppelin state bitmap: 1 << state
                bytes32(1 << uint8(TimelockController.OperationState.Ready))
            )
        );
        governor.execute(targets, values, calldatas, descriptionHash);
        (ok, reason) = _kmsVerdict(COMPOSE_HASH_2);
        _assertVerdict(ok, reason, false, "Compose hash not allowed");

        vm.warp(block.timestamp + 1);
        vm.expectEmit(address(app));
        emit AppAuth.ComposeHashAdded(COMPOSE_HASH_2, uint64(block.timestamp));
        governor.execute(targets, values, calldatas, descriptionHash);
        assertEq(uint8(governor.state(id)), uint8(IGovernor.ProposalState.Executed), "executed");

        (ok, reason) = _kmsVerdict(COMPOSE_HASH_2);
        _assertVerdict(ok, reason, true, "");
    }

    function test_DefeatedProposalNeverUnlocks() public {
        (address[] memory targets, uint256[] memory values, bytes[] memory calldatas) =
            _proposal(abi.encodeCall(AppAuth.addComposeHash, (COMPOSE_HASH_2)));
        string memory description = "Rejected upgrade";
        vm.prank(minority);
        uint256 id = governor.propose(targets, values, calldatas, description);
        vm.roll(block.number + VOTING_DELAY + 1);
        _castVotes(id, AGAINST, FOR);
        vm.roll(block.number + VOTING_PERIOD + 1);
        assertEq(uint8(governor.state(id)), uint8(IGovernor.ProposalState.Defeated), "defeated");

        vm.expectRevert(
            abi.encodeWithSelector(
                IGovernor.GovernorUnexpectedProposalState.selector,
                id,
                IGovernor.ProposalState.Defeated,
                // forge-lint: disable-next-line(incorrect-shift) -- OpenZeppelin state bitmap: 1 << state
                bytes32(1 << uint8(IGovernor.ProposalState.Succeeded))
            )
        );
        governor.queue(targets, values, calldatas, keccak256(bytes(description)));
        (bool ok, string memory reason) = _kmsVerdict(COMPOSE_HASH_2);
        _assertVerdict(ok, reason, false, "Compose hash not allowed");
    }

    function test_RevertIf_TokenHolderBypassesTheDao() public {
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, voter));
        vm.prank(voter);
        app.addComposeHash(COMPOSE_HASH_2);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, voter));
        vm.prank(voter);
        app.removeComposeHash(COMPOSE_HASH);
    }

    function test_DaoAcceptsPendingOwnershipInFirstProposal() public {
        // A developer-owned app handed over to the DAO: Ownable2Step makes the timelock only the
        // pending owner, so the DAO's first proposal accepts ownership and then acts.
        address dev = makeAddr("Developer");
        vm.prank(dev);
        AppAuth devApp = AppAuth(kms.deployAndRegisterApp(dev, false, true, bytes32(0), COMPOSE_HASH));
        vm.prank(dev);
        devApp.transferOwnership(address(timelock));
        assertEq(devApp.pendingOwner(), address(timelock), "pending");

        (address[] memory targets, uint256[] memory values, bytes[] memory calldatas) =
            _acceptOwnershipThen(address(devApp), abi.encodeCall(AppAuth.addComposeHash, (COMPOSE_HASH_2)));
        string memory description = "Accept ownership and upgrade";
        bytes32 descriptionHash = keccak256(bytes(description));

        _proposeAndPass(targets, values, calldatas, description);
        governor.queue(targets, values, calldatas, descriptionHash);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        governor.execute(targets, values, calldatas, descriptionHash);

        assertEq(devApp.owner(), address(timelock), "timelock owns the app");
        (bool ok, string memory reason) = kms.isAppAllowed(_bootInfo(address(devApp), COMPOSE_HASH_2, DEVICE_ID));
        _assertVerdict(ok, reason, true, "");
    }

    function test_DaoVoteRotatesKmsRootKeysWithATransitionWindow() public {
        // KmsAuth handed over to the DAO (Ownable2Step), then the DAO's proposal accepts it and
        // rotates the root keys: generation 2 becomes current, generation 1 stays served for a week.
        bytes memory k1 = hex"02aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
        bytes memory k2 = hex"03aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
        bytes memory ca = hex"3059301306072a8648ce3d020106082a8648ce3d03010703420004";
        vm.startPrank(kmsOwner);
        kms.setKmsRootKeys(1, k1, ca);
        kms.transferOwnership(address(timelock));
        vm.stopPrank();

        uint64 windowEnd = uint64(block.timestamp) + TIMELOCK_DELAY_U64 + 100 + 7 days;
        (address[] memory targets, uint256[] memory values, bytes[] memory calldatas) =
            _acceptOwnershipThen(address(kms), abi.encodeCall(KmsAuth.rotateKmsRootKeys, (2, k2, ca, windowEnd)));
        string memory description = "Rotate the KMS root keys to generation 2";
        bytes32 descriptionHash = keccak256(bytes(description));

        _proposeAndPass(targets, values, calldatas, description);
        governor.queue(targets, values, calldatas, descriptionHash);
        assertEq(kms.keyGeneration(), 1, "queued is not executed");
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.expectEmit(address(kms));
        emit KmsAuth.TransitionWindowSet(1, windowEnd);
        governor.execute(targets, values, calldatas, descriptionHash);

        assertEq(kms.owner(), address(timelock), "the DAO owns KmsAuth");
        assertEq(kms.keyGeneration(), 2, "generation 2 current");
        assertTrue(kms.isKeyGenerationActive(1), "generation 1 served during the window");
        vm.warp(windowEnd);
        assertFalse(kms.isKeyGenerationActive(1), "generation 1 refused after the window");

        // The old owner cannot shortcut the DAO.
        vm.prank(kmsOwner);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, kmsOwner));
        kms.rotateKmsRootKeys(3, k1, ca, windowEnd + 1 days);
    }

    function test_ProposerCancelsPendingProposal() public {
        (address[] memory targets, uint256[] memory values, bytes[] memory calldatas) =
            _proposal(abi.encodeCall(AppAuth.addComposeHash, (COMPOSE_HASH_2)));
        string memory description = "Withdrawn upgrade";
        uint256 id = _proposeAsVoter(targets, values, calldatas, description);
        vm.expectEmit(address(governor));
        emit IGovernor.ProposalCanceled(id);
        vm.prank(voter);
        governor.cancel(targets, values, calldatas, keccak256(bytes(description)));
        assertEq(uint8(governor.state(id)), uint8(IGovernor.ProposalState.Canceled), "canceled");
        (bool ok, string memory reason) = _kmsVerdict(COMPOSE_HASH_2);
        _assertVerdict(ok, reason, false, "Compose hash not allowed");
    }

    function test_GovernorSettings() public view {
        assertEq(governor.votingDelay(), VOTING_DELAY, "votingDelay");
        assertEq(governor.votingPeriod(), VOTING_PERIOD, "votingPeriod");
        assertEq(governor.proposalThreshold(), 0, "threshold");
        assertEq(governor.quorum(block.number - 1), SUPPLY * 4 / 100, "quorum 4%");
        assertEq(governor.timelock(), address(timelock), "timelock");
        assertTrue(governor.proposalNeedsQueuing(0), "needs queuing");
        assertEq(governor.name(), "CairnGovernor", "name");
        assertEq(token.getVotes(voter), SUPPLY - SUPPLY / 10, "delegated votes");
        assertEq(token.nonces(voter), 0, "permit nonce");
        assertEq(token.clock(), uint48(block.number), "block-number clock");
    }

    /// @dev GovernorTimelockControl's salt: the governor address xor'ed into the description hash.
    function _salt(bytes32 descriptionHash) internal view returns (bytes32) {
        return bytes20(address(governor)) ^ descriptionHash;
    }
}
