//! Following a build: poll its status with `logsOffset`, hand each new log entry to the caller
//! as it comes, drain the rest once the build ends.

use std::time::Duration;

use super::api::{ApiClient, ApiError, BuildState, LogEntry};

#[derive(Debug, thiserror::Error)]
pub enum BuildFailed {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("E2B's build {build_id} of template {template_id} failed{}: {message}", step.as_ref().map(|s| format!(" at step {s}")).unwrap_or_default())]
    Failed {
        template_id: String,
        build_id: String,
        message: String,
        step: Option<String>,
    },
}

/// One log line for the terminal: `[level] step: message`.
pub fn format_entry(entry: &LogEntry) -> String {
    let level = if entry.level.is_empty() {
        "info"
    } else {
        &entry.level
    };
    match &entry.step {
        Some(step) if !step.is_empty() => format!("[{level}] {step}: {}", entry.message),
        _ => format!("[{level}] {}", entry.message),
    }
}

/// Polls until the build is `ready` (Ok) or `error` (Err with E2B's reason), calling `on_log`
/// for every entry exactly once, in order.
pub(crate) async fn follow_build(
    api: &ApiClient,
    template_id: &str,
    build_id: &str,
    interval: Duration,
    on_log: &mut dyn FnMut(&LogEntry),
) -> Result<BuildState, BuildFailed> {
    follow_build_at(api, template_id, build_id, interval, None, on_log).await
}

/// [`follow_build`] with log entries at `level` and above only.
pub async fn follow_build_at(
    api: &ApiClient,
    template_id: &str,
    build_id: &str,
    interval: Duration,
    level: Option<&str>,
    on_log: &mut dyn FnMut(&LogEntry),
) -> Result<BuildState, BuildFailed> {
    let mut offset = 0usize;
    loop {
        let info = api
            .build_status_at(template_id, build_id, offset, level)
            .await?;
        offset += deliver(&info.log_entries, &info.logs, on_log);
        match info.status {
            BuildState::Ready | BuildState::Error => {
                // Drain: logs written after the final status are still owed to the user.
                loop {
                    let more = api
                        .build_status_at(template_id, build_id, offset, level)
                        .await?;
                    let count = deliver(&more.log_entries, &more.logs, on_log);
                    if count == 0 {
                        break;
                    }
                    offset += count;
                }
                if info.status == BuildState::Error {
                    let reason = info.reason.unwrap_or(super::api::BuildReason {
                        message: "E2B gave no reason".into(),
                        step: None,
                    });
                    return Err(BuildFailed::Failed {
                        template_id: template_id.to_owned(),
                        build_id: build_id.to_owned(),
                        message: reason.message,
                        step: reason.step,
                    });
                }
                return Ok(BuildState::Ready);
            }
            BuildState::Building | BuildState::Waiting => tokio::time::sleep(interval).await,
        }
    }
}

/// The build's status now, with every log entry so far (paging through them).
pub async fn current_status(
    api: &ApiClient,
    template_id: &str,
    build_id: &str,
    level: Option<&str>,
    on_log: &mut dyn FnMut(&LogEntry),
) -> Result<super::api::BuildInfo, ApiError> {
    let mut offset = 0usize;
    loop {
        let info = api
            .build_status_at(template_id, build_id, offset, level)
            .await?;
        let count = deliver(&info.log_entries, &info.logs, on_log);
        if count == 0 {
            return Ok(info);
        }
        offset += count;
    }
}

/// Structured entries when E2B sends them, else the plain `logs`; returns how many.
fn deliver(entries: &[LogEntry], logs: &[String], on_log: &mut dyn FnMut(&LogEntry)) -> usize {
    if !entries.is_empty() {
        entries.iter().for_each(&mut *on_log);
        return entries.len();
    }
    for line in logs {
        on_log(&LogEntry {
            timestamp: String::new(),
            message: line.clone(),
            level: "info".into(),
            step: None,
        });
    }
    logs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_show_level_and_step() {
        let entry = LogEntry {
            timestamp: "t".into(),
            message: "pulling".into(),
            level: "warn".into(),
            step: Some("base".into()),
        };
        assert_eq!(format_entry(&entry), "[warn] base: pulling");
        let plain = LogEntry {
            step: None,
            level: String::new(),
            ..entry
        };
        assert_eq!(format_entry(&plain), "[info] pulling");
    }
}
