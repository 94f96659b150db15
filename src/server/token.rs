//! Signed sign-in tokens: `dt1.<claims>.<mac>`, both parts base64url, the MAC an HMAC-SHA256 of
//! the claims under the switchboard's key (a file in its data dir). Pure functions: the caller
//! supplies the current time, so expiry is testable without waiting.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "dt1";

#[derive(Clone)]
pub struct TokenKey([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expires at, unix seconds.
    pub exp: u64,
    /// Token id, for revocation.
    pub jti: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("a token is required to sign in")]
    Missing,
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token signature does not match this switchboard's key")]
    BadSignature,
    #[error("token expired at {exp} (unix seconds), it is now {now}")]
    Expired { exp: u64, now: u64 },
}

impl TokenKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{PREFIX}.{body}.{sig}")
    }

    /// Checks the signature first (constant time), then the expiry.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some(prefix), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        if prefix != PREFIX {
            return Err(TokenError::Malformed("unknown token version"));
        }
        let sig = B64
            .decode(sig)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let raw = B64
            .decode(body)
            .map_err(|_| TokenError::Malformed("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&raw)
            .map_err(|_| TokenError::Malformed("claims are not JSON"))?;
        if claims.exp <= now_secs {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now: now_secs,
            });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            iat: 100,
            exp,
            jti: "j1".into(),
        }
    }

    #[test]
    fn issue_and_verify() {
        let k = TokenKey::from_bytes([7; 32]);
        let t = k.issue(&claims(200));
        assert_eq!(k.verify(&t, 150).unwrap(), claims(200));
        assert_eq!(
            k.verify(&t, 200),
            Err(TokenError::Expired { exp: 200, now: 200 })
        );
        let other = TokenKey::from_bytes([8; 32]);
        assert_eq!(other.verify(&t, 150), Err(TokenError::BadSignature));
        assert!(matches!(
            k.verify("garbage", 0),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            k.verify("dt1.a.b.c", 0),
            Err(TokenError::Malformed(_))
        ));
        let mut tampered = t.clone();
        tampered.insert(5, 'x');
        assert!(k.verify(&tampered, 150).is_err());
    }
}
