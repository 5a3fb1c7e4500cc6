//! A registry token server, as Docker Hub's or Harbor's: `GET /token` with Basic credentials
//! (and `POST /token` for OAuth2 refresh tokens) answers an ES256 JWT whose `x5c` header holds
//! a self-signed certificate; the registry trusts that certificate through `rootcertbundle`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

use super::http::{Handler, TestServer, response};

pub const SERVICE: &str = "dockless-test-registry";
pub const ISSUER: &str = "dockless-test-issuer";

/// What one token request looked like.
#[derive(Debug, Clone)]
pub struct TokenRequestSeen {
    pub method: String,
    pub scopes: Vec<String>,
    pub basic_user: Option<String>,
    pub grant_type: Option<String>,
}

/// Knobs and records, shared with the test.
#[derive(Debug)]
pub struct TokenState {
    pub username: String,
    pub password: String,
    /// Accepted as an OAuth2 refresh token (POST) or as a Basic password.
    pub refresh_token: String,
    /// Answer 404 to POST, like token services without OAuth2 (E2B's gateway).
    pub oauth_enabled: bool,
    /// The next this-many tokens are already expired (the registry will refuse them).
    pub pre_expired: usize,
    /// The `expires_in` announced (and the JWT's real lifetime unless pre-expired).
    pub expires_in: u64,
    /// Answer with `access_token` instead of `token`.
    pub access_token_field: bool,
    pub issued: usize,
    pub requests: Vec<TokenRequestSeen>,
}

pub struct TokenServer {
    server: TestServer,
    pub state: Arc<Mutex<TokenState>>,
    pub cert_pem: String,
}

struct Signer {
    key: EcdsaKeyPair,
    cert_der_base64: String,
    rng: SystemRandom,
}

impl TokenServer {
    pub async fn start(username: &str, password: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load the P-256 key");
        let cert_key = rcgen::KeyPair::try_from(pkcs8.as_ref()).expect("key for the certificate");
        let cert = rcgen::CertificateParams::new(vec![ISSUER.to_string()])
            .expect("certificate parameters")
            .self_signed(&cert_key)
            .expect("self-signed certificate");
        assert_eq!(key.public_key().as_ref(), cert_key.public_key_raw());
        let signer = Arc::new(Signer {
            key,
            cert_der_base64: STANDARD.encode(cert.der()),
            rng,
        });
        let state = Arc::new(Mutex::new(TokenState {
            username: username.to_string(),
            password: password.to_string(),
            refresh_token: "refresh-token-for-tests".to_string(),
            oauth_enabled: true,
            pre_expired: 0,
            expires_in: 300,
            access_token_field: false,
            issued: 0,
            requests: Vec::new(),
        }));
        let handler_state = state.clone();
        let handler: Handler = Arc::new(move |request| {
            let (state, signer) = (handler_state.clone(), signer.clone());
            Box::pin(async move {
                let method = request.method().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                let basic = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|v| STANDARD.decode(v).ok())
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| {
                        v.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    });
                let body = request.into_body().collect().await?.to_bytes();
                let form: Vec<(String, String)> = if method == "POST" {
                    url::form_urlencoded::parse(&body).into_owned().collect()
                } else {
                    url::form_urlencoded::parse(query.as_bytes())
                        .into_owned()
                        .collect()
                };
                let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                let scopes: Vec<String> = if method == "POST" {
                    get("scope")
                        .map(|s| s.split(' ').map(str::to_string).collect())
                        .unwrap_or_default()
                } else {
                    form.iter()
                        .filter(|(k, _)| k == "scope")
                        .map(|(_, v)| v.clone())
                        .collect()
                };
                let mut state = state.lock().unwrap();
                state.requests.push(TokenRequestSeen {
                    method: method.clone(),
                    scopes: scopes.clone(),
                    basic_user: basic.as_ref().map(|(u, _)| u.clone()),
                    grant_type: get("grant_type"),
                });
                let authorised = if method == "POST" {
                    if !state.oauth_enabled {
                        return Ok(response(404, "404 page not found"));
                    }
                    get("grant_type").as_deref() == Some("refresh_token")
                        && get("refresh_token").as_deref() == Some(state.refresh_token.as_str())
                } else {
                    match &basic {
                        Some((user, pass)) => {
                            (user == &state.username && pass == &state.password)
                                || pass == &state.refresh_token
                        }
                        None => false,
                    }
                };
                if !authorised {
                    return Ok(response(
                        401,
                        r#"{"details":"incorrect username or password"}"#,
                    ));
                }
                let expired = state.pre_expired > 0;
                state.pre_expired = state.pre_expired.saturating_sub(1);
                state.issued += 1;
                let jwt = signer.token(&scopes, state.expires_in, expired, state.issued);
                let field = if state.access_token_field {
                    "access_token"
                } else {
                    "token"
                };
                let answer = serde_json::json!({ field: jwt, "expires_in": state.expires_in });
                Ok(response(200, answer.to_string()))
            })
        });
        let server = TestServer::start(handler).await;
        Self {
            server,
            state,
            cert_pem: cert.pem(),
        }
    }

    pub fn realm(&self) -> String {
        format!("{}/token", self.server.url())
    }

    pub fn issued(&self) -> usize {
        self.state.lock().unwrap().issued
    }
}

impl Signer {
    fn token(&self, scopes: &[String], lifetime: u64, expired: bool, serial: usize) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Far enough in the past that no verifier's clock leeway accepts it.
        let (nbf, exp) = if expired {
            (now - 7200, now - 3600)
        } else {
            (now - 10, now + lifetime)
        };
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let kind = parts.next()?;
                // Repository names may hold ':' only before the actions, which come last.
                let rest = scope.get(kind.len() + 1..)?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let header =
            serde_json::json!({ "typ": "JWT", "alg": "ES256", "x5c": [self.cert_der_base64] });
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": "tester",
            "aud": SERVICE,
            "exp": exp,
            "nbf": nbf,
            "iat": nbf,
            "jti": format!("token-{serial}"),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("sign the token");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}
