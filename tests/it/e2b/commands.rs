//! `template status`, `template list` and `template delete`: enough to manage templates in CI.

use crate::support::registry::{RegistryAuth, TestRegistry};

use super::double::E2bDouble;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_list_and_delete_manage_templates_from_ci() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let ws = template_workspace();
    let key = [("E2B_API_KEY", API_KEY)];
    let image = format!("{}/sandboxes/managed:1", user_registry.host);
    let built = json(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image, "--json"],
        &key,
        "",
    ));
    let (template_id, build_id) = (
        built["templateID"].as_str().unwrap(),
        built["buildID"].as_str().unwrap(),
    );

    let list = json(&run(
        &ws,
        &double,
        &["template", "list", "--json"],
        &key,
        "",
    ));
    assert_eq!(list[0]["templateID"], template_id);
    assert_eq!(list[0]["names"][0], "acme/web-sandbox");
    assert_eq!(list[0]["buildID"], build_id);
    assert_eq!(list[0]["buildStatus"], "ready");
    let out = run(&ws, &double, &["template", "list"], &key, "");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("acme/web-sandbox")
                && l.contains(template_id)
                && l.ends_with("ready")),
        "{table}"
    );

    // Status: the logs (every page) and the state; --level drops what is below it.
    let status = ["template", "status", build_id, "--template", template_id];
    let out = run(&ws, &double, &status, &key, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready");
    assert!(stderr(&out).contains("[info] finalize: Template is ready"));
    assert!(
        !stderr(&out).contains("Provisioning step"),
        "debug entries are below info"
    );
    let mut follow = status.to_vec();
    follow.extend(["--follow", "--level", "debug"]);
    let out = run(&ws, &double, &follow, &key, "");
    assert_eq!(
        stderr(&out)
            .matches("[debug] provision: Provisioning step")
            .count(),
        super::double::PROVISION_LINES
    );
    let message = failure(&run(
        &ws,
        &double,
        &["template", "status", "nope", "--template", template_id],
        &key,
        "",
    ));
    assert!(message.contains("build not found"), "{message}");

    // Delete asks first; off a terminal it needs --yes.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "delete", "web-sandbox"],
        &key,
        "y\n",
    ));
    assert!(message.contains("pass --yes"), "{message}");
    assert!(double.template(template_id).is_some());
    let out = run(
        &ws,
        &double,
        &["template", "delete", "web-sandbox", "--yes"],
        &key,
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(double.template(template_id).is_none());
    let list = json(&run(
        &ws,
        &double,
        &["template", "list", "--json"],
        &key,
        "",
    ));
    assert_eq!(list, serde_json::json!([]));
}
