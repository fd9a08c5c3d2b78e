// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Script} from "forge-std/Script.sol";
import {console2} from "forge-std/console2.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnToken} from "../../src/governance/CairnToken.sol";
import {CairnGovernor} from "../../src/governance/CairnGovernor.sol";

/// @dev Shared plumbing of Cairn's forge scripts: the signer, env parsing and the deploy steps.
/// The signer is `PRIVATE_KEY` when set, else the wallet given to forge (`--private-key`, `--account`; `--sender` when several).
abstract contract CairnScript is Script {
    /// @dev Addresses of one governance deployment.
    struct Governance {
        CairnToken token;
        TimelockController timelock;
        CairnGovernor governor;
    }

    /// @dev Starts broadcasting and returns the signer's address.
    function _startBroadcast() internal returns (address signer) {
        uint256 pk = vm.envOr("PRIVATE_KEY", uint256(0));
        if (pk != 0) {
            signer = vm.addr(pk);
            vm.startBroadcast(pk);
        } else {
            vm.startBroadcast();
            (, signer,) = vm.readCallers();
            // Without PRIVATE_KEY or a forge wallet, forge would sign as its unfunded default sender.
            require(
                signer != DEFAULT_SENDER,
                "set PRIVATE_KEY or pass a wallet (--private-key / --account, plus --sender when several)"
            );
        }
    }

    function _envAddressRequired(string memory name) internal view returns (address a) {
        a = vm.envOr(name, address(0));
        require(a != address(0), string.concat(name, " must be set to a non-zero address"));
    }

    function _envBytes32Required(string memory name) internal view returns (bytes32 v) {
        v = vm.envOr(name, bytes32(0));
        require(v != bytes32(0), string.concat(name, " must be set to a non-zero bytes32"));
    }

    function _eq(string memory a, string memory b) internal pure returns (bool) {
        return keccak256(bytes(a)) == keccak256(bytes(b));
    }

    /// @dev AppAuth implementation + KmsAuth implementation and proxy, owned by `owner`.
    function _deployKmsAuth(address owner) internal returns (KmsAuth kms, AppAuth appImpl) {
        appImpl = new AppAuth();
        KmsAuth kmsImpl = new KmsAuth();
        kms = KmsAuth(
            address(new ERC1967Proxy(address(kmsImpl), abi.encodeCall(KmsAuth.initialize, (owner, address(appImpl)))))
        );
        console2.log("AppAuth implementation:", address(appImpl));
        console2.log("KmsAuth implementation:", address(kmsImpl));
        console2.log("KmsAuth (proxy):", address(kms));
    }

    /// @dev Token + timelock + governor from the CAIRN_* governance variables (docs/governance.md).
    /// The governor gets the proposer and canceller roles, anyone may execute, and the
    /// deployer's temporary timelock admin role is renounced.
    function _deployGovernance(address deployer) internal returns (Governance memory g) {
        string memory name = vm.envOr("CAIRN_TOKEN_NAME", string("Cairn DAO"));
        string memory symbol = vm.envOr("CAIRN_TOKEN_SYMBOL", string("CAIRN"));
        address holder = vm.envOr("CAIRN_TOKEN_HOLDER", deployer);
        uint256 supply = vm.envOr("CAIRN_TOKEN_SUPPLY", uint256(1_000_000e18));
        uint256 votingDelay = vm.envOr("CAIRN_VOTING_DELAY", uint256(1));
        uint256 votingPeriod = vm.envOr("CAIRN_VOTING_PERIOD", uint256(50));
        uint256 threshold = vm.envOr("CAIRN_PROPOSAL_THRESHOLD", uint256(0));
        uint256 quorumPercent = vm.envOr("CAIRN_QUORUM_PERCENT", uint256(4));
        uint256 delay = vm.envOr("CAIRN_TIMELOCK_DELAY", uint256(1 days));
        require(votingDelay <= type(uint48).max, "CAIRN_VOTING_DELAY too large");
        require(votingPeriod > 0 && votingPeriod <= type(uint32).max, "CAIRN_VOTING_PERIOD out of range");
        require(quorumPercent <= 100, "CAIRN_QUORUM_PERCENT over 100");

        g.token = new CairnToken(name, symbol, holder, supply);
        address[] memory none = new address[](0);
        address[] memory anyone = new address[](1); // address(0): anyone may execute
        g.timelock = new TimelockController(delay, none, anyone, deployer);
        g.governor =
        // forge-lint: disable-next-line(unsafe-typecast) -- both ranges are checked above
        new CairnGovernor(g.token, g.timelock, uint48(votingDelay), uint32(votingPeriod), threshold, quorumPercent);
        g.timelock.grantRole(g.timelock.PROPOSER_ROLE(), address(g.governor));
        g.timelock.grantRole(g.timelock.CANCELLER_ROLE(), address(g.governor));
        g.timelock.renounceRole(g.timelock.DEFAULT_ADMIN_ROLE(), deployer);
        console2.log("CairnToken:", address(g.token));
        console2.log("TimelockController:", address(g.timelock));
        console2.log("CairnGovernor:", address(g.governor));
    }
}
