// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console2} from "forge-std/console2.sol";

import {AppAuth} from "../src/AppAuth.sol";
import {CairnScript} from "./base/CairnScript.sol";

/// @notice Adds, schedules or removes a compose hash on an AppAuth the signer owns.
/// Variables (docs/governance.md): PRIVATE_KEY, CAIRN_APP_ID (required), CAIRN_COMPOSE_HASH
/// (required), CAIRN_ACTION = add | schedule | remove (default add), CAIRN_ACTIVATES_AT (unix
/// seconds, for schedule). A DAO-owned app changes only through a proposal (docs/governance.md).
contract ComposeHash is CairnScript {
    /// @notice Runs the action named by CAIRN_ACTION.
    function run() external {
        AppAuth app = AppAuth(_envAddressRequired("CAIRN_APP_ID"));
        bytes32 hash = _envBytes32Required("CAIRN_COMPOSE_HASH");
        string memory action = vm.envOr("CAIRN_ACTION", string("add"));
        _startBroadcast();
        if (_eq(action, "add")) {
            app.addComposeHash(hash);
        } else if (_eq(action, "schedule")) {
            uint256 activation = vm.envUint("CAIRN_ACTIVATES_AT");
            require(activation <= type(uint64).max, "CAIRN_ACTIVATES_AT out of range");
            // forge-lint: disable-next-line(unsafe-typecast) -- range checked above
            app.scheduleComposeHash(hash, uint64(activation));
        } else if (_eq(action, "remove")) {
            app.removeComposeHash(hash);
        } else {
            revert(string.concat("unknown CAIRN_ACTION: ", action, " (add | schedule | remove)"));
        }
        vm.stopBroadcast();
        (bool listed, uint64 activatesAt) = app.composeHashActivation(hash);
        console2.log("listed:", listed);
        console2.log("activatesAt:", activatesAt);
    }
}
