//! Our client channel beside tonic's `Channel` (tonic 0.14.9), both calling
//! tonic's `Server`: the same cases, the same answers.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::Code;

use crate::support::{
    ChannelKind, Client, ServerKind, assert_big_messages, assert_calls_go_on, assert_deadline,
    assert_dropped_call_cancelled, assert_error_trailers, assert_statuses, serve, serve_on,
};

const BOTH: [ChannelKind; 2] = [ChannelKind::Ours, ChannelKind::Tonic];
const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn statuses_are_the_same_through_both_channels() {
    let served = serve(ServerKind::Tonic, LONG).await;
    for kind in BOTH {
        let mut client = Client::new(kind, served.addr);

        assert_statuses(&mut client, &["/testing.dummy.v1.DummyService/Nope"], kind).await;
    }
}

#[tokio::test]
async fn trailers_arrive_with_their_message_and_metadata() {
    let served = serve(ServerKind::Tonic, LONG).await;
    for kind in BOTH {
        let mut client = Client::new(kind, served.addr);

        assert_error_trailers(&mut client, kind).await;
    }
}

/// The request's `grpc-timeout` reaches the server, which ends the call
/// there (tonic's server answers CANCELLED).
#[tokio::test]
async fn the_deadline_goes_to_the_server_and_ends_the_call() {
    let served = serve(ServerKind::Tonic, LONG).await;
    for kind in BOTH {
        let mut client = Client::new(kind, served.addr);

        assert_deadline(&mut client, Code::Cancelled, kind).await;
    }
}

#[tokio::test]
async fn after_goaway_at_the_maximum_age_calls_go_on_over_a_new_connection() {
    let served = serve(ServerKind::Tonic, Duration::from_millis(300)).await;
    for kind in BOTH {
        let mut client = Client::new(kind, served.addr);

        assert_calls_go_on(&mut client, kind).await;
    }
}

#[tokio::test]
async fn a_server_that_goes_and_comes_back_is_unavailable_then_reconnected() {
    for kind in BOTH {
        let served = serve(ServerKind::Tonic, LONG).await;
        let addr = served.addr;
        let mut client = Client::new(kind, addr);
        assert_eq!(
            client.execute("before").await,
            Ok("before".to_owned()),
            "{kind:?}"
        );

        drop(served);
        let mut refused = false;
        for _ in 0..50 {
            if client.execute("gone").await == Err(Code::Unavailable) {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "{kind:?}: UNAVAILABLE while the server is gone");

        let tcp = TcpListener::bind(addr).await.expect("the same port again");
        let _back = serve_on(ServerKind::Tonic, tcp, LONG).await;
        assert_eq!(
            client.execute("after").await,
            Ok("after".to_owned()),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn messages_larger_than_the_flow_control_windows_go_and_come_whole() {
    let served = serve(ServerKind::Tonic, LONG).await;
    for kind in BOTH {
        let mut client = Client::new(kind, served.addr);

        assert_big_messages(&mut client, kind).await;
    }
}

#[tokio::test]
async fn a_dropped_call_is_cancelled_on_the_server() {
    for kind in BOTH {
        let served = serve(ServerKind::Tonic, LONG).await;
        let client = Client::new(kind, served.addr);

        assert_dropped_call_cancelled(client, &served, kind).await;
    }
}
