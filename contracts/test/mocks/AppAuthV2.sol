// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AppAuth} from "../../src/AppAuth.sol";

/// @dev An upgrade target for the UUPS tests: AppAuth plus a version getter.
contract AppAuthV2 is AppAuth {
    function version() external pure returns (uint256) {
        return 2;
    }
}
