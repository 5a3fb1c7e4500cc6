//! The OCI distribution API client: references, auth, blobs, manifests, retries.
//!
//! The entry points a caller needs:
//! - [`Reference::parse`] for `NAME[:TAG][@DIGEST]` with Docker's normalisation;
//! - [`RegistryClient::for_reference`] (finds the one credential to use) or
//!   [`RegistryClient::new`];
//! - [`push_image`] to push blobs and a manifest; [`RegistryClient::get_manifest`] and
//!   [`RegistryClient::get_blob_to_file`] to read an image back.
//!
//! May use: oci.

mod blobs;
// One HTTP policy (timeouts, retries with backoff and Retry-After, proxies) for every request.
pub mod http;
// Registry access for the builder and the pusher: a client per registry, blocking calls.
mod challenge;
mod client;
mod credentials;
mod endpoint;
mod error;
mod growing;
mod manifests;
mod push;
mod reference;
pub mod remote;
mod token;
mod transport;

pub use crate::http::RetryPolicy;
pub use blobs::{MountOutcome, UploadSession, UploadSource};
pub use challenge::{AuthScheme, Challenge, parse_challenges, preferred_challenge};
pub use client::{RegistryClient, RegistrySettings, Scope};
pub use credentials::{
    Credential, CredentialEnv, CredentialError, CredentialSource, ResolvedCredential,
    SECRETS_NOT_FOR_HELPERS, resolve_credential,
};
pub use endpoint::{is_loopback_host, resolve_location, uses_plain_http};
pub use error::{RegistryError, credential_advice, with_causes};
pub use growing::GrowingOutcome;
pub use manifests::{
    FetchedManifest, ManifestReferences, ManifestReferencesError, manifest_references,
    media_type_of,
};
pub use push::{
    BlobOutcome, BlobSource, PushBlob, PushProgress, PushProgressFn, PushReport, PushRequest,
    push_blob, push_image,
};
pub use reference::{Reference, ReferenceError, ReferenceProblem};
pub use transport::SentBytesFn;
