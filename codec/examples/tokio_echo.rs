//! The native codec under tokio-util's `Framed`: a loopback server answers each request with a
//! response carrying its id and body. Bounded: one client, three requests, then both sides stop.
//!
//! Run with `cargo run -p gatekit-codec --features tokio --example tokio_echo`.

use futures_util::{SinkExt, StreamExt};
use gatekit_codec::{MessageId, NativeCodec, Packet, Request, Response, Route, Status};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await?;
        let mut framed = Framed::new(socket, NativeCodec::default());
        while let Some(item) = framed.next().await {
            match item? {
                Ok(Packet::Request(r)) => {
                    let reply = Response {
                        id: r.id(),
                        status: Status::Ok,
                        body: r.into_body(),
                    };
                    framed.send(Packet::Response(reply)).await?;
                }
                Ok(other) => println!("server got {other:?}"),
                Err(recoverable) => println!("server skipped a bad packet: {recoverable}"),
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });

    let mut client = Framed::new(TcpStream::connect(addr).await?, NativeCodec::default());
    for i in 1..=3u32 {
        let id = MessageId::new(i).expect("nonzero");
        let body = format!("ping {i}");
        client
            .send(Packet::Request(Request::new(
                id,
                Route::from_static("echo/say"),
                body,
            )))
            .await?;
        if let Some(Ok(Ok(Packet::Response(r)))) = client.next().await {
            println!(
                "response {} {}: {}",
                r.id,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    drop(client);
    server.await?.map_err(|e| e.to_string())?;
    Ok(())
}
