//! `HEALTHCHECK NONE` and `HEALTHCHECK [flags] CMD command`.

use std::time::Duration;

use super::Healthcheck;
use super::args::{JsonArgs, json_array};
use super::flags::{FlagKind, Flags, check_flags};
use dockless_oci::duration::parse_go_duration;

const FLAGS: &[(&str, FlagKind)] = &[
    ("interval", FlagKind::Value),
    ("timeout", FlagKind::Value),
    ("start-period", FlagKind::Value),
    ("start-interval", FlagKind::Value),
    ("retries", FlagKind::Value),
];

/// BuildKit rejects non-zero durations below one millisecond.
const MINIMUM_DURATION: Duration = Duration::from_millis(1);

pub(crate) fn parse_healthcheck(args: &str, flags: &[String]) -> Result<Healthcheck, String> {
    let (kind, rest) = match args.find(char::is_whitespace) {
        Some(at) => {
            let (kind, rest) = args.split_at(at);
            (kind, rest.trim_start())
        }
        None => (args, ""),
    };
    if kind.is_empty() {
        return Err(
            "HEALTHCHECK requires an argument: HEALTHCHECK NONE or HEALTHCHECK [options] CMD command"
                .to_string(),
        );
    }
    match kind.to_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments".to_string());
            }
            if !flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no flags".to_string());
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let flags = check_flags("HEALTHCHECK", flags, FLAGS)?;
            let test = match json_array(rest)? {
                JsonArgs::Strings(args) if args.is_empty() => Vec::new(),
                JsonArgs::Strings(args) => std::iter::once("CMD".to_string()).chain(args).collect(),
                JsonArgs::Malformed(_) | JsonArgs::NotJson if rest.is_empty() => Vec::new(),
                JsonArgs::Malformed(_) | JsonArgs::NotJson => {
                    vec!["CMD-SHELL".to_string(), rest.to_string()]
                }
            };
            if test.is_empty() {
                return Err(
                    "missing command after HEALTHCHECK CMD: expected e.g. HEALTHCHECK CMD curl -f http://localhost/"
                        .to_string(),
                );
            }
            Ok(Healthcheck::Check {
                test,
                interval: duration_flag(&flags, "interval")?,
                timeout: duration_flag(&flags, "timeout")?,
                start_period: duration_flag(&flags, "start-period")?,
                start_interval: duration_flag(&flags, "start-interval")?,
                retries: retries_flag(&flags)?,
            })
        }
        _ => Err(format!(
            "unknown type {kind:?} in HEALTHCHECK: expected CMD or NONE"
        )),
    }
}

/// A duration flag; zero counts as not given, as in BuildKit.
fn duration_flag(flags: &Flags, name: &str) -> Result<Option<Duration>, String> {
    let Some(text) = flags.value(name) else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = parse_go_duration(&text).map_err(|error| format!("--{name}: {error}"))?;
    if parsed.nanos == 0 {
        return Ok(None);
    }
    let duration = Duration::from_nanos(parsed.nanos);
    if parsed.negative || duration < MINIMUM_DURATION {
        return Err(format!(
            "--{name}={text} is too short: it cannot be less than 1ms"
        ));
    }
    Ok(Some(duration))
}

fn retries_flag(flags: &Flags) -> Result<Option<u32>, String> {
    let Some(text) = flags.value("retries") else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    let retries: i32 = text.parse().map_err(|_| {
        format!("--retries={text} is not a number: expected a whole number such as 3")
    })?;
    let retries = u32::try_from(retries)
        .map_err(|_| format!("--retries cannot be negative (got {retries})"))?;
    Ok((retries != 0).then_some(retries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &str, flags: &[&str]) -> Result<Healthcheck, String> {
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        parse_healthcheck(args, &flags)
    }

    fn test_of(healthcheck: Healthcheck) -> Vec<String> {
        match healthcheck {
            Healthcheck::Check { test, .. } => test,
            Healthcheck::None => panic!("expected a check"),
        }
    }

    #[test]
    fn none() {
        assert_eq!(check("NONE", &[]), Ok(Healthcheck::None));
        assert_eq!(check("none", &[]), Ok(Healthcheck::None));
        assert!(check("NONE x", &[]).unwrap_err().contains("no arguments"));
        assert!(
            check("NONE", &["--interval=5s"])
                .unwrap_err()
                .contains("no flags")
        );
    }

    #[test]
    fn shell_form_becomes_cmd_shell() {
        assert_eq!(
            test_of(check("CMD curl -f http://x/ || exit 1", &[]).unwrap()),
            vec!["CMD-SHELL", "curl -f http://x/ || exit 1"]
        );
    }

    #[test]
    fn exec_form_becomes_cmd() {
        assert_eq!(
            test_of(check(r#"cmd ["curl", "-f", "http://x/"]"#, &[]).unwrap()),
            vec!["CMD", "curl", "-f", "http://x/"]
        );
    }

    #[test]
    fn malformed_json_is_shell_form() {
        assert_eq!(
            test_of(check("CMD [curl]", &[]).unwrap()),
            vec!["CMD-SHELL", "[curl]"]
        );
    }

    #[test]
    fn missing_command() {
        assert!(check("CMD", &[]).unwrap_err().contains("missing command"));
        assert!(
            check("CMD []", &[])
                .unwrap_err()
                .contains("missing command")
        );
        assert!(check("", &[]).unwrap_err().contains("requires an argument"));
    }

    #[test]
    fn unknown_type() {
        let error = check("RUN x", &[]).unwrap_err();
        assert!(error.contains("\"RUN\""), "{error}");
    }

    #[test]
    fn all_flags() {
        let healthcheck = check(
            "CMD true",
            &[
                "--interval=30s",
                "--timeout=1m30s",
                "--start-period=500ms",
                "--start-interval=2s",
                "--retries=3",
            ],
        )
        .unwrap();
        assert_eq!(
            healthcheck,
            Healthcheck::Check {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(90)),
                start_period: Some(Duration::from_millis(500)),
                start_interval: Some(Duration::from_secs(2)),
                retries: Some(3),
            }
        );
    }

    #[test]
    fn zero_means_not_set() {
        let healthcheck = check("CMD true", &["--interval=0s", "--retries=0"]).unwrap();
        let Healthcheck::Check {
            interval, retries, ..
        } = healthcheck
        else {
            panic!("expected a check");
        };
        assert_eq!((interval, retries), (None, None));
    }

    #[test]
    fn bad_flag_values() {
        assert!(
            check("CMD true", &["--interval=30"])
                .unwrap_err()
                .contains("--interval")
        );
        assert!(
            check("CMD true", &["--timeout=1us"])
                .unwrap_err()
                .contains("1ms")
        );
        assert!(
            check("CMD true", &["--timeout=-1s"])
                .unwrap_err()
                .contains("1ms")
        );
        assert!(
            check("CMD true", &["--retries=x"])
                .unwrap_err()
                .contains("--retries")
        );
        assert!(
            check("CMD true", &["--retries=-1"])
                .unwrap_err()
                .contains("negative")
        );
        assert!(check("CMD true", &["--retries=99999999999"]).is_err());
        assert!(
            check("CMD true", &["--bogus=1"])
                .unwrap_err()
                .contains("--bogus")
        );
    }
}
