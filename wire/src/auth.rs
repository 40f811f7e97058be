//! Mutual challenge–response with a shared cluster secret.
//!
//! The secret never crosses the wire. Each side picks a fresh random 32-byte
//! value; each proves the secret by sending HMAC-SHA256(secret, label ‖
//! both values), with distinct labels per direction so a proof cannot be
//! reflected back at its sender:
//!
//! ```text
//! client → node  Hello      { auth_nonce: Nc }
//! node → client  HelloAck   { auth_challenge: Some(Cn) }
//! client → node  AuthProof  { mac: HMAC(secret, "stratum-auth-v1 client" ‖ Cn ‖ Nc) }
//! node → client  AuthOk     { mac: HMAC(secret, "stratum-auth-v1 node"   ‖ Nc ‖ Cn) }
//! ```
//!
//! Client and node both link this module, so they cannot disagree on it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Shortest accepted secret: 16 bytes (128 bits).
pub const MIN_SECRET_LEN: usize = 16;

const CLIENT_LABEL: &[u8] = b"stratum-auth-v1 client";
const NODE_LABEL: &[u8] = b"stratum-auth-v1 node";

/// A cluster secret (the bytes of the secret file, surrounding whitespace
/// trimmed). Its `Debug` never prints the bytes.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cluster secret is {len} bytes; at least {MIN_SECRET_LEN} are required")]
    TooShort { len: usize },
}

impl ClusterSecret {
    pub fn new(bytes: &[u8]) -> Result<Self, SecretError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { len: trimmed.len() });
        }
        Ok(Self(trimmed.to_vec()))
    }

    fn mac(&self, label: &[u8], first: &[u8; 32], second: &[u8; 32]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac.finalize().into_bytes().into()
    }

    /// What the client sends in `AuthProof`.
    pub fn client_proof(&self, challenge: &[u8; 32], nonce: &[u8; 32]) -> [u8; 32] {
        self.mac(CLIENT_LABEL, challenge, nonce)
    }

    /// What the node sends in `AuthOk`.
    pub fn node_proof(&self, nonce: &[u8; 32], challenge: &[u8; 32]) -> [u8; 32] {
        self.mac(NODE_LABEL, nonce, challenge)
    }

    /// Constant-time check of a client's proof.
    pub fn verify_client(&self, challenge: &[u8; 32], nonce: &[u8; 32], mac: &[u8; 32]) -> bool {
        self.client_proof(challenge, nonce).ct_eq(mac).into()
    }

    /// Constant-time check of a node's proof.
    pub fn verify_node(&self, nonce: &[u8; 32], challenge: &[u8; 32], mac: &[u8; 32]) -> bool {
        self.node_proof(nonce, challenge).ct_eq(mac).into()
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret({} bytes)", self.0.len())
    }
}

/// 32 bytes from the operating system's CSPRNG.
pub fn random_nonce() -> std::io::Result<[u8; 32]> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|err| std::io::Error::other(err.to_string()))?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new(b"  correct horse battery staple\n").unwrap()
    }

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_values() {
        let (challenge, nonce) = ([1u8; 32], [2u8; 32]);
        let proof = secret().client_proof(&challenge, &nonce);
        assert!(secret().verify_client(&challenge, &nonce, &proof));
        let other = ClusterSecret::new(b"another secret of enough length").unwrap();
        assert!(!other.verify_client(&challenge, &nonce, &proof));
        assert!(!secret().verify_client(&[3u8; 32], &nonce, &proof));
        assert!(!secret().verify_client(&challenge, &[3u8; 32], &proof));
    }

    #[test]
    fn a_client_proof_is_not_a_node_proof() {
        let (challenge, nonce) = ([1u8; 32], [2u8; 32]);
        let proof = secret().client_proof(&challenge, &nonce);
        assert!(!secret().verify_node(&nonce, &challenge, &proof));
        assert!(!secret().verify_node(&challenge, &nonce, &proof));
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_bytes() {
        assert!(matches!(
            ClusterSecret::new(b"  short \n"),
            Err(SecretError::TooShort { len: 5 })
        ));
        assert_eq!(format!("{:?}", secret()), "ClusterSecret(28 bytes)");
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(random_nonce().unwrap(), random_nonce().unwrap());
    }
}
