//! The replication handshake's challenge–response: each side proves it knows
//! `replication.secret` without the secret crossing the link.
//!
//! The standby's HELLO carries a fresh random nonce. The primary answers with a CHALLENGE: a
//! fresh nonce of its own and its proof, HMAC-SHA256 keyed with the secret over a label, the
//! HELLO's body as sent and its nonce. The standby checks that proof (a node that does not
//! know the secret cannot be followed) and answers with a PROOF over the same transcript
//! under another label. A recorded HELLO and PROOF replayed on a new connection fail: the
//! primary's nonce is new each time. The labels differ, so one side's proof cannot be
//! reflected back as the other's.

use std::io;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;
pub type Nonce = [u8; NONCE_LEN];
pub type Proof = [u8; PROOF_LEN];

const PRIMARY_LABEL: &[u8] = b"surge replication v2: primary proof";
const STANDBY_LABEL: &[u8] = b"surge replication v2: standby proof";

/// 32 bytes from the kernel's random source.
pub fn nonce() -> io::Result<Nonce> {
    let mut nonce = [0u8; NONCE_LEN];
    let mut filled = 0;
    while filled < NONCE_LEN {
        // SAFETY: the pointer and length describe the unfilled part of `nonce`.
        let n =
            unsafe { libc::getrandom(nonce[filled..].as_mut_ptr().cast(), NONCE_LEN - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        filled += n as usize;
    }
    Ok(nonce)
}

fn mac(secret: &[u8], label: &[u8], hello_body: &[u8], primary_nonce: &Nonce) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(label);
    mac.update(&(hello_body.len() as u32).to_le_bytes());
    mac.update(hello_body);
    mac.update(primary_nonce);
    mac
}

/// The primary's proof for the HELLO whose body was `hello_body`.
pub fn primary_proof(secret: &[u8], hello_body: &[u8], primary_nonce: &Nonce) -> Proof {
    mac(secret, PRIMARY_LABEL, hello_body, primary_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// The standby's proof for the same transcript.
pub fn standby_proof(secret: &[u8], hello_body: &[u8], primary_nonce: &Nonce) -> Proof {
    mac(secret, STANDBY_LABEL, hello_body, primary_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `proof` is the primary's proof for this transcript (in constant time).
pub fn primary_proof_ok(
    secret: &[u8],
    hello_body: &[u8],
    primary_nonce: &Nonce,
    proof: &[u8],
) -> bool {
    mac(secret, PRIMARY_LABEL, hello_body, primary_nonce)
        .verify_slice(proof)
        .is_ok()
}

/// Whether `proof` is the standby's proof for this transcript (in constant time).
pub fn standby_proof_ok(
    secret: &[u8],
    hello_body: &[u8],
    primary_nonce: &Nonce,
    proof: &[u8],
) -> bool {
    mac(secret, STANDBY_LABEL, hello_body, primary_nonce)
        .verify_slice(proof)
        .is_ok()
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only (admin tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_the_secret_the_transcript_and_the_side() {
        let hello = b"hello body";
        let nonce = nonce().unwrap();
        assert_ne!(nonce, super::nonce().unwrap(), "nonces repeat");
        let p = primary_proof(b"secret", hello, &nonce);
        assert!(primary_proof_ok(b"secret", hello, &nonce, &p));
        assert!(!primary_proof_ok(b"other", hello, &nonce, &p));
        assert!(!primary_proof_ok(b"secret", b"hello bodz", &nonce, &p));
        assert!(!primary_proof_ok(b"secret", hello, &[0; NONCE_LEN], &p));
        // Not reflectable: the primary's proof is not the standby's.
        assert!(!standby_proof_ok(b"secret", hello, &nonce, &p));
        let s = standby_proof(b"secret", hello, &nonce);
        assert!(standby_proof_ok(b"secret", hello, &nonce, &s));
        assert!(!standby_proof_ok(b"secret", hello, &nonce, &s[..31]));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
