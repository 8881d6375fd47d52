//! Graceful shutdown of the server: it stops accepting, answers the calls in flight, sends every
//! client CLOSE `shutdown`, and ends within its grace period; what is still running at the end of
//! the grace period is cut.

#[path = "../../agent/tests/common/native_client.rs"]
mod native_client;

use bytes::Bytes;
use gatekit_agent::{BackendError, Session};
use gatekit_codec::{CloseCode, Status};
use gatekit_server::{Dur, Server, ServerConfig};
use native_client::{req, Client};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(grace: Dur) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    c.gate.shutdown_grace = grace;
    c.backends
        .modules
        .insert("slow".into(), gatekit_server::config::ModuleRoute::Rust);
    c
}

fn slow(delay: Duration) -> impl gatekit_agent::Backend {
    move |_s: Arc<Session>, _f: String, body: Bytes| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, BackendError>(body)
    }
}

#[tokio::test]
async fn calls_in_flight_are_answered_before_the_close() {
    let running = Server::new(config(Dur::secs(5)))
        .backend("slow", slow(Duration::from_millis(300)))
        .start()
        .await
        .unwrap();
    let addr = running.listeners()[0].addr;
    let mut busy = Client::connect(addr).await;
    busy.handshake().await;
    let mut idle = Client::connect(addr).await;
    idle.handshake().await;
    busy.send(req(1, "slow/x", "in flight")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let report = running.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!((report.connections, report.aborted), (2, 0));
    let r = busy.recv_response().await;
    assert_eq!((r.status, &r.body[..]), (Status::Ok, &b"in flight"[..]));
    busy.expect_close(CloseCode::Shutdown).await;
    idle.expect_close(CloseCode::Shutdown).await;
    // It stopped accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn what_outlives_the_grace_period_is_cut() {
    let running = Server::new(config(Dur::millis(300)))
        .backend("slow", slow(Duration::from_secs(60)))
        .start()
        .await
        .unwrap();
    let addr = running.listeners()[0].addr;
    let mut c = Client::connect(addr).await;
    c.handshake().await;
    c.send(req(1, "slow/x", "forever")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let report = running.shutdown().await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!((report.connections, report.aborted), (1, 1));
    assert_eq!(c.recv().await, None, "cut without an answer");
}
