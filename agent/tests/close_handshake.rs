//! The close handshake over loopback TCP: a client that writes requests and CLOSE in one write
//! gets every answer, in order, then the gate's CLOSE, then the end of the stream; the learner
//! hears `client_closed` once; the counters count both CLOSEs.

mod common;

use bytes::Bytes;
use common::{req, Client, RecLearner};
use gatekit_agent::*;
use gatekit_codec::*;
use std::sync::Arc;

#[tokio::test]
async fn requests_then_close_in_one_write_lose_nothing() {
    // Bounded: a gate that never writes or never ends the stream fails here instead of hanging.
    tokio::time::timeout(std::time::Duration::from_secs(10), close_handshake())
        .await
        .expect("the close handshakes finished within 10 s");
}

async fn close_handshake() {
    let learner = Arc::new(RecLearner::default());
    let echo = |_s: Arc<Session>, _f: String, body: Bytes| async move { Ok(body) };
    let gate = Gate::builder()
        .services(Services {
            backends: Backends::new().with("echo", echo),
            learner: learner.clone(),
            ..Services::default()
        })
        .build();
    let (addr, _) = gate.listen("127.0.0.1:0").await.unwrap();
    for n in [1u32, 10] {
        let mut c = Client::connect(addr).await;
        let sid = c.handshake().await;
        let handle = gate.agent(&sid).unwrap();
        let mut burst: Vec<Packet> = (1..=n)
            .map(|id| req(id, "echo/say", format!("m{id}")))
            .collect();
        burst.push(Packet::Close(Close {
            code: CloseCode::Normal,
            reason: Text::from("bye"),
        }));
        c.send_all(&burst).await;
        for id in 1..=n {
            let r = c.recv_response().await;
            assert_eq!(
                (r.id.get(), r.status, &r.body[..]),
                (id, Status::Ok, format!("m{id}").as_bytes()),
                "{n} requests"
            );
        }
        assert_eq!(
            c.recv().await,
            Some(Packet::Close(Close {
                code: CloseCode::Normal,
                reason: Text::from("bye"),
            }))
        );
        assert_eq!(
            c.recv().await,
            None,
            "the gate ends the stream after its CLOSE"
        );
        // HANDSHAKE, the requests, CLOSE in; WELCOME, the answers, CLOSE out.
        assert_eq!(handle.received(), 1 + u64::from(n) + 1);
        assert_eq!(handle.sent(), 1 + u64::from(n) + 1);
    }
    let reasons: Vec<CloseReason> = learner.lifecycles().into_values().collect();
    assert_eq!(
        reasons,
        [CloseReason::ClientClosed, CloseReason::ClientClosed]
    );
}
