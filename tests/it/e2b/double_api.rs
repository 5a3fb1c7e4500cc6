//! The double's API keeps E2B's rules (double_rules.rs names where each comes from), checked
//! with raw requests: names, CPU and memory, an alias equal to a template ID, access tokens on
//! the cloud, steps, the three `fromImageRegistry` kinds, tags, force, list and delete.

use serde_json::{Value, json};

use crate::support::registry::{RegistryAuth, TestRegistry};

use super::double::E2bDouble;
use super::*;

struct Raw {
    http: reqwest::Client,
    base: String,
}

impl Raw {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("x-api-key", API_KEY);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/v3/templates", Some(body)).await
    }

    /// Asserts a refusal with E2B's status and message.
    async fn refused(&self, body: Value, status: u16, message: &str) {
        let (got, answer) = self.create(body.clone()).await;
        assert_eq!(
            (got, answer["message"].as_str()),
            (status, Some(message)),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_double_keeps_e2bs_rules() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    double.allow_access_token(ACCESS_TOKEN);
    let raw = Raw {
        http: reqwest::Client::new(),
        base: double.api.url(),
    };

    // Names: id.go's ParseName, the team's namespace, openapi's 128 characters.
    raw.refused(json!({}), 400, "Name is required").await;
    raw.refused(
        json!({"name": "web sandbox"}),
        400,
        "Invalid name: invalid template ID: web sandbox",
    )
    .await;
    raw.refused(
        json!({"name": "web:v 1"}),
        400,
        "Invalid name: invalid tag: v 1",
    )
    .await;
    raw.refused(
        json!({"name": "other/web"}),
        400,
        "namespace 'other' must match your team 'acme'",
    )
    .await;
    raw.refused(
        json!({"name": "a".repeat(129)}),
        400,
        "Invalid request body: name: maximum string length is 128",
    )
    .await;
    raw.refused(
        json!({"name": "web", "tags": ["ok", "bad tag"]}),
        400,
        "Invalid tag: invalid tag 'bad tag': invalid tag: bad tag",
    )
    .await;
    // Resources: limits.go, in its order and words.
    raw.refused(
        json!({"name": "web", "cpuCount": 0}),
        400,
        "CPU count must be at least 1",
    )
    .await;
    raw.refused(
        json!({"name": "web", "cpuCount": 3}),
        400,
        "CPU count must be 1 or an even number",
    )
    .await;
    raw.refused(
        json!({"name": "web", "cpuCount": 34}),
        400,
        "CPU count must be at most 32",
    )
    .await;
    raw.refused(json!({"name": "web", "cpuCount": 16}), 400, "CPU count can't be higher than 8 (if you need to increase this limit, please contact support)").await;
    raw.refused(
        json!({"name": "web", "memoryMB": 64}),
        400,
        "Memory must be at least 128 MiB",
    )
    .await;
    raw.refused(
        json!({"name": "web", "memoryMB": 513}),
        400,
        "Memory must be divisible by 2",
    )
    .await;

    // A new template: names in the team's namespace, the name's tag first, `default` without.
    let (status, first) = raw
        .create(json!({"name": "Web-Sandbox:v1", "tags": ["stable", "v1"], "cpuCount": 1, "memoryMB": 512}))
        .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["names"], json!(["acme/web-sandbox"]));
    assert_eq!(first["tags"], json!(["v1", "stable"]));
    let template_id = first["templateID"].as_str().unwrap().to_owned();
    assert_eq!(template_id.len(), 20);
    let build = double.build(first["buildID"].as_str().unwrap()).unwrap();
    assert_eq!((build.cpu_count, build.memory_mb), (1, 512));
    assert_eq!(build.tags, ["v1", "stable"]);
    // The same name (bare or namespaced) is the same template; `default` when no tag is given.
    let (_, again) = raw.create(json!({"name": "acme/web-sandbox"})).await;
    assert_eq!(again["templateID"], template_id.as_str());
    assert_eq!(again["tags"], json!(["default"]));
    // register_build.go: an alias equal to any template ID, even its own, is refused.
    raw.refused(
        json!({"name": template_id}),
        409,
        &format!("Alias '{template_id}' is already used"),
    )
    .await;
    raw.refused(
        json!({"name": format!("acme/{template_id}:v2")}),
        409,
        &format!("Alias '{template_id}' is already used"),
    )
    .await;

    // The list shows names, aliases and the last build's status.
    let (status, list) = raw.call("GET", "/templates", None).await;
    assert_eq!(status, 200);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["templateID"] == template_id.as_str())
        .unwrap();
    assert_eq!(entry["names"], json!(["acme/web-sandbox"]));
    assert_eq!(entry["aliases"], json!(["web-sandbox"]));
    assert_eq!(entry["buildCount"], 2);
    assert_eq!(entry["buildStatus"], "waiting");

    // Starting a build: steps and the three registry kinds are checked before anything runs.
    let build_id = again["buildID"].as_str().unwrap().to_owned();
    let start = format!("/v2/templates/{template_id}/builds/{build_id}");
    let image = format!("{}/nothing/here:1", backing.host);
    let starts: [(Value, &str); 8] = [
        (
            json!({"fromImage": image, "steps": [{"type": "EXPOSE", "args": ["80"]}]}),
            "Invalid request body: steps[0]: unknown step type \"EXPOSE\"; E2B knows RUN, COPY, ENV, WORKDIR, USER",
        ),
        (
            json!({"fromImage": image, "steps": [{"type": "USER", "args": "root"}]}),
            "Invalid request body: steps[0]: args must be an array of strings",
        ),
        (
            json!({"fromImage": image, "steps": [{"type": "WORKDIR", "args": ["/a", "/b"]}]}),
            "Invalid request body: steps[0]: WORKDIR takes exactly one argument",
        ),
        (
            json!({"fromImage": image, "force": "yes"}),
            "Invalid request body: force must be a boolean",
        ),
        (
            json!({"fromImage": image, "fromImageRegistry": {"type": "registry", "username": "u"}}),
            "Invalid request body: fromImageRegistry: registry registry requires a non-empty \"password\"",
        ),
        (
            json!({"fromImage": image, "fromImageRegistry": {"type": "aws", "awsAccessKeyId": "AKIA", "awsSecretAccessKey": "s"}}),
            "Invalid request body: fromImageRegistry: aws registry requires a non-empty \"awsRegion\"",
        ),
        (
            json!({"fromImage": image, "fromImageRegistry": {"type": "gcp", "serviceAccountJson": "{\"type\":\"user\"}"}}),
            "Invalid request body: fromImageRegistry: serviceAccountJson is not a service account key",
        ),
        (
            json!({"fromImage": image, "fromImageRegistry": {"type": "docker"}}),
            "Invalid request body: fromImageRegistry: unknown type Some(\"docker\"), expected aws, gcp or registry",
        ),
    ];
    for (body, message) in starts {
        let (status, answer) = raw.call("POST", &start, Some(body.clone())).await;
        assert_eq!(
            (status, answer["message"].as_str()),
            (400, Some(message)),
            "{body}"
        );
    }
    assert_eq!(double.build(&build_id).unwrap().status, "waiting");
    // A valid start records the steps' user and directory (E2B's defaults where none is given).
    let (status, _) = raw
        .call("POST", &start, Some(json!({"fromImage": image, "force": true,
            "fromImageRegistry": {"type": "aws", "awsAccessKeyId": "AKIA1", "awsSecretAccessKey": "s", "awsRegion": "eu-west-1"},
            "steps": [{"type": "USER", "args": ["app"], "force": false}, {"type": "RUN", "args": ["true"]}]})))
        .await;
    assert_eq!(status, 202);
    let runtime = double.build(&build_id).unwrap().runtime.unwrap();
    assert_eq!(
        (runtime.user.as_str(), runtime.workdir.as_str()),
        ("app", "/home/user")
    );
    let (status, answer) = raw
        .call("POST", &start, Some(json!({"fromImage": image})))
        .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("build is not in waiting state"))
    );

    // Quota: the team's concurrent builds (429, E2B's words).
    double.limit_concurrent_builds(0);
    let (status, answer) = raw.create(json!({"name": "another"})).await;
    assert_eq!(status, 429);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("you have reached the maximum number of concurrent template builds (0)")
    );

    // Delete by name or ID; the alias is free again afterwards.
    let (status, _) = raw.call("DELETE", "/templates/web-sandbox", None).await;
    assert_eq!(status, 204);
    assert!(double.template(&template_id).is_none());
    let (status, answer) = raw
        .call("DELETE", &format!("/templates/{template_id}"), None)
        .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (
            404,
            Some(format!("template '{template_id}' not found").as_str())
        )
    );

    // On the cloud, access tokens are switched off for everyone.
    let token = |http: &reqwest::Client| {
        http.get(format!("{}/templates", double.api.url()))
            .header("authorization", format!("Bearer {ACCESS_TOKEN}"))
            .send()
    };
    assert_eq!(token(&raw.http).await.unwrap().status().as_u16(), 200);
    double.act_as_cloud();
    let answer = token(&raw.http).await.unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(body["message"], super::double::DEPRECATED);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}
