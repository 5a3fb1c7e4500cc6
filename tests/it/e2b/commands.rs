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

/// `template list` reads E2B's current list, `GET /v2/templates`, every page of it (the next
/// page's cursor in `X-Next-Token`), never the deprecated `GET /templates`; `auth status`
/// says the credential was not checked, and `--check` asks E2B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_list_reads_every_page_of_the_current_list_and_auth_status_can_check() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    double.cap_page_size(2);
    let ids: Vec<String> = ["one", "two", "three", "four", "five"]
        .iter()
        .map(|alias| double.add_template(alias))
        .collect();
    let ws = template_workspace();
    let key = [("E2B_API_KEY", API_KEY)];
    let list = json(&run(
        &ws,
        &double,
        &["template", "list", "--json"],
        &key,
        "",
    ));
    let mut listed: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["templateID"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected, "every page, each template once");
    let asked: Vec<String> = double
        .seen()
        .iter()
        .filter(|r| r.server == "api")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(asked, ["/v2/templates"; 3], "three pages of two");

    let out = run(&ws, &double, &["auth", "status"], &key, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("not checked"), "{said}");
    assert_eq!(double.seen().len(), 3, "auth status alone asks E2B nothing");
    let out = run(&ws, &double, &["auth", "status", "--check"], &key, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted by E2B"));
    let wrong = [(
        "E2B_API_KEY",
        "e2b_0000000000000000000000000000000000000000",
    )];
    let message = failure(&run(
        &ws,
        &double,
        &["auth", "status", "--check"],
        &wrong,
        "",
    ));
    assert!(message.contains("Invalid API key"), "{message}");
}
