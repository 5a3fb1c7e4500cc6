//! The command tree (raw flags only). `settings` turns these into plain library options.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "dockless",
    version,
    about = "Build OCI images from a template context and push them to a registry: no Docker daemon, no root.",
    after_help = "Examples:\n  dockless build fixtures/example --output /tmp/image --tag demo\n  dockless build . -f e2b.Dockerfile --build-arg VERSION=1.2 --json\n\nEnvironment: DOCKLESS_CACHE_DIR (the local store), SOURCE_DATE_EPOCH (timestamps), RUST_LOG, NO_COLOR."
)]
pub struct Cli {
    /// Print only errors (and the result).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a template context into the local store (and optionally an OCI layout).
    #[command(
        after_help = "Examples:\n  dockless build\n  dockless build ./template --output ./image --tag v1\n  dockless build . --build-arg NODE_VERSION=20 --format docker --json"
    )]
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The template context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Also write the image as an OCI image layout in this directory.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The name of the image in the output layout's index.
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// Print one JSON object describing the image on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How the image is built (shared by every command that builds).
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The Dockerfile (default: e2b.toml's `dockerfile`, else e2b.Dockerfile, else Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "DOCKERFILE")]
    pub dockerfile: Option<PathBuf>,
    /// A build argument, KEY=VALUE (repeatable); KEY alone takes the value from the environment.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Platform to build for, os/arch[/variant] (default: the base image's, or linux/amd64).
    #[arg(long)]
    pub platform: Option<String>,
    /// Media types of the image.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Compression level (gzip 1-9, default 1; zstd 1-19, default 3).
    #[arg(long)]
    pub compression_level: Option<i32>,
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
