use super::*;

fn mount(spec: &str) -> Result<RunMount, MountError> {
    parse(spec, "/work", &|v| Ok(v.replace("$V", "expanded")))
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
            gid: 0
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
        ("type=ssh", "not supported"),
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
