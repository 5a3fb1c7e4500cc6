//! Pushing a multi-platform build: each platform's image by digest, then the index under the
//! target's tag. The index and its images are put in an OCI layout in the store's temporary
//! area (hard links to the store's blobs) and pushed as [`super::push_layout_dir`] pushes any
//! layout with an index, so there is one path that pushes indexes.

use dockless_oci::layout::write_layout_named;
use dockless_oci::store::Store;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{PushReport, Reference};

use super::{PublishError, PublishEvents};
use crate::multi::BuiltIndex;

/// The layout's name for the index while it is pushed.
const STAGING_NAME: &str = "index";

/// Pushes `built` to `target`: every platform's blobs and manifest, then the index (tagged as
/// the target says). Base layers that stayed in their registry are fetched first.
pub fn push_index(
    store: &Store,
    remote: &RemoteAccess,
    built: &BuiltIndex,
    target: &Reference,
    events: &dyn PublishEvents,
) -> Result<PushReport, PublishError> {
    built
        .fetch_remote_layers(store, remote)
        .map_err(|e| PublishError::Fetch(Box::new(e)))?;
    let staging = store.temp_dir()?;
    let dir = staging.path().join("layout");
    write_layout_named(
        store,
        &dir,
        &built.index,
        &built.blobs(),
        &[STAGING_NAME.to_owned()],
    )?;
    let report = super::push_layout_dir(remote, &dir, Some(STAGING_NAME), target, events)?;
    for digest in built.blobs() {
        store.record_location(&digest, target.registry(), target.repository());
    }
    Ok(report)
}
