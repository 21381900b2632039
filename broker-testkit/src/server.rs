//! The HTTP/1.1 server: an accept loop of its own (not `axum::serve`) so a
//! request can close its TCP connection without any answer. Every request
//! passes the fault gate first: count, delay, drop, fail, then the routes.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::config::Endpoint;
use crate::state::Shared;
use crate::tokens::OAuthError;
use crate::{endpoints, grants};

/// The routes, below the issuer's path.
fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route(Endpoint::Discovery.path(), get(endpoints::discovery))
        .route(Endpoint::Jwks.path(), get(endpoints::jwks))
        .route(Endpoint::Authorize.path(), get(endpoints::authorize))
        .route(Endpoint::Token.path(), post(grants::token))
        .route(
            Endpoint::DeviceAuthorization.path(),
            post(endpoints::device_authorization),
        )
        .route("/device", get(endpoints::device_page))
        .route(
            Endpoint::Userinfo.path(),
            get(endpoints::userinfo).post(endpoints::userinfo),
        )
        .route(
            Endpoint::EndSession.path(),
            get(endpoints::end_session).post(endpoints::end_session),
        )
        .route(Endpoint::Revoke.path(), post(endpoints::revoke));
    let issuer_path = shared.issuer[shared.url.len()..].to_owned();
    let routes = if issuer_path.is_empty() {
        routes
    } else {
        Router::new().nest(&issuer_path, routes)
    };
    routes.with_state(shared)
}

/// What the fault gate decided for one request.
enum Gate {
    Pass,
    Drop,
    Fail(Response<Body>),
}

/// Count the call, sleep the delay, then take one armed drop or failure.
async fn gate(shared: &Shared, endpoint: Endpoint) -> Gate {
    shared.count(endpoint);
    let delay = shared.lock().faults[endpoint.index()].delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut inner = shared.lock();
    let faults = &mut inner.faults[endpoint.index()];
    if faults.drop_next > 0 {
        faults.drop_next -= 1;
        return Gate::Drop;
    }
    if let Some(fail) = faults.fail.as_mut() {
        fail.remaining -= 1;
        let status = StatusCode::from_u16(fail.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let answer = OAuthError::new(status, &fail.error, "injected failure").into_response();
        if fail.remaining == 0 {
            faults.fail = None;
        }
        return Gate::Fail(answer);
    }
    Gate::Pass
}

/// Serve `listener` until the returned task is aborted; aborting it drops
/// every connection task with it.
pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let router = router(Arc::clone(&shared));
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let _ = stream.set_nodelay(true);
            let kill = Arc::new(Notify::new());
            let service = {
                let kill = Arc::clone(&kill);
                let shared = Arc::clone(&shared);
                let router = router.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let kill = Arc::clone(&kill);
                    let shared = Arc::clone(&shared);
                    let router = router.clone();
                    async move {
                        if let Some(endpoint) = shared.endpoint_of(req.uri().path()) {
                            match gate(&shared, endpoint).await {
                                Gate::Pass => {}
                                Gate::Fail(answer) => return Ok::<_, Infallible>(answer),
                                Gate::Drop => {
                                    kill.notify_one();
                                    std::future::pending::<()>().await;
                                }
                            }
                        }
                        router.oneshot(req.map(Body::new)).await
                    }
                })
            };
            connections.spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                // Dropping the connection future closes the socket: the
                // client sees the connection end with no HTTP answer.
                tokio::select! {
                    _ = conn => {}
                    _ = kill.notified() => {}
                }
            });
        }
    })
}
