//! The chat module of docs/CLUSTER.md, in Rust with async-nats: a gatekit back end.
//!
//! ```text
//! chat-backend [--nats nats://127.0.0.1:4222] [--prefix gatekit] [--id ID]
//! ```
//!
//! It subscribes to `<prefix>.rpc.chat.>` in queue group `chat` (and, with `--id`, to
//! `<prefix>.rpc.chat@<id>.>` in queue group `chat@<id>`), prints `ready` once subscribed, and
//! answers the clients' calls (the gate turns `chat/join` from a client into a NATS request on
//! `gatekit.rpc.chat.join`, the session in headers):
//!
//! | function | body | does | answer |
//! |---|---|---|---|
//! | `chat/join` | a room name | remembers the session in the room (leaving its previous one), sets its session setting `room` (gate RPC `set`) | `{"room":"lobby","members":2}` |
//! | `chat/send` | a text | sends `{"from":<user or session>,"text":..}` on topic `chat/message` to every member of the sender's room, the sender included (gate RPC `send`) | `{"delivered":2}` |
//! | `chat/kick` | a session id of the sender's room | closes that session with reason `kicked by <from>` (gate RPC `close`) | `{"ok":true}` |
//! | `chat/login` | a user name | binds it to the session (gate RPC `bind`) | `{"ok":true}` |
//!
//! Another function is answered `Gatekit-Status: not_found`; a body it cannot use (not UTF-8,
//! empty, too long), a send before any join, or a gate RPC refused is answered
//! `Gatekit-Status: failed` with the reason as payload. A notify (no reply subject) is handled
//! the same, unanswered. A member whose gate answers `no_such_session` is dropped from its room
//! (the gate does not tell back ends about disconnects: this is how they leave).
//!
//! The rooms live in this process's memory: run one instance, or pin rooms to instances with
//! `--id` (`chat@1/join`). A session whose calls carry the setting `room` (Gatekit-Settings)
//! that this process does not know, after a restart, is taken back into that room.
//!
//! NATS: `NATS_URL` and `GATEKIT_PREFIX` are read when `--nats` and `--prefix` are not given.
//! The client reconnects forever when the connection is lost; calls sent meanwhile are answered
//! `timeout` or `not found` by the gate. SIGTERM or SIGINT: unsubscribe, finish the calls in
//! flight (5 s at most), flush, exit 0.

use async_nats::{HeaderMap, Message, RequestErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

const USAGE: &str = "usage: chat-backend [--nats URL] [--prefix PREFIX] [--id ID]
  --nats URL       the NATS server (env NATS_URL; default nats://127.0.0.1:4222)
  --prefix PREFIX  the gate's subject prefix, [nats] prefix (env GATEKIT_PREFIX; default gatekit)
  --id ID          also serve calls pinned to this instance, chat@ID/func";

/// The module's name: its subjects and queue group.
const MODULE: &str = "chat";
/// Time given to one gate RPC.
const GATE_RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest room or user name, in characters.
const MAX_NAME: usize = 64;

#[derive(Debug)]
struct Args {
    nats: String,
    prefix: String,
    id: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nats: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
        prefix: std::env::var("GATEKIT_PREFIX").unwrap_or_else(|_| "gatekit".to_owned()),
        id: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (flag.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Err(String::new());
        }
        let slot = match name.as_str() {
            "--nats" => &mut args.nats,
            "--prefix" => &mut args.prefix,
            "--id" => args.id.get_or_insert_with(String::new),
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        *slot = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => return Err(format!("{name} needs a value")),
        };
    }
    let token_ok = |t: &str| {
        !t.is_empty() && !t.contains(|c: char| matches!(c, '.' | '*' | '>') || c.is_whitespace())
    };
    if !args.prefix.split('.').all(token_ok) {
        return Err(format!(
            "--prefix {:?}: not a NATS subject (tokens separated by '.')",
            args.prefix
        ));
    }
    if let Some(id) = &args.id {
        if !token_ok(id) {
            return Err(format!("--id {id:?}: not a NATS subject token"));
        }
    }
    Ok(args)
}

/// A session, where the gate RPC reaches it: (gate id, session id).
type Member = (String, String);

/// The rooms this instance knows.
#[derive(Default)]
struct Rooms {
    members: HashMap<String, BTreeSet<Member>>,
    room_of: HashMap<Member, String>,
}

impl Rooms {
    /// Puts `m` in `room` (out of the room it was in); returns the room's member count.
    fn join(&mut self, m: &Member, room: &str) -> usize {
        self.leave(m);
        self.room_of.insert(m.clone(), room.to_owned());
        let set = self.members.entry(room.to_owned()).or_default();
        set.insert(m.clone());
        set.len()
    }

    fn leave(&mut self, m: &Member) {
        if let Some(old) = self.room_of.remove(m) {
            if let Some(set) = self.members.get_mut(&old) {
                set.remove(m);
                if set.is_empty() {
                    self.members.remove(&old);
                }
            }
        }
    }
}

/// What a call is answered: the payload, and `Gatekit-Status` when not ok.
struct Answer {
    status: Option<&'static str>,
    body: Bytes,
}

impl Answer {
    fn ok(v: Value) -> Answer {
        Answer {
            status: None,
            body: Bytes::from(v.to_string()),
        }
    }

    fn failed(message: impl Into<String>) -> Answer {
        Answer {
            status: Some("failed"),
            body: Bytes::from(message.into()),
        }
    }

    fn not_found(message: impl Into<String>) -> Answer {
        Answer {
            status: Some("not_found"),
            body: Bytes::from(message.into()),
        }
    }
}

/// Why a gate RPC did not succeed.
enum RpcError {
    /// The gate answered `{"ok":false,"error":code,"message":..}`.
    Gate { code: String, message: String },
    /// No answer: no gate subscribed (it is gone or away from NATS), a timeout, a bad answer.
    Transport(String),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Gate { code, message } => write!(f, "{code}: {message}"),
            RpcError::Transport(why) => f.write_str(why),
        }
    }
}

impl RpcError {
    fn is_no_such_session(&self) -> bool {
        matches!(self, RpcError::Gate { code, .. } if code == "no_such_session")
    }
}

struct Chat {
    client: async_nats::Client,
    prefix: String,
    rooms: Mutex<Rooms>,
}

/// One call from the gate, its session headers read.
struct Call {
    member: Member,
    /// `Gatekit-User`, else the session id: the sender's name in messages.
    from: String,
    /// The `room` of `Gatekit-Settings`.
    room_setting: Option<String>,
    body: Bytes,
}

impl Chat {
    /// A gate RPC: a request to `<prefix>.gate.<gate>.<op>`, its JSON answer when `"ok":true`.
    async fn gate_rpc(
        &self,
        gate: &str,
        op: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Value, RpcError> {
        let subject = format!("{}.gate.{gate}.{op}", self.prefix);
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload)
            .timeout(Some(GATE_RPC_TIMEOUT));
        let reply = match self.client.send_request(subject.clone(), request).await {
            Ok(m) => m,
            Err(e) => {
                let why = match e.kind() {
                    RequestErrorKind::NoResponders => format!("{subject}: no gate answers"),
                    RequestErrorKind::TimedOut => format!("{subject}: timed out"),
                    RequestErrorKind::Other => format!("{subject}: {e}"),
                };
                return Err(RpcError::Transport(why));
            }
        };
        let v: Value = serde_json::from_slice(&reply.payload)
            .map_err(|e| RpcError::Transport(format!("{subject}: answer is not JSON: {e}")))?;
        if v.get("ok") == Some(&Value::Bool(true)) {
            return Ok(v);
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Err(RpcError::Gate {
            code: text("error"),
            message: text("message"),
        })
    }

    /// The sender's room: the one it joined here, or, if this process does not know it, the
    /// `room` setting its gate sent (it joined before a restart), taken back.
    fn room_of(&self, call: &Call) -> Option<String> {
        let mut rooms = self.rooms.lock().unwrap();
        if let Some(r) = rooms.room_of.get(&call.member) {
            return Some(r.clone());
        }
        let r = call.room_setting.clone()?;
        rooms.join(&call.member, &r);
        Some(r)
    }

    async fn dispatch(&self, func: &str, call: Call) -> Answer {
        match func {
            "join" => self.join(call).await,
            "send" => self.send(call).await,
            "kick" => self.kick(call).await,
            "login" => self.login(call).await,
            _ => Answer::not_found(format!("{MODULE} has no function {func:?}")),
        }
    }

    async fn join(&self, call: Call) -> Answer {
        let room = match name(&call.body, "room name") {
            Ok(r) => r,
            Err(why) => return Answer::failed(why),
        };
        let (gate, session) = &call.member;
        let set = self
            .gate_rpc(
                gate,
                "set",
                headers(&[("Gatekit-Session", session), ("Gatekit-Key", "room")]),
                Bytes::from(room.clone()),
            )
            .await;
        if let Err(e) = set {
            return Answer::failed(format!("cannot set the session's room: {e}"));
        }
        let members = self.rooms.lock().unwrap().join(&call.member, &room);
        Answer::ok(json!({ "room": room, "members": members }))
    }

    async fn send(&self, call: Call) -> Answer {
        let text = match std::str::from_utf8(&call.body) {
            Ok("") => return Answer::failed("empty message"),
            Ok(t) => t.to_owned(),
            Err(_) => return Answer::failed("the message is not UTF-8"),
        };
        let Some(room) = self.room_of(&call) else {
            return Answer::failed("join a room first (chat/join)");
        };
        let members: Vec<Member> = self
            .rooms
            .lock()
            .unwrap()
            .members
            .get(&room)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let message = Bytes::from(json!({ "from": call.from, "text": text }).to_string());
        let sends = members.iter().map(|(gate, session)| {
            self.gate_rpc(
                gate,
                "send",
                headers(&[
                    ("Gatekit-Session", session),
                    ("Gatekit-Topic", "chat/message"),
                ]),
                message.clone(),
            )
        });
        let results = futures_util::future::join_all(sends).await;
        let mut delivered = 0;
        for (m, r) in members.iter().zip(results) {
            match r {
                Ok(_) => delivered += 1,
                Err(e) if e.is_no_such_session() => {
                    eprintln!("chat: {} left {room:?} (its gate: {e})", m.1);
                    let mut rooms = self.rooms.lock().unwrap();
                    if rooms.room_of.get(m) == Some(&room) {
                        rooms.leave(m);
                    }
                }
                Err(e) => eprintln!("chat: message to {} in {room:?} not sent: {e}", m.1),
            }
        }
        Answer::ok(json!({ "delivered": delivered }))
    }

    async fn kick(&self, call: Call) -> Answer {
        let target = match std::str::from_utf8(&call.body).map(str::trim) {
            Ok("") => return Answer::failed("give the session id to kick"),
            Ok(t) => t.to_owned(),
            Err(_) => return Answer::failed("the session id is not UTF-8"),
        };
        let Some(room) = self.room_of(&call) else {
            return Answer::failed("join a room first (chat/join)");
        };
        let member = self
            .rooms
            .lock()
            .unwrap()
            .members
            .get(&room)
            .and_then(|s| s.iter().find(|(_, s)| *s == target).cloned());
        let Some(member) = member else {
            return Answer::failed(format!("{target} is not in room {room:?}"));
        };
        let reason = format!("kicked by {}", call.from);
        let closed = self
            .gate_rpc(
                &member.0,
                "close",
                headers(&[("Gatekit-Session", &member.1), ("Gatekit-Reason", &reason)]),
                Bytes::new(),
            )
            .await;
        match closed {
            Ok(_) => {
                self.rooms.lock().unwrap().leave(&member);
                Answer::ok(json!({ "ok": true }))
            }
            Err(e) => {
                if e.is_no_such_session() {
                    self.rooms.lock().unwrap().leave(&member);
                }
                Answer::failed(format!("cannot kick {target}: {e}"))
            }
        }
    }

    async fn login(&self, call: Call) -> Answer {
        let user = match name(&call.body, "user name") {
            Ok(u) => u,
            Err(why) => return Answer::failed(why),
        };
        let (gate, session) = &call.member;
        let bound = self
            .gate_rpc(
                gate,
                "bind",
                headers(&[("Gatekit-Session", session), ("Gatekit-User", &user)]),
                Bytes::new(),
            )
            .await;
        match bound {
            Ok(_) => Answer::ok(json!({ "ok": true })),
            Err(e) => Answer::failed(format!("cannot bind {user:?}: {e}")),
        }
    }

    /// Answers one message from the gate (a request), or handles it unanswered (a notify).
    async fn handle(&self, msg: Message, func: String) {
        let header = |k: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_owned())
        };
        let answer = match (header("Gatekit-Gate"), header("Gatekit-Session")) {
            (Some(gate), Some(session)) if !gate.is_empty() && !session.is_empty() => {
                let room_setting = header("Gatekit-Settings")
                    .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                    .and_then(|v| v.get("room")?.as_str().map(str::to_owned));
                let call = Call {
                    from: header("Gatekit-User").unwrap_or_else(|| session.clone()),
                    member: (gate, session),
                    room_setting,
                    body: msg.payload.clone(),
                };
                self.dispatch(&func, call).await
            }
            _ => Answer::failed("missing the Gatekit-Gate or Gatekit-Session header"),
        };
        let Some(reply) = msg.reply else {
            if let Some(status) = answer.status {
                let why = String::from_utf8_lossy(&answer.body);
                eprintln!("chat: notify {func}: {status}: {why}");
            }
            return;
        };
        let sent = match answer.status {
            None => self.client.publish(reply, answer.body).await,
            Some(status) => {
                let mut h = HeaderMap::new();
                h.insert("Gatekit-Status", status);
                self.client
                    .publish_with_headers(reply, h, answer.body)
                    .await
            }
        };
        if let Err(e) = sent {
            eprintln!("chat: reply to {func} not sent: {e}");
        }
    }
}

/// The headers of a gate RPC.
fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, *v);
    }
    map
}

/// A room or user name from a body: UTF-8, trimmed, 1 to 64 characters, no control characters.
fn name(body: &[u8], what: &str) -> Result<String, String> {
    let s = std::str::from_utf8(body)
        .map_err(|_| format!("the {what} is not UTF-8"))?
        .trim();
    if s.is_empty() {
        return Err(format!("empty {what}"));
    }
    if s.chars().count() > MAX_NAME {
        return Err(format!("the {what} is longer than {MAX_NAME} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("the {what} has a control character"));
    }
    Ok(s.to_owned())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = async_nats::ConnectOptions::new()
        .name("gatekit example chat")
        .event_callback(|event| async move { eprintln!("chat: NATS: {event}") })
        .connect(args.nats.as_str())
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", args.nats))?;
    let mut prefixes = vec![format!("{}.rpc.{MODULE}.", args.prefix)];
    let mut subs = vec![client
        .queue_subscribe(format!("{}>", prefixes[0]), MODULE.to_owned())
        .await
        .map_err(|e| format!("subscribe: {e}"))?];
    if let Some(id) = &args.id {
        prefixes.push(format!("{}.rpc.{MODULE}@{id}.", args.prefix));
        subs.push(
            client
                .queue_subscribe(format!("{}>", prefixes[1]), format!("{MODULE}@{id}"))
                .await
                .map_err(|e| format!("subscribe: {e}"))?,
        );
    }
    // "ready" once the subscriptions are live: a message to a private inbox has come back (the
    // server handles one connection's operations in order; a flush only empties the socket).
    let probe = client.new_inbox();
    let mut echo = client
        .subscribe(probe.clone())
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    client
        .publish(probe, Bytes::new())
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .map_err(|_| "subscribe: NATS did not confirm the subscriptions within 10 s".to_owned())?;
    let chat = Arc::new(Chat {
        client: client.clone(),
        prefix: args.prefix.clone(),
        rooms: Mutex::new(Rooms::default()),
    });
    let mut calls = futures_util::stream::select_all(subs);
    println!("ready");
    eprintln!(
        "chat: serving {}> on {} (queue group {MODULE})",
        prefixes.join("> and "),
        args.nats
    );
    let mut tasks = JoinSet::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            msg = calls.next() => {
                let Some(msg) = msg else { break };
                let func = prefixes
                    .iter()
                    .find_map(|p| msg.subject.as_str().strip_prefix(p.as_str()))
                    .unwrap_or_default()
                    .to_owned();
                let chat = chat.clone();
                tasks.spawn(async move { chat.handle(msg, func).await });
            }
        }
    }
    eprintln!("chat: shutting down");
    for sub in calls.iter_mut() {
        let _ = sub.unsubscribe().await;
    }
    let in_flight = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .is_err()
    {
        eprintln!("chat: calls still in flight after 5 s, left unanswered");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(why) if why.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("chat-backend: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("chat-backend: {why}");
            ExitCode::FAILURE
        }
    }
}
