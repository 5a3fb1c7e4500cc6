//! Docker credential helpers: `docker-credential-<name> get`, run without our other secrets.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{
    Credential, CredentialEnv, CredentialError, CredentialSource, ResolvedCredential,
    SECRETS_NOT_FOR_HELPERS,
};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY};

enum HelperWait {
    TimedOut,
    Io(std::io::Error),
}

/// The child's output once it exits, or `TimedOut` (the child killed and reaped) after
/// `limit`. Its pipes are drained by threads meanwhile, so a chatty helper cannot block.
fn wait_at_most(mut child: Child, limit: Duration) -> Result<Output, HelperWait> {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(HelperWait::Io)? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // The readers end when the pipes close; one held open by a grandchild is left.
            return Err(HelperWait::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server on stdin, as Docker does.
pub(super) fn run_helper(
    helper: &str,
    registry: &str,
    config: &Path,
    env: &CredentialEnv,
) -> Result<Option<ResolvedCredential>, CredentialError> {
    let server = if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY
    } else {
        registry
    };
    let fail = |message: String| CredentialError::Helper {
        helper: helper.to_string(),
        server: server.to_string(),
        message,
    };
    if !helper
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(fail(format!(
            "the helper name {helper:?} in {} is not a plain name",
            config.display()
        )));
    }
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = &env.helper_path {
        command.env("PATH", path);
    }
    // A helper needs its own settings (cloud credentials, HOME, PATH) but never the secrets
    // dockless holds for other services.
    for name in SECRETS_NOT_FOR_HELPERS {
        command.env_remove(name);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "{program} (named in {}) is not installed; trying the next credential source",
                config.display()
            );
            return Ok(None);
        }
        Err(e) => return Err(fail(format!("cannot start {program}: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(server.as_bytes())
    {
        // A helper may answer without reading its input; its answer decides, not this.
        tracing::debug!("{program} did not read the server name: {e}");
    }
    // A helper that does not answer within the HTTP idle limit is stuck (on a prompt, a dead
    // agent, the network): it is killed rather than left to hang the job.
    let limit = env
        .helper_timeout
        .unwrap_or(crate::http::HttpPolicy::default().idle_timeout);
    let output = wait_at_most(child, limit).map_err(|e| match e {
        HelperWait::TimedOut => fail(format!(
            "{program} did not answer within {limit:?} and was stopped; check that it works on its own (`echo {server} | {program} get`), or raise the limit with --http-timeout or DOCKLESS_HTTP_TIMEOUT"
        )),
        HelperWait::Io(e) => fail(format!("{program} did not finish: {e}")),
    })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_ascii_lowercase().contains("credentials not found") {
            tracing::debug!("{program} has no credentials for {server}");
            return Ok(None);
        }
        let said: String = said.trim().chars().take(200).collect();
        return Err(fail(format!("it exited with {}: {said}", output.status)));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|_| {
        fail(format!(
            "{program} printed something that is not its JSON answer"
        ))
    })?;
    let source = CredentialSource::CredentialHelper {
        helper: helper.to_string(),
        config: config.to_path_buf(),
    };
    if answer.secret.is_empty() {
        return Ok(None);
    }
    let credential = if answer.username == "<token>" {
        Credential::IdentityToken {
            username: None,
            token: answer.secret.into(),
        }
    } else {
        Credential::Basic {
            username: answer.username,
            password: answer.secret.into(),
        }
    };
    Ok(Some(ResolvedCredential { credential, source }))
}
