//! ADD of a URL: the download (with `--checksum`), its file name, and the staging directory
//! that holds fetched and unpacked files until the layer is written.

use std::io::Write;
use std::path::Path;

use tempfile::TempDir;

use super::CopyError;
use crate::digest::{Digest, HashingWriter};
use crate::fs_error::IoContext;
use crate::store::Store;

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

pub(super) fn fetch_url(
    url: &str,
    stage: &Path,
    checksum: Option<&Digest>,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<std::path::PathBuf, CopyError> {
    let fail = |message: String| CopyError::Download {
        url: url.into(),
        message,
    };
    let runtime = runtime.ok_or_else(|| fail("downloads need a network runtime".into()))?;
    let file = tempfile::NamedTempFile::new_in(stage).with_path("create a file in", stage)?;
    let (file, digest) = runtime.block_on(async {
        let response = reqwest::get(url).await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("the server answered {}", response.status())));
        }
        let mut writer = HashingWriter::new(file);
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            writer.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
        }
        let (file, digest, _) = writer.finish();
        Ok((file, digest))
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
