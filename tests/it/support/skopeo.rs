//! skopeo as an independent reader of what we pushed.

use std::path::Path;
use std::process::Command;

fn run(args: Vec<String>) -> Result<Vec<u8>, String> {
    let output = Command::new("skopeo")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run skopeo (Debian package skopeo): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "skopeo {} failed: {}",
            args.first().cloned().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}

fn creds_args(flag: &str, creds: Option<(&str, &str)>) -> Vec<String> {
    creds
        .map(|(user, pass)| vec![flag.to_string(), format!("{user}:{pass}")])
        .unwrap_or_default()
}

/// `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them.
pub async fn inspect_raw(image: &str, creds: Option<(&str, &str)>) -> Result<Vec<u8>, String> {
    let mut args = vec![
        "inspect".into(),
        "--tls-verify=false".into(),
        "--raw".into(),
    ];
    args.extend(creds_args("--creds", creds));
    args.push(format!("docker://{image}"));
    tokio::task::spawn_blocking(move || run(args))
        .await
        .map_err(|e| e.to_string())?
}

/// `skopeo copy` into an OCI layout (reads and verifies every blob).
pub async fn copy_to_oci(
    image: &str,
    creds: Option<(&str, &str)>,
    dest: &Path,
) -> Result<(), String> {
    let mut args = vec!["copy".into(), "--src-tls-verify=false".into()];
    args.extend(creds_args("--src-creds", creds));
    args.push(format!("docker://{image}"));
    args.push(format!("oci:{}:copied", dest.display()));
    tokio::task::spawn_blocking(move || run(args))
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
}

/// The manifest's digest as skopeo computes it (`skopeo inspect`'s `Digest`) from the bytes
/// the registry serves: a digest obtained without dockless's own hashing.
pub async fn digest(image: &str, creds: Option<(&str, &str)>) -> Result<String, String> {
    let mut args = vec![
        "inspect".into(),
        "--tls-verify=false".into(),
        "--format".into(),
        "{{.Digest}}".into(),
    ];
    args.extend(creds_args("--creds", creds));
    args.push(format!("docker://{image}"));
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .map_err(|e| e.to_string())??;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}
