use std::io::Write;
use std::path::PathBuf;

use tar::{EntryType, Header};

use super::*;
use crate::EntryKind;

/// A temporary directory holding the archive under test and the staging directory.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
        path
    }

    fn staging(&self) -> PathBuf {
        let path = self.dir.path().join("staging");
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("staging: {e}"));
        path
    }

    /// Detects and unpacks `bytes`, which must be detected as an archive.
    fn unpack(&self, bytes: &[u8]) -> Result<Vec<Entry>, ArchiveError> {
        let path = self.write("archive", bytes);
        let compression = detect_archive(&path)
            .unwrap_or_else(|e| panic!("detect: {e}"))
            .unwrap_or_else(|| panic!("not detected as an archive"));
        unpack(&path, compression, &self.staging())
    }

    fn archive_path(&self) -> PathBuf {
        self.dir.path().join("archive")
    }
}

/// Unpacked entries, with the directory holding their staged contents kept alive.
struct Unpacked {
    entries: Vec<Entry>,
    _fixture: Fixture,
}

impl std::ops::Deref for Unpacked {
    type Target = Vec<Entry>;

    fn deref(&self) -> &Vec<Entry> {
        &self.entries
    }
}

fn entries(bytes: &[u8]) -> Unpacked {
    let fixture = Fixture::new();
    let entries = fixture
        .unpack(bytes)
        .unwrap_or_else(|e| panic!("unpack: {e}"));
    Unpacked {
        entries,
        _fixture: fixture,
    }
}

fn find<'a>(entries: &'a [Entry], path: &str) -> &'a Entry {
    entries
        .iter()
        .find(|entry| entry.path == path)
        .unwrap_or_else(|| panic!("no entry {path} in {:?}", paths(entries)))
}

fn paths(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|entry| entry.path.as_str()).collect()
}

fn contents(entry: &Entry) -> Vec<u8> {
    match &entry.kind {
        EntryKind::File { source, size } => {
            let bytes = std::fs::read(source).unwrap_or_else(|e| panic!("read staged: {e}"));
            assert_eq!(bytes.len() as u64, *size);
            bytes
        }
        other => panic!("{} is not a file: {other:?}", entry.path),
    }
}

/// A ustar header with the name written verbatim (the tar crate refuses `..` and absolute names).
fn raw_header(name: &[u8], kind: u8, size: u64, adjust: impl FnOnce(&mut Header)) -> Header {
    let mut header = Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(size);
    header.set_entry_type(EntryType::new(kind));
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    adjust(&mut header);
    header.set_cksum();
    header
}

/// Hand-made tar bytes: each header, then data padded to 512, then the end blocks.
#[derive(Default)]
struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    fn push(&mut self, header: &Header, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        let padding = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, padding));
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let header = raw_header(name.as_bytes(), b'0', data.len() as u64, |_| {});
        self.push(&header, data)
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.extend(std::iter::repeat_n(0u8, 1024));
        bytes
    }
}

fn builder() -> tar::Builder<Vec<u8>> {
    tar::Builder::new(Vec::new())
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut header = Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(EntryType::Regular);
    builder
        .append_data(&mut header, path, data)
        .unwrap_or_else(|e| panic!("append {path}: {e}"));
}

fn append_link(builder: &mut tar::Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_mode(0o644);
    builder
        .append_link(&mut header, path, target)
        .unwrap_or_else(|e| panic!("append link {path}: {e}"));
}

fn finish(builder: tar::Builder<Vec<u8>>) -> Vec<u8> {
    builder
        .into_inner()
        .unwrap_or_else(|e| panic!("finish: {e}"))
}

fn compress(bytes: &[u8], compression: CompressionFormat) -> Vec<u8> {
    let result = match compression {
        CompressionFormat::None => Ok(bytes.to_vec()),
        CompressionFormat::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).and_then(|()| encoder.finish())
        }
        CompressionFormat::Bzip2 => {
            let mut encoder =
                bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            encoder.write_all(bytes).and_then(|()| encoder.finish())
        }
        CompressionFormat::Xz => {
            let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 6);
            encoder.write_all(bytes).and_then(|()| encoder.finish())
        }
        CompressionFormat::Zstd => zstd::stream::encode_all(bytes, 3),
    };
    result.unwrap_or_else(|e| panic!("compress: {e}"))
}

/// A small archive using the usual shapes: root entry, `./` prefixes, trailing slashes, missing
/// parents, setuid bits, owners.
fn sample_archive() -> Vec<u8> {
    let mut tar = RawTar::default();
    tar.push(&raw_header(b"./", b'5', 0, |h| h.set_mode(0o700)), &[]);
    tar.push(
        &raw_header(b"./app/", b'5', 0, |h| {
            h.set_mode(0o750);
            h.set_uid(1000);
            h.set_gid(1001);
        }),
        &[],
    );
    tar.push(
        &raw_header(b"./app/run.sh", b'0', 10, |h| h.set_mode(0o104755)),
        b"#!/bin/sh\n",
    );
    tar.push(
        &raw_header(b"deep/nested/file.txt", b'0', 5, |h| h.set_mode(0o640)),
        b"hello",
    );
    tar.finish()
}

#[test]
fn unpacks_normalised_sorted_entries_with_metadata() {
    let entries = entries(&sample_archive());
    assert_eq!(
        paths(&entries),
        [
            "app",
            "app/run.sh",
            "deep",
            "deep/nested",
            "deep/nested/file.txt"
        ]
    );
    let app = find(&entries, "app");
    assert_eq!(
        (&app.kind, app.mode, app.uid, app.gid),
        (&EntryKind::Directory, 0o750, 1000, 1001)
    );
    let run = find(&entries, "app/run.sh");
    assert_eq!(run.mode, 0o4755, "setuid kept, file type bits dropped");
    assert_eq!(contents(run), b"#!/bin/sh\n");
    for implied in ["deep", "deep/nested"] {
        let entry = find(&entries, implied);
        assert_eq!(
            (&entry.kind, entry.mode, entry.uid, entry.gid),
            (&EntryKind::Directory, 0o755, 0, 0),
            "implied parent {implied}"
        );
    }
    assert_eq!(contents(find(&entries, "deep/nested/file.txt")), b"hello");
}

#[test]
fn every_compression_is_detected_and_unpacked() {
    let plain = sample_archive();
    for compression in [
        CompressionFormat::None,
        CompressionFormat::Gzip,
        CompressionFormat::Bzip2,
        CompressionFormat::Xz,
        CompressionFormat::Zstd,
    ] {
        let fixture = Fixture::new();
        let path = fixture.write("archive", &compress(&plain, compression));
        assert_eq!(
            detect_archive(&path).unwrap_or_else(|e| panic!("{e}")),
            Some(compression)
        );
        let entries = unpack(&path, compression, &fixture.staging())
            .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert_eq!(entries.len(), 5, "{compression:?}");
        assert_eq!(contents(find(&entries, "deep/nested/file.txt")), b"hello");
    }
}

#[test]
fn concatenated_gzip_members_are_read_through() {
    // A tar split across two gzip members, as `cat a.gz b.gz` makes.
    let plain = sample_archive();
    let (first, second) = plain.split_at(1024);
    let mut bytes = compress(first, CompressionFormat::Gzip);
    bytes.extend(compress(second, CompressionFormat::Gzip));
    assert_eq!(entries(&bytes).len(), 5);
}

#[test]
fn parent_escapes_are_refused_naming_archive_and_entry() {
    for name in [&b"../evil"[..], b"a/../../evil", b"..", b"./../x"] {
        let mut tar = RawTar::default();
        tar.file("ok", b"1");
        tar.push(&raw_header(name, b'0', 1, |_| {}), b"x");
        let fixture = Fixture::new();
        let error = fixture.unpack(&tar.finish()).err();
        let shown = String::from_utf8_lossy(name).into_owned();
        match &error {
            Some(ArchiveError::PathEscape { archive, entry }) => {
                assert_eq!(archive, &fixture.archive_path());
                assert_eq!(entry, &shown);
            }
            other => panic!("{shown}: unexpected {other:?}"),
        }
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains(&shown) && message.contains("archive"),
            "{message}"
        );
    }
}

#[test]
fn inner_dot_dot_that_stays_inside_is_fine() {
    let mut tar = RawTar::default();
    tar.file("a/b/../c", b"1");
    assert_eq!(paths(&entries(&tar.finish())), ["a", "a/c"]);
}

#[test]
fn absolute_paths_stay_inside_the_destination() {
    let mut tar = RawTar::default();
    tar.file("/etc/passwd", b"root");
    tar.file("/../../x", b"x");
    let entries = entries(&tar.finish());
    assert_eq!(paths(&entries), ["etc", "etc/passwd", "x"]);
    assert_eq!(contents(find(&entries, "etc/passwd")), b"root");
}

#[test]
fn long_names_gnu_and_pax() {
    let long_dir = "d".repeat(120);
    let gnu_path = format!("{long_dir}/gnu-file.txt");
    let pax_path = format!("{}/pax-file.txt", "p".repeat(150));
    let long_target = format!("{}/target", "t".repeat(140));

    let mut builder = builder();
    append_file(&mut builder, &gnu_path, b"gnu", 0o644);
    builder
        .append_pax_extensions([("path", pax_path.as_bytes())])
        .unwrap_or_else(|e| panic!("{e}"));
    append_file(&mut builder, "short-name", b"pax", 0o644);
    append_link(&mut builder, EntryType::Symlink, "link", &long_target);
    let entries = entries(&finish(builder));

    assert_eq!(contents(find(&entries, &gnu_path)), b"gnu");
    assert_eq!(contents(find(&entries, &pax_path)), b"pax");
    assert!(!paths(&entries).contains(&"short-name"));
    assert_eq!(
        find(&entries, "link").kind,
        EntryKind::Symlink {
            target: long_target
        }
    );
}

#[test]
fn symlinks_keep_their_target_verbatim() {
    let mut builder = builder();
    append_link(
        &mut builder,
        EntryType::Symlink,
        "bin/sh",
        "../usr/bin/busybox",
    );
    append_link(&mut builder, EntryType::Symlink, "abs", "/etc/hostname");
    let entries = entries(&finish(builder));
    let sh = find(&entries, "bin/sh");
    assert_eq!(
        sh.kind,
        EntryKind::Symlink {
            target: "../usr/bin/busybox".to_owned()
        }
    );
    assert_eq!(sh.mode, 0o777);
    assert_eq!(
        find(&entries, "abs").kind,
        EntryKind::Symlink {
            target: "/etc/hostname".to_owned()
        }
    );
}

#[test]
fn symlinked_parents_are_resolved_inside_the_archive() {
    let mut builder = builder();
    append_file(&mut builder, "usr/lib/a.so", b"a", 0o644);
    append_link(&mut builder, EntryType::Symlink, "lib", "usr/lib");
    append_link(&mut builder, EntryType::Symlink, "abs", "/usr/lib");
    append_link(&mut builder, EntryType::Symlink, "climb", "../../../usr");
    append_file(&mut builder, "lib/b.so", b"b", 0o644);
    append_file(&mut builder, "abs/c.so", b"c", 0o644);
    append_file(&mut builder, "climb/d", b"d", 0o644);
    let entries = entries(&finish(builder));
    assert_eq!(
        paths(&entries),
        [
            "abs",
            "climb",
            "lib",
            "usr",
            "usr/d",
            "usr/lib",
            "usr/lib/a.so",
            "usr/lib/b.so",
            "usr/lib/c.so"
        ]
    );
}

#[test]
fn a_file_as_parent_is_an_error() {
    let mut tar = RawTar::default();
    tar.file("f", b"1");
    tar.file("f/child", b"2");
    let error = Fixture::new().unpack(&tar.finish()).err();
    assert!(
        matches!(&error, Some(ArchiveError::BadEntry { entry, .. }) if entry == "f/child"),
        "{error:?}"
    );
}

#[test]
fn hardlinks_are_normalised_and_ordered_after_their_target() {
    let mut builder = builder();
    append_file(&mut builder, "data/original", b"shared", 0o600);
    append_link(
        &mut builder,
        EntryType::Link,
        "data/copy",
        "./data/original",
    );
    append_link(&mut builder, EntryType::Link, "z-link", "/data/original");
    let entries = entries(&finish(builder));
    // `data/copy` sorts first, so it carries the content and the others link to it.
    assert_eq!(
        paths(&entries),
        ["data", "data/copy", "data/original", "z-link"]
    );
    assert_eq!(contents(find(&entries, "data/copy")), b"shared");
    for link in ["data/original", "z-link"] {
        assert_eq!(
            find(&entries, link).kind,
            EntryKind::Hardlink {
                target: "data/copy".to_owned()
            },
            "{link}"
        );
    }
    // The link header's metadata applies to the shared inode (Docker chmods the link path).
    assert!(entries.iter().skip(1).all(|e| e.mode == 0o644));
}

#[test]
fn hardlink_target_replaced_later_keeps_the_old_content() {
    let mut tar = RawTar::default();
    tar.file("target", b"old");
    tar.push(
        &raw_header(b"link", b'1', 0, |h| {
            h.set_link_name("target").unwrap_or_else(|e| panic!("{e}"));
        }),
        &[],
    );
    tar.file("target", b"new");
    let entries = entries(&tar.finish());
    assert_eq!(contents(find(&entries, "link")), b"old");
    assert_eq!(contents(find(&entries, "target")), b"new");
}

#[test]
fn bad_hardlinks_are_refused() {
    type Expected = fn(&ArchiveError) -> bool;
    let cases: [(&str, Expected); 4] = [
        ("../outside", |e| {
            matches!(e, ArchiveError::LinkEscape { .. })
        }),
        ("missing", |e| matches!(e, ArchiveError::BadLink { .. })),
        ("dir", |e| matches!(e, ArchiveError::BadLink { .. })),
        ("", |e| matches!(e, ArchiveError::BadLink { .. })),
    ];
    for (target, expected) in cases {
        let mut tar = RawTar::default();
        tar.push(&raw_header(b"dir/", b'5', 0, |_| {}), &[]);
        tar.push(
            &raw_header(b"link", b'1', 0, |h| {
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            }),
            &[],
        );
        let fixture = Fixture::new();
        let error = fixture.unpack(&tar.finish()).err();
        match &error {
            Some(error) if expected(error) => {
                let message = error.to_string();
                assert!(
                    message.contains("link") && message.contains("archive"),
                    "{message}"
                );
            }
            other => panic!("target {target:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn pax_xattrs_are_kept_binary_safe_and_sorted() {
    let capability = [
        1u8, 0, 0, 2, 0x0a, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut builder = builder();
    builder
        .append_pax_extensions([
            ("SCHILY.xattr.user.comment", &b"line one\nline two"[..]),
            ("SCHILY.xattr.security.capability", &capability[..]),
            ("uid", b"70000"),
            ("gid", b"70001"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    append_file(&mut builder, "bin/ping", b"\x7fELF", 0o755);
    append_file(&mut builder, "plain", b"", 0o644);
    let entries = entries(&finish(builder));
    let ping = find(&entries, "bin/ping");
    assert_eq!(
        ping.xattrs,
        vec![
            ("security.capability".to_owned(), capability.to_vec()),
            ("user.comment".to_owned(), b"line one\nline two".to_vec()),
        ]
    );
    assert_eq!((ping.uid, ping.gid), (70000, 70001));
    assert!(
        find(&entries, "plain").xattrs.is_empty(),
        "PAX records apply to one entry"
    );
}

#[test]
fn devices_and_fifos() {
    let mut tar = RawTar::default();
    tar.push(
        &raw_header(b"dev/null", b'3', 0, |h| {
            h.set_device_major(1).unwrap_or_else(|e| panic!("{e}"));
            h.set_device_minor(3).unwrap_or_else(|e| panic!("{e}"));
            h.set_mode(0o666);
        }),
        &[],
    );
    tar.push(
        &raw_header(b"dev/sda", b'4', 0, |h| {
            h.set_device_major(8).unwrap_or_else(|e| panic!("{e}"));
            h.set_device_minor(0).unwrap_or_else(|e| panic!("{e}"));
        }),
        &[],
    );
    tar.push(&raw_header(b"run/fifo", b'6', 0, |_| {}), &[]);
    let entries = entries(&tar.finish());
    assert_eq!(
        find(&entries, "dev/null").kind,
        EntryKind::CharDevice { major: 1, minor: 3 }
    );
    assert_eq!(find(&entries, "dev/null").mode, 0o666);
    assert_eq!(
        find(&entries, "dev/sda").kind,
        EntryKind::BlockDevice { major: 8, minor: 0 }
    );
    assert_eq!(find(&entries, "run/fifo").kind, EntryKind::Fifo);
}

#[test]
fn later_entries_replace_earlier_ones() {
    let mut tar = RawTar::default();
    tar.file("same", b"1");
    tar.file("./same", b"22");
    tar.file("dir/child", b"c");
    tar.file("dir", b"now a file");
    tar.push(&raw_header(b"keep/", b'5', 0, |h| h.set_mode(0o700)), &[]);
    tar.file("keep/inside", b"k");
    tar.push(&raw_header(b"keep", b'5', 0, |h| h.set_mode(0o711)), &[]);
    let entries = entries(&tar.finish());
    assert_eq!(paths(&entries), ["dir", "keep", "keep/inside", "same"]);
    assert_eq!(contents(find(&entries, "same")), b"22");
    assert_eq!(contents(find(&entries, "dir")), b"now a file");
    assert_eq!(
        find(&entries, "keep").mode,
        0o711,
        "a directory over a directory merges"
    );
}

#[test]
fn old_style_directories_and_global_headers() {
    let mut tar = RawTar::default();
    tar.push(
        &raw_header(b"pax_global_header", b'g', 19, |_| {}),
        b"19 comment=ignored\n",
    );
    let legacy = |h: &mut Header| h.as_old_mut().linkflag = [0];
    tar.push(&raw_header(b"legacy/", b'0', 0, legacy), &[]);
    tar.push(&raw_header(b"legacy-file", b'0', 3, legacy), b"abc");
    let entries = entries(&tar.finish());
    assert_eq!(paths(&entries), ["legacy", "legacy-file"]);
    assert_eq!(find(&entries, "legacy").kind, EntryKind::Directory);
    assert_eq!(contents(find(&entries, "legacy-file")), b"abc");
}

#[test]
fn header_only_types_ignore_their_size_field_like_go() {
    // A directory header claiming 512 bytes of data, followed directly by the next header.
    let mut tar = RawTar::default();
    tar.push(&raw_header(b"d/", b'5', 512, |_| {}), &[]);
    tar.file("d/f", b"data");
    let entries = entries(&tar.finish());
    assert_eq!(paths(&entries), ["d", "d/f"]);
    assert_eq!(contents(find(&entries, "d/f")), b"data");
}

#[test]
fn unsupported_entries_are_refused() {
    let mut sparse = RawTar::default();
    sparse.push(&raw_header(b"sparse", b'S', 0, |_| {}), &[]);
    let mut contiguous = RawTar::default();
    contiguous.file("ok", b"1");
    contiguous.push(&raw_header(b"contiguous", b'7', 1, |_| {}), b"x");
    let mut pax_sparse = builder();
    pax_sparse
        .append_pax_extensions([("GNU.sparse.major", &b"1"[..]), ("GNU.sparse.minor", b"0")])
        .unwrap_or_else(|e| panic!("{e}"));
    append_file(&mut pax_sparse, "file", b"x", 0o644);
    let mut negative_uid = builder();
    negative_uid
        .append_pax_extensions([("uid", &b"-1"[..])])
        .unwrap_or_else(|e| panic!("{e}"));
    append_file(&mut negative_uid, "file", b"x", 0o644);
    let mut not_utf8 = RawTar::default();
    not_utf8.push(&raw_header(b"bad-\xff", b'0', 0, |_| {}), &[]);

    for bytes in [
        sparse.finish(),
        contiguous.finish(),
        finish(pax_sparse),
        finish(negative_uid),
        not_utf8.finish(),
    ] {
        let error = Fixture::new().unpack(&bytes).err();
        assert!(
            matches!(error, Some(ArchiveError::BadEntry { .. })),
            "{error:?}"
        );
    }
}

#[test]
fn non_archives_are_copied_as_files() {
    let fixture = Fixture::new();
    let text = fixture.write("notes.txt", &b"just some text\n".repeat(100));
    let gzipped_text = fixture.write(
        "notes.txt.gz",
        &compress(&b"just some text\n".repeat(100), CompressionFormat::Gzip),
    );
    let empty = fixture.write("empty", b"");
    let empty_tar = fixture.write("empty.tar", &finish(builder()));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage = fixture.write("garbage.bin", &garbage);
    let corrupt_gzip = fixture.write("corrupt.gz", &[0x1f, 0x8b, 0x08, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let short = fixture.write("short", b"ab");
    for path in [
        &text,
        &gzipped_text,
        &empty,
        &empty_tar,
        &garbage,
        &corrupt_gzip,
        &short,
    ] {
        assert_eq!(
            detect_archive(path).unwrap_or_else(|e| panic!("{e}")),
            None,
            "{}",
            path.display()
        );
    }
    assert_eq!(
        detect_archive(fixture.dir.path()).unwrap_or_else(|e| panic!("{e}")),
        None,
        "a directory is not an archive"
    );
    assert!(matches!(
        detect_archive(&fixture.dir.path().join("missing")),
        Err(ArchiveError::Open { .. })
    ));
}

#[test]
fn garbage_unpacked_anyway_is_an_error_not_a_panic() {
    let fixture = Fixture::new();
    let mut garbage = vec![0x5a; 2048];
    garbage[100] = 0;
    let path = fixture.write("garbage", &garbage);
    let error = unpack(&path, CompressionFormat::None, &fixture.staging()).err();
    assert!(
        matches!(error, Some(ArchiveError::Malformed { .. })),
        "{error:?}"
    );
    let error = unpack(&path, CompressionFormat::Gzip, &fixture.staging()).err();
    assert!(
        matches!(error, Some(ArchiveError::Read { .. })),
        "{error:?}"
    );
}

#[test]
fn truncated_archives_are_errors() {
    let mut tar = RawTar::default();
    tar.file("small", b"1234");
    tar.file("big", &vec![7u8; 3000]);
    let whole = tar.finish();

    // Cut inside the data of `big`: the first header is fine, so Docker would try to extract it.
    let fixture = Fixture::new();
    let path = fixture.write("cut-data", &whole[..1024 + 512 + 1000]);
    assert_eq!(
        detect_archive(&path).ok().flatten(),
        Some(CompressionFormat::None)
    );
    let error = unpack(&path, CompressionFormat::None, &fixture.staging()).err();
    match &error {
        Some(ArchiveError::Truncated { archive, entry }) => {
            assert_eq!(archive, &path);
            assert!(entry.contains("big"), "{entry}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // Cut inside a header.
    let path = fixture.write("cut-header", &whole[..1024 + 100]);
    let error = unpack(&path, CompressionFormat::None, &fixture.staging()).err();
    assert!(
        matches!(error, Some(ArchiveError::Truncated { .. })),
        "{error:?}"
    );

    // Cut inside a compressed stream.
    for compression in [
        CompressionFormat::Gzip,
        CompressionFormat::Bzip2,
        CompressionFormat::Xz,
        CompressionFormat::Zstd,
    ] {
        let compressed = compress(&whole, compression);
        let path = fixture.write("cut-compressed", &compressed[..compressed.len() / 2]);
        let result = unpack(&path, compression, &fixture.staging());
        assert!(
            matches!(
                result,
                Err(ArchiveError::Truncated { .. } | ArchiveError::Read { .. })
            ),
            "{compression:?}: {result:?}"
        );
    }
}

#[test]
fn an_archive_may_end_without_end_blocks_or_inside_padding() {
    // Go treats the end of the stream at a header boundary, or inside padding, as the end.
    let mut tar = RawTar::default();
    tar.file("a", b"abc");
    let whole = tar.finish();
    assert_eq!(paths(&entries(&whole[..1024])), ["a"]);
    assert_eq!(paths(&entries(&whole[..515])), ["a"]);
}

#[test]
fn nothing_after_the_end_blocks_is_read() {
    let mut bytes = sample_archive();
    bytes.extend_from_slice(b"trailing junk that is not tar at all");
    assert_eq!(entries(&bytes).len(), 5);
}

#[test]
fn staging_failures_name_the_staging_directory() {
    let fixture = Fixture::new();
    let path = fixture.write("archive", &sample_archive());
    let missing = fixture.dir.path().join("no-such-dir");
    let error = unpack(&path, CompressionFormat::None, &missing).err();
    match error {
        Some(ArchiveError::Staging { staging, .. }) => assert_eq!(staging, missing),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn zstd_skippable_frames_are_detected() {
    let mut bytes = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    bytes.extend(compress(&sample_archive(), CompressionFormat::Zstd));
    let fixture = Fixture::new();
    let path = fixture.write("skippable", &bytes);
    assert_eq!(
        detect_archive(&path).unwrap_or_else(|e| panic!("{e}")),
        Some(CompressionFormat::Zstd)
    );
    assert_eq!(CompressionFormat::detect(b"x"), CompressionFormat::None);
}
