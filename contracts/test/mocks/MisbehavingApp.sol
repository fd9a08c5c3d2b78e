// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";

/// @dev An app policy contract that answers ERC-165 correctly (so KmsAuth registers it) and
/// then misbehaves in `isAppAllowed` in the configured way.
contract MisbehavingApp {
    enum Mode {
        Allow, // (true, "")
        Deny, // (false, "custom deny reason")
        Revert, // revert with a message
        RevertBomb, // revert with ~150 KB of data
        BurnGas, // infinite loop
        ReturnBomb, // return ~150 KB of data
        Oversized, // valid (false, reason) encoding but 4097+ bytes long
        BadBool, // bool word = 2
        BadOffset, // string offset points past the data
        BadLength, // string length runs past the data
        ShortReturn, // 32 bytes only
        EmptyReturn, // no returndata at all
        LowOffset // string offset inside the head (0x20)
    }

    Mode public mode;

    constructor(Mode mode_) {
        mode = mode_;
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == type(IAppAuth).interfaceId;
    }

    function isAppAllowed(IAppAuth.AppBootInfo calldata) external view returns (bool, string memory) {
        Mode m = mode;
        if (m == Mode.Allow) return (true, "");
        if (m == Mode.Deny) return (false, "custom deny reason");
        if (m == Mode.Revert) revert("app says no");
        if (m == Mode.RevertBomb) {
            assembly {
                revert(0, 150000)
            }
        }
        if (m == Mode.BurnGas) {
            assembly {
                for {} 1 {} {}
            }
        }
        if (m == Mode.ReturnBomb) {
            assembly {
                return(0, 150000)
            }
        }
        if (m == Mode.Oversized) {
            bytes memory big = new bytes(4096);
            bytes memory enc = abi.encode(false, string(big));
            assembly {
                return(add(enc, 0x20), mload(enc))
            }
        }
        if (m == Mode.BadBool) {
            bytes memory enc = abi.encode(uint256(2), uint256(0x40), uint256(0));
            assembly {
                return(add(enc, 0x20), mload(enc))
            }
        }
        if (m == Mode.BadOffset) {
            bytes memory enc = abi.encode(uint256(1), uint256(0x1000), uint256(0));
            assembly {
                return(add(enc, 0x20), mload(enc))
            }
        }
        if (m == Mode.BadLength) {
            bytes memory enc = abi.encode(uint256(1), uint256(0x40), uint256(33), keccak256("short"));
            assembly {
                return(add(enc, 0x20), mload(enc))
            }
        }
        if (m == Mode.ShortReturn) {
            assembly {
                mstore(0, 1)
                return(0, 32)
            }
        }
        if (m == Mode.EmptyReturn) {
            assembly {
                return(0, 0)
            }
        }
        // LowOffset: the string offset points into the head.
        bytes memory low = abi.encode(uint256(1), uint256(0x20), uint256(0));
        assembly {
            return(add(low, 0x20), mload(low))
        }
    }
}
