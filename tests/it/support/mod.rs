//! Test doubles and real parts the integration tests start: the dockless binary, the registry process, a token
//! server, a fault-injecting proxy, misbehaving servers, a test image and skopeo.

pub mod binary;
pub mod debian;
pub mod http;
pub mod image;
pub mod proxy;
pub mod registry;
pub mod skopeo;
pub mod stubborn;
pub mod token_server;

use std::time::Duration;

use dockless_registry::http::HttpPolicy;
use dockless_registry::{RegistrySettings, RetryPolicy};

/// Settings with short waits so retry tests stay quick.
pub fn fast_settings() -> RegistrySettings {
    RegistrySettings {
        http: HttpPolicy {
            retry: RetryPolicy {
                max_retries: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
                max_retry_after: Duration::from_secs(5),
                timeout_retries: 1,
            },
            ..HttpPolicy::default()
        },
        ..RegistrySettings::default()
    }
}
