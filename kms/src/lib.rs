//! cairn-kms
