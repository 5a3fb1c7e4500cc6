//! Where E2B is: the API base URL, the registry gateway, and the gateway image reference.

use url::Url;

use super::env::E2bEnv;

pub(crate) const DEFAULT_DOMAIN: &str = "e2b.app";

/// The E2B addresses a run uses.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub api: Url,
    /// The gateway as a registry name in references (`docker.e2b.app`, `127.0.0.1:5001`).
    pub gateway: String,
    /// True when the gateway is reached over plain HTTP (`E2B_REGISTRY_URL=http://…`).
    pub gateway_plain_http: bool,
    image_uri_mask: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{name}={value}: not a usable URL ({reason}); expected e.g. https://api.e2b.app")]
    BadUrl {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "E2B_IMAGE_URI_MASK={0}: it must contain {{templateID}} (and may contain {{buildID}}), e.g. registry.example.com/e2b/custom-envs/{{templateID}}:{{buildID}}"
    )]
    BadMask(String),
}

fn is_cloud_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == DEFAULT_DOMAIN || host.ends_with(&format!(".{DEFAULT_DOMAIN}"))
}

impl Endpoints {
    pub fn from_env(env: &E2bEnv) -> Result<Self, EndpointError> {
        let domain = env.domain.as_deref().unwrap_or(DEFAULT_DOMAIN);
        let api_text = match (&env.api_url, env.debug) {
            (Some(url), _) => url.clone(),
            (None, true) => "http://localhost:3000".to_owned(),
            (None, false) => format!("https://api.{domain}"),
        };
        let api = parse_url("E2B_API_URL", &api_text)?;
        let registry_text = env
            .registry_url
            .clone()
            .unwrap_or_else(|| format!("https://docker.{domain}"));
        // A bare host (as in image references) means HTTPS.
        let registry_url = if registry_text.contains("://") {
            parse_url("E2B_REGISTRY_URL", &registry_text)?
        } else {
            parse_url("E2B_REGISTRY_URL", &format!("https://{registry_text}"))?
        };
        let host = registry_url.host_str().unwrap_or_default();
        let gateway = match registry_url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        if let Some(mask) = &env.image_uri_mask
            && !mask.contains("{templateID}")
        {
            return Err(EndpointError::BadMask(mask.clone()));
        }
        Ok(Endpoints {
            api,
            gateway,
            gateway_plain_http: registry_url.scheme() == "http",
            image_uri_mask: env.image_uri_mask.clone(),
        })
    }

    /// True when the API or the registry gateway is E2B's cloud (`e2b.app` or a subdomain),
    /// where the gateway was removed in 2026-08 and access tokens are being switched off.
    pub fn is_e2b_cloud(&self) -> bool {
        let gateway_host = self.gateway.split(':').next().unwrap_or_default();
        self.api_is_e2b_cloud() || is_cloud_host(gateway_host)
    }

    /// True when the API alone is E2B's cloud (`E2B_API_URL` may name a self-hosted one while
    /// the gateway, which only `E2B_DOMAIN` or `E2B_REGISTRY_URL` move, stays E2B's).
    pub fn api_is_e2b_cloud(&self) -> bool {
        is_cloud_host(self.api.host_str().unwrap_or_default())
    }

    /// Where the gateway flow pushes a build: `<gateway>/e2b/custom-envs/<templateID>:<buildID>`,
    /// or `E2B_IMAGE_URI_MASK` with its placeholders filled in, as E2B's CLI did.
    pub(crate) fn gateway_image(&self, template_id: &str, build_id: &str) -> String {
        match &self.image_uri_mask {
            Some(mask) => mask
                .replace("{templateID}", template_id)
                .replace("{buildID}", build_id),
            None => format!("{}/e2b/custom-envs/{template_id}:{build_id}", self.gateway),
        }
    }
}

fn parse_url(name: &'static str, value: &str) -> Result<Url, EndpointError> {
    let url = Url::parse(value).map_err(|e| EndpointError::BadUrl {
        name,
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(EndpointError::BadUrl {
            name,
            value: value.to_owned(),
            reason: "expected http:// or https:// and a host".into(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_domain_debug_and_overrides() {
        let e = Endpoints::from_env(&E2bEnv::default()).unwrap();
        assert_eq!(e.api.as_str(), "https://api.e2b.app/");
        assert_eq!(
            e.gateway_image("t1", "b1"),
            "docker.e2b.app/e2b/custom-envs/t1:b1"
        );
        assert!(!e.gateway_plain_http);

        let env = E2bEnv {
            domain: Some("e2b.example.org".into()),
            ..E2bEnv::default()
        };
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(e.api.as_str(), "https://api.e2b.example.org/");
        assert_eq!(e.gateway, "docker.e2b.example.org");

        let env = E2bEnv {
            debug: true,
            registry_url: Some("http://127.0.0.1:5001".into()),
            ..E2bEnv::default()
        };
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(e.api.as_str(), "http://localhost:3000/");
        assert_eq!(e.gateway, "127.0.0.1:5001");
        assert!(e.gateway_plain_http);

        let env = E2bEnv {
            debug: true,
            api_url: Some("http://127.0.0.1:9/".into()),
            image_uri_mask: Some("reg.local/envs/{templateID}:{buildID}".into()),
            ..E2bEnv::default()
        };
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(e.api.as_str(), "http://127.0.0.1:9/");
        assert_eq!(e.gateway_image("t", "b"), "reg.local/envs/t:b");
    }

    #[test]
    fn e2bs_cloud_is_told_from_self_hosted() {
        let cloud = |env: E2bEnv| Endpoints::from_env(&env).unwrap().is_e2b_cloud();
        assert!(cloud(E2bEnv::default()));
        assert!(cloud(E2bEnv {
            domain: Some("eu.e2b.app".into()),
            ..E2bEnv::default()
        }));
        // The API elsewhere, but the gateway would still be docker.e2b.app.
        assert!(cloud(E2bEnv {
            api_url: Some("http://127.0.0.1:9".into()),
            ..E2bEnv::default()
        }));
        assert!(!cloud(E2bEnv {
            domain: Some("e2b.example.org".into()),
            ..E2bEnv::default()
        }));
        assert!(!cloud(E2bEnv {
            domain: Some("note2b.app".into()),
            ..E2bEnv::default()
        }));
        assert!(!cloud(E2bEnv {
            api_url: Some("http://127.0.0.1:9".into()),
            registry_url: Some("http://127.0.0.1:10".into()),
            ..E2bEnv::default()
        }));
    }

    #[test]
    fn bad_values_are_named() {
        let env = E2bEnv {
            api_url: Some("ftp://x".into()),
            ..E2bEnv::default()
        };
        let message = Endpoints::from_env(&env).unwrap_err().to_string();
        assert!(message.starts_with("E2B_API_URL=ftp://x"), "{message}");
        let env = E2bEnv {
            image_uri_mask: Some("reg/x:latest".into()),
            ..E2bEnv::default()
        };
        assert!(
            Endpoints::from_env(&env)
                .unwrap_err()
                .to_string()
                .contains("{templateID}")
        );
    }
}
