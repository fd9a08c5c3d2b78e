//! Integration tests of cairn-kms-client against scripted KMS servers (real rustls,
//! simulator evidence, free loopback ports): one binary, one module per topic.

mod audit;
mod connect;
mod responses;
mod sign_cert;
mod stub;
mod timeouts;
