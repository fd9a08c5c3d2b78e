// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts/proxy/utils/UUPSUpgradeable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";
import {ERC165Upgradeable} from "@openzeppelin/contracts-upgradeable/utils/introspection/ERC165Upgradeable.sol";

import {IAppAuth} from "./interfaces/IAppAuth.sol";

/// @title AppAuth
/// @notice The policy of one app: which compose hashes (app versions) may receive the app's keys,
/// from when, on which machines, and whether the TCB must be up to date. The app's id is the
/// address of this contract's proxy. The owner is the developer's EOA, a multisig or a DAO timelock.
/// @dev UUPS behind an `ERC1967Proxy`; upgrades can be switched off for good with {disableUpgrades}.
/// Every compose hash carries an activation time, so an upgrade can be announced now and take
/// effect after a notice period ({scheduleComposeHash}).
contract AppAuth is Initializable, Ownable2StepUpgradeable, UUPSUpgradeable, ERC165Upgradeable, IAppAuth {
    /// @notice Status string that {setRequireTcbUpToDate} requires.
    string public constant TCB_UP_TO_DATE = "UpToDate";

    /// @dev A compose hash entry: `listed` and the time from which it is allowed.
    struct ComposeHashEntry {
        bool listed;
        uint64 activatesAt;
    }

    /// @custom:storage-location erc7201:cairn.storage.AppAuth
    struct AppAuthStorage {
        mapping(bytes32 hash => ComposeHashEntry) composeHashes;
        mapping(bytes32 deviceId => bool) devices;
        bool allowAnyDevice;
        bool requireTcbUpToDate;
        bool upgradesDisabled;
    }

    // keccak256(abi.encode(uint256(keccak256("cairn.storage.AppAuth")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant APP_AUTH_STORAGE_LOCATION =
        0xda0ed7608c09ee943c9c6d067fa0a1a8a880e2281a5fc101890631fdca562500;

    /// @dev `hash` is already listed with this activation time (or, for {addComposeHash}, already active).
    error AppAuthComposeHashAlreadyAllowed(bytes32 hash);
    /// @dev `hash` is not on the allowlist.
    error AppAuthComposeHashNotListed(bytes32 hash);
    /// @dev The zero compose hash is never a real SHA-256 and is rejected.
    error AppAuthZeroComposeHash();
    /// @dev A scheduled activation lies in the past (`activatesAt` < `currentTime`).
    error AppAuthActivationInPast(uint64 activatesAt, uint64 currentTime);
    /// @dev `deviceId` is already on the allowlist.
    error AppAuthDeviceAlreadyAllowed(bytes32 deviceId);
    /// @dev `deviceId` is not on the allowlist.
    error AppAuthDeviceNotAllowed(bytes32 deviceId);
    /// @dev The zero device id is never a real SHA-256 and is rejected.
    error AppAuthZeroDeviceId();
    /// @dev `allowAnyDevice` already has the value `value`.
    error AppAuthAllowAnyDeviceUnchanged(bool value);
    /// @dev `requireTcbUpToDate` already has the value `value`.
    error AppAuthRequireTcbUpToDateUnchanged(bool value);
    /// @dev Upgrades were disabled with {disableUpgrades}; they cannot be re-enabled.
    error AppAuthUpgradesDisabled();

    /// @notice `hash` is allowed from `activatesAt` (unix seconds) on.
    event ComposeHashAdded(bytes32 indexed hash, uint64 activatesAt);
    /// @notice `hash` was removed from the allowlist.
    event ComposeHashRemoved(bytes32 indexed hash);
    /// @notice `deviceId` was added to the device allowlist.
    event DeviceAdded(bytes32 indexed deviceId);
    /// @notice `deviceId` was removed from the device allowlist.
    event DeviceRemoved(bytes32 indexed deviceId);
    /// @notice Allow-any-device was set to `allowAnyDevice`.
    event AllowAnyDeviceSet(bool allowAnyDevice);
    /// @notice Require-TCB-up-to-date was set to `requireTcbUpToDate`.
    event RequireTcbUpToDateSet(bool requireTcbUpToDate);
    /// @notice Upgrades were disabled for good.
    event UpgradesDisabled();

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    /// @notice Initializes the proxy.
    /// @param initialOwner The owner (developer EOA, multisig or DAO timelock); must not be zero.
    /// @param upgradesDisabled_ When true, the contract can never be upgraded.
    /// @param allowAnyDevice_ When true, any device may run the app.
    /// @param initialDeviceId A device to allow, or zero for none.
    /// @param initialComposeHash A compose hash to allow at once, or zero for none.
    function initialize(
        address initialOwner,
        bool upgradesDisabled_,
        bool allowAnyDevice_,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) external initializer {
        __Ownable_init(initialOwner);
        __Ownable2Step_init();
        __ERC165_init();
        AppAuthStorage storage $ = _getAppAuthStorage();
        if (upgradesDisabled_) {
            $.upgradesDisabled = true;
            emit UpgradesDisabled();
        }
        if (allowAnyDevice_) {
            $.allowAnyDevice = true;
            emit AllowAnyDeviceSet(true);
        }
        if (initialDeviceId != bytes32(0)) {
            $.devices[initialDeviceId] = true;
            emit DeviceAdded(initialDeviceId);
        }
        if (initialComposeHash != bytes32(0)) {
            uint64 nowTs = uint64(block.timestamp);
            $.composeHashes[initialComposeHash] = ComposeHashEntry({listed: true, activatesAt: nowTs});
            emit ComposeHashAdded(initialComposeHash, nowTs);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Compose hashes
    // ----------------------------------------------------------------------------------------

    /// @notice Allows `hash` from now on. A hash scheduled for later becomes active at once.
    /// @dev Emits {ComposeHashAdded} with the current time. Reverts with
    /// {AppAuthComposeHashAlreadyAllowed} when `hash` is already active.
    /// @param hash The compose hash (SHA-256 of `app-compose.json`).
    function addComposeHash(bytes32 hash) external onlyOwner {
        _setComposeHash(hash, uint64(block.timestamp));
    }

    /// @notice Lists `hash` so that it is allowed from `activatesAt` (unix seconds) on: an upgrade
    /// announced now and effective after a notice period. Rescheduling a listed hash is allowed.
    /// @dev Emits {ComposeHashAdded}. Reverts with {AppAuthActivationInPast} when `activatesAt` is
    /// before the current block time and {AppAuthComposeHashAlreadyAllowed} on a no-op.
    /// @param hash The compose hash.
    /// @param activatesAt The first block timestamp at which the hash is allowed.
    function scheduleComposeHash(bytes32 hash, uint64 activatesAt) external onlyOwner {
        uint64 nowTs = uint64(block.timestamp);
        if (activatesAt < nowTs) revert AppAuthActivationInPast(activatesAt, nowTs);
        _setComposeHash(hash, activatesAt);
    }

    /// @notice Removes `hash` from the allowlist (active or scheduled).
    /// @dev Emits {ComposeHashRemoved}. Reverts with {AppAuthComposeHashNotListed} when not listed.
    /// @param hash The compose hash.
    function removeComposeHash(bytes32 hash) external onlyOwner {
        AppAuthStorage storage $ = _getAppAuthStorage();
        if (!$.composeHashes[hash].listed) revert AppAuthComposeHashNotListed(hash);
        delete $.composeHashes[hash];
        emit ComposeHashRemoved(hash);
    }

    /// @notice Whether `hash` is listed, and from when it is allowed.
    /// @param hash The compose hash.
    /// @return listed True when the hash is on the allowlist (active or scheduled).
    /// @return activatesAt The first block timestamp at which it is allowed (0 when not listed).
    function composeHashActivation(bytes32 hash) external view returns (bool listed, uint64 activatesAt) {
        ComposeHashEntry memory e = _getAppAuthStorage().composeHashes[hash];
        return (e.listed, e.activatesAt);
    }

    /// @notice Whether `hash` is listed **and** active at the current block (dstack's name).
    /// @param hash The compose hash.
    /// @return True when a CVM running `hash` passes the compose-hash check now.
    function allowedComposeHashes(bytes32 hash) public view returns (bool) {
        ComposeHashEntry memory e = _getAppAuthStorage().composeHashes[hash];
        return e.listed && e.activatesAt <= block.timestamp;
    }

    // ----------------------------------------------------------------------------------------
    // Devices and TCB
    // ----------------------------------------------------------------------------------------

    /// @notice Allows the machine `deviceId` to run the app.
    /// @dev Emits {DeviceAdded}. Reverts with {AppAuthDeviceAlreadyAllowed} on a no-op.
    /// @param deviceId SHA-256 of the machine's PPID.
    function addDevice(bytes32 deviceId) external onlyOwner {
        if (deviceId == bytes32(0)) revert AppAuthZeroDeviceId();
        AppAuthStorage storage $ = _getAppAuthStorage();
        if ($.devices[deviceId]) revert AppAuthDeviceAlreadyAllowed(deviceId);
        $.devices[deviceId] = true;
        emit DeviceAdded(deviceId);
    }

    /// @notice Removes the machine `deviceId` from the device allowlist.
    /// @dev Emits {DeviceRemoved}. Reverts with {AppAuthDeviceNotAllowed} when not listed.
    /// @param deviceId SHA-256 of the machine's PPID.
    function removeDevice(bytes32 deviceId) external onlyOwner {
        AppAuthStorage storage $ = _getAppAuthStorage();
        if (!$.devices[deviceId]) revert AppAuthDeviceNotAllowed(deviceId);
        delete $.devices[deviceId];
        emit DeviceRemoved(deviceId);
    }

    /// @notice Whether `deviceId` is on the device allowlist (dstack's name).
    /// @param deviceId SHA-256 of the machine's PPID.
    /// @return True when listed (independent of allow-any-device).
    function allowedDeviceIds(bytes32 deviceId) external view returns (bool) {
        return _getAppAuthStorage().devices[deviceId];
    }

    /// @notice Lets any device run the app (true) or only listed devices (false).
    /// @dev Emits {AllowAnyDeviceSet}. Reverts with {AppAuthAllowAnyDeviceUnchanged} on a no-op.
    /// @param value The new setting.
    function setAllowAnyDevice(bool value) external onlyOwner {
        AppAuthStorage storage $ = _getAppAuthStorage();
        if ($.allowAnyDevice == value) revert AppAuthAllowAnyDeviceUnchanged(value);
        $.allowAnyDevice = value;
        emit AllowAnyDeviceSet(value);
    }

    /// @notice Whether any device may run the app.
    /// @return True when the device check is off.
    function allowAnyDevice() external view returns (bool) {
        return _getAppAuthStorage().allowAnyDevice;
    }

    /// @notice Requires (true) or not (false) the TCB status `UpToDate`, on top of the KMS's policy.
    /// @dev Emits {RequireTcbUpToDateSet}. Reverts with {AppAuthRequireTcbUpToDateUnchanged} on a no-op.
    /// @param value The new setting.
    function setRequireTcbUpToDate(bool value) external onlyOwner {
        AppAuthStorage storage $ = _getAppAuthStorage();
        if ($.requireTcbUpToDate == value) revert AppAuthRequireTcbUpToDateUnchanged(value);
        $.requireTcbUpToDate = value;
        emit RequireTcbUpToDateSet(value);
    }

    /// @notice Whether the TCB status must be `UpToDate`.
    /// @return True when required.
    function requireTcbUpToDate() external view returns (bool) {
        return _getAppAuthStorage().requireTcbUpToDate;
    }

    // ----------------------------------------------------------------------------------------
    // Upgrades
    // ----------------------------------------------------------------------------------------

    /// @notice Disables upgrades for good (one way).
    /// @dev Emits {UpgradesDisabled}. Reverts with {AppAuthUpgradesDisabled} when already disabled.
    function disableUpgrades() external onlyOwner {
        AppAuthStorage storage $ = _getAppAuthStorage();
        if ($.upgradesDisabled) revert AppAuthUpgradesDisabled();
        $.upgradesDisabled = true;
        emit UpgradesDisabled();
    }

    /// @notice Whether upgrades are disabled.
    /// @return True after {disableUpgrades} (or when initialized so).
    function upgradesDisabled() external view returns (bool) {
        return _getAppAuthStorage().upgradesDisabled;
    }

    // ----------------------------------------------------------------------------------------
    // Policy
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IAppAuth
    /// @dev Checks, in order: compose hash listed ("Compose hash not allowed"), active ("Compose hash
    /// not yet active"), device ("Device not allowed"), TCB ("TCB status is not UpToDate").
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        override
        returns (bool isAllowed, string memory reason)
    {
        AppAuthStorage storage $ = _getAppAuthStorage();
        ComposeHashEntry memory e = $.composeHashes[bootInfo.composeHash];
        if (!e.listed) return (false, "Compose hash not allowed");
        if (block.timestamp < e.activatesAt) return (false, "Compose hash not yet active");
        if (!$.allowAnyDevice && !$.devices[bootInfo.deviceId]) return (false, "Device not allowed");
        if ($.requireTcbUpToDate && keccak256(bytes(bootInfo.tcbStatus)) != keccak256(bytes(TCB_UP_TO_DATE))) {
            return (false, "TCB status is not UpToDate");
        }
        return (true, "");
    }

    /// @notice ERC-165: true for IERC165 and IAppAuth (`0x1e079198`).
    /// @param interfaceId The interface id to test.
    /// @return True when supported.
    function supportsInterface(bytes4 interfaceId) public view virtual override returns (bool) {
        return interfaceId == type(IAppAuth).interfaceId || super.supportsInterface(interfaceId);
    }

    // ----------------------------------------------------------------------------------------
    // Internal
    // ----------------------------------------------------------------------------------------

    function _setComposeHash(bytes32 hash, uint64 activatesAt) private {
        if (hash == bytes32(0)) revert AppAuthZeroComposeHash();
        AppAuthStorage storage $ = _getAppAuthStorage();
        ComposeHashEntry storage e = $.composeHashes[hash];
        if (e.listed) {
            // A no-op: the same activation time again, or "active now" for a hash that already is.
            uint64 current = e.activatesAt;
            if (current == activatesAt || (activatesAt == block.timestamp && current <= activatesAt)) {
                revert AppAuthComposeHashAlreadyAllowed(hash);
            }
        }
        e.listed = true;
        e.activatesAt = activatesAt;
        emit ComposeHashAdded(hash, activatesAt);
    }

    /// @dev Only the owner may upgrade, and only while upgrades are enabled.
    function _authorizeUpgrade(address) internal view override onlyOwner {
        if (_getAppAuthStorage().upgradesDisabled) revert AppAuthUpgradesDisabled();
    }

    function _getAppAuthStorage() private pure returns (AppAuthStorage storage $) {
        assembly {
            $.slot := APP_AUTH_STORAGE_LOCATION
        }
    }
}
