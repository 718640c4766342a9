//! Registries (the OCI distribution protocol): names are parsed in
//! `layerdb::reference`, blobs are checked as they stream by
//! `layerdb::oci::VerifiedReader`; here are the HTTP client and its auth
//! ([`client`]), which registries may use plain HTTP ([`transport`]),
//! bodies that must keep coming ([`steady`]),
//! stored credentials ([`credentials`], [`cred_helper`]), manifests and platforms
//! ([`manifest`]), the pull itself
//! ([`pull`], [`push`], a blob's resumable [`upload`]) and how a pulled image is committed ([`image_store`]).

pub mod client;
pub mod cred_helper;
pub mod credentials;
pub mod image_store;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod steady;
pub mod transport;
pub mod upload;
