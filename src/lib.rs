//! dockless builds OCI container images from a template context and pushes them straight to a
//! registry: no Docker daemon, no root, no `docker login`.
//!
//! Data flows one way: [`dockerfile`] parses and expands the instructions, [`context`] walks the
//! build context under `.dockerignore`, [`build`] applies the instructions (with [`run`] for RUN
//! steps), [`layer`] turns file sets into deterministic compressed layers, [`image`] assembles
//! config and manifest, [`store`] keeps every blob content-addressed, and [`registry`] speaks
//! the distribution API. [`publish`] is the one call that builds and pushes; [`e2b`] turns that
//! into an E2B sandbox template. The `dockless` binary (`src/cli/`) only parses arguments and
//! prints what these return.

// The map of the library, one line per module. Plain comments, not `///`: rustdoc would merge
// them with each module's own `//!` text and then resolve that text's links from here.

// The store's layout: every area, what it holds, which prune removes it; last-use marks.
pub mod areas;
// The builder: a Dockerfile and its context become an image in the store.
pub mod build;
// A build stopped by a signal: the request, the check long loops make, the RUN helpers to kill.
pub mod cancel;
// Temporary paths removed when a signal ends the process, where destructors do not run.
pub mod cleanup;
// The build context: walking it under `.dockerignore`, every read kept inside it.
pub mod context;
// `sha256:` digests (`Digest`) and writers that hash what passes through them.
pub mod digest;
// Dockerfile parsing and variable expansion, as BuildKit's Dockerfile frontend reads them.
pub mod dockerfile;
// E2B: `e2b.toml`, its credential, its API, and the two ways to build a sandbox template.
pub mod e2b;
// File-system errors that name the path and what was being done to it.
pub mod fs_error;
// One HTTP policy (timeouts, retries with backoff and Retry-After, proxies) for every request.
pub mod http;
// Image config, manifest and index documents, and their media types.
pub mod image;
// Deterministic layer tars, compressed, with both digests computed in one pass.
pub mod layer;
// OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/`).
pub mod layout;
// A blob readable while it is still being written, so a push can start before a layer ends.
pub mod live;
// Work spread over a few threads in order, and work run at a lower priority.
pub mod parallel;
// The one door for "build this and push it" (`build_and_push`) and layout pushes.
pub mod publish;
// The OCI distribution API client: references, credentials, blobs, manifests, retries.
pub mod registry;
// Registry access for the builder and the pusher: a client per registry, blocking calls.
pub mod remote;
// RUN steps: a command in a sandbox over the image's file system, and the layer it makes.
pub mod run;
// The layer and RUN caches shared between machines through a registry (`--cache-from/-to`).
pub mod shared_cache;
// The store's sessions: locks held for a process's life, its temporary directory, the sweep.
pub mod session;
// The local content-addressed store every blob lands in once, named by its digest.
pub mod store;
// What the store holds (`du`) and making it smaller (`prune`, the size limit), least recently used first.
pub mod usage;
