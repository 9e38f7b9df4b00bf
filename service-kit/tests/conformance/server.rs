//! Our gRPC server beside tonic's `Server` (tonic 0.14.9): the same cases,
//! the same answers, but for one difference that is ours on purpose (the
//! deadline: see `deadlines_end_the_call_on_the_server`).

use std::time::Duration;

use tonic::Code;

use crate::support::{
    ChannelKind, Client, ServerKind, assert_big_messages, assert_calls_go_on, assert_deadline,
    assert_dropped_call_cancelled, assert_error_trailers, assert_statuses, serve,
};

const BOTH: [ServerKind; 2] = [ServerKind::Ours, ServerKind::Tonic];
const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn statuses_are_the_same_from_both_servers() {
    for kind in BOTH {
        let served = serve(kind, LONG).await;
        let mut client = Client::new(ChannelKind::Tonic, served.addr);
        let unknown = [
            "/testing.dummy.v1.DummyService/Nope",
            "/testing.dummy.v1.Unknown/Execute",
        ];

        assert_statuses(&mut client, &unknown, kind).await;
    }
}

#[tokio::test]
async fn an_error_status_keeps_its_message_and_metadata_in_the_trailers() {
    for kind in BOTH {
        let served = serve(kind, LONG).await;
        let mut client = Client::new(ChannelKind::Tonic, served.addr);

        assert_error_trailers(&mut client, kind).await;
    }
}

/// The one difference, ours on purpose: a call still running at its
/// client's `grpc-timeout` ends with DEADLINE_EXCEEDED, as the gRPC spec
/// names it; tonic's server answers CANCELLED ("Timeout expired"). Called
/// through our channel, which keeps no timer of its own, so the answer seen
/// is the server's (tonic's channel would end the call itself at the same
/// moment).
#[tokio::test]
async fn deadlines_end_the_call_on_the_server() {
    for (kind, expected) in [
        (ServerKind::Ours, Code::DeadlineExceeded),
        (ServerKind::Tonic, Code::Cancelled),
    ] {
        let served = serve(kind, LONG).await;
        let mut client = Client::new(ChannelKind::Ours, served.addr);

        assert_deadline(&mut client, expected, kind).await;
    }
}

#[tokio::test]
async fn past_their_maximum_age_connections_go_away_and_calls_go_on() {
    for kind in BOTH {
        let served = serve(kind, Duration::from_millis(300)).await;
        let mut client = Client::new(ChannelKind::Tonic, served.addr);

        assert_calls_go_on(&mut client, kind).await;
    }
}

#[tokio::test]
async fn messages_larger_than_the_flow_control_windows_arrive_whole() {
    for kind in BOTH {
        let served = serve(kind, LONG).await;
        let mut client = Client::new(ChannelKind::Tonic, served.addr);

        assert_big_messages(&mut client, kind).await;
    }
}

#[tokio::test]
async fn a_call_the_client_drops_is_cancelled_on_the_server() {
    for kind in BOTH {
        let served = serve(kind, LONG).await;
        let client = Client::new(ChannelKind::Tonic, served.addr);

        assert_dropped_call_cancelled(client, &served, kind).await;
    }
}
