// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnTestBase} from "../utils/CairnTestBase.sol";
import {MisbehavingApp} from "../mocks/MisbehavingApp.sol";

/// @dev KmsAuth.isAppAllowed must never revert because of the app contract.
contract KmsAuthAppCallTest is CairnTestBase {
    address internal owner = makeAddr("Owner");
    KmsAuth internal kms;

    /// Generous upper bound on what one isAppAllowed may cost with a hostile app: the app's
    /// gas cap plus our own bookkeeping. A returndata bomb must not add to it.
    uint256 internal constant MAX_TOTAL_GAS = 200_000 + 60_000;

    function setUp() public {
        kms = _deployKmsAuth(owner, address(new AppAuth()));
        vm.prank(owner);
        kms.addOsImageHash(OS_IMAGE);
    }

    function _check(MisbehavingApp.Mode mode) internal returns (bool ok, string memory reason, uint256 gasUsed) {
        MisbehavingApp a = new MisbehavingApp(mode);
        kms.registerApp(address(a));
        IAppAuth.AppBootInfo memory b = _bootInfo(address(a), COMPOSE_HASH, DEVICE_ID);
        uint256 before = gasleft();
        (ok, reason) = kms.isAppAllowed(b);
        gasUsed = before - gasleft();
    }

    function _assertFailed(MisbehavingApp.Mode mode) internal {
        (bool ok, string memory reason, uint256 gasUsed) = _check(mode);
        _assertVerdict(ok, reason, false, "App contract call failed");
        assertLt(gasUsed, MAX_TOTAL_GAS, "bounded gas");
    }

    function test_IsAppAllowed_RevertingApp() public {
        _assertFailed(MisbehavingApp.Mode.Revert);
    }

    function test_IsAppAllowed_RevertBombApp() public {
        _assertFailed(MisbehavingApp.Mode.RevertBomb);
    }

    function test_IsAppAllowed_GasBurningApp() public {
        _assertFailed(MisbehavingApp.Mode.BurnGas);
    }

    function test_IsAppAllowed_ReturndataBombApp() public {
        _assertFailed(MisbehavingApp.Mode.ReturnBomb);
    }

    function test_IsAppAllowed_OversizedReturn() public {
        _assertFailed(MisbehavingApp.Mode.Oversized);
    }

    function test_IsAppAllowed_MalformedBool() public {
        _assertFailed(MisbehavingApp.Mode.BadBool);
    }

    function test_IsAppAllowed_MalformedOffset() public {
        _assertFailed(MisbehavingApp.Mode.BadOffset);
    }

    function test_IsAppAllowed_MalformedLength() public {
        _assertFailed(MisbehavingApp.Mode.BadLength);
    }

    function test_IsAppAllowed_ShortReturn() public {
        _assertFailed(MisbehavingApp.Mode.ShortReturn);
    }

    function test_IsAppAllowed_EmptyReturn() public {
        _assertFailed(MisbehavingApp.Mode.EmptyReturn);
    }

    function test_IsAppAllowed_OffsetIntoHead() public {
        _assertFailed(MisbehavingApp.Mode.LowOffset);
    }

    function test_IsAppAllowed_AppWithoutCodeAfterRegistration() public {
        // An app registered while it had code, whose code is gone later (e.g. via vm.etch here).
        MisbehavingApp a = new MisbehavingApp(MisbehavingApp.Mode.Allow);
        kms.registerApp(address(a));
        vm.etch(address(a), "");
        (bool ok, string memory reason) = kms.isAppAllowed(_bootInfo(address(a), COMPOSE_HASH, DEVICE_ID));
        _assertVerdict(ok, reason, false, "App contract call failed");
    }

    function test_IsAppAllowed_PassesAppDenialThrough() public {
        (bool ok, string memory reason,) = _check(MisbehavingApp.Mode.Deny);
        _assertVerdict(ok, reason, false, "custom deny reason");
    }

    function test_IsAppAllowed_PassesAppApprovalThrough() public {
        (bool ok, string memory reason,) = _check(MisbehavingApp.Mode.Allow);
        _assertVerdict(ok, reason, true, "");
    }

    function test_RevertIf_IsAppAllowed_CallerGasTooLow() public {
        MisbehavingApp a = new MisbehavingApp(MisbehavingApp.Mode.Allow);
        kms.registerApp(address(a));
        bytes memory data = abi.encodeCall(KmsAuth.isAppAllowed, (_bootInfo(address(a), COMPOSE_HASH, DEVICE_ID)));
        (bool ok, bytes memory ret) = address(kms).staticcall{gas: 150_000}(data);
        assertFalse(ok, "reverts rather than blaming the app");
        // forge-lint: disable-next-line(unsafe-typecast) -- the selector is the first 4 bytes
        assertEq(bytes4(ret), KmsAuth.KmsAuthInsufficientGas.selector, "error");
    }

    function testFuzz_IsAppAllowed_ArbitraryReturndataNeverReverts(bytes memory ret) public {
        ret = bytes(ret.length > 5000 ? new bytes(5000) : ret);
        address a = address(new MisbehavingApp(MisbehavingApp.Mode.Allow));
        kms.registerApp(a);
        // Replace the app's isAppAllowed answer with arbitrary bytes (ERC-165 probes are mocked too).
        vm.mockCall(a, abi.encodeWithSelector(IAppAuth.isAppAllowed.selector), ret);
        (bool ok, string memory reason) = kms.isAppAllowed(_bootInfo(a, COMPOSE_HASH, DEVICE_ID));
        bool wellFormed;
        bool flag;
        string memory decoded;
        if (ret.length >= 96 && ret.length <= 4096) {
            try this.decodeStrict(ret) returns (bool f, string memory s) {
                (wellFormed, flag, decoded) = (true, f, s);
            } catch {}
        }
        if (wellFormed) {
            _assertVerdict(ok, reason, flag, decoded);
        } else {
            assertFalse(ok, "malformed never allows");
        }
    }

    /// @dev Standard-ABI decoding with the head layout KmsAuth accepts (offset >= 0x40).
    function decodeStrict(bytes calldata ret) external pure returns (bool, string memory) {
        require(uint256(bytes32(ret[32:64])) >= 0x40, "low offset");
        return abi.decode(ret, (bool, string));
    }
}
