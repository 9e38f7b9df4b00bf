//! The catalog changed under the running binary: on disk (a rename, the
//! way the kubelet and most tools write) and on SIGHUP; a bad file keeps
//! what is served, and says which file and line is wrong. SIGHUP never
//! stops the service.

use std::{path::Path, time::Duration};

use crate::helpers::{admin_metrics, terminate};
use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use service_kit::testing::Process;
use tonic::transport::Channel;

/// A catalog of one mystery book titled `title`.
fn one_book(title: &str) -> String {
    format!("id,title,author,category\n1,{title},Someone,mystery\n")
}

/// Replaces `path`'s content at once, as a rename does.
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("written");
    std::fs::rename(&next, path).expect("renamed");
}

fn start(catalog: &Path, reload_interval: &str) -> Process {
    let mut process = Process::start(
        Path::new(env!("CARGO_BIN_EXE_recommendations")),
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            &format!("--catalog={}", catalog.display()),
            &format!("--reload-interval={reload_interval}"),
        ],
    );
    process.serving();
    process
}

async fn client(process: &Process) -> RecommendationsServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", process.listener("grpc")))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connects");
    RecommendationsServiceClient::new(channel)
}

/// The title of the mystery book recommended now.
async fn served(client: &mut RecommendationsServiceClient<Channel>) -> String {
    let books = client
        .recommend(v1::RecommendRequest {
            user_id: 1,
            category: v1::Category::Mystery as i32,
            max_results: 1,
        })
        .await
        .expect("served")
        .into_inner()
        .books;
    books
        .first()
        .map(|book| book.title.clone())
        .unwrap_or_default()
}

/// Calls until `title` is served, for at most 10 s.
async fn until_served(client: &mut RecommendationsServiceClient<Channel>, title: &str) -> bool {
    for _ in 0..200 {
        if served(client).await == title {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_catalog_changed_on_disk_is_served_and_a_bad_one_kept_out() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let catalog = dir.path().join("books.csv");
    std::fs::write(&catalog, one_book("Before")).expect("written");
    let mut process = start(&catalog, "100ms");
    let mut client = client(&process).await;
    assert_eq!(served(&mut client).await, "Before");

    replace(&catalog, &one_book("After"));
    assert!(
        until_served(&mut client, "After").await,
        "the new catalog is served"
    );

    // A duplicate id on line 3: refused whole, the last good one stays.
    replace(
        &catalog,
        "id,title,author,category\n1,Bad,X,mystery\n1,Worse,Y,mystery\n",
    );
    let failed = r#"recommendations_reload_failures_total{source="catalog"} 1"#;
    let mut text = String::new();
    for _ in 0..100 {
        text = admin_metrics(&process).await;
        if text.contains(failed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains(failed), "{text}");
    assert!(text.contains(r#"recommendations_last_reload_successful{source="catalog"} 0"#));
    assert_eq!(
        served(&mut client).await,
        "After",
        "still the last good catalog"
    );
    let errors: Vec<String> = process
        .log()
        .iter()
        .filter(|event| event["level"] == "ERROR")
        .map(|event| event["cause"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(errors.len(), 1, "one error for one bad file: {errors:?}");
    assert!(
        errors[0].contains("books.csv") && errors[0].contains("line 3"),
        "names the file and the line: {errors:?}"
    );

    assert!(process.is_running());
    assert_eq!(terminate(process).await, Some(0));
}

#[tokio::test]
async fn sighup_reloads_at_once_and_never_stops_the_service() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let catalog = dir.path().join("books.csv");
    std::fs::write(&catalog, one_book("Before")).expect("written");
    // Files are checked only hourly: the reload can only be SIGHUP's.
    let mut process = start(&catalog, "1h");
    let mut client = client(&process).await;

    replace(&catalog, &one_book("After"));
    process.hangup();

    assert!(
        until_served(&mut client, "After").await,
        "reloaded on SIGHUP"
    );
    process.hangup();
    assert_eq!(served(&mut client).await, "After");
    assert!(process.is_running(), "SIGHUP does not stop the service");
    let text = admin_metrics(&process).await;
    assert!(text.contains(r#"recommendations_last_reload_successful{source="catalog"} 1"#));
    assert_eq!(terminate(process).await, Some(0), "SIGTERM still drains");
}
