//! Turning failed requests into [`RegistryError`]s that name the registry, the operation and
//! what to do.

use std::time::Duration;

use reqwest::Response;

use super::RegistryClient;
use crate::error::{
    RegistryError, credential_advice, registry_error_code, registry_error_detail, with_causes,
};
use crate::transport::{BodyReadError, SendFailure, next_chunk, redact_query};

impl RegistryClient {
    /// Reads an unsuccessful response into the error that explains it.
    pub(crate) async fn error_for(
        &self,
        response: Response,
        operation: &str,
        repository: &str,
    ) -> RegistryError {
        let status = response.status();
        let body = read_error_body(response, self.settings.http.idle_timeout).await;
        let detail = registry_error_detail(&body);
        let code = registry_error_code(&body);
        match status.as_u16() {
            403 => RegistryError::Denied {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                operation: operation.to_string(),
                detail,
                advice: credential_advice(&self.registry, &self.credential.source),
            },
            404 if code.as_deref() == Some("NAME_UNKNOWN") => RegistryError::RepositoryNotFound {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                detail,
            },
            code => RegistryError::UnexpectedStatus {
                registry: self.registry.clone(),
                operation: format!("{operation} in {repository}"),
                status: code,
                detail,
                hint: match code {
                    413 => {
                        "; the body is too large for the registry or a proxy in front of it: set a chunk size"
                    }
                    416 => {
                        "; the registry rejected a chunk: set another chunk size, or none for one PUT"
                    }
                    411 => "; the registry wants a Content-Length",
                    _ => "",
                },
            },
        }
    }

    pub(crate) fn transport_error(&self, operation: &str, error: &reqwest::Error) -> RegistryError {
        let hint = if error.is_connect() && self.base.scheme() == "https" {
            "; if it serves plain HTTP, name it as an insecure registry"
        } else if error.is_timeout() {
            "; raise the limit with --http-timeout or DOCKLESS_HTTP_TIMEOUT (or --http-connect-timeout)"
        } else {
            ""
        };
        // reqwest's message names the URL, which for object storage may carry a signature.
        let detail = match error.url() {
            Some(url) => error.to_string().replace(url.as_str(), &redact_query(url)),
            None => error.to_string(),
        };
        RegistryError::Transport {
            registry: self.registry.clone(),
            operation: operation.to_string(),
            detail: with_causes(detail, error),
            hint,
        }
    }

    /// A body that broke off or stalled while being read: reqwest's failures as any other
    /// (their URL redacted), a stall as a timeout.
    pub(crate) fn body_read_error(&self, operation: &str, error: BodyReadError) -> RegistryError {
        match error {
            BodyReadError::Failed(error) => self.transport_error(operation, &error),
            stalled @ BodyReadError::Stalled(_) => {
                self.timeout_error(operation, stalled.to_string())
            }
        }
    }

    pub(crate) fn timeout_error(&self, operation: &str, detail: String) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.clone(),
            operation: operation.to_string(),
            detail,
            hint: "; raise the limit with --http-timeout or DOCKLESS_HTTP_TIMEOUT",
        }
    }

    pub(super) fn send_failure_error(
        &self,
        operation: &str,
        failure: SendFailure,
    ) -> RegistryError {
        match failure {
            SendFailure::TimedOut(detail) => self.timeout_error(operation, detail),
            SendFailure::Http(error) => self.transport_error(operation, &error),
            SendFailure::Body(error) => error,
            SendFailure::BadLocation(location) => RegistryError::BadLocation {
                registry: self.registry.clone(),
                operation: operation.to_string(),
                location,
            },
            SendFailure::TooManyRedirects => RegistryError::TooManyRedirects {
                registry: self.registry.clone(),
                operation: operation.to_string(),
                limit: 10,
            },
        }
    }
}

/// Reads at most 64 KiB of an error body (some proxies answer with whole HTML pages).
async fn read_error_body(mut response: Response, stall: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = next_chunk(&mut response, stall).await {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            body.truncate(64 * 1024);
            break;
        }
    }
    body
}
