use bytes::{Bytes, BytesMut};
use gatekit_agent::*;
use gatekit_codec::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn loopback_request_response() {
    let backends = Backends::new().with(
        "echo",
        |_s: Arc<Session>, _f: String, body: Bytes| async move { Ok::<_, BackendError>(body) },
    );
    let gate = Gate::builder()
        .services(Services {
            backends,
            ..Default::default()
        })
        .build();
    let (addr, _task) = gate.listen("127.0.0.1:0").await.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let codec = NativeCodec::default();
    let mut out = BytesMut::new();
    codec
        .encode(
            &Packet::Handshake(Handshake {
                version: 1,
                heartbeat_secs: 0,
                token: Bytes::new(),
            }),
            &mut out,
        )
        .unwrap();
    codec
        .encode(
            &Packet::Request(Request::new(
                MessageId::new(5).unwrap(),
                Route::from_static("echo/say"),
                "hi",
            )),
            &mut out,
        )
        .unwrap();
    s.write_all(&out).await.unwrap();
    let mut dec = NativeCodec::default();
    let mut buf = BytesMut::new();
    let mut got = vec![];
    while got.len() < 2 {
        s.read_buf(&mut buf).await.unwrap();
        while let Some(p) = dec.decode(&mut buf).unwrap() {
            got.push(p);
        }
    }
    assert!(matches!(got[0], Packet::Welcome(_)));
    assert_eq!(
        got[1],
        Packet::Response(Response {
            id: MessageId::new(5).unwrap(),
            status: Status::Ok,
            body: "hi".into()
        })
    );
    assert_eq!(gate.session_count(), 1);
    let r = gate.shutdown(std::time::Duration::from_secs(2)).await;
    assert_eq!(r.aborted, 0);
    assert_eq!(gate.session_count(), 0);
}
