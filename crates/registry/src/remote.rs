//! Registry access for the builder and the pusher: one client per registry, credentials
//! resolved once, and blocking calls into the async client for the (synchronous) builder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{
    CredentialEnv, Reference, RegistryClient, RegistryError, RegistrySettings, ResolvedCredential,
};
use dockless_oci::digest::Digest;
use dockless_oci::store::{Store, StoreError};

/// Where a layer's blob is when the local store does not hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// The base image's repository (its layers stay there until something needs their bytes).
    Base(Reference),
    /// A shared cache repository (`--cache-from`), which listed it under `key`.
    SharedCache { repository: Reference, key: String },
}

impl LayerSource {
    /// The repository holding the blob.
    pub fn repository(&self) -> &Reference {
        match self {
            LayerSource::Base(repository) | LayerSource::SharedCache { repository, .. } => {
                repository
            }
        }
    }
}

/// What the build and push need to reach registries.
pub struct RemoteAccess {
    runtime: tokio::runtime::Handle,
    settings: RegistrySettings,
    env: CredentialEnv,
    /// `--username`/`--password-stdin`: used for this registry only (the push target).
    explicit: Option<(String, ResolvedCredential)>,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

// Registry errors carry a lot of context; boxed, they keep every Result small.
impl From<RegistryError> for RemoteError {
    fn from(e: RegistryError) -> Self {
        RemoteError::Registry(Box::new(e))
    }
}

impl RemoteAccess {
    pub fn new(
        runtime: tokio::runtime::Handle,
        settings: RegistrySettings,
        env: CredentialEnv,
        explicit: Option<(String, ResolvedCredential)>,
    ) -> Self {
        RemoteAccess {
            runtime,
            settings,
            env,
            explicit,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Timeouts and retries for every request (ADD <url> downloads too).
    pub fn http_policy(&self) -> &crate::http::HttpPolicy {
        &self.settings.http
    }

    /// The client for `reference`'s registry, created (and its credential resolved) once.
    pub fn client(&self, reference: &Reference) -> Result<Arc<RegistryClient>, RemoteError> {
        let registry = reference.registry().to_owned();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&registry) {
            return Ok(client.clone());
        }
        let explicit = self
            .explicit
            .as_ref()
            .filter(|(host, _)| *host == registry)
            .map(|(_, credential)| credential.clone());
        let client = Arc::new(RegistryClient::for_reference(
            reference,
            explicit,
            &self.env,
            self.settings.clone(),
        )?);
        tracing::info!(registry = %registry, credentials = %client.credential_source(), "registry");
        clients.insert(registry, client.clone());
        Ok(client)
    }

    /// Runs a future of the async client from synchronous code (the builder runs outside the
    /// runtime, on the main thread).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Downloads a blob into the store (verified against its digest) unless it is there.
    pub fn fetch_blob(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<(), RemoteError> {
        self.fetch_blob_with(store, reference, digest, &mut |_| {})
    }

    /// [`Self::fetch_blob`], handing each downloaded chunk to `on_chunk` as it arrives (nothing
    /// when the store has the blob): a reader of the bytes may trust them only once this
    /// returns `Ok`, after the digest was checked.
    pub fn fetch_blob_with(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        on_chunk: &mut (dyn FnMut(&bytes::Bytes) + Send),
    ) -> Result<(), RemoteError> {
        if store.has_blob(digest) {
            return Ok(());
        }
        self.blob_fetcher(reference)?
            .fetch_with(store, digest, on_chunk)
    }

    /// What downloads `reference`'s blobs, owned, for a thread of its own.
    pub fn blob_fetcher(&self, reference: &Reference) -> Result<BlobFetcher, RemoteError> {
        Ok(BlobFetcher {
            client: self.client(reference)?,
            runtime: self.runtime.clone(),
            reference: reference.clone(),
        })
    }
}

/// Downloads the blobs of one repository into a store, with the client (and credential) the
/// [`RemoteAccess`] it came from holds for that registry.
pub struct BlobFetcher {
    client: Arc<RegistryClient>,
    runtime: tokio::runtime::Handle,
    reference: Reference,
}

impl BlobFetcher {
    /// [`RemoteAccess::fetch_blob_with`].
    pub fn fetch_with(
        &self,
        store: &Store,
        digest: &Digest,
        on_chunk: &mut (dyn FnMut(&bytes::Bytes) + Send),
    ) -> Result<(), RemoteError> {
        if store.has_blob(digest) {
            return Ok(());
        }
        let temp = store.temp_file()?;
        self.runtime.block_on(self.client.get_blob_to_file_with(
            self.reference.repository(),
            digest,
            temp.path(),
            on_chunk,
        ))?;
        store.commit(temp, digest)?;
        Ok(())
    }
}
