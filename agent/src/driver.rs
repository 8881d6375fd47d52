//! The tokio driver: moves bytes, timers, back-end calls and commands between a socket and a
//! [`Connection`]. All decisions are the state machine's.

use crate::calls::CallSet;
use crate::connection::{Action, CallId, CallResult, Connection};
use crate::handle::{Command, Commands};
use crate::protocol::Protocol;
use crate::read_scratch::poll_read_chunk;
use crate::registration::Registration;
use crate::services::{BackendError, BoxFuture, Services};
use crate::store::queue::StoreQueue;
use crate::store::{Bound, DuplicateLogin, StoreError, StoreKind, StoreOp};
use bytes::{Buf, Bytes};
use futures_util::FutureExt;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;

/// Bytes read from the socket at a time (into a buffer per worker thread, not per connection).
pub const READ_SIZE: usize = 4096;

/// The driver's clock: tokio's, so paused-time tests and the real gate share one code path.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs one connection to its end over `stream`.
///
/// Disconnect is guaranteed by `registration` (a drop guard), so even a panic in here or a
/// cancelled task tells the learner exactly once.
///
/// While the connection is idle the driver holds no buffer: reads go through a scratch buffer
/// per worker thread and keep only the bytes received, and written output is released.
pub fn run<P, S>(
    conn: Connection<P>,
    stream: S,
    services: Services,
    commands: Commands,
    registration: Registration,
) -> impl Future<Output = ()> + Send
where
    P: Protocol,
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    // Everything goes into one struct moved into the future once: the future is the connection's
    // whole memory while idle, so no argument is kept twice (as an async fn's argument and as a
    // local).
    let mut conn = conn;
    if registration.authenticator().is_some() {
        conn.require_authentication();
    }
    let driver = Driver {
        call_limit: conn_call_limit(&conn),
        conn,
        auth: None,
        stream,
        services,
        commands,
        registration,
        calls: CallSet::Empty,
        store: None,
        pending: None,
        unflushed: false,
        armed: None,
    };
    driver.run()
}

/// A back-end call's id and result (`None` if it outlived its limit).
type CallOutput = (CallId, Option<CallResult>);

/// An authenticator's answer (`Err(Unavailable)` for a panic inside it).
type AuthOutput = Result<crate::auth::Identity, crate::auth::AuthError>;

/// A store operation's kind, its user, and how it ended.
type StoreOutput = (StoreKind, Option<String>, Result<Option<Bound>, StoreError>);

/// A connection's store operations: the one running and those waiting.
struct StoreWork {
    running: Option<BoxFuture<StoreOutput>>,
    queue: StoreQueue,
}

/// One connection's driver state, polled by hand (no `select!`, no split stream) so that it
/// holds nothing but the state machine, the stream and a timer while it waits.
struct Driver<P: Protocol, S> {
    conn: Connection<P>,
    stream: S,
    services: Services,
    commands: Commands,
    registration: Registration,
    /// Back-end calls run on this connection's task (no spawn, no channel per call); a call that
    /// outlives its limit is dropped.
    calls: CallSet<CallOutput>,
    /// The authenticator's check of the hello, while it runs.
    auth: Option<BoxFuture<AuthOutput>>,
    /// Session store operations, while there are any (boxed: an idle connection keeps a pointer).
    store: Option<Box<StoreWork>>,
    /// Output handed out by the state machine, not yet fully written.
    pending: Option<Bytes>,
    /// Whether bytes were written since the stream was last flushed. A socket needs no flush, but
    /// a layer may hold written bytes until flushed (the TLS stream keeps records it could not
    /// send at once; a buffered writer keeps everything).
    unflushed: bool,
    /// The deadline the timer is set to.
    armed: Option<tokio::time::Instant>,
    call_limit: Duration,
}

impl<P: Protocol, S: AsyncRead + AsyncWrite + Unpin> Driver<P, S> {
    /// The connection's whole life. (An async block rather than an `async fn`: an `async fn`
    /// would copy its `mut self` argument into a second place of its future.)
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl Future<Output = ()> {
        async move {
            {
                let sleep = tokio::time::sleep(Duration::from_secs(3600));
                tokio::pin!(sleep);
                poll_fn(|cx| self.poll(cx, sleep.as_mut())).await;
            }
            // A connection that ends without a session tells the learner why now (one that had a
            // session was told with its Disconnect).
            if let Some(reason) = self.conn.close_reason() {
                self.registration.disconnect(reason);
            }
            // The store operations still due (the session's disconnect last), each bounded by
            // `store_timeout`; the gate counts this connection until they are done.
            poll_fn(|cx| {
                self.poll_store(cx);
                if self.store.is_none() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            // Commands sent from now on are refused (`Closed`) rather than queued for no one.
            drop(self.commands);
            let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
            // The registration (Disconnect, if not told yet) goes last, once the stream is shut.
            drop(self.registration);
        }
    }

    /// Runs the connection until it is finished (`Ready`) or waits for the socket, a call, a
    /// command or the timer (`Pending`, with `cx` registered with each of them).
    fn poll(&mut self, cx: &mut Context<'_>, mut sleep: Pin<&mut Sleep>) -> Poll<()> {
        loop {
            self.settle(cx);
            if self.conn.is_finished() {
                return Poll::Ready(());
            }
            if self.pending.is_none() {
                self.pending = self.conn.poll_transmit();
            }
            let timer = self.conn.poll_timeout().map(tokio::time::Instant::from_std);
            // One timer per connection, moved only when the deadline changes (registering a new
            // timer on every loop turn costs more than the rest of the turn).
            if let Some(t) = timer {
                if self.armed != Some(t) {
                    sleep.as_mut().reset(t);
                    self.armed = Some(t);
                }
            }
            // In order of priority: write, commands, read, timer. Back-end results were taken by
            // `settle`, which left `cx` registered with the calls still running.
            if let Some(p) = &self.pending {
                if let Poll::Ready(written) = Pin::new(&mut self.stream).poll_write(cx, p) {
                    match written {
                        Ok(0) | Err(_) => self.conn.handle_io_error(now()),
                        Ok(n) => {
                            let p = self.pending.as_mut().expect("checked above");
                            p.advance(n);
                            if p.is_empty() {
                                self.pending = None;
                            }
                            self.unflushed = true;
                            self.conn.handle_written(n);
                        }
                    }
                    continue;
                }
            } else if self.unflushed {
                // Everything handed out is written: flush it through the stream's layers.
                if let Poll::Ready(flushed) = Pin::new(&mut self.stream).poll_flush(cx) {
                    self.unflushed = false;
                    if flushed.is_err() {
                        self.conn.handle_io_error(now());
                    }
                    continue;
                }
            }
            if let Poll::Ready(cmd) = self.commands.poll_recv(cx) {
                apply(&mut self.conn, cmd);
                if let Some(s) = self.conn.session() {
                    self.registration.update(s.clone());
                }
                continue;
            }
            if self.conn.wants_read() {
                if let Poll::Ready(read) = poll_read_chunk(Pin::new(&mut self.stream), cx) {
                    match read {
                        Ok(chunk) if chunk.is_empty() => self.conn.handle_eof(now()),
                        Ok(chunk) => self.conn.handle_input(now(), chunk),
                        Err(_) => self.conn.handle_io_error(now()),
                    }
                    continue;
                }
            }
            if timer.is_some() && sleep.as_mut().poll(cx).is_ready() {
                self.armed = None;
                self.conn.handle_timeout(now());
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Handles actions and every back-end result already available, so the answers to a batch
    /// of requests leave in one write.
    fn settle(&mut self, cx: &mut Context<'_>) {
        loop {
            while let Some(action) = self.conn.poll_action() {
                self.act(action);
            }
            let mut answered = false;
            if let Some(auth) = &mut self.auth {
                if let Poll::Ready(result) = auth.as_mut().poll(cx) {
                    self.auth = None;
                    self.conn.handle_auth_result(now(), result);
                    answered = true;
                }
            }
            while let Poll::Ready(Some((id, result))) = self.calls.poll_next(cx) {
                if let Some(result) = result {
                    self.conn.handle_call_result(now(), id, result);
                }
                answered = true;
            }
            answered |= self.poll_store(cx);
            if !answered {
                return;
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect(session) => self.registration.connect(session),
            Action::Disconnect(session, reason) => {
                self.registration.disconnect(reason);
                if session.is_bound() {
                    self.queue_store(StoreOp {
                        kind: StoreKind::Disconnect,
                        session,
                    });
                }
            }
            Action::StorageHeartbeat(session) => self.queue_store(StoreOp {
                kind: StoreKind::Heartbeat,
                session,
            }),
            Action::Store(op) => self.queue_store(op),
            Action::Authenticate(credentials) => {
                let Some(authenticator) = self.registration.authenticator().cloned() else {
                    let none = crate::auth::AuthError::Unavailable("no authenticator".into());
                    self.conn.handle_auth_result(now(), Err(none));
                    return;
                };
                // The state machine closes the connection at the handshake deadline on its own;
                // the check is dropped with the connection.
                self.auth = Some(Box::pin(async move {
                    AssertUnwindSafe(authenticator.authenticate(credentials))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_panic| {
                            Err(crate::auth::AuthError::Unavailable(
                                "the authenticator panicked".into(),
                            ))
                        })
                }));
            }
            Action::Call(call) => {
                let Some(backend) = self.services.backends.route(call.route.module()).cloned()
                else {
                    self.conn
                        .handle_call_result(now(), call.id, CallResult::NotFound);
                    return;
                };
                let id = call.id;
                let call_limit = self.call_limit;
                self.calls.push(Box::pin(async move {
                    let fut = AssertUnwindSafe(async move {
                        let (module, func) = (call.route.module(), call.route.func());
                        if call.expects_reply {
                            backend.call_in(call.session, module, func, call.body).await
                        } else {
                            backend
                                .notify_in(call.session, module, func, call.body)
                                .await
                        }
                    })
                    .catch_unwind();
                    // The state machine answers `timeout` on its own; this only makes sure a back
                    // end that never returns is not kept forever.
                    let result = match tokio::time::timeout(call_limit, fut).await {
                        Err(_) => None,
                        Ok(Err(_panic)) => Some(CallResult::Panicked),
                        Ok(Ok(Ok(body))) => Some(CallResult::Ok(body)),
                        Ok(Ok(Err(BackendError::NotFound))) => Some(CallResult::NotFound),
                        Ok(Ok(Err(BackendError::Busy))) => Some(CallResult::Busy),
                        Ok(Ok(Err(BackendError::Failed(b)))) => Some(CallResult::Failed(b)),
                        Ok(Ok(Err(BackendError::Internal(why)))) => {
                            tracing::warn!(%why, "back end answered with an internal error");
                            Some(CallResult::Panicked)
                        }
                    };
                    (id, result)
                }));
            }
        }
    }
}

impl<P: Protocol, S> Driver<P, S> {
    fn queue_store(&mut self, op: StoreOp) {
        let work = self.store.get_or_insert_with(|| {
            Box::new(StoreWork {
                running: None,
                queue: StoreQueue::default(),
            })
        });
        let kind = op.kind;
        if !work.queue.push(op) {
            self.registration.store_result(
                kind,
                &Err::<(), _>(StoreError::Unavailable(
                    "too many operations waiting for the store on this connection".into(),
                )),
            );
        }
    }

    /// Runs store operations in order, one at a time: takes the result of the one running, if
    /// it is done, and starts the next. Returns whether a result was taken (the connection may
    /// have changed). Drops the work once nothing is left.
    fn poll_store(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        loop {
            let Some(work) = self.store.as_mut() else {
                return progressed;
            };
            if work.running.is_none() {
                let Some(op) = work.queue.next(self.conn.session()) else {
                    self.store = None;
                    return progressed;
                };
                let limit = self.conn.config().store_timeout;
                let user = op.session.user_id.clone();
                let kind = op.kind;
                let store = self.services.store.clone();
                let policy = self.conn.config().duplicate_login;
                work.running = Some(Box::pin(async move {
                    // The store is called in here: a panic in the call, not only in its
                    // future, is caught.
                    let fut =
                        AssertUnwindSafe(
                            async move { crate::store::run(&*store, op, policy).await },
                        );
                    let result = match tokio::time::timeout(limit, fut.catch_unwind()).await {
                        Err(_) => Err(StoreError::Timeout(limit)),
                        Ok(Err(_panic)) => {
                            Err(StoreError::Unavailable("the store panicked".into()))
                        }
                        Ok(Ok(result)) => result,
                    };
                    (kind, user, result)
                }));
            }
            let running = work.running.as_mut().expect("set above");
            let Poll::Ready((kind, user, result)) = running.as_mut().poll(cx) else {
                return progressed;
            };
            work.running = None;
            progressed = true;
            self.registration.store_result(kind, &result);
            if let (Ok(Some(bound)), Some(user)) = (result, user) {
                self.bound(&user, bound);
            }
        }
    }
}

impl<P: Protocol, S> Driver<P, S> {
    /// Acts on what the store did for a bind of `user`: restores settings, closes this session
    /// when the store refused it (duplicate login, `refuse`), or has the older session kicked
    /// (`kick`).
    fn bound(&mut self, user: &str, bound: Bound) {
        let bound_here = self
            .conn
            .session()
            .is_some_and(|s| s.user_id.as_deref() == Some(user));
        if !bound_here {
            return; // unbound or rebound since: a later bind decides
        }
        if bound.refused {
            self.registration.duplicate_refused();
            self.conn.kick(now(), crate::store::ALREADY_ONLINE);
            return;
        }
        if let Some(previous) = bound.previous {
            if self.conn.config().duplicate_login == DuplicateLogin::Kick {
                self.registration.kick_elsewhere(previous);
            }
        }
        if self.conn.restore_settings(user, bound.restored) > 0 {
            if let Some(s) = self.conn.session() {
                self.registration.update(s.clone());
            }
        }
    }
}

fn conn_call_limit<P: Protocol>(conn: &Connection<P>) -> Duration {
    // A little past the state machine's own deadline.
    conn.config().backend_timeout + Duration::from_secs(1)
}

/// Applies a gate command to the state machine.
pub fn apply<P: Protocol>(conn: &mut Connection<P>, cmd: Command) {
    let t = now();
    match cmd {
        Command::Push(topic, body) => {
            let _ = conn.push(topic, body);
        }
        Command::Kick(reason) => conn.kick(t, &reason),
        Command::Shutdown => conn.drain(t),
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
        Command::Logout => {
            conn.logout();
        }
        Command::StoreAgain => conn.store_again(),
    }
}
