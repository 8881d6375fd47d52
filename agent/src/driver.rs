//! The tokio driver: moves bytes, timers, back-end calls and commands between a socket and a
//! [`Connection`]. All decisions are the state machine's.

use crate::connection::{Action, CallId, CallResult, Connection};
use crate::handle::Command;
use crate::registration::Registration;
use crate::services::{BackendError, BoxFuture, Services};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bytes read from the socket at a time.
pub const READ_SIZE: usize = 4096;

/// The driver's clock: tokio's, so paused-time tests and the real gate share one code path.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs one connection to its end over `stream`.
///
/// Disconnect is guaranteed by `registration` (a drop guard), so even a panic in here or a
/// cancelled task tells the learner exactly once.
pub async fn run<S>(
    mut conn: Connection,
    stream: S,
    services: Services,
    mut commands: mpsc::Receiver<Command>,
    mut registration: Registration,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    // Back-end calls run on this connection's task (no spawn, no channel per call); a call that
    // outlives its limit is dropped.
    let mut calls: FuturesUnordered<BoxFuture<(CallId, Option<CallResult>)>> =
        FuturesUnordered::new();
    let mut pending: Option<Bytes> = None;
    let mut read_buf = BytesMut::new();
    let mut commands_open = true;
    let mut sleep = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
    let mut armed: Option<tokio::time::Instant> = None;
    let call_limit = conn_call_limit(&conn);
    loop {
        // Handle actions and every back-end result already available before writing, so the
        // answers to a batch of requests leave in one write.
        loop {
            while let Some(action) = conn.poll_action() {
                match action {
                    Action::Connect(session) => registration.connect(session),
                    Action::Disconnect(_, reason) => registration.disconnect(reason),
                    Action::StorageHeartbeat(session) => services.store.heartbeat(&session),
                    Action::Call(call) => {
                        let Some(backend) = services.backends.route(call.route.module()).cloned()
                        else {
                            conn.handle_call_result(now(), call.id, CallResult::NotFound);
                            continue;
                        };
                        let id = call.id;
                        calls.push(Box::pin(async move {
                            let fut = AssertUnwindSafe(async move {
                                backend
                                    .call(call.session, call.route.func(), call.body)
                                    .await
                            })
                            .catch_unwind();
                            // The state machine answers `timeout` on its own; this only makes sure a
                            // back end that never returns is not kept forever.
                            let result = match tokio::time::timeout(call_limit, fut).await {
                                Err(_) => None,
                                Ok(Err(_panic)) => Some(CallResult::Panicked),
                                Ok(Ok(Ok(body))) => Some(CallResult::Ok(body)),
                                Ok(Ok(Err(BackendError::NotFound))) => Some(CallResult::NotFound),
                                Ok(Ok(Err(BackendError::Busy))) => Some(CallResult::Busy),
                                Ok(Ok(Err(BackendError::Failed(b)))) => Some(CallResult::Failed(b)),
                            };
                            (id, result)
                        }));
                    }
                }
            }
            let mut answered = false;
            while let Some(Some((id, result))) = calls.next().now_or_never() {
                if let Some(result) = result {
                    conn.handle_call_result(now(), id, result);
                }
                answered = true;
            }
            if !answered {
                break;
            }
        }
        if conn.is_finished() {
            break;
        }
        if pending.is_none() {
            pending = conn.poll_transmit();
        }
        let want_read = conn.wants_read();
        if want_read && read_buf.capacity() - read_buf.len() < 512 {
            read_buf.reserve(READ_SIZE);
        }
        let timer = conn.poll_timeout().map(tokio::time::Instant::from_std);
        // One timer per connection, moved only when the deadline changes (registering a new timer
        // on every loop turn costs more than the rest of the turn).
        if let Some(t) = timer {
            if armed != Some(t) {
                sleep.as_mut().reset(t);
                armed = Some(t);
            }
        }
        tokio::select! {
            biased;
            written = async { wr.write(pending.as_ref().expect("guarded")).await }, if pending.is_some() => {
                match written {
                    Ok(0) | Err(_) => conn.handle_io_error(now()),
                    Ok(n) => {
                        let p = pending.as_mut().expect("guarded");
                        p.advance(n);
                        if p.is_empty() {
                            pending = None;
                        }
                        conn.handle_written(n);
                    }
                }
            }
            Some((id, result)) = calls.next(), if !calls.is_empty() => {
                if let Some(result) = result {
                    conn.handle_call_result(now(), id, result);
                }
            }
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => {
                    apply(&mut conn, cmd);
                    if let Some(s) = conn.session() {
                        registration.update(s.clone());
                    }
                }
                None => commands_open = false,
            },
            read = rd.read_buf(&mut read_buf), if want_read => match read {
                Ok(0) => conn.handle_eof(now()),
                Ok(_) => {
                    let chunk = read_buf.split();
                    conn.handle_input(now(), chunk);
                    if read_buf.capacity() == 0 {
                        read_buf = BytesMut::new();
                    }
                }
                Err(_) => conn.handle_io_error(now()),
            },
            _ = &mut sleep, if timer.is_some() => {
                armed = None;
                conn.handle_timeout(now());
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
}

fn conn_call_limit(conn: &Connection) -> Duration {
    // A little past the state machine's own deadline.
    conn.config().backend_timeout + Duration::from_secs(1)
}

/// Applies a gate command to the state machine.
pub fn apply(conn: &mut Connection, cmd: Command) {
    let t = now();
    match cmd {
        Command::Push(topic, body) => {
            let _ = conn.push(topic, body);
        }
        Command::Kick(reason) => conn.kick(t, &reason),
        Command::Shutdown => conn.shutdown(t),
        Command::Bind(user) => {
            conn.bind(t, user);
        }
        Command::Unbind => {
            conn.unbind();
        }
        Command::Set(k, v) => {
            conn.set_setting(k, v);
        }
        Command::Remove(k) => {
            conn.remove_setting(&k);
        }
    }
}
