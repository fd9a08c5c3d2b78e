// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title CairnToken
/// @notice The voting token of a Cairn DAO: ERC-20 with permits (ERC-2612) and delegated votes
/// (ERC-5805) counted in block numbers. The whole supply is minted once, at deployment; there is
/// no owner and no further minting.
/// @dev Holders must delegate (to themselves or others) before their balance counts as votes.
contract CairnToken is ERC20, ERC20Permit, ERC20Votes {
    /// @param name_ The token name (also the EIP-712 domain name for permits).
    /// @param symbol_ The token symbol.
    /// @param initialHolder Receives the whole supply.
    /// @param initialSupply The whole supply, in the smallest unit (18 decimals).
    constructor(string memory name_, string memory symbol_, address initialHolder, uint256 initialSupply)
        ERC20(name_, symbol_)
        ERC20Permit(name_)
    {
        _mint(initialHolder, initialSupply);
    }

    /// @inheritdoc ERC20Permit
    function nonces(address owner) public view override(ERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }

    /// @dev Moves voting power along with balances.
    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
    }
}
