//! Servers that misbehave below HTTP's level, for the "never a hung job" tests: one that
//! accepts connections and never answers, and a scripted one whose answers can stop half-way
//! through their body and stay silent. Each runs on its own runtime, so plain `#[test]`s can
//! run the dockless binary against it; dropping the server stops it.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
pub enum Answer {
    /// Take the request and never answer (the connection stays open).
    Silence,
    /// Answer `status` with `headers` and `body`; with `stall_after`, send only that many bytes
    /// of the body (the `Content-Length` still says all of it) and then go silent.
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        stall_after: Option<usize>,
    },
}

impl Answer {
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Answer::Send {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            stall_after: None,
        }
    }
}

type Route = dyn Fn(&str, &str) -> Answer + Send + Sync;

pub struct ScriptedServer {
    pub addr: SocketAddr,
    /// `METHOD TARGET` of every request, in order.
    seen: Arc<Mutex<Vec<String>>>,
    // Dropped last: stops the accept loop and every connection.
    _runtime: tokio::runtime::Runtime,
}

impl ScriptedServer {
    /// A server answering each request as `route(method, target)` says.
    pub fn start(route: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the test server");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let recorded = seen.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, route.clone(), recorded.clone()));
            }
        });
        Self {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    /// Accepts every connection, reads what comes, never answers.
    pub fn silent() -> Self {
        Self::start(|_, _| Answer::Silence)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(stream: TcpStream, route: Arc<Route>, seen: Arc<Mutex<Vec<String>>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        seen.lock().unwrap().push(format!("{method} {target}"));
        match route(method, target) {
            Answer::Silence => std::future::pending::<()>().await,
            Answer::Send {
                status,
                headers,
                body,
                stall_after,
            } => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let sent = if method == "HEAD" {
                    0
                } else {
                    stall_after.unwrap_or(body.len()).min(body.len())
                };
                let stream = stream.get_mut();
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(&body[..sent]).await.is_err()
                    || stream.flush().await.is_err()
                {
                    return;
                }
                if stall_after.is_some() && method != "HEAD" {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Runs `command` to its end, or kills it after `limit` and panics: a test of a hang must fail,
/// not hang itself. Returns the output and how long it ran.
pub fn run_at_most(mut command: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dockless");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = Output {
                status,
                stdout: stdout.join().unwrap(),
                stderr: stderr.join().unwrap(),
            };
            return (output, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let said = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("dockless still ran after {limit:?} (killed); stderr: {said}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
