//! The double's gateway behaves as E2B's did (PROTOCOL.md §4), checked with raw requests, and
//! dockless keeps to its rules even when asked for chunked uploads.

use base64::Engine;

use crate::support::registry::{RegistryAuth, TestRegistry};

use super::double::E2bDouble;
use super::*;

fn basic(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_double_keeps_e2bs_rules() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_access_token(ACCESS_TOKEN);
    let http = reqwest::Client::new();
    let gateway = double.gateway.url();

    // The challenge names a realm only: no service, no scope.
    let answer = http.get(format!("{gateway}/v2/")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let challenge = answer.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(challenge, format!("Bearer realm=\"{gateway}/v2/token\""));
    assert_eq!(
        answer.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // No OAuth2.
    let answer = http
        .post(format!("{gateway}/v2/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);

    let token = |user: &str, scope: Option<&str>| {
        let mut request = http
            .get(format!("{gateway}/v2/token"))
            .header("authorization", basic(user, ACCESS_TOKEN));
        if let Some(scope) = scope {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("scope", scope)
                .finish();
            request = http
                .get(format!("{gateway}/v2/token?{query}"))
                .header("authorization", basic(user, ACCESS_TOKEN));
        }
        request.send()
    };
    // The username rule, the scope pattern, delete, and "a waiting build must exist".
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            token("_e2b_api_key", Some("repository:e2b/custom-envs/t:push"))
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            token("_e2b_access_token", Some("repository:other/t:push"))
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            token(
                "_e2b_access_token",
                Some("repository:e2b/custom-envs/t:delete")
            )
            .await
            .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            token(
                "_e2b_access_token",
                Some("repository:e2b/custom-envs/t:push,pull")
            )
            .await
            .unwrap()
        ),
        403
    );
    // Without a scope: a token, but one that grants nothing.
    let answer = token("_e2b_access_token", None).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let useless = body["token"].as_str().unwrap().to_owned();
    assert_eq!(useless.len(), 128);
    let answer = http
        .head(format!(
            "{gateway}/v2/e2b/custom-envs/t/blobs/sha256:{}",
            "0".repeat(64)
        ))
        .bearer_auth(&useless)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);

    // With a waiting build: a scoped token; uploads need Content-Length, land on relative
    // storage Locations, and take one PATCH at most.
    let created = http
        .post(format!("{}/templates", double.api.url()))
        .bearer_auth(ACCESS_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"dockerfile": "FROM scratch"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    let created: serde_json::Value =
        serde_json::from_slice(&created.bytes().await.unwrap()).unwrap();
    let template = created["templateID"].as_str().unwrap();
    let scope = format!("repository:e2b/custom-envs/{template}:push,pull");
    let answer = token("_e2b_access_token", Some(&scope)).await.unwrap();
    let granted: serde_json::Value =
        serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let granted = granted["token"].as_str().unwrap().to_owned();
    let uploads = format!("{gateway}/v2/e2b/custom-envs/{template}/blobs/uploads/");
    // Another template with this token: refused.
    let answer = http
        .post(format!("{gateway}/v2/e2b/custom-envs/other/blobs/uploads/"))
        .bearer_auth(&granted)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let mut stream = tokio::net::TcpStream::connect(double.gateway.addr)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            format!(
                "POST /v2/e2b/custom-envs/{template}/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {granted}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 411"), "{raw}");
    let answer = http
        .post(&uploads)
        .bearer_auth(&granted)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/artifacts-uploads/"), "{location}");
    let patch = |bytes: &'static [u8]| {
        http.patch(format!("{gateway}{location}"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };
    assert_eq!(patch(b"first").await.unwrap().status().as_u16(), 202);
    assert_eq!(patch(b"second").await.unwrap().status().as_u16(), 400);
    assert_eq!(double.violations(), ["a second PATCH chunk"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_pushes_stay_single_put_even_when_chunks_are_asked_for() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_access_token(ACCESS_TOKEN);
    let ws = template_workspace();
    ws.write(
        "big.bin",
        (0..200_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    ws.write(
        "e2b.Dockerfile",
        "FROM scratch\nCOPY app.txt big.bin /app/\n",
    );
    let out = run(
        &ws,
        &double,
        &["template", "build", "ctx", "--chunk-size", "1024", "--json"],
        &[("E2B_ACCESS_TOKEN", ACCESS_TOKEN)],
        "",
    );
    assert_eq!(json(&out)["status"], "ready");
    assert!(!double.seen().iter().any(|s| s.method == "PATCH"));
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}
