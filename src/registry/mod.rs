//! The OCI distribution API client: references, auth, blobs, manifests, retries.
