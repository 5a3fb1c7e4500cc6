//! ADD of a URL: the download (with `--checksum`, under the HTTP policy's timeouts, retries
//! and proxies), its file name, and the staging directory that holds fetched and unpacked
//! files until the layer is written.

use std::io::{Seek, Write};
use std::path::Path;

use tempfile::TempDir;

use super::CopyError;
use dockless_oci::digest::{Digest, HashingWriter};
use dockless_oci::fs_error::IoContext;
use dockless_oci::store::Store;
use dockless_registry::http::{HttpPolicy, RetryDecision, TIMEOUT_ADVICE};

/// The staging directory for fetched and extracted files, created on first use.
pub(super) fn staging_dir(
    staging: &mut Option<TempDir>,
    store: &Store,
) -> Result<std::path::PathBuf, CopyError> {
    Ok(match staging {
        Some(dir) => dir.path().to_owned(),
        None => staging.insert(store.temp_dir()?).path().to_owned(),
    })
}

pub(super) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Whether `source` names a git repository as BuildKit's `ParseGitRef` recognises one: a
/// `git://` or `ssh://` URL, an scp-like `user@host:path`, the `github.com/…` shorthand, or an
/// HTTP(S) URL whose path ends in `.git` (before any `#ref:subdir` or query).
pub(super) fn is_git_source(source: &str) -> bool {
    if source.starts_with("git://") || source.starts_with("ssh://") {
        return true;
    }
    if source.starts_with("github.com/") {
        return true;
    }
    if let Some(rest) = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
    {
        let path = rest.split(['#', '?']).next().unwrap_or(rest);
        return path.ends_with(".git");
    }
    // scp-like: `user@host:path`, with no `/` before the `@`.
    match source.split_once('@') {
        Some((user, rest)) => {
            !user.is_empty()
                && !user.contains('/')
                && rest
                    .split_once(':')
                    .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'))
        }
        None => false,
    }
}

/// The file name Docker gives a downloaded file: the last segment of the URL's path.
pub(super) fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    after_host
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| "index.html".into())
}

/// What a download needs: the network runtime, and the HTTP policy every request follows
/// (timeouts, retries, proxies from the environment).
#[derive(Clone, Copy)]
pub struct Downloads<'a> {
    pub runtime: &'a tokio::runtime::Handle,
    pub policy: &'a HttpPolicy,
}

pub(super) fn fetch_url(
    url: &str,
    stage: &Path,
    checksum: Option<&Digest>,
    downloads: Option<Downloads<'_>>,
) -> Result<std::path::PathBuf, CopyError> {
    let fail = |message: String| CopyError::Download {
        url: url.into(),
        message,
    };
    let downloads = downloads.ok_or_else(|| fail("downloads need a network runtime".into()))?;
    let client = downloads
        .policy
        .small_request_client()
        .build()
        .map_err(|e| fail(format!("cannot set up the HTTP client: {e}")))?;
    let file = tempfile::NamedTempFile::new_in(stage).with_path("create a file in", stage)?;
    let digest = downloads.runtime.block_on(async {
        let mut retry = 0;
        loop {
            let failure = match download_once(&client, url, file.as_file()).await {
                Ok(digest) => return Ok(digest),
                Err(failure) => failure,
            };
            let decision = match &failure {
                TryFailure::Status(status, headers) => {
                    downloads.policy.retry.after_status(retry, *status, headers)
                }
                TryFailure::Http { error, .. } => {
                    downloads.policy.retry.after_transport_error(retry, error)
                }
                TryFailure::Write(_) => RetryDecision::GiveUp,
            };
            let RetryDecision::RetryAfter(wait) = decision else {
                return Err(fail(failure.explain(downloads.policy, retry + 1)));
            };
            tracing::debug!(url, retry, ?wait, "download failed; trying again");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    })?;
    if let Some(expected) = checksum
        && &digest != expected
    {
        return Err(CopyError::Checksum {
            url: url.into(),
            expected: expected.clone(),
            actual: digest,
        });
    }
    let (_, path) = file.keep().map_err(|e| e.error).with_path("keep", stage)?;
    Ok(path)
}

/// Why one try of a download failed.
enum TryFailure {
    Status(reqwest::StatusCode, reqwest::header::HeaderMap),
    /// `answered`: the failure came while reading the body.
    Http {
        error: reqwest::Error,
        answered: bool,
    },
    Write(std::io::Error),
}

impl TryFailure {
    fn explain(&self, policy: &HttpPolicy, tries: u32) -> String {
        match self {
            TryFailure::Status(status, _) => format!("the server answered {status}"),
            TryFailure::Http { error, .. } if error.is_timeout() && error.is_connect() => format!(
                "no connection within {:?} ({tries} tries); raise the limit with --http-connect-timeout or DOCKLESS_HTTP_CONNECT_TIMEOUT",
                policy.connect_timeout
            ),
            TryFailure::Http { error, answered } if error.is_timeout() => format!(
                "{} {:?} ({tries} tries); {TIMEOUT_ADVICE}",
                if *answered {
                    "the download stalled: no byte for"
                } else {
                    "no answer within"
                },
                policy.idle_timeout
            ),
            TryFailure::Http { error, .. } => {
                dockless_registry::with_causes(error.to_string(), error)
            }
            TryFailure::Write(error) => format!("cannot write the download: {error}"),
        }
    }
}

/// One GET of `url` into `file` (emptied first); the digest of what arrived.
async fn download_once(
    client: &reqwest::Client,
    url: &str,
    file: &std::fs::File,
) -> Result<Digest, TryFailure> {
    let http = |answered| move |error| TryFailure::Http { error, answered };
    let mut response = client.get(url).send().await.map_err(http(false))?;
    if !response.status().is_success() {
        return Err(TryFailure::Status(
            response.status(),
            response.headers().clone(),
        ));
    }
    let mut out = file;
    out.set_len(0).map_err(TryFailure::Write)?;
    out.seek(std::io::SeekFrom::Start(0))
        .map_err(TryFailure::Write)?;
    let mut writer = HashingWriter::new(out);
    while let Some(chunk) = response.chunk().await.map_err(http(true))? {
        writer.write_all(&chunk).map_err(TryFailure::Write)?;
    }
    let (_, digest, _) = writer.finish();
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As BuildKit's `dfgitutil.ParseGitRef` sorts them (its git_ref_test.go cases).
    #[test]
    fn git_sources_are_told_from_downloads_and_paths() {
        for git in [
            "https://github.com/moby/buildkit.git",
            "https://github.com/moby/buildkit.git#v0.12.0",
            "https://github.com/moby/buildkit.git#main:docs",
            "http://example.com/repo.git?ref=main",
            "git://github.com/user/repo.git",
            "ssh://git@github.com/user/repo.git",
            "git@github.com:moby/buildkit.git",
            "git@github.com:moby/buildkit.git#main",
            "github.com/moby/buildkit",
        ] {
            assert!(is_git_source(git), "{git}");
        }
        for other in [
            "https://github.com/moby/buildkit",
            "https://example.com/tool.tar.gz",
            "https://example.com/a.git/file.txt",
            "app.tar",
            "dir/user@host:file",
            "./git@x",
        ] {
            assert!(!is_git_source(other), "{other}");
        }
    }
}
