//! The real CNCF registry (Debian's `docker-registry`), started per test on a free loopback
//! port in a temp dir, in one of three auth setups; killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::token_server::{ISSUER, SERVICE, TokenServer};

pub const USER: &str = "tester";
pub const PASSWORD: &str = "correct horse battery staple";

/// How the registry authenticates clients.
pub enum RegistryAuth<'a> {
    None,
    /// htpasswd (bcrypt) with [`USER`] / [`PASSWORD`].
    Basic,
    /// Bearer tokens from this token server, verified through its certificate.
    Token(&'a TokenServer),
}

pub struct TestRegistry {
    child: Child,
    dir: TempDir,
    pub host: String,
}

impl TestRegistry {
    pub async fn start(auth: RegistryAuth<'_>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let auth_section = match auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic => {
                let htpasswd = dir.path().join("htpasswd");
                let status = Command::new("htpasswd")
                    .args(["-Bbc"])
                    .arg(&htpasswd)
                    .args([USER, PASSWORD])
                    .stderr(Stdio::null())
                    .status()
                    .expect("htpasswd (apache2-utils) is installed");
                assert!(status.success(), "htpasswd failed");
                format!(
                    "auth:\n  htpasswd:\n    realm: dockless-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            RegistryAuth::Token(server) => {
                let bundle = dir.path().join("token-cert.pem");
                std::fs::write(&bundle, &server.cert_pem).expect("write the cert bundle");
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    server.realm(),
                    bundle.display()
                )
            }
        };
        let storage = dir.path().join("storage");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: dockless-test-secret\n{auth_section}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (Debian package docker-registry)");
        let registry = Self { child, dir, host };
        registry.wait_until_up().await;
        registry
    }

    async fn wait_until_up(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://{}/v2/", self.host);
        while Instant::now() < deadline {
            if client.get(&url).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the registry did not answer on {url} within 20 s; its log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the OS picks it; the registry binds it next).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
