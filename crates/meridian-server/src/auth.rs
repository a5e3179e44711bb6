//! Tokens: JWTs signed with HS256 by a key kept in the replicated state, checked against the
//! token table on every request so revocation reaches every server.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use meridian_core::{Action, Name, Role};
use meridian_state::TokenRecord;
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::ApiError;

/// `iss` of every Meridian token.
pub const ISSUER: &str = "meridian";
/// `aud` of every Meridian token.
pub const AUDIENCE: &str = "meridian-api";
/// The only algorithm accepted.
pub const ALGORITHM: Algorithm = Algorithm::HS256;

/// What a Meridian JWT carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Token id.
    pub jti: String,
    /// Token id again, as the subject.
    pub sub: String,
    /// Role at issue time (the stored record is what counts).
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expiry, unix seconds.
    pub exp: u64,
}

fn key_bytes(b64: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(ApiError::storage)
}

/// Signs a JWT for a stored token.
pub fn sign(key_b64: &str, t: &TokenRecord) -> Result<String, ApiError> {
    let claims = Claims {
        jti: t.id.clone(),
        sub: t.id.clone(),
        role: t.role,
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        iat: t.created_at,
        exp: t.expires_at,
    };
    let key = EncodingKey::from_secret(&key_bytes(key_b64)?);
    jsonwebtoken::encode(&Header::new(ALGORITHM), &claims, &key).map_err(ApiError::storage)
}

/// Checks a JWT's signature, algorithm, issuer, audience and expiry; a refusal says which
/// check failed, in words.
pub fn verify(key_b64: &str, token: &str) -> Result<Claims, ApiError> {
    let mut v = Validation::new(ALGORITHM);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 0;
    let key = DecodingKey::from_secret(&key_bytes(key_b64)?);
    jsonwebtoken::decode::<Claims>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| {
            // Expiry is checked after the signature, so an expired token is genuine and its
            // id can be named.
            let expired_id = matches!(e.kind(), ErrorKind::ExpiredSignature)
                .then(|| {
                    v.validate_exp = false;
                    jsonwebtoken::decode::<Claims>(token, &key, &v).ok()
                })
                .flatten()
                .map(|d| d.claims.jti);
            token_refused(e.kind(), expired_id.as_deref())
        })
}

/// Tokens whose signature was checked, so a client that sends the same token again costs a
/// map lookup instead of an HMAC and two JSON decodes. What is remembered counts only under
/// the signing key it was checked with (a new key forgets everything) and until each token's
/// expiry; revocation is checked afterwards, on every request, against the token table.
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    checked: std::sync::Mutex<Checked>,
}

/// What [`VerifiedTokens`] remembers.
#[derive(Debug, Default)]
struct Checked {
    /// The signing key every entry was checked with.
    key: String,
    /// Token → its claims.
    tokens: std::collections::HashMap<String, Claims>,
}

/// Most tokens [`VerifiedTokens`] remembers; past that it starts over.
const VERIFIED_MAX: usize = 1024;

impl VerifiedTokens {
    /// [`verify`], remembering what passed.
    pub fn verify(&self, key_b64: &str, token: &str) -> Result<Claims, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let lock = || {
            self.checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        {
            let checked = lock();
            // `verify` refuses a token once its expiry is in the past, as here.
            let known = checked.key == key_b64;
            if let Some(claims) = checked.tokens.get(token).filter(|c| known && c.exp >= now) {
                return Ok(claims.clone());
            }
        }
        let claims = verify(key_b64, token)?;
        let mut checked = lock();
        if checked.key != key_b64 || checked.tokens.len() >= VERIFIED_MAX {
            checked.key = key_b64.to_string();
            checked.tokens.clear();
        }
        checked.tokens.insert(token.to_string(), claims.clone());
        Ok(claims)
    }
}

/// Advice for a token this cluster cannot use.
const USE_OWN_TOKEN: &str =
    "it was issued by another cluster, or changed since; use a token this cluster issued";
/// Advice for a token that was good once.
const ASK_FOR_NEW: &str = "ask an admin for a new token";

/// Why a JWT was refused, in words, with advice.
fn token_refused(kind: &ErrorKind, expired_id: Option<&str>) -> ApiError {
    let (message, hint) = match kind {
        ErrorKind::ExpiredSignature => (
            match expired_id {
                Some(id) => format!("token {id} has expired"),
                None => "the token has expired".to_string(),
            },
            ASK_FOR_NEW,
        ),
        ErrorKind::InvalidSignature => (
            "the token's signature does not match this cluster's signing key".to_string(),
            USE_OWN_TOKEN,
        ),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => (
            "the token is not signed with HS256, the only algorithm this cluster accepts"
                .to_string(),
            USE_OWN_TOKEN,
        ),
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience | ErrorKind::InvalidSubject => (
            "the token was not issued for the Meridian API".to_string(),
            USE_OWN_TOKEN,
        ),
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => (
            format!("the token has no valid `{claim}` claim"),
            USE_OWN_TOKEN,
        ),
        ErrorKind::ImmatureSignature => (
            "the token is not valid yet".to_string(),
            "check the clocks of this server and of the one that issued the token",
        ),
        _ => (
            "this is not a well-formed token".to_string(),
            "a token is three base64 parts joined by dots; check that it was copied whole",
        ),
    };
    ApiError::unauthorized(message).with_hint(hint)
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token id.
    pub token_id: String,
    /// Role, from the stored token.
    pub role: Role,
    /// App limit, from the stored token.
    pub apps: Option<Vec<Name>>,
}

impl Caller {
    /// Refuses with 403 unless the caller's role grants `action`.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if self.role.allows(self.apps.as_deref(), &action) {
            Ok(())
        } else {
            let (message, hint) = self.role.refusal(self.apps.as_deref(), &action);
            Err(ApiError::forbidden(message).with_hint(hint))
        }
    }
}

impl FromRequestParts<Ctx> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be \"Bearer <token>\""))?;
        let auth = ctx.reader().auth();
        let key = auth.signing_key.as_deref().ok_or_else(|| {
            ApiError::unauthorized("the cluster is not bootstrapped yet")
                .with_hint("bootstrapping it creates the first admin token")
        })?;
        let claims = ctx.0.verified.verify(key, token)?;
        let record = auth.tokens.get(&claims.jti).ok_or_else(|| {
            ApiError::unauthorized(format!("token {} is not known to this cluster", claims.jti))
                .with_hint(format!(
                    "tokens are forgotten some time after they expire or are revoked; \
                     {ASK_FOR_NEW}"
                ))
        })?;
        if record.revoked_at.is_some() {
            return Err(
                ApiError::unauthorized(format!("token {} was revoked", record.id))
                    .with_hint(ASK_FOR_NEW),
            );
        }
        Ok(Self {
            token_id: record.id.clone(),
            role: record.role,
            apps: record.apps.clone(),
        })
    }
}

/// Whether `given` equals the cluster secret, in time independent of where they differ.
pub fn secret_matches(ctx: &Ctx, given: Option<&axum::http::HeaderValue>) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(ctx.0.secret.as_bytes())))
}

/// A request from another server: it carries the cluster secret. As an extractor it runs
/// before the body is read, so a caller without the secret learns nothing about the body.
#[derive(Debug, Clone, Copy)]
pub struct ClusterPeer;

impl FromRequestParts<Ctx> for ClusterPeer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        if secret_matches(ctx, parts.headers.get(meridian_api::CLUSTER_SECRET_HEADER)) {
            Ok(Self)
        } else {
            Err(ApiError::unauthorized("missing or wrong cluster secret"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a2V5LW9uZS1rZXktb25lLWtleS1vbmUta2V5LW9uZQ==";
    const OTHER_KEY: &str = "a2V5LXR3by1rZXktdHdvLWtleS10d28ta2V5LXR3bw==";

    fn token(key: &str, id: &str, expires_at: u64) -> String {
        let record = TokenRecord {
            id: id.into(),
            role: Role::Admin,
            apps: None,
            created_at: 1,
            expires_at,
            revoked_at: None,
        };
        sign(key, &record).expect("signs")
    }

    fn later() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn a_checked_token_is_answered_again_from_memory() {
        let verified = VerifiedTokens::default();
        let t = token(KEY, "t1", later());
        assert_eq!(verified.verify(KEY, &t).expect("good token").jti, "t1");
        assert_eq!(verified.verify(KEY, &t).expect("remembered").jti, "t1");
        assert_eq!(verified.checked.lock().unwrap().tokens.len(), 1);
    }

    #[test]
    fn a_remembered_token_counts_only_under_the_key_it_was_checked_with() {
        let verified = VerifiedTokens::default();
        let t = token(KEY, "t1", later());
        verified.verify(KEY, &t).expect("good token");
        let e = verified.verify(OTHER_KEY, &t).expect_err("the key changed");
        assert!(e.message.contains("signature"), "{}", e.message);
    }

    #[test]
    fn forged_and_expired_tokens_are_refused_and_not_remembered() {
        let verified = VerifiedTokens::default();
        let forged = token(OTHER_KEY, "t2", later());
        assert!(verified.verify(KEY, &forged).is_err());
        let expired = token(KEY, "t3", 10);
        let e = verified.verify(KEY, &expired).expect_err("expired");
        assert!(e.message.contains("expired"), "{}", e.message);
        assert!(verified.checked.lock().unwrap().tokens.is_empty());
    }

    #[test]
    fn a_remembered_token_stops_counting_at_its_expiry() {
        let verified = VerifiedTokens::default();
        let t = token(KEY, "t4", later());
        let mut claims = verified.verify(KEY, &t).expect("good token");
        // The same token, remembered with an expiry already past: checked afresh, and the
        // real expiry (an hour away) lets it through.
        claims.exp = 10;
        verified
            .checked
            .lock()
            .unwrap()
            .tokens
            .insert(t.clone(), claims);
        assert!(verified.verify(KEY, &t).expect("checked again").exp > 10);
    }
}
