//! Bearer secrets: 32 random bytes, hex, behind a prefix that makes a
//! leaked one recognisable; stored and looked up only as their SHA-256.

use crate::store::TokenHash;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new secret with its prefix, and its hash.
pub fn new_secret(prefix: &str) -> (String, TokenHash) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{prefix}{}", hex::encode(bytes));
    let hash = hash_secret(&token);
    (token, hash)
}

pub fn hash_secret(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// An agent's credential.
pub const AGENT_PREFIX: &str = "ecpa_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let (a, ha) = new_secret(AGENT_PREFIX);
        let (b, _) = new_secret(AGENT_PREFIX);
        assert!(a.starts_with("ecpa_") && a.len() == 5 + 64 && a != b);
        assert_eq!(hash_secret(&a), ha);
    }
}
