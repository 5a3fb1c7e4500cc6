//! The command tree (raw flags only). `settings` turns these into plain library options.
//!
//! Flags shared by several commands live in one struct each, flattened where needed:
//! [`BuildInputArgs`] (what a build reads: every command that builds), [`ImageArgs`] (how
//! `build` and `push` make the image), [`RegistryAccessArgs`] (reaching registries) and
//! [`UploadArgs`] (pushing).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "dockless",
    // The crate's version and, when built from a git checkout, its commit (build.rs).
    version = env!("DOCKLESS_VERSION"),
    about = "Build OCI images from a template context and push them to a registry: no Docker daemon, no root.",
    long_about = None,
    after_help = "Examples (in a checkout of dockless):\n  dockless build fixtures/hello --output ./image --tag demo\n  dockless build fixtures/hello -f fixtures/hello/Dockerfile --build-arg GREETING=hi --json\n  dockless push fixtures/hello --to ghcr.io/acme/hello:v1\n\nEnvironment: DOCKLESS_CACHE_DIR (the local store), SOURCE_DATE_EPOCH (timestamps),\nDOCKLESS_HTTP_TIMEOUT, DOCKLESS_HTTP_CONNECT_TIMEOUT, HTTPS_PROXY, HTTP_PROXY, NO_PROXY, RUST_LOG, NO_COLOR."
)]
pub struct Cli {
    /// Print only errors (and the result).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a template context into the local store (and optionally an OCI layout).
    #[command(
        after_help = "Examples:\n  dockless build            (the template context in the current directory)\n  dockless build fixtures/hello --output ./image --tag v1\n  dockless build fixtures/hello --build-arg GREETING=hi --format docker --json"
    )]
    Build(BuildArgs),
    /// Build a context and push the image to a registry, or push an existing OCI layout.
    #[command(
        after_help = "Examples:\n  dockless push . --to ghcr.io/acme/sandbox:v1\n  dockless push fixtures/hello --to 127.0.0.1:5000/demo/hello:v1 --json\n  dockless push --from oci:./image:v1 --to 127.0.0.1:5000/demo/hello:v1\n  echo \"$TOKEN\" | dockless push . --to registry.example.com/app:1 --username ci --password-stdin\n\nCredentials, first match wins: --username with --password-stdin; REGISTRY_AUTH_FILE;\n$DOCKER_CONFIG/config.json or ~/.docker/config.json (auths, credHelpers, credsStore);\n${XDG_RUNTIME_DIR}/containers/auth.json; anonymous."
    )]
    Push(PushArgs),
    /// E2B credentials: which one dockless would use, and what it can do.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// E2B sandbox templates, built without Docker.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Show what the local store holds, by kind (as `docker buildx du` shows the build cache).
    #[command(after_help = "Examples:\n  dockless du\n  dockless du --json")]
    Du(DuArgs),
    /// Remove from the local store (as `docker buildx prune` removes build cache).
    #[command(
        after_help = "Examples:\n  dockless prune\n  dockless prune --all\n  dockless prune --all --keep-storage 10GB\n  dockless prune --all --filter until=72h\n\nWithout --all: unpacked base trees and layer listings (made again from the store alone).\nWith --all: also blobs, the RUN and layer caches, cache mounts and push locations.\nWhat dead processes left in tmp/ always goes. A running build is waited for, never pruned under.\nAfter each build, DOCKLESS_STORE_LIMIT=SIZE keeps the store within SIZE (least recently used first)."
    )]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct DuArgs {
    /// Print the sizes as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove what costs a download, a rerun or a recompression to make again.
    #[arg(short, long)]
    pub all: bool,
    /// Keep the most recently used items while the store stays within SIZE (e.g. 10GB).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// until=DURATION: remove only what was not used for DURATION (e.g. 24h, 2h30m).
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation (dockless never prompts; accepted for buildx's scripts).
    #[arg(short, long)]
    pub force: bool,
    /// Print what was removed as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Say which E2B credential was found, where, and which flows it can drive (never the secret).
    #[command(
        after_help = "Credentials, first match wins: --api-key-stdin / --access-token-stdin; E2B_API_KEY;\nE2B_ACCESS_TOKEN; ~/.e2b/config.json (project/team API key, then the saved access token)."
    )]
    Status(AuthStatusArgs),
}

#[derive(Debug, Args)]
pub struct AuthStatusArgs {
    #[command(flatten)]
    pub credential: E2bCredentialArgs,
    /// Ask E2B whether it accepts the credential (one `GET /v2/templates`); without it nothing
    /// is sent and the credential is reported unchecked.
    #[arg(long)]
    pub check: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which E2B credential to use.
#[derive(Debug, Args)]
pub struct E2bCredentialArgs {
    /// Read an E2B API key from standard input.
    #[arg(long, conflicts_with = "access_token_stdin")]
    pub api_key_stdin: bool,
    /// Read an E2B access token (deprecated by E2B) from standard input.
    #[arg(long)]
    pub access_token_stdin: bool,
    /// Look for this kind of credential only.
    #[arg(long, value_enum, value_name = "KIND")]
    pub credential: Option<CredentialKindArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistryAuthArg {
    Auto,
    Registry,
    Aws,
    Gcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CredentialKindArg {
    ApiKey,
    AccessToken,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Build a template context's image and turn it into an E2B template.
    #[command(
        after_help = "Examples:\n  dockless template build . --image ghcr.io/acme/sandbox:v1            (registry flow, API key)\n  dockless template build . --image 127.0.0.1:5000/sb:1 --share-registry-credentials --tag v1\n  E2B_ACCESS_TOKEN=… E2B_DOMAIN=e2b.example.org dockless template build ./template   (gateway flow, self-hosted)\n\nEnvironment: E2B_API_KEY, E2B_ACCESS_TOKEN, E2B_DOMAIN, E2B_API_URL, E2B_DEBUG, E2B_REGISTRY_URL,\nE2B_IMAGE_URI_MASK, E2B_TEAM_ID."
    )]
    Build(Box<TemplateBuildArgs>),
    /// A build's status and logs (following it with --follow).
    #[command(
        after_help = "Examples:\n  dockless template status 1b2c3d4e-… --follow\n  dockless template status 1b2c3d4e-… --template tpl123 --level warn"
    )]
    Status(TemplateStatusArgs),
    /// The team's templates: name, ID, last build, status.
    List(TemplateListArgs),
    /// Delete a template, by name or ID (asks first on a terminal; --yes in CI).
    Delete(TemplateDeleteArgs),
}

#[derive(Debug, Args)]
pub struct TemplateStatusArgs {
    /// The build ID (as `template build` prints it).
    pub build_id: String,
    /// The template ID (default: template_id in ./e2b.toml).
    #[arg(long, value_name = "ID")]
    pub template: Option<String>,
    /// Keep following the build until it is ready or failed.
    #[arg(long)]
    pub follow: bool,
    /// Show log entries at this level and above.
    #[arg(long, value_enum, default_value_t = LogLevelArg::Info)]
    pub level: LogLevelArg,
    #[command(flatten)]
    pub credential: E2bCredentialArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevelArg {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Args)]
pub struct TemplateListArgs {
    /// Print one JSON array on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub credential: E2bCredentialArgs,
}

#[derive(Debug, Args)]
pub struct TemplateDeleteArgs {
    /// The template's name or ID.
    pub template: String,
    /// Do not ask (needed when standard input is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
    #[command(flatten)]
    pub credential: E2bCredentialArgs,
}

#[derive(Debug, Args)]
pub struct TemplateBuildArgs {
    /// The template context directory (holds e2b.toml, e2b.Dockerfile or Dockerfile).
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Registry flow: push the image here (REGISTRY/REPO:TAG), then have E2B build from it.
    /// Without it: the gateway flow (legacy and self-hosted E2B).
    #[arg(long, value_name = "REGISTRY/REPO:TAG")]
    pub image: Option<String>,
    /// Hand E2B the credentials dockless uses for --image's registry, so E2B can pull a private
    /// image (the same as --registry-auth registry).
    #[arg(long, requires = "image", conflicts_with = "registry_auth")]
    pub share_registry_credentials: bool,
    /// Hand E2B pull credentials for --image's registry, of this kind: registry (the username
    /// and password dockless pushes with), aws (ECR: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION), gcp (Artifact Registry/GCR: the key file GOOGLE_APPLICATION_CREDENTIALS
    /// names); without a value, the kind the registry's host calls for.
    #[arg(long, value_enum, value_name = "KIND", requires = "image", num_args = 0..=1, default_missing_value = "auto")]
    pub registry_auth: Option<RegistryAuthArg>,
    /// Use E2B's legacy registry gateway even where dockless would refuse it (E2B's cloud
    /// removed it in 2026-08; self-hosted E2B may still run it).
    #[arg(long, conflicts_with = "image")]
    pub gateway: bool,
    /// A tag for this build of the template (repeatable); E2B tags it `default` without one.
    #[arg(long = "tag", value_name = "TAG", requires = "image")]
    pub tags: Vec<String>,
    /// Have E2B rebuild every step instead of reusing its cache (`force`).
    #[arg(long, requires = "image")]
    pub skip_cache: bool,
    /// Print the template and build IDs once E2B has started the build, without following it.
    #[arg(long, requires = "image")]
    pub no_wait: bool,
    /// The template name (default: e2b.toml's template_name).
    #[arg(long)]
    pub name: Option<String>,
    /// CPUs of the sandbox (1 or an even number, at most 32).
    #[arg(long, value_name = "COUNT")]
    pub cpu: Option<u32>,
    /// Memory of the sandbox in MiB (even, at least 128).
    #[arg(long, value_name = "MB")]
    pub memory_mb: Option<u32>,
    /// Command run when a sandbox starts (default: e2b.toml's start_cmd, else the image's
    /// CMD/ENTRYPOINT when the Dockerfile sets one, with ready command `sleep 20`).
    #[arg(long, value_name = "CMD")]
    pub start_cmd: Option<String>,
    /// Command that says when the started sandbox is ready.
    #[arg(long, value_name = "CMD")]
    pub ready_cmd: Option<String>,
    /// The Dockerfile (default: e2b.toml's `dockerfile`, else e2b.Dockerfile, else Dockerfile).
    #[arg(short = 'f', long = "file", alias = "dockerfile", value_name = "PATH")]
    pub dockerfile: Option<PathBuf>,
    /// The platform of the template's image, os/arch[/variant], for a self-hosted E2B whose
    /// nodes run it (linux/arm64); E2B's cloud runs linux/amd64 only [default: linux/amd64].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Build the stage of this name (FROM … AS NAME) and stop there: the sandbox's user,
    /// directory and start command are that stage's.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    #[command(flatten)]
    pub inputs: BuildInputArgs,
    #[command(flatten)]
    pub credential: E2bCredentialArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON object (templateID, buildID, image, digest, status) on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The template context directory (default: the current directory; not with --from).
    #[arg(conflicts_with = "from")]
    pub context: Option<PathBuf>,
    /// Where to push: REGISTRY/REPOSITORY[:TAG] (repeatable: each gets the image, its blobs
    /// uploaded once).
    #[arg(
        long,
        short = 't',
        visible_alias = "tag",
        value_name = "REF",
        required = true
    )]
    pub to: Vec<String>,
    /// Push an existing OCI image layout instead of building: oci:DIR[:TAG].
    #[arg(long, value_name = "oci:DIR[:TAG]")]
    pub from: Option<String>,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON object describing the push on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How registries are reached and pushed to (the commands that push).
#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub access: RegistryAccessArgs,
    #[command(flatten)]
    pub upload: UploadArgs,
}

/// How registries are reached (base images too).
#[derive(Debug, Args)]
pub struct RegistryAccessArgs {
    /// Reach this registry (HOST[:PORT]) over plain HTTP; loopback addresses always are.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

/// How the target registry is pushed to.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// User name for the target registry (the password comes from --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the target registry's password or token from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Upload blobs in chunks of this many bytes (default: each blob in one request).
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
    /// Blobs uploaded at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The template context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Also write the image: DIR (an OCI image layout), or buildx's type=oci,dest=FILE.tar,
    /// type=oci,dest=DIR,tar=false, type=registry,name=REF (as --push), type=cacheonly.
    #[arg(short = 'o', long, value_name = "DIR|type=…")]
    pub output: Option<String>,
    /// A name of the image (repeatable): its name in the --output layout (the tag of a
    /// REGISTRY/REPO:TAG name; default latest), and where --push pushes it.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Push the image to each --tag (REGISTRY/REPOSITORY[:TAG]), as `dockless push` does:
    /// blobs uploaded once, each tag then pointing at the same manifest.
    #[arg(long)]
    pub push: bool,
    /// Print one JSON object describing the image on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryAccessArgs,
    #[command(flatten)]
    pub upload: UploadArgs,
}

/// What a build reads besides the context (shared by every command that builds): a flag
/// added here reaches `build`, `push` and `template build` alike.
#[derive(Debug, Args)]
pub struct BuildInputArgs {
    /// A build argument, KEY=VALUE (repeatable); KEY alone takes the value from the environment.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// A secret for RUN --mount=type=secret (repeatable): id=NAME,src=FILE or id=NAME,env=VAR.
    /// It is visible only to the RUN steps that mount it, never in a layer, the image or a log.
    #[arg(long = "secret", value_name = "id=NAME,src=FILE")]
    pub secrets: Vec<String>,
    /// A shared cache to reuse layers and RUN results from (repeatable, first match wins):
    /// REGISTRY/REPOSITORY[:TAG] that a `--cache-to` wrote, on any machine. Unreadable: a
    /// warning. Default: $DOCKLESS_CACHE_REPO.
    #[arg(long = "cache-from", value_name = "REF")]
    pub cache_from: Vec<String>,
    /// Export the layers this build made or reused, keyed by their inputs, to
    /// REGISTRY/REPOSITORY[:TAG] (repeatable), even when the push fails. Default:
    /// $DOCKLESS_CACHE_REPO. Whoever can push there can change later builds that read it.
    #[arg(long = "cache-to", value_name = "REF")]
    pub cache_to: Vec<String>,
    #[command(flatten)]
    pub buildx: super::buildx::BuildxArgs,
}

/// How `build` and `push` make the image.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The Dockerfile (default: e2b.toml's `dockerfile`, else e2b.Dockerfile, else Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "DOCKERFILE")]
    pub dockerfile: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: BuildInputArgs,
    /// Platform to build for, os/arch[/variant] (default: the base image's, or linux/amd64); a
    /// comma-separated list builds each and makes one index (a manifest list with --format docker).
    #[arg(long)]
    pub platform: Option<String>,
    /// Media types of the image [default: oci].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Layer compression [default: gzip].
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
    /// Compression level (gzip 1-9, default 1; zstd 1-19, default 3).
    #[arg(long)]
    pub compression_level: Option<i32>,
    /// How RUN commands are isolated: auto (= userns: a user namespace, mount, PID and
    /// seccomp fences; as root, the sandbox's root is a range of host IDs that own nothing), or
    /// root (needs root): no user namespace, so the sandbox's root is the host's root with
    /// Docker's default capabilities; a kernel bug reachable from them reaches the host.
    /// [default: auto]
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationArg>,
    /// The network of RUN steps: host (the default; buildx's `default` is the same) or none
    /// (a network namespace with loopback only; RUN --network=host is then refused).
    #[arg(long, value_enum)]
    pub network: Option<NetworkArg>,
    /// Build the stage of this name (FROM … AS NAME) and stop there.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IsolationArg {
    Auto,
    Userns,
    Root,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NetworkArg {
    Host,
    Default,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Oci,
    Docker,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

/// Limits of every HTTP request (registries, E2B's API, ADD <url>); global, so every
/// command takes them. No whole-request limit: an upload may take long while bytes move.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Fail a request when no byte moves for this long (no answer, an upload or download
    /// stalled), after one retry; e.g. 20s, 2m [default: 20s, or $DOCKLESS_HTTP_TIMEOUT].
    #[arg(long, global = true, value_name = "DURATION", value_parser = dockless_registry::http::parse_duration)]
    pub http_timeout: Option<std::time::Duration>,
    /// Fail a connection attempt that takes longer than this [default: 15s, or
    /// $DOCKLESS_HTTP_CONNECT_TIMEOUT].
    #[arg(long, global = true, value_name = "DURATION", value_parser = dockless_registry::http::parse_duration)]
    pub http_connect_timeout: Option<std::time::Duration>,
}
