//! E2B's refusals turned into errors that say what happened (in E2B's words) and what to do.

use secrecy::ExposeSecret;

use super::credentials::{CredentialKind, CredentialOrigin, E2bCredential};

/// Which family of endpoint refused: the kinds of credential they accept differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// `/v3/templates`, `/v2/templates/…/builds/…`: API keys.
    Registry,
    /// `/templates`, `/templates/…/builds/…` and the gateway: access tokens.
    Gateway,
    /// Build status: either kind.
    Either,
}

/// What to do after a refusal, given the credential that was refused and where.
pub fn advice(status: u16, message: &str, credential: &E2bCredential, flow: Flow) -> String {
    let kind = credential.kind;
    let refused = matches!(status, 401 | 403) || message.contains("deprecated");
    if let CredentialOrigin::ConfigFile { path, .. } = &credential.origin
        && kind == CredentialKind::AccessToken
        && refused
    {
        // A login saved by `e2b auth login` long ago: the user never chose this token.
        return format!(
            "E2B no longer accepts the access token that the E2B CLI saved in {}: use an API key \
             instead, in E2B_API_KEY or piped in with --api-key-stdin (https://e2b.dev/dashboard?tab=keys), \
             and build with --image REGISTRY/REPO:TAG",
            path.display()
        );
    }
    if message.contains("deprecated") && kind == CredentialKind::AccessToken {
        return format!(
            "E2B no longer accepts your access token ({}): use an API key instead (set E2B_API_KEY; \
             https://e2b.dev/dashboard?tab=keys) with --image REGISTRY/REPO:TAG, the registry flow",
            credential.origin
        );
    }
    if !matches!(status, 400 | 401 | 403) {
        return String::new();
    }
    match (kind, flow) {
        (CredentialKind::ApiKey, Flow::Gateway) => format!(
            "the legacy gateway flow takes an access token, not an API key (yours is from {}): \
             with an API key, pass --image REGISTRY/REPO:TAG to push to your own registry (the registry flow)",
            credential.origin
        ),
        (CredentialKind::AccessToken, Flow::Registry) => format!(
            "the registry flow needs an API key, not an access token (yours is from {}): set E2B_API_KEY \
             (https://e2b.dev/dashboard?tab=keys), or use --credential api-key",
            credential.origin
        ),
        _ if status == 401 => format!(
            "E2B did not accept the {} ending in {} from {}: check it, or get a new one at \
             https://e2b.dev/dashboard?tab=keys",
            kind,
            credential.last_four(),
            credential.origin
        ),
        _ => String::new(),
    }
}

/// Removes the credential's secret from text a server sent, in case it echoes it.
pub fn scrub(text: &str, credential: &E2bCredential) -> String {
    let secret = credential.secret().expose_secret();
    if secret.len() < 4 {
        return text.to_owned();
    }
    text.replace(secret, "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(kind: CredentialKind) -> E2bCredential {
        E2bCredential::new(
            kind,
            CredentialOrigin::EnvApiKey,
            "e2b_secret_abcdef1234".to_string().into(),
        )
    }

    #[test]
    fn each_refusal_says_what_to_do() {
        let token = credential(CredentialKind::AccessToken);
        let key = credential(CredentialKind::ApiKey);
        // The text E2B answers with once it has switched access tokens off for a user.
        let deprecated = "E2B_ACCESS_TOKEN is deprecated and no longer accepted. \
                          Use an API key (E2B_API_KEY) instead.";
        assert!(advice(401, deprecated, &token, Flow::Gateway).contains("--image"));
        assert!(advice(401, "Invalid", &key, Flow::Gateway).contains("--image REGISTRY/REPO:TAG"));
        assert!(advice(401, "Invalid", &token, Flow::Registry).contains("needs an API key"));
        assert!(advice(401, "Invalid", &key, Flow::Registry).contains("ending in 1234"));
        assert_eq!(advice(500, "boom", &key, Flow::Registry), "");
        assert_eq!(scrub("echo e2b_secret_abcdef1234", &key), "echo <redacted>");
        let saved = E2bCredential::new(
            CredentialKind::AccessToken,
            CredentialOrigin::ConfigFile {
                path: "/home/u/.e2b/config.json".into(),
                field: "accessToken",
            },
            "sk_e2b_saved_abcdef1234".to_string().into(),
        );
        for flow in [Flow::Registry, Flow::Gateway, Flow::Either] {
            let text = advice(401, "Invalid access token", &saved, flow);
            assert!(
                text.contains("/home/u/.e2b/config.json")
                    && text.contains("E2B_API_KEY")
                    && text.contains("--api-key-stdin"),
                "{text}"
            );
        }
    }
}
