//! Tokens: JWTs signed with HS256 by a key kept in the replicated state, checked against the
//! token table on every request so revocation reaches every server.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use meridian_core::{Action, Name, Role};
use meridian_state::TokenRecord;
use meridian_tls::{CertRole, Identity};
use serde::{Deserialize, Serialize};

use crate::auth_limit::Key;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::listen::Peer;

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
    // Meridian's tokens carry no `nbf`; one that does is checked.
    v.validate_nbf = true;
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
    /// What the caller's client certificate says it is (see [`peer_identity`]).
    pub peer: Option<Identity>,
}

/// Who the TLS client of a request is: what its certificate names, or, for a request another
/// server forwarded (the connection's certificate is a server's), what that server saw, from
/// [`meridian_api::PEER_HEADER`]. `None` over plain HTTP and for clients without a certificate.
pub fn peer_identity(parts: &Parts) -> Option<Identity> {
    let direct = parts
        .extensions
        .get::<ConnectInfo<Peer>>()?
        .0
        .identity
        .clone()?;
    if forwarded_by_server(parts) {
        return parts
            .headers
            .get(meridian_api::PEER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Identity::from_dns_name);
    }
    Some(direct)
}

/// Whether the request was forwarded by another server whose certificate says so (only then
/// are the headers it adds believed).
fn forwarded_by_server(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<ConnectInfo<Peer>>()
        .and_then(|c| c.0.identity.as_ref())
        .is_some_and(|id| id.role == CertRole::Server)
        && parts
            .headers
            .contains_key(meridian_api::FORWARDED_BY_HEADER)
}

/// The address of the request's original caller: the connection's, or, for a request another
/// server forwarded, the one it names in [`meridian_api::CLIENT_ADDR_HEADER`].
pub fn client_addr(parts: &Parts) -> Option<std::net::IpAddr> {
    if forwarded_by_server(parts) {
        if let Some(addr) = parts
            .headers
            .get(meridian_api::CLIENT_ADDR_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            return Some(addr);
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.addr.ip())
}

/// What a failed authentication with `credential` counts against.
fn limit_keys(parts: &Parts, credential: Option<&str>) -> Vec<Key> {
    client_addr(parts)
        .map(Key::Addr)
        .into_iter()
        .chain(credential.map(Key::credential))
        .collect()
}

/// Runs `check` unless `keys` are out of failures (429), and counts its 401 or 403 against
/// them.
fn limited<T>(
    ctx: &Ctx,
    keys: &[Key],
    check: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let now = tokio::time::Instant::now();
    ctx.0.failed_auth.check(keys, now)?;
    let result = check();
    if let Err(e) = &result {
        if e.status == axum::http::StatusCode::UNAUTHORIZED
            || e.status == axum::http::StatusCode::FORBIDDEN
        {
            ctx.0.failed_auth.failed(keys, now);
        }
    }
    result
}

/// The refusal of a part-only endpoint called without the right certificate: 401 without
/// one, 403 with another's.
fn wrong_certificate(peer: Option<&Identity>, needed: String) -> ApiError {
    match peer {
        Some(id) => ApiError::forbidden(format!(
            "this request comes with the certificate of {id}; it needs {needed}"
        )),
        None => ApiError::unauthorized(format!(
            "this request comes without a client certificate; it needs {needed}"
        )),
    }
    .with_hint(
        "agents and routers present the certificate `meridian tls cert create` issued them \
         (--tls-cert and --tls-key)",
    )
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

impl Caller {
    /// [`Caller::require`] for an agent endpoint (acting for node `node`, when given): with
    /// mutual TLS, the client certificate must be an agent's (that node's, in `region`, when
    /// given).
    pub fn require_agent(
        &self,
        ctx: &Ctx,
        node: Option<&str>,
        region: Option<&str>,
    ) -> Result<(), ApiError> {
        self.require(Action::AgentEndpoint)?;
        self.require_certificate(ctx, CertRole::Agent, node, region)
    }

    /// [`Caller::require`] for a router endpoint: with mutual TLS, the client certificate must
    /// be a router's, of `name` and `region` when given.
    pub fn require_router(
        &self,
        ctx: &Ctx,
        name: Option<&str>,
        region: Option<&str>,
    ) -> Result<(), ApiError> {
        self.require(Action::RouterEndpoint)?;
        self.require_certificate(ctx, CertRole::Router, name, region)
    }

    fn require_certificate(
        &self,
        ctx: &Ctx,
        role: CertRole,
        name: Option<&str>,
        region: Option<&str>,
    ) -> Result<(), ApiError> {
        if !ctx.0.mutual_tls {
            return Ok(());
        }
        let fits = self.peer.as_ref().is_some_and(|id| {
            id.role == role
                && name.is_none_or(|n| n == id.name)
                && region.is_none_or(|r| r == id.region)
        });
        if fits {
            return Ok(());
        }
        let mut needed = format!("the certificate of {role}");
        if let Some(n) = name {
            needed.push_str(&format!(" {n}"));
        }
        if let Some(r) = region {
            needed.push_str(&format!(" in {r}"));
        }
        Err(wrong_certificate(self.peer.as_ref(), needed))
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
        let keys = limit_keys(parts, Some(token));
        limited(ctx, &keys, || Self::check(ctx, &auth, key, token, parts))
    }
}

impl Caller {
    /// The token's signature, claims and stored record.
    fn check(
        ctx: &Ctx,
        auth: &meridian_state::AuthView,
        key: &str,
        token: &str,
        parts: &Parts,
    ) -> Result<Self, ApiError> {
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
            peer: peer_identity(parts),
        })
    }
}

/// Whether `given` equals the cluster secret, in time independent of where they differ.
pub fn secret_matches(ctx: &Ctx, given: Option<&axum::http::HeaderValue>) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(ctx.0.secret.as_bytes())))
}

/// A request from another server: it carries the cluster secret and, with mutual TLS, a
/// server's certificate. As an extractor it runs before the body is read, so a caller without
/// them learns nothing about the body.
#[derive(Debug, Clone, Copy)]
pub struct ClusterPeer;

impl FromRequestParts<Ctx> for ClusterPeer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        let given = parts.headers.get(meridian_api::CLUSTER_SECRET_HEADER);
        let keys = limit_keys(parts, given.and_then(|g| g.to_str().ok()));
        limited(ctx, &keys, || {
            if ctx.0.mutual_tls {
                let peer = peer_identity(parts);
                if peer.as_ref().is_none_or(|id| id.role != CertRole::Server) {
                    return Err(wrong_certificate(
                        peer.as_ref(),
                        "a server's certificate".into(),
                    ));
                }
            }
            if secret_matches(ctx, given) {
                Ok(Self)
            } else {
                Err(ApiError::unauthorized("missing or wrong cluster secret"))
            }
        })
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

    /// A token with `header` and `claims`, signed with HS256 under `key`.
    fn forged(header: serde_json::Value, claims: serde_json::Value, key: &str) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let head = B64.encode(header.to_string());
        let body = B64.encode(claims.to_string());
        let input = format!("{head}.{body}");
        let key = key_bytes(key).unwrap();
        let sig = hmac_sha256(&key, input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }

    /// HMAC-SHA256 (RFC 2104), so the corpus can sign what jsonwebtoken would refuse to.
    fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .to_vec()
    }

    fn claims(exp: u64) -> serde_json::Value {
        serde_json::json!({
            "jti": "t1", "sub": "t1", "role": "admin", "iss": ISSUER, "aud": AUDIENCE,
            "iat": 1, "exp": exp
        })
    }

    /// The corpus of attacks: each is refused with a 401 whose message says why, and none
    /// panics. (Over HTTP the same tokens are sent by `tests/auth.rs`.)
    #[test]
    fn the_jwt_attack_corpus_is_refused() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let now = jsonwebtoken::get_current_timestamp();
        let hs = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        // The control: the forger's own HS256 signing is what `sign` makes.
        let good = forged(hs.clone(), claims(now + 3600), KEY);
        assert_eq!(verify(KEY, &good).expect("the control verifies").jti, "t1");
        let unsigned = |header: serde_json::Value, claims: serde_json::Value| {
            format!(
                "{}.{}.",
                B64.encode(header.to_string()),
                B64.encode(claims.to_string())
            )
        };
        let mut tampered = good.split('.').map(String::from).collect::<Vec<_>>();
        let mut elevated = claims(now + 3600);
        elevated["jti"] = "someone-else".into();
        tampered[1] = B64.encode(elevated.to_string());
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "alg none",
                unsigned(serde_json::json!({"alg": "none"}), claims(now + 3600)),
                "",
            ),
            (
                "alg None",
                unsigned(serde_json::json!({"alg": "None"}), claims(now + 3600)),
                "",
            ),
            (
                "RS256 header over an HMAC signature (key confusion)",
                forged(
                    serde_json::json!({"alg": "RS256", "typ": "JWT"}),
                    claims(now + 3600),
                    KEY,
                ),
                "HS256",
            ),
            (
                "HS512",
                forged(
                    serde_json::json!({"alg": "HS512", "typ": "JWT"}),
                    claims(now + 3600),
                    KEY,
                ),
                "",
            ),
            (
                "kid naming another key, signed with that key",
                forged(
                    serde_json::json!({"alg": "HS256", "kid": "../../../dev/null"}),
                    claims(now + 3600),
                    OTHER_KEY,
                ),
                "signature",
            ),
            (
                "jku pointing at the attacker",
                forged(
                    serde_json::json!({"alg": "HS256", "jku": "https://evil.example/k"}),
                    claims(now + 3600),
                    OTHER_KEY,
                ),
                "signature",
            ),
            (
                "expired",
                forged(hs.clone(), claims(now - 1), KEY),
                "expired",
            ),
            (
                "not valid yet",
                forged(
                    hs.clone(),
                    {
                        let mut c = claims(now + 3600);
                        c["nbf"] = (now + 600).into();
                        c
                    },
                    KEY,
                ),
                "not valid yet",
            ),
            (
                "wrong audience",
                forged(
                    hs.clone(),
                    {
                        let mut c = claims(now + 3600);
                        c["aud"] = "someone-else".into();
                        c
                    },
                    KEY,
                ),
                "not issued for the Meridian API",
            ),
            (
                "wrong issuer",
                forged(
                    hs.clone(),
                    {
                        let mut c = claims(now + 3600);
                        c["iss"] = "evil".into();
                        c
                    },
                    KEY,
                ),
                "not issued for the Meridian API",
            ),
            ("tampered payload", tampered.join("."), "signature"),
            ("truncated", good[..good.len() - 10].to_string(), ""),
            ("two parts", tampered[..2].join("."), ""),
            ("empty", String::new(), ""),
            ("not base64", "a$.b$.c$".into(), ""),
            (
                "oversized",
                forged(
                    hs.clone(),
                    {
                        let mut c = claims(now + 3600);
                        c["pad"] = "x".repeat(256 * 1024).into();
                        c
                    },
                    OTHER_KEY,
                ),
                "signature",
            ),
            (
                "no expiry",
                forged(
                    hs,
                    {
                        let mut c = claims(now + 3600);
                        c.as_object_mut().unwrap().remove("exp");
                        c
                    },
                    KEY,
                ),
                // Refused as it is decoded: Meridian's claims always carry `exp`.
                "",
            ),
        ];
        for (what, token, says) in cases {
            let e = verify(KEY, &token).expect_err(what);
            assert_eq!(e.status.as_u16(), 401, "{what}: {}", e.message);
            assert!(e.message.contains(says), "{what}: {}", e.message);
        }
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
