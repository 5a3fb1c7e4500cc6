//! Where a registry lives: its base URL (https unless loopback or named insecure), how to
//! resolve the `Location`s it sends, and whether a URL is still the registry (credentials go
//! nowhere else).

use std::net::IpAddr;

use reqwest::Url;

/// True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback_host(host_and_port: &str) -> bool {
    let host = strip_port(host_and_port);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host_and_port: &str) -> &str {
    if host_and_port.starts_with('[') {
        // [::1]:5000 → [::1]
        return host_and_port
            .find(']')
            .and_then(|end| host_and_port.get(..=end))
            .unwrap_or(host_and_port);
    }
    match host_and_port.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => host_and_port,
    }
}

/// Plain HTTP is used only for loopback addresses and hosts the user named as insecure (by
/// `host:port` or by `host` alone).
pub fn uses_plain_http(api_host: &str, insecure_hosts: &[String]) -> bool {
    is_loopback_host(api_host)
        || insecure_hosts
            .iter()
            .any(|h| h == api_host || h == strip_port(api_host))
}

/// `https://HOST/` or, when allowed, `http://HOST/`.
pub(crate) fn base_url(api_host: &str, insecure_hosts: &[String]) -> Result<Url, url::ParseError> {
    let scheme = if uses_plain_http(api_host, insecure_hosts) {
        "http"
    } else {
        "https"
    };
    Url::parse(&format!("{scheme}://{api_host}/"))
}

/// Resolves a `Location` header: absolute URLs stand, relative ones (GAR sends
/// `/artifacts-uploads/…`) are taken against the registry's URL; the query is kept either way
/// because it often carries the upload session's state.
pub fn resolve_location(base: &Url, location: &str) -> Option<Url> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    base.join(location).ok()
}

/// Same scheme, host and port: the only URLs that may receive the registry's credentials.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_hosts_use_http() {
        for host in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(uses_plain_http(host, &[]), "{host}");
        }
        assert!(!uses_plain_http("ghcr.io", &[]));
        assert!(!uses_plain_http("10.0.0.5:5000", &[]));
        assert!(!uses_plain_http("localhost.evil.com", &[]));
        let insecure = vec!["reg.lan:5000".to_string(), "other.lan".to_string()];
        assert!(uses_plain_http("reg.lan:5000", &insecure));
        assert!(!uses_plain_http("reg.lan:6000", &insecure));
        assert!(uses_plain_http("other.lan:6000", &insecure));
        assert_eq!(
            base_url("ghcr.io", &[]).unwrap().as_str(),
            "https://ghcr.io/"
        );
        assert_eq!(
            base_url("127.0.0.1:5000", &[]).unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
    }

    #[test]
    fn relative_locations_resolve_against_the_registry_and_keep_the_query() {
        let base = Url::parse("https://docker.example.com/").unwrap();
        let url = resolve_location(
            &base,
            "/artifacts-uploads/namespaces/p/uploads/abc?upload_id=1&x=2",
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://docker.example.com/artifacts-uploads/namespaces/p/uploads/abc?upload_id=1&x=2"
        );
        let absolute = resolve_location(&base, "https://storage.example.net/up?sig=s%2Fx").unwrap();
        assert_eq!(
            absolute.as_str(),
            "https://storage.example.net/up?sig=s%2Fx"
        );
        let relative = Url::parse("http://127.0.0.1:5000/v2/app/blobs/uploads/").unwrap();
        assert_eq!(
            resolve_location(&relative, "u1?_state=a").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/app/blobs/uploads/u1?_state=a"
        );
        assert_eq!(resolve_location(&base, "  "), None);
    }

    #[test]
    fn origin_comparison_includes_port_and_scheme() {
        let a = Url::parse("https://r.io/v2/").unwrap();
        assert!(same_origin(&a, &Url::parse("https://R.io:443/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://r.io/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://r.io:444/x").unwrap()));
        assert!(!same_origin(
            &a,
            &Url::parse("https://s3.amazonaws.com/x").unwrap()
        ));
    }
}
