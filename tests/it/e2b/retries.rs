//! E2B's API client under the one HTTP policy, against the double: a busy API's
//! `Retry-After` (seconds or a date) is waited out before the next try, and an answer whose
//! body breaks off is a failure that says how much came (tried again while tries remain),
//! never a shorter answer read as a whole one.

use std::time::{Duration, Instant, SystemTime};

use dockless_e2b::api::{ApiClient, ApiError};
use dockless_e2b::credentials::{CredentialKind, CredentialOrigin, E2bCredential};
use dockless_registry::http::{HttpPolicy, RetryPolicy};

use super::API_KEY;
use super::double::{ApiFault, E2bDouble};

/// The policy's retries with a backoff far shorter than any `Retry-After` the tests send,
/// so a wait of seconds can only come from honouring it.
fn quick_retries(max_retries: u32) -> HttpPolicy {
    HttpPolicy {
        retry: RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..HttpPolicy::default()
    }
}

/// The double's API (its gateway's registry is never reached by these calls) and a client
/// for it with an API key.
async fn api_with(policy: HttpPolicy) -> (E2bDouble, ApiClient) {
    let double = E2bDouble::start("127.0.0.1:9").await;
    double.allow_api_key(API_KEY);
    let credential = E2bCredential::new(
        CredentialKind::ApiKey,
        CredentialOrigin::EnvApiKey,
        API_KEY.to_owned().into(),
    );
    let client = ApiClient::new(double.api.url().parse().unwrap(), credential, policy).unwrap();
    (double, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_api_is_waited_for_as_retry_after_says_and_then_answers() {
    let (double, api) = api_with(quick_retries(3)).await;
    double.queue_api_fault(ApiFault::Busy {
        status: 503,
        retry_after: "1".into(),
    });
    // HTTP dates have whole seconds: 2 to 3 s ahead now, so still 1 to 2 s ahead when the
    // client reads it after the first wait.
    let in_three_seconds = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    double.queue_api_fault(ApiFault::Busy {
        status: 429,
        retry_after: in_three_seconds,
    });
    let started = Instant::now();
    let templates = api
        .list_templates()
        .await
        .expect("answered after two waits");
    let took = started.elapsed();
    assert!(templates.is_empty(), "{templates:?}");
    let tries: Vec<_> = double.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        tries, ["/v2/templates"; 3],
        "a 503 and a 429, then the answer"
    );
    assert!(
        took > Duration::from_secs(2),
        "Retry-After (1 s, then a date 1-2 s ahead) not waited out: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_breaks_off_is_tried_again_and_then_reported_with_how_much_came() {
    let (double, api) = api_with(quick_retries(1)).await;
    for _ in 0..2 {
        double.queue_api_fault(ApiFault::BrokenBody { keep: 1 });
    }
    let error = api
        .list_templates()
        .await
        .expect_err("no whole answer came");
    let ApiError::BrokenAnswer {
        status, received, ..
    } = &error
    else {
        panic!("not reported as an answer that broke off: {error:?}");
    };
    assert_eq!((*status, received.as_str()), (200, "1 of 2 bytes"));
    let message = error.to_string();
    assert!(
        message.contains("list templates") && message.contains("(2 tries)"),
        "{message}"
    );
    assert!(!message.contains(API_KEY), "{message}");
    assert_eq!(double.seen().len(), 2, "one retry, as the policy allows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_answer_that_broke_off_the_next_whole_one_is_read() {
    let (double, api) = api_with(quick_retries(1)).await;
    double.queue_api_fault(ApiFault::BrokenBody { keep: 1 });
    let templates = api
        .list_templates()
        .await
        .expect("the second answer is whole");
    assert!(templates.is_empty(), "{templates:?}");
    assert_eq!(double.seen().len(), 2);
}
