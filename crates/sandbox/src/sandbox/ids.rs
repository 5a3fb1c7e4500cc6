//! Which host IDs the sandbox's user namespace maps, and writing those mappings.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::fs;
use std::process::Command;

use super::{Spec, SubIds};

/// How the sandbox's IDs relate to the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// No user namespace (`--isolation root`): the sandbox's root is the host's root.
    Host,
    /// Only the invoking (unprivileged) user, mapped to root.
    Single,
    /// The invoking user as root and its subordinate IDs as 1…, mapped by newuidmap/newgidmap.
    Subordinate(SubIds),
    /// Run by root: the sandbox's IDs 0… are a range of host IDs that own nothing on the host,
    /// and the tree's owners are shifted into that range for the command and back after it.
    Shifted(IdRange),
}

pub use crate::owners::IdRange;

/// How many IDs root's sandbox maps: every 16-bit ID an image uses (nobody is 65534).
const ROOT_RANGE_COUNT: u32 = 65536;

/// Where root's sandbox IDs start on the host when /etc/subuid gives root no range: inside the
/// block systemd documents for container IDs (524288…1879048191), far above the ranges
/// useradd hands out in /etc/subuid (100000 and up, 65536 each).
const ROOT_RANGE_FALLBACK: u32 = 1_500_000_000;

/// The mapping of a sandbox with (`userns`) or without a user namespace, for a process running
/// as `host_uid`:`host_gid` that found `subids` for itself.
/// Root maps a range only where its own namespace holds those IDs (on the host, not as the
/// root of another user namespace, which gets a single-ID mapping like anyone else).
pub fn mapping_for(userns: bool, host_uid: u32, host_gid: u32, subids: Option<SubIds>) -> Mapping {
    let range = (userns && host_uid == 0)
        .then(|| root_range(host_gid))
        .filter(|range| {
            let map = |file: &str| fs::read_to_string(file).unwrap_or_default();
            covers(&map("/proc/self/uid_map"), range.uid_start, range.count)
                && covers(&map("/proc/self/gid_map"), range.gid_start, range.count)
        });
    choose_mapping(userns, range, subids)
}

/// The IDs the store keeps a build's trees and cache mounts in: run by root with a user
/// namespace, the sandbox's range (its files then never hold a setuid or setgid bit of an ID
/// that owns something on the host); `None`, the image's own IDs: rootless (the files are the
/// invoking user's, in its 0700 store) and `--isolation root` (whose command is the host's
/// root).
pub fn store_ids(userns: bool) -> Option<IdRange> {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    match mapping_for(userns, uid, gid, None) {
        Mapping::Shifted(range) => Some(range),
        _ => None,
    }
}

fn choose_mapping(userns: bool, root_range: Option<IdRange>, subids: Option<SubIds>) -> Mapping {
    match (userns, root_range, subids) {
        (false, _, _) => Mapping::Host,
        (true, Some(range), _) => Mapping::Shifted(range),
        (true, None, Some(subids)) => Mapping::Subordinate(subids),
        (true, None, None) => Mapping::Single,
    }
}

/// Whether a /proc/PID/uid_map (or gid_map) holds IDs `start..start + count` in one line.
fn covers(map: &str, start: u32, count: u32) -> bool {
    let (start, count) = (u64::from(start), u64::from(count));
    map.lines().any(|line| {
        let fields: Vec<u64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        matches!(fields[..], [inside, _, length] if inside <= start && start + count <= inside + length)
    })
}

/// Root's range: its own in /etc/subuid and /etc/subgid when they give it one of at least
/// [`ROOT_RANGE_COUNT`] IDs above the IDs it maps, else the documented fallback.
fn root_range(gid: u32) -> IdRange {
    let usable = |range: Option<(u32, u32)>| {
        range
            .filter(|&(start, count)| start >= ROOT_RANGE_COUNT && count >= ROOT_RANGE_COUNT)
            .map(|(start, _)| start)
    };
    let user = Some("root");
    match (
        usable(listed_range("/etc/subuid", 0, user)),
        usable(
            listed_range("/etc/subgid", 0, user).or_else(|| listed_range("/etc/subgid", gid, user)),
        ),
    ) {
        (Some(uid_start), Some(gid_start)) => IdRange {
            uid_start,
            gid_start,
            count: ROOT_RANGE_COUNT,
        },
        _ => IdRange {
            uid_start: ROOT_RANGE_FALLBACK,
            gid_start: ROOT_RANGE_FALLBACK,
            count: ROOT_RANGE_COUNT,
        },
    }
}

/// The `start:count` that `file` (/etc/subuid or /etc/subgid) lists for `id` or `name`.
fn listed_range(file: &str, id: u32, name: Option<&str>) -> Option<(u32, u32)> {
    fs::read_to_string(file).ok()?.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        let start = fields.next()?.parse().ok()?;
        let count = fields.next()?.parse().ok()?;
        (owner == id.to_string() || Some(owner) == name).then_some((start, count))
    })
}

/// The invoking user's subordinate IDs, when /etc/subuid and /etc/subgid list some and the
/// setuid newuidmap and newgidmap (Debian's `uidmap`) are installed; `None` means a
/// single-ID mapping (only root exists in the sandbox).
pub fn subordinate_ids(uid: u32, gid: u32) -> Option<SubIds> {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
    };
    if !on_path("newuidmap") || !on_path("newgidmap") {
        return None;
    }
    let name = |file: &str, id: u32| -> Option<String> {
        fs::read_to_string(file).ok()?.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&id.to_string().as_str())).then(|| fields[0].to_owned())
        })
    };
    let user = name("/etc/passwd", uid);
    let group = name("/etc/group", gid);
    let (uid_start, uid_count) = listed_range("/etc/subuid", uid, user.as_deref())?;
    // newgidmap checks /etc/subgid against the user's name too, not the group's.
    let (gid_start, gid_count) = listed_range("/etc/subgid", uid, user.as_deref())
        .or_else(|| listed_range("/etc/subgid", gid, group.as_deref()))?;
    Some(SubIds {
        uid_start,
        uid_count,
        gid_start,
        gid_count,
    })
}

/// Maps the invoking user to root and its subordinate range to 1… in `child`'s namespace.
pub(crate) fn map_subordinate(
    child: libc::pid_t,
    spec: &Spec,
    subids: SubIds,
) -> Result<(), String> {
    for (tool, id, start, count) in [
        (
            "newuidmap",
            spec.host_uid,
            subids.uid_start,
            subids.uid_count,
        ),
        (
            "newgidmap",
            spec.host_gid,
            subids.gid_start,
            subids.gid_count,
        ),
    ] {
        let mut command = Command::new(tool);
        // A setuid tool needs only PATH to be found; nothing else of this process's
        // environment (credentials among it) goes to it.
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let out = command
            .args([child.to_string(), "0".into(), id.to_string(), "1".into()])
            .args(["1".to_owned(), start.to_string(), count.to_string()])
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} refused to map the subordinate IDs of /etc/sub{}id: {}",
                &tool[3..4],
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Root writes `child`'s mappings itself: sandbox IDs 0… are the range's host IDs.
pub(crate) fn write_maps(child: libc::pid_t, range: IdRange) -> Result<(), String> {
    for (file, start) in [("uid_map", range.uid_start), ("gid_map", range.gid_start)] {
        let path = format!("/proc/{child}/{file}");
        fs::write(&path, format!("0 {start} {}\n", range.count))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(())
}

/// Maps the invoking user to root in this process's new user namespace.
pub(crate) fn map_single(spec: &Spec) -> std::io::Result<()> {
    fs::write("/proc/self/setgroups", "deny")?;
    fs::write("/proc/self/uid_map", format!("0 {} 1\n", spec.host_uid))?;
    fs::write("/proc/self/gid_map", format!("0 {} 1\n", spec.host_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_gets_a_shifted_range_and_others_map_themselves() {
        let subids = SubIds {
            uid_start: 100000,
            uid_count: 65536,
            gid_start: 100000,
            gid_count: 65536,
        };
        let range = root_range(0);
        assert_eq!(range.count, 65536);
        assert!(range.uid_start >= 65536 && range.gid_start >= 65536);
        assert_eq!(choose_mapping(false, Some(range), None), Mapping::Host);
        assert_eq!(
            choose_mapping(true, Some(range), Some(subids)),
            Mapping::Shifted(range)
        );
        assert_eq!(choose_mapping(true, None, None), Mapping::Single);
        assert_eq!(
            choose_mapping(true, None, Some(subids)),
            Mapping::Subordinate(subids)
        );
    }

    #[test]
    fn only_a_namespace_that_holds_the_range_maps_it() {
        let host = "         0          0 4294967295\n";
        assert!(covers(host, 1_500_000_000, 65536));
        let nested = "         0          0          1\n";
        assert!(!covers(nested, 1_500_000_000, 65536));
        let split = "0 0 1000\n1000 5000 70000\n";
        assert!(covers(split, 1000, 65536));
        assert!(!covers(split, 900, 65536));
    }
}
