use super::*;

fn vars(name: &str) -> Option<String> {
    (name == "V").then(|| "expanded".to_owned())
}

/// Parsed as the Dockerfile is, then expanded as its RUN is, in WORKDIR /work.
fn mount(spec: &str) -> Result<RunMount, MountError> {
    MountFlag::parse(spec, '\\', 0)?.expand('\\', &vars, "/work", 0)
}

/// Only what parsing the Dockerfile says.
fn parsed(spec: &str) -> Result<MountFlag, MountError> {
    MountFlag::parse(spec, '\\', 0)
}

#[test]
fn bind_is_the_default_type_and_read_only() {
    assert_eq!(
        mount("target=/src").unwrap(),
        RunMount {
            target: "/src".into(),
            kind: MountKind::Bind {
                from: None,
                source: String::new(),
                read_only: true
            }
        }
    );
    let rw = mount("type=bind,from=build,source=/out,target=rel,rw").unwrap();
    assert_eq!(rw.target, "/work/rel");
    assert_eq!(
        rw.kind,
        MountKind::Bind {
            from: Some("build".into()),
            source: "/out".into(),
            read_only: false
        }
    );
}

#[test]
fn cache_defaults_its_id_to_the_target() {
    let cache = mount("target=/root/.cache/pip/,type=cache").unwrap();
    assert_eq!(cache.target, "/root/.cache/pip");
    assert_eq!(
        cache.kind,
        MountKind::Cache {
            id: "/root/.cache/pip".into(),
            sharing: Sharing::Shared,
            read_only: false,
            mode: 0o755,
            uid: 0,
            gid: 0,
            from: None,
            source: None,
        }
    );
    let locked =
        mount("type=cache,id=apt,sharing=locked,target=/var/cache/apt,mode=0700,uid=1000").unwrap();
    assert!(matches!(
        locked.kind,
        MountKind::Cache { ref id, sharing: Sharing::Locked, mode: 0o700, uid: 1000, .. } if id == "apt"
    ));
}

#[test]
fn secrets_default_to_run_secrets_and_may_be_env_only() {
    let file = mount("type=secret,id=npmrc").unwrap();
    assert_eq!(file.target, "/run/secrets/npmrc");
    assert!(matches!(
        file.kind,
        MountKind::Secret { ref id, as_file: true, required: false, mode: 0o400, .. } if id == "npmrc"
    ));
    let by_target = mount("type=secret,target=/root/.npmrc,required").unwrap();
    assert!(matches!(
        by_target.kind,
        MountKind::Secret { ref id, required: true, .. } if id == ".npmrc"
    ));
    let env = mount("type=secret,id=token,env=TOKEN").unwrap();
    assert!(matches!(
        env.kind,
        MountKind::Secret { as_file: false, env: Some(ref e), .. } if e == "TOKEN"
    ));
}

#[test]
fn tmpfs_sizes_read_like_docker() {
    let tmp = mount("type=tmpfs,target=/tmp,size=64m").unwrap();
    assert_eq!(
        tmp.kind,
        MountKind::Tmpfs {
            size: Some(64 << 20)
        }
    );
    assert_eq!(parse_size("1024").unwrap(), 1024);
    assert_eq!(parse_size("1g").unwrap(), 1 << 30);
    assert_eq!(parse_size("2KiB").unwrap(), 2048);
    assert!(parse_size("lots").is_err());
}

#[test]
fn values_are_expanded_and_bad_mounts_refused_as_buildkit_does() {
    assert_eq!(
        mount("type=cache,target=/c/$V").unwrap().target,
        "/c/expanded"
    );
    for (spec, message) in [
        ("type=nosuch,target=/x", "unsupported mount type"),
        ("type=bind,target=/x,mode=0700", "mode not allowed"),
        (
            "type=tmpfs,target=/x,sharing=locked",
            "invalid cache sharing",
        ),
        ("type=bind,target=/x,required", "unexpected key 'required'"),
        ("type=bind,target=/x,size=1m", "unexpected key 'size'"),
        ("type=secret", "one of source, target required"),
        ("type=secret,id=a,source=b", "both source and id"),
        ("type=bind", "needs a target"),
        ("type=bind,target=/", "invalid mount target"),
        ("type=bind,target=/x,from=$STAGE", "does not take variables"),
        ("type=bind,target=/x,nosuch=1", "unexpected key 'nosuch'"),
        ("type=bind,target=/x,bare", "must be a key=value pair"),
        ("type=cache,target=/x,ro=maybe", "invalid value for ro"),
    ] {
        let error = mount(spec).unwrap_err().to_string();
        assert!(error.contains(message), "{spec}: {error}");
    }
    // Named once, not twice (the quoting error used to repeat the `--mount=` prefix).
    assert_eq!(
        mount("\"open").unwrap_err().to_string(),
        "--mount=\"open: a quoted field is never closed"
    );
}

#[test]
fn csv_fields_keep_quoted_commas() {
    assert_eq!(
        csv_fields("type=bind,\"target=/a,b\",ro").unwrap(),
        ["type=bind", "target=/a,b", "ro"]
    );
    assert!(csv_fields("\"open").is_err());
    assert_eq!(clean("/a/./b/../c//"), "/a/c");
    assert_eq!(clean("/../x"), "/x");
}

#[test]
fn literal_mounts_are_checked_when_parsed_and_variables_when_expanded() {
    // No variable: every mistake is known before anything is built.
    for (spec, message) in [
        ("type=cache,target=/x,ro=maybe", "invalid value for ro"),
        ("type=bind,target=/", "invalid mount target"),
        ("type=bind,target=/x,nosuch=1", "unexpected key 'nosuch'"),
        ("type=bind,target=/x,from=$STAGE", "does not take variables"),
        ("type=tmpfs", "needs a target"),
    ] {
        let error = parsed(spec).unwrap_err().to_string();
        assert!(error.contains(message), "{spec}: {error}");
    }
    // A key is never a variable, so an unknown one is refused even beside variables.
    assert!(parsed("target=$V,nosuch=1").is_err());
    // A value with a variable waits for the RUN's variables...
    assert!(parsed("type=cache,target=/x,ro=$V").is_ok());
    assert_eq!(
        mount("type=cache,target=/x,ro=$V").unwrap_err().to_string(),
        "--mount=type=cache,target=/x,ro=$V: invalid value for ro: expanded"
    );
    // ...and so does the type, with the keys it allows.
    assert!(parsed("type=$V,target=/x,size=1m").is_ok());
    assert!(mount("type=$V,target=/x").is_err());
    // A relative target is placed in WORKDIR: only the RUN can say whether it is the root.
    assert!(parsed("type=bind,target=..").is_ok());
    let flag = parsed("type=bind,target=..").unwrap();
    let in_workdir = |workdir| flag.expand('\\', &vars, workdir, 0);
    assert_eq!(in_workdir("/work/sub").unwrap().target, "/work");
    assert!(
        in_workdir("/work")
            .unwrap_err()
            .to_string()
            .contains("invalid mount target")
    );
}

#[test]
fn what_dockless_cannot_serve_still_parses_for_the_builder_to_refuse() {
    let ssh = mount("type=ssh").unwrap();
    assert_eq!(ssh.target, "/run/buildkit/ssh_agent.0");
    assert_eq!(
        ssh.kind,
        MountKind::Ssh {
            id: "default".into(),
            required: false,
            mode: 0o600,
            uid: 0,
            gid: 0
        }
    );
    let seeded = mount("type=cache,target=/c,from=tools,source=/seed").unwrap();
    assert!(matches!(
        seeded.kind,
        MountKind::Cache { from: Some(ref f), source: Some(ref s), .. } if f == "tools" && s == "/seed"
    ));
    assert_eq!(
        parsed("type=bind,from=tools,target=/t").unwrap().from(),
        Some("tools")
    );
}
