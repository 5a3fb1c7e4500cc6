//! Every example in every `--help` works as written: each is read from the binary's own help,
//! in the order a reader meets them, and run in a copy of the checkout's `fixtures/hello`.
//! Those that can run offline must succeed (`127.0.0.1:5000` is this test's registry); those
//! that need the network (a public registry, E2B) run with every proxy pointing at a closed
//! port and must get past the command line: no usage error (exit 2).

use std::path::Path;
use std::process::Output;

use crate::support::binary::{Workspace, copy_tree, run_with_stdin};
use crate::support::registry::{RegistryAuth, TestRegistry};

/// The help pages that hold examples, as the commands that print them.
const HELP_PAGES: &[&[&str]] = &[
    &[],
    &["build"],
    &["push"],
    &["auth", "status"],
    &["template", "build"],
    &["template", "status"],
    &["template", "list"],
    &["template", "delete"],
];

/// Hosts that mean an example needs the network.
const ONLINE: &[&str] = &[
    "ghcr.io",
    "registry.example.com",
    "e2b.example.org",
    "template ",
];

/// One example: environment assignments before the command, its arguments, and what is
/// piped into it.
#[derive(Debug)]
struct Example {
    line: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    stdin: Option<String>,
}

fn help(ws: &Workspace, page: &[&str]) -> String {
    // Wide enough that no example is wrapped onto a second line.
    let output = ws
        .dockless()
        .args(page)
        .arg("--help")
        .env("COLUMNS", "1000")
        .output()
        .unwrap();
    assert!(output.status.success(), "{page:?} --help");
    String::from_utf8(output.stdout).unwrap()
}

/// The indented lines under "Examples…:" up to the first blank line, without a trailing
/// `   (comment)`.
fn examples_in(help: &str) -> Vec<String> {
    let mut lines = help.lines().skip_while(|l| !l.starts_with("Examples"));
    lines.next();
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| match l.find("   (") {
            Some(comment) => l[..comment].trim().to_owned(),
            None => l.trim().to_owned(),
        })
        .collect()
}

/// Splits a shell line as sh would for these simple forms: `"…"` quoting, `$TOKEN`-style
/// variables (given a value), `A=b` prefixes and one `echo … |` in front.
fn parse(line: &str) -> Example {
    let (stdin, command) = match line.split_once(" | ") {
        Some((producer, command)) => {
            assert!(producer.starts_with("echo "), "{line}");
            (Some("a-token\n".to_owned()), command)
        }
        None => (None, line),
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut env = Vec::new();
    let mut words = words.into_iter().peekable();
    while let Some((name, value)) = words.peek().and_then(|w| w.split_once('=')) {
        env.push((name.to_owned(), value.to_owned()));
        words.next();
    }
    assert_eq!(words.next().as_deref(), Some("dockless"), "{line}");
    Example {
        line: line.to_owned(),
        env,
        args: words.collect(),
        stdin,
    }
}

fn every_example(ws: &Workspace) -> Vec<Example> {
    HELP_PAGES
        .iter()
        .flat_map(|page| examples_in(&help(ws, page)))
        .map(|line| parse(&line))
        .collect()
}

fn run(ws: &Workspace, example: &Example, registry: &str) -> Output {
    let mut command = ws.dockless();
    let closed = "http://127.0.0.1:1";
    command
        .args(
            example
                .args
                .iter()
                .map(|a| a.replace("127.0.0.1:5000", registry)),
        )
        .envs(example.env.iter().map(|(k, v)| (k, v)))
        .env("E2B_API_KEY", crate::e2b::API_KEY)
        .env("DOCKLESS_HTTP_TIMEOUT", "2s")
        .env("DOCKLESS_HTTP_CONNECT_TIMEOUT", "2s");
    for proxy in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        command.env(proxy, closed);
    }
    command
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    run_with_stdin(command, example.stdin.as_deref().unwrap_or(""))
}

/// The workspace: the checkout's template fixtures where a checkout has them, and
/// `fixtures/hello`'s files at the top too, so that examples building `.` (the current
/// directory) have a template context there.
fn checkout_like() -> Workspace {
    let ws = Workspace::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for template in ["hello", "example"] {
        copy_tree(
            &fixtures.join(template),
            &ws.path().join("fixtures").join(template),
        );
    }
    copy_tree(&fixtures.join("hello"), ws.path());
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_help_example_works_as_written() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let host = registry.host.clone();
    tokio::task::spawn_blocking(move || {
        let ws = checkout_like();
        let examples = every_example(&ws);
        assert!(examples.len() >= 10, "examples found: {examples:#?}");
        for example in &examples {
            let output = run(&ws, example, &host);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_ne!(
                output.status.code(),
                Some(2),
                "`{}` is not a valid command line: {stderr}",
                example.line
            );
            assert!(!stderr.contains("panicked"), "{}: {stderr}", example.line);
            if !ONLINE.iter().any(|online| example.line.contains(online)) {
                assert!(
                    output.status.success(),
                    "`{}` failed: {stderr}",
                    example.line
                );
            }
        }
    })
    .await
    .unwrap();
}

#[test]
fn the_example_reader_finds_each_example_and_its_parts() {
    let help = "Usage: x\n\nExamples:\n  dockless build            (here)\n  echo \"$TOKEN\" | dockless push . --to r/a:1 --password-stdin\n  A=1 B=2 dockless template build ./t   (flow)\n\nEnvironment: X\n";
    let lines = examples_in(help);
    assert_eq!(
        lines,
        [
            "dockless build",
            "echo \"$TOKEN\" | dockless push . --to r/a:1 --password-stdin",
            "A=1 B=2 dockless template build ./t"
        ]
    );
    let piped = parse(&lines[1]);
    assert_eq!(
        piped.args,
        ["push", ".", "--to", "r/a:1", "--password-stdin"]
    );
    assert!(piped.stdin.is_some());
    let with_env = parse(&lines[2]);
    assert_eq!(
        with_env.env,
        [("A".to_owned(), "1".to_owned()), ("B".into(), "2".into())]
    );
    assert_eq!(with_env.args, ["template", "build", "./t"]);
}
