// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {KmsAuth} from "../../src/KmsAuth.sol";

/// @dev An upgrade target for the UUPS tests: KmsAuth plus a version getter.
contract KmsAuthV2 is KmsAuth {
    function version() external pure returns (uint256) {
        return 2;
    }
}
