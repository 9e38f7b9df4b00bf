//! The deadline layer against a service that answers late, stalls or never answers.

use bytes::Bytes;
use http_body_util::BodyExt as _;

use super::*;

#[test]
fn grpc_timeout_is_announced_in_milliseconds_rounded_up() {
    assert_eq!(grpc_timeout(Duration::from_secs(1)), "1000m");
    assert_eq!(grpc_timeout(Duration::from_micros(1500)), "2m");
}

#[tokio::test(start_paused = true)]
async fn a_call_without_an_answer_fails_with_deadline_exceeded() {
    let service = tower::service_fn(|_request: Request<()>| {
        std::future::pending::<Result<Response<()>, BoxError>>()
    });
    let mut service = DeadlineLayer::new(Duration::from_millis(100)).layer(service);

    let error = service.call(Request::new(())).await.expect_err("times out");

    let status = error.downcast_ref::<Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
}

/// A body that sends `first` and then nothing, ever.
struct Stalls {
    first: Option<Bytes>,
}

impl Body for Stalls {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
            None => Poll::Pending,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_whose_body_stalls_ends_at_the_deadline() {
    let service = tower::service_fn(|_request: Request<()>| async {
        Ok::<_, BoxError>(Response::new(Stalls {
            first: Some(Bytes::from_static(b"part of a message")),
        }))
    });
    let mut service = DeadlineLayer::new(Duration::from_millis(100)).layer(service);
    let started = Instant::now();

    let response = service
        .call(Request::new(()))
        .await
        .expect("headers in time");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    let error = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("ended by the deadline, not this test's timeout")
        .expect("the end")
        .expect_err("past the deadline");
    let after = body.frame().await;

    assert_eq!(
        first.into_data().ok(),
        Some(Bytes::from_static(b"part of a message"))
    );
    let status = error.downcast_ref::<Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert!(after.is_none(), "the body ends with the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_replaces_the_timeout_on_the_wire_and_here() {
    let service = tower::service_fn(|request: Request<()>| {
        let sent = request.headers().get("grpc-timeout").cloned();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, BoxError>(Response::new(sent))
        }
    });
    let mut service = DeadlineLayer::new(Duration::from_secs(1)).layer(service);
    let mut request = Request::new(());
    let deadline = Instant::now() + Duration::from_millis(150);
    request.extensions_mut().insert(CallDeadline(deadline));
    let outer = tokio::time::sleep_until(deadline);
    tokio::pin!(outer);

    // The caller waits on the same instant, as Recommendations::call does:
    // the attempt, polled first, must end itself with DEADLINE_EXCEEDED.
    let call = service.call(request);
    let error = tokio::select! {
        biased;
        result = call => result.expect_err("times out"),
        () = &mut outer => panic!("the caller's timer fired before the attempt's"),
    };

    let status = error.downcast_ref::<Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(CallDeadline(Instant::now() + Duration::from_millis(400)));
    let sent = service.call(request).await.expect("answers in time");
    assert_eq!(
        sent.into_body().into_inner(),
        Some(HeaderValue::from_static("400m"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_is_announced_in_milliseconds_rounded_up() {
    let echo = tower::service_fn(|request: Request<()>| async move {
        Ok::<_, BoxError>(Response::new(
            request.headers().get("grpc-timeout").cloned(),
        ))
    });
    let mut service = DeadlineLayer::new(Duration::from_secs(1)).layer(echo);

    let mut announced = Vec::new();
    for left in [
        Duration::from_secs(1),
        Duration::from_micros(999_500),
        Duration::from_micros(1_000_001),
        Duration::from_micros(1),
    ] {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(CallDeadline(Instant::now() + left));
        let sent = service.call(request).await.expect("ok");
        announced.push(sent.into_body().into_inner());
    }

    let expected = ["1000m", "1000m", "1001m", "1m"].map(|v| Some(HeaderValue::from_static(v)));
    assert_eq!(announced, expected);
}

#[tokio::test]
async fn the_deadline_is_sent_unless_the_caller_set_one() {
    let echo = tower::service_fn(|request: Request<()>| async move {
        Ok::<_, BoxError>(Response::new(
            request.headers().get("grpc-timeout").cloned(),
        ))
    });
    let mut service = DeadlineLayer::new(Duration::from_secs(1)).layer(echo);
    let mut own = Request::new(());
    own.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("50m"));

    let sent = service
        .call(Request::new(()))
        .await
        .expect("ok")
        .into_body()
        .into_inner();
    let kept = service
        .call(own)
        .await
        .expect("ok")
        .into_body()
        .into_inner();

    assert_eq!(sent, Some(HeaderValue::from_static("1000m")));
    assert_eq!(kept, Some(HeaderValue::from_static("50m")));
}

/// A server that ends the call at its `grpc-timeout` with CANCELLED,
/// at this call's deadline or after it (`late`), or before it.
fn cancelling_at(
    deadline: Instant,
    late: bool,
) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> {
    tower::service_fn(move |_request: Request<()>| async move {
        let at = if late {
            deadline
        } else {
            deadline - Duration::from_millis(10)
        };
        tokio::time::sleep_until(at).await;
        let mut response = Response::new(());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from(Code::Cancelled as i32));
        Ok::<_, BoxError>(response)
    })
}

#[tokio::test(start_paused = true)]
async fn a_server_cancelling_at_the_deadline_is_the_deadline_exceeded() {
    let deadline = Instant::now() + Duration::from_millis(100);
    let mut request = Request::new(());
    request.extensions_mut().insert(CallDeadline(deadline));
    let mut service =
        DeadlineLayer::new(Duration::from_secs(1)).layer(cancelling_at(deadline, true));

    // Both timers fire at the same instant; the answer is polled first.
    let error = service.call(request).await.expect_err("past the deadline");

    let status = error.downcast_ref::<Status>().expect("a gRPC status");
    assert_eq!(status.code(), Code::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_server_cancelling_before_the_deadline_is_passed_on() {
    let deadline = Instant::now() + Duration::from_millis(100);
    let mut request = Request::new(());
    request.extensions_mut().insert(CallDeadline(deadline));
    let mut service =
        DeadlineLayer::new(Duration::from_secs(1)).layer(cancelling_at(deadline, false));

    let response = service.call(request).await.expect("the server's answer");

    assert_eq!(status_code(response.headers()), Some(Code::Cancelled));
}
