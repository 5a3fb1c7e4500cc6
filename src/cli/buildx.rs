//! `docker buildx build`'s flags on every command that builds: those dockless carries out
//! ([`BuildxArgs`]) and those it cannot, each refused with why and what to use instead
//! ([`RefusedArgs`]): a script written for buildx either gets what it asked for or a one-line
//! error (exit 2), never a flag silently dropped. The README's table lists every flag.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::FlagError;

/// buildx's flags that change what a build does or what it leaves behind.
#[derive(Debug, Args)]
pub struct BuildxArgs {
    /// Run every step again instead of reusing the RUN cache, the layer cache or --cache-from
    /// (what they make replaces what the caches held).
    #[arg(long)]
    pub no_cache: bool,
    /// Run the steps of this stage (FROM … AS STAGE) again, reusing caches elsewhere
    /// (repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Resolve base images from their registry (dockless always does: a tag is looked up on
    /// every build, never taken from a local copy).
    #[arg(long)]
    pub pull: bool,
    /// A label of the image's config, KEY=VALUE (repeatable; over the Dockerfile's LABEL).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// An annotation of the image's manifest, [manifest:]KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "[manifest:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Write the image ID (the config's digest, sha256:…) to FILE, as docker does.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write buildx's result metadata (containerimage.digest, containerimage.config.digest,
    /// containerimage.descriptor, image.name) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// How progress is shown on stderr: auto (tty on a terminal, else plain), plain
    /// (BuildKit's `#N [k/n] STEP` lines, RUN output prefixed), tty (bars), quiet (nothing but
    /// a failed step's output), rawjson (one JSON object per event). Default:
    /// $BUILDKIT_PROGRESS, else auto.
    #[arg(long, value_enum, value_name = "MODE")]
    pub progress: Option<ProgressArg>,
    /// NAME=docker-image://REF or NAME=oci-layout://DIR[:TAG]: the image a `FROM NAME` or
    /// `--from=NAME` uses instead (repeatable).
    #[arg(long = "build-context", value_name = "NAME=docker-image://REF")]
    pub build_contexts: Vec<String>,
    /// buildah's --timestamp: the time of every entry, `created` and history, in seconds since
    /// 1970 (as SOURCE_DATE_EPOCH, which it overrides).
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<u64>,
    #[command(flatten)]
    pub refused: RefusedArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Plain,
    Tty,
    Quiet,
    Rawjson,
}

/// buildx's (and buildah's) flags with no meaning without a daemon, or not supported yet:
/// taken so that each gets its own message rather than clap's "unexpected argument".
#[derive(Debug, Args)]
pub struct RefusedArgs {
    #[arg(long, hide = true, value_name = "HOST:IP")]
    add_host: Vec<String>,
    #[arg(long, hide = true)]
    allow: Vec<String>,
    #[arg(long, hide = true)]
    attest: Vec<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    sbom: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    provenance: Option<String>,
    #[arg(long, hide = true)]
    builder: Option<String>,
    #[arg(long, hide = true)]
    call: Option<String>,
    #[arg(long, hide = true)]
    check: bool,
    #[arg(long, hide = true)]
    cgroup_parent: Option<String>,
    #[arg(long, hide = true)]
    detach: bool,
    #[arg(long, hide = true)]
    root: Option<String>,
    #[arg(long, hide = true)]
    server_config: Option<String>,
    #[arg(short = 'D', long, hide = true)]
    debug: bool,
    #[arg(long, hide = true)]
    load: bool,
    #[arg(long, hide = true)]
    shm_size: Option<String>,
    #[arg(long, hide = true)]
    ssh: Vec<String>,
    #[arg(long, hide = true)]
    ulimit: Vec<String>,
    #[arg(long, hide = true)]
    squash: bool,
    #[arg(long, hide = true)]
    creds: Option<String>,
    #[arg(long, hide = true)]
    tls_verify: Option<String>,
    #[arg(long, hide = true)]
    sign_by: Option<String>,
}

impl RefusedArgs {
    /// The first refused flag given, as a usage error naming it, why, and what to use.
    pub fn check(&self) -> Result<(), FlagError> {
        let attestation = |value: &Option<String>| {
            value
                .as_deref()
                .is_some_and(|v| !v.eq_ignore_ascii_case("false"))
        };
        let refusals: [(bool, &str, &str); 21] = [
            (
                !self.add_host.is_empty(),
                "--add-host",
                "dockless cannot add entries to the /etc/hosts of RUN steps; add them in the RUN command itself (echo \"IP HOST\" >> /etc/hosts)",
            ),
            (
                !self.allow.is_empty(),
                "--allow",
                "dockless grants no extra entitlements (security.insecure, device); RUN --network=host needs none: it is the default",
            ),
            (
                !self.attest.is_empty(),
                "--attest",
                "dockless makes no attestations; generate an SBOM or provenance separately (e.g. syft, cosign attest)",
            ),
            (
                attestation(&self.sbom),
                "--sbom",
                "dockless makes no SBOM attestation; generate one separately (e.g. syft) and attach it with cosign or oras",
            ),
            (
                attestation(&self.provenance),
                "--provenance",
                "dockless makes no provenance attestation (--provenance=false is accepted); attest with cosign",
            ),
            (
                self.builder.is_some(),
                "--builder",
                "dockless has no builder instances: it builds in this process",
            ),
            (
                self.call.is_some(),
                "--call",
                "dockless does not evaluate build checks, outlines or targets; lint the Dockerfile with hadolint",
            ),
            (
                self.check,
                "--check",
                "dockless does not evaluate build checks; lint the Dockerfile with hadolint",
            ),
            (
                self.cgroup_parent.is_some(),
                "--cgroup-parent",
                "RUN steps are not put in a cgroup of dockless's choosing; start dockless itself in the cgroup (systemd-run --scope -p …)",
            ),
            (
                self.detach,
                "--detach",
                "dockless has no build server to detach from",
            ),
            (
                self.root.is_some(),
                "--root",
                "dockless has no build server; its store is DOCKLESS_CACHE_DIR",
            ),
            (
                self.server_config.is_some(),
                "--server-config",
                "dockless has no build server to configure",
            ),
            (self.debug, "--debug", "use -v, -vv or -vvv for more detail"),
            (
                self.load,
                "--load",
                "there is no Docker daemon to load into; write --output type=oci,dest=image.tar and run `docker load -i image.tar`",
            ),
            (
                self.shm_size.is_some(),
                "--shm-size",
                "the size of RUN's /dev/shm cannot be set",
            ),
            (
                !self.ssh.is_empty(),
                "--ssh",
                "SSH agent forwarding (RUN --mount=type=ssh) is not supported; pass a key with --secret id=NAME,src=FILE and RUN --mount=type=secret",
            ),
            (
                !self.ulimit.is_empty(),
                "--ulimit",
                "RUN steps have dockless's own limits; set them with `ulimit` before running dockless",
            ),
            (
                self.squash,
                "--squash",
                "layers are not squashed: each step keeps its layer (and its cache)",
            ),
            (
                self.creds.is_some(),
                "--creds",
                "pass the user with --username and the password on stdin with --password-stdin",
            ),
            (
                self.tls_verify.is_some(),
                "--tls-verify",
                "name a registry reached over plain HTTP with --insecure-registry HOST[:PORT]",
            ),
            (
                self.sign_by.is_some(),
                "--sign-by",
                "dockless does not sign images; sign the pushed digest with cosign",
            ),
        ];
        match refusals.into_iter().find(|(given, _, _)| *given) {
            Some((_, flag, why)) => Err(FlagError(format!("{flag} is not supported: {why}"))),
            None => Ok(()),
        }
    }
}

/// Where `build --output` (buildx's `-o`) writes the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// An OCI image layout directory (a plain path, or `type=oci,dest=DIR,tar=false`).
    Layout(PathBuf),
    /// An OCI image layout as a tar archive (`type=oci,dest=FILE`).
    LayoutTar(PathBuf),
    /// Pushed to these names (`type=registry`, `type=image,push=true`): as `--push`.
    Registry(Vec<String>),
    /// Kept in the store only (`type=cacheonly`).
    Nowhere,
}

/// Parses `--output`: a directory (dockless's own form), or buildx's `type=…,key=value…`.
pub fn parse_output(text: &str) -> Result<OutputTarget, FlagError> {
    let refuse = |why: &str| Err(FlagError(format!("--output {text}: {why}")));
    if text == "-" {
        return refuse(
            "an image cannot be written to standard output; write type=oci,dest=FILE.tar",
        );
    }
    if !text.contains('=') {
        return Ok(OutputTarget::Layout(PathBuf::from(text)));
    }
    let fields = key_values(text).map_err(|why| FlagError(format!("--output {text}: {why}")))?;
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let kind = get("type").unwrap_or(if get("dest").is_some() { "local" } else { "" });
    let known: &[&str] = match kind {
        "oci" => &["type", "dest", "tar", "name"],
        "registry" => &["type", "name", "push"],
        "image" => &["type", "name", "push"],
        _ => &["type"],
    };
    let unknown = fields.iter().find(|(k, _)| !known.contains(&k.as_str()));
    if let Some((key, _)) = unknown
        && matches!(kind, "oci" | "registry" | "image")
    {
        return refuse(&format!(
            "`{key}` is not supported for type={kind}; compression and media types come from --compression, --compression-level and --format"
        ));
    }
    let names = || {
        get("name")
            .map(|n| n.split(',').map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    match kind {
        "oci" => {
            let Some(dest) = get("dest") else {
                return refuse("type=oci needs dest=FILE.tar (or dest=DIR,tar=false)");
            };
            if !names().is_empty() {
                return refuse(
                    "name= is not supported here; name the image in the layout with -t/--tag",
                );
            }
            match get("tar") {
                Some("false") => Ok(OutputTarget::Layout(PathBuf::from(dest))),
                None | Some("true") => Ok(OutputTarget::LayoutTar(PathBuf::from(dest))),
                Some(other) => refuse(&format!("tar={other}: expected true or false")),
            }
        }
        "registry" => Ok(OutputTarget::Registry(names())),
        "image" if get("push") == Some("true") => Ok(OutputTarget::Registry(names())),
        "image" => refuse(
            "there is no image store to keep it in without pushing; add push=true, or write type=oci,dest=DIR,tar=false",
        ),
        "cacheonly" => Ok(OutputTarget::Nowhere),
        "docker" => refuse(
            "there is no Docker daemon; write type=oci,dest=image.tar and run `docker load -i image.tar`",
        ),
        "local" | "tar" => refuse(
            "exporting the file system itself is not supported; write type=oci,dest=DIR,tar=false and unpack it (umoci unpack)",
        ),
        "" => refuse("expected type=oci|registry|image|cacheonly,… or a directory"),
        other => refuse(&format!(
            "type={other} is not supported; use type=oci, type=registry or type=image,push=true"
        )),
    }
}

/// `--build-context NAME=VALUE` → (NAME, the image in dockless's words: a registry reference,
/// or `oci:DIR[:TAG]`).
pub fn parse_named_context(text: &str) -> Result<(String, String), FlagError> {
    let refuse = |why: &str| Err(FlagError(format!("--build-context {text}: {why}")));
    let Some((name, value)) = text.split_once('=').filter(|(n, _)| !n.trim().is_empty()) else {
        return refuse("expected NAME=docker-image://REF or NAME=oci-layout://DIR[:TAG]");
    };
    let image = if let Some(reference) = value.strip_prefix("docker-image://") {
        reference.to_owned()
    } else if let Some(layout) = value.strip_prefix("oci-layout://") {
        if layout.contains('@') {
            return refuse(
                "oci-layout://DIR@DIGEST is not supported; name the image by its tag: oci-layout://DIR:TAG",
            );
        }
        format!("oci:{layout}")
    } else if value.contains("://") || value.starts_with("target:") || value.starts_with("input:") {
        return refuse("only docker-image:// and oci-layout:// contexts are supported");
    } else {
        return refuse(
            "a directory as a second context is not supported; copy its files into the build context, or build it into an image and name that with docker-image:// or oci-layout://",
        );
    };
    Ok((name.trim().to_owned(), image))
}

/// `a=b,c=d` → [(a, b), (c, d)]; a quoted value (buildx's CSV) keeps its commas.
pub fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut parts = Vec::new();
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected KEY=VALUE"))?;
        fields.push((key.trim().to_lowercase(), value.to_owned()));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_in_buildx_forms_map_or_are_refused() {
        use OutputTarget::*;
        assert_eq!(parse_output("out").unwrap(), Layout("out".into()));
        assert_eq!(
            parse_output("type=oci,dest=img.tar").unwrap(),
            LayoutTar("img.tar".into())
        );
        assert_eq!(
            parse_output("type=oci,dest=dir,tar=false").unwrap(),
            Layout("dir".into())
        );
        assert_eq!(
            parse_output("type=registry,\"name=a/b:1,a/b:2\"").unwrap(),
            Registry(vec!["a/b:1".into(), "a/b:2".into()])
        );
        assert_eq!(
            parse_output("type=image,name=r/x:1,push=true").unwrap(),
            Registry(vec!["r/x:1".into()])
        );
        for refused in [
            "type=docker",
            "type=local,dest=x",
            "dest=x",
            "type=image,name=x",
            "type=oci",
            "-",
            "type=oci,dest=x,compression=zstd",
        ] {
            assert!(parse_output(refused).is_err(), "{refused}");
        }
    }
}
