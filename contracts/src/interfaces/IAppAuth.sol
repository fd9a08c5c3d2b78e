// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IAppAuth
/// @notice The policy interface a KMS asks before releasing keys to an app. ABI-identical to
/// dstack's `IAppAuth`, so policy contracts written for dstack work with Cairn unchanged.
/// @dev ERC-165 interface id `0x1e079198` (the selector of `isAppAllowed`).
interface IAppAuth {
    /// @notice What a KMS learned about a booting CVM from its verified TDX quote and event log.
    /// @param appId The app's id: the address of its AppAuth contract.
    /// @param composeHash SHA-256 of the exact bytes of the app's `app-compose.json`.
    /// @param instanceId The CVM instance id (zero when the app opted out of instance ids).
    /// @param deviceId SHA-256 of the PPID of the machine's PCK certificate.
    /// @param mrAggregated SHA-256(MRTD || RTMR0 || RTMR1 || RTMR2 || RTMR3).
    /// @param mrSystem SHA-256(MRTD || RTMR0 || RTMR1 || RTMR2 || SHA-256(key_provider)).
    /// @param osImageHash SHA-256 of the OS image's measurement manifest.
    /// @param tcbStatus Intel's TCB status string, e.g. `UpToDate`.
    /// @param advisoryIds Intel security advisory ids reported for the platform.
    struct AppBootInfo {
        address appId;
        bytes32 composeHash;
        address instanceId;
        bytes32 deviceId;
        bytes32 mrAggregated;
        bytes32 mrSystem;
        bytes32 osImageHash;
        string tcbStatus;
        string[] advisoryIds;
    }

    /// @notice Decides whether a CVM described by `bootInfo` may receive the app's keys.
    /// @param bootInfo The verified boot information of the CVM.
    /// @return isAllowed True when the policy allows the release.
    /// @return reason Empty when allowed, otherwise a short human-readable reason.
    function isAppAllowed(AppBootInfo calldata bootInfo) external view returns (bool isAllowed, string memory reason);
}
