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

#[tokio::test]
async fn oversized_push_is_refused_not_lost() {
    let gate = Gate::builder().build();
    let (addr, _task) = gate.listen("127.0.0.1:0").await.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    NativeCodec::default()
        .encode(
            &Packet::Handshake(Handshake {
                version: 1,
                heartbeat_secs: 0,
                token: Bytes::new(),
            }),
            &mut out,
        )
        .unwrap();
    s.write_all(&out).await.unwrap();
    let mut dec = NativeCodec::default();
    let mut buf = BytesMut::new();
    let sid = loop {
        s.read_buf(&mut buf).await.unwrap();
        if let Some(Packet::Welcome(w)) = dec.decode(&mut buf).unwrap() {
            break w.session_id.as_str().to_owned();
        }
    };
    let topic = Topic::from_static("t");
    assert_eq!(
        gate.push(&sid, topic.clone(), vec![0u8; 70_000]),
        Err(HandleError::TooLarge {
            len: 70_003,
            max: 65_535
        })
    );
    assert_eq!(gate.push(&sid, topic, vec![0u8; 100]), Ok(()));
    gate.shutdown(std::time::Duration::from_secs(2)).await;
}
