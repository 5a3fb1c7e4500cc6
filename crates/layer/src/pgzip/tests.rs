use super::*;
use std::io::Read;
use std::process::{Command, Stdio};

fn sample(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 3 == 0 {
                (x >> 24) as u8
            } else {
                b"abcdefgh"[i % 8]
            }
        })
        .collect()
}

/// Uniformly random bytes (xorshift64*), the same for the same seed.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Source-like text: words and punctuation picked pseudo-randomly, so it compresses like
/// real text (well, but not to nothing).
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "fn ",
        "let ",
        "mut ",
        "self",
        ".write_all(",
        "buffer",
        ");\n",
        "    ",
        "return ",
        "Ok(())",
        "layer",
        " => ",
        "digest",
        "{\n",
        "}\n",
        "// the ",
    ];
    let picks = random(len, seed);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(WORDS[usize::from(picks[i % len] % 16)].as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Random and text pieces taking turns, with lengths that line up with neither windows
/// nor blocks.
fn mixed(len: usize) -> Vec<u8> {
    let pieces = [40_001, 150_007, 9_999, 333_333, 65_537, 1_000_003, 77_777];
    let mut out = Vec::with_capacity(len);
    for (i, &piece) in pieces.iter().cycle().enumerate() {
        let take = piece.min(len - out.len());
        if i % 2 == 0 {
            out.extend(random(take, i as u64 + 1));
        } else {
            out.extend(text(take, i as u64 + 1));
        }
        if out.len() == len {
            return out;
        }
    }
    out
}

fn gzip(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
    let mut writer = ParallelGzWriter::new(Vec::new(), 1, threads).unwrap();
    for piece in data.chunks(chunk.max(1)) {
        writer.write_all(piece).unwrap();
    }
    writer.finish().unwrap()
}

fn gunzip_flate2(gz: &[u8]) -> Vec<u8> {
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut back)
        .unwrap();
    back
}

/// A second, independent decoder: the `gzip` command, which also checks the CRC and length.
fn gunzip_command(gz: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gzip command");
    let mut stdin = child.stdin.take().unwrap();
    let input = gz.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "gzip -dc: {} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    feeder.join().unwrap().unwrap();
    output.stdout
}

/// Gzips `data` several ways, checks they agree byte for byte and decode back with both
/// decoders, and returns the gzip.
fn check(name: &str, data: &[u8]) -> Vec<u8> {
    let one = gzip(data, 1, 7777);
    assert_eq!(one, gzip(data, 4, 65536), "{name}: 1 vs 4 threads");
    assert_eq!(one, gzip(data, 3, BLOCK + 3), "{name}: write sizes");
    assert!(gunzip_flate2(&one) == data, "{name}: flate2 round trip");
    assert!(gunzip_command(&one) == data, "{name}: gzip -dc round trip");
    one
}

#[test]
fn output_is_valid_gzip_and_independent_of_threads_and_write_sizes() {
    for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
        let data = sample(len);
        let one = gzip(&data, 1, 7777);
        let four = gzip(&data, 4, 65536);
        assert_eq!(one, four, "len {len}: same bytes whatever the threads");
        assert_eq!(gunzip_flate2(&one), data, "len {len}: round trip");
    }
}

#[test]
fn random_data_is_stored_at_almost_its_own_size() {
    for len in [
        1,
        100,
        WINDOW - 1,
        WINDOW + 1,
        BLOCK + 12345,
        3 * BLOCK + 54321,
    ] {
        let data = random(len, 7);
        let gz = check(&format!("random {len}"), &data);
        let limit = len + len / 1000 + 64;
        assert!(gz.len() <= limit, "random {len}: {} > {limit}", gz.len());
    }
}

#[test]
fn text_is_compressed() {
    let data = text(2 * BLOCK + 4321, 3);
    let gz = check("text", &data);
    assert!(
        gz.len() * 2 < data.len(),
        "text: {} of {}",
        gz.len(),
        data.len()
    );
}

#[test]
fn random_and_text_mixed_at_odd_offsets() {
    let data = mixed(5 * BLOCK + 1234);
    let kinds: Vec<bool> = data.chunks(BLOCK).flat_map(runs).map(|(s, _)| s).collect();
    assert!(
        kinds.contains(&true) && kinds.contains(&false),
        "mixed: both kinds of run"
    );
    let gz = check("mixed", &data);
    // The random half stays its size, the text half shrinks.
    assert!(
        gz.len() * 10 < data.len() * 7,
        "mixed: {} of {}",
        gz.len(),
        data.len()
    );
}

#[test]
fn a_run_after_a_stored_window_starts_afresh() {
    // Repetitive text, a random window, the same text again, all in one block: a compressor
    // that kept its history across the stored window would encode the second text as
    // matches into the first, which the decoder would resolve into the random bytes.
    let phrase: Vec<u8> = b"let layer = write_layer(store, entries, settings)?;\n".repeat(2000);
    let mut data = phrase[..WINDOW].to_vec();
    data.extend(random(WINDOW, 9));
    data.extend_from_slice(&phrase[..WINDOW]);
    assert!(looks_incompressible(&data[WINDOW..2 * WINDOW]));
    let gz = check("text, random, text", &data);
    assert!(gz.len() < WINDOW + WINDOW / 10, "{} bytes", gz.len());
}

#[test]
fn the_decision_follows_the_histogram() {
    assert!(looks_incompressible(&random(WINDOW, 1)));
    // Too few samples to look flat: a short tail window is always deflated.
    assert!(!looks_incompressible(&random(1000, 1)));
    assert!(!looks_incompressible(&text(WINDOW, 1)));
    assert!(!looks_incompressible(&vec![0; WINDOW]));
    // Half random, half text: deflate still gains a third, so it is deflated.
    let mut half = random(WINDOW / 2, 2);
    half.extend(text(WINDOW / 2, 2));
    assert!(!looks_incompressible(&half));
    // Machine code and the rest of an executable (this test binary) are deflated.
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let windows: Vec<&[u8]> = exe.chunks_exact(WINDOW).collect();
    let stored = windows.iter().filter(|w| looks_incompressible(w)).count();
    assert!(
        stored * 20 <= windows.len(),
        "{stored} of {} stored",
        windows.len()
    );
}

#[test]
fn fixed_point_log2_is_close_to_the_real_one() {
    for (n, &fixed) in LOG2.iter().enumerate().skip(1) {
        let exact = (n as f64).log2() * f64::from(1u32 << LOG_FRACTION_BITS);
        let error = (f64::from(fixed) - exact).abs();
        assert!(error <= 2.0, "log2({n}): {fixed} vs {exact}");
    }
}

#[test]
fn stored_blocks_have_the_deflate_layout() {
    let mut out = Vec::new();
    write_stored(&random(MAX_STORED + 2, 5), &mut out);
    assert_eq!(&out[..5], &[0x00, 0xff, 0xff, 0x00, 0x00]);
    let second = 5 + MAX_STORED;
    assert_eq!(&out[second..second + 5], &[0x00, 0x02, 0x00, 0xfd, 0xff]);
    assert_eq!(out.len(), 2 * 5 + MAX_STORED + 2);
}

/// The bytes themselves are pinned, not only their agreement across thread counts: zlib-rs
/// picks AVX2, NEON or plain code at run time for match lengths and for sliding its hash
/// table, and a layer must be the same bytes on every machine, since its digest names it. A
/// machine whose CPU takes other paths, or a zlib-rs release that deflates differently, fails
/// here before any image digest moves.
#[test]
fn the_gzip_bytes_of_a_fixed_input_are_pinned() {
    let mut data = mixed(3 * BLOCK + 12_345);
    data.extend(text(2 * BLOCK, 99));
    // Long repeats: matches of deflate's longest length, 258 bytes, measured by compare256.
    data.extend(std::iter::repeat_n(b"0123456789abcdef".as_slice(), 40_000).flatten());
    let gz = gzip(&data, 2, 65_536);
    assert_eq!(
        (gz.len(), dockless_oci::digest::Digest::of(&gz).to_string()),
        (
            2_864_460,
            "sha256:a25114abe071c59b0a85d89830ceb7fbfe13f5c36a4d353d07e4118a0bc4e404".to_owned()
        )
    );
}
