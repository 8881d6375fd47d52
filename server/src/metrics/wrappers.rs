//! The learner, session store and back ends, counted.

use super::{escape_label, reason_index, Metrics, MAX_FALLBACK_MODULES, OTHER_MODULE};
use bytes::Bytes;
use gatekit_agent::{
    Backend, BackendError, Backends, Bound, BoxFuture, CloseReason, DuplicateLogin, Learner,
    Session, SessionStore, StoreFuture, StoreKind, StoredSession,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts sessions, handshakes and disconnects, then tells `inner`.
pub(super) struct CountedLearner {
    pub(super) inner: Arc<dyn Learner>,
    pub(super) metrics: Arc<Metrics>,
}

impl Learner for CountedLearner {
    fn connect(&self, session: &Session) {
        let m = &self.metrics;
        m.handshakes_accepted.inc();
        m.sessions
            .get_or_create(&[("network", escape_label(&session.network))])
            .inc();
        self.inner.connect(session);
    }

    fn disconnect(&self, session: &Session, reason: CloseReason) {
        let m = &self.metrics;
        m.sessions
            .get_or_create(&[("network", escape_label(&session.network))])
            .dec();
        m.disconnects[reason_index(reason)].inc();
        if reason == CloseReason::SlowConsumer {
            m.slow_consumers.inc();
        }
        self.inner.disconnect(session, reason);
    }

    fn ended_without_session(&self, reason: CloseReason) {
        self.metrics.handshakes_refused[reason_index(reason)].inc();
        self.inner.ended_without_session(reason);
    }
}

/// Counts operations and failures, then calls `inner`.
pub(super) struct CountedStore {
    pub(super) inner: Arc<dyn SessionStore>,
    pub(super) metrics: Arc<Metrics>,
}

impl CountedStore {
    fn counted<T: Send + 'static>(&self, kind: StoreKind, f: StoreFuture<T>) -> StoreFuture<T> {
        let i = StoreKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("StoreKind::ALL has every kind");
        let (ops, errors) = (
            self.metrics.store_ops[i].clone(),
            self.metrics.store_errors[i].clone(),
        );
        Box::pin(async move {
            let result = f.await;
            ops.inc();
            if result.is_err() {
                errors.inc();
            }
            result
        })
    }
}

impl SessionStore for CountedStore {
    fn bind(&self, session: Arc<Session>, policy: DuplicateLogin) -> StoreFuture<Bound> {
        self.counted(StoreKind::Bind, self.inner.bind(session, policy))
    }

    fn storage(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.counted(StoreKind::Storage, self.inner.storage(session))
    }

    fn heartbeat(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.metrics.storage_heartbeats.inc();
        self.counted(StoreKind::Heartbeat, self.inner.heartbeat(session))
    }

    fn disconnect(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.counted(StoreKind::Disconnect, self.inner.disconnect(session))
    }

    fn delete(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.counted(StoreKind::Delete, self.inner.delete(session))
    }

    fn query(&self, user_id: &str) -> StoreFuture<Option<StoredSession>> {
        self.inner.query(user_id)
    }
}

/// The series of one `module` label, resolved once (no label lookup per call).
#[derive(Clone)]
pub(super) struct ModuleMetrics {
    ok: Counter,
    not_found: Counter,
    failed: Counter,
    busy: Counter,
    internal_error: Counter,
    cancelled: Counter,
    timeouts: Counter,
    latency: Histogram,
}

impl ModuleMetrics {
    /// The series of `label` (a label value, escaped), created now (so they show as 0).
    pub(super) fn new(m: &Metrics, label: String) -> ModuleMetrics {
        let status = |s: &'static str| {
            m.requests
                .get_or_create_owned(&[("module", label.clone()), ("status", s.to_owned())])
        };
        ModuleMetrics {
            ok: status("ok"),
            not_found: status("not_found"),
            failed: status("failed"),
            busy: status("busy"),
            internal_error: status("internal_error"),
            cancelled: status("cancelled"),
            timeouts: m
                .backend_timeouts
                .get_or_create_owned(&[("module", label.clone())]),
            latency: m.backend_latency.get_or_create_owned(&[("module", label)]),
        }
    }
}

/// The labels of modules reaching the fallback: the first [`MAX_FALLBACK_MODULES`] distinct
/// names (`type` of `type@id`) by name, every other one as [`OTHER_MODULE`].
#[derive(Default)]
pub(super) struct FallbackLabels {
    named: Mutex<HashMap<String, Arc<ModuleMetrics>>>,
    other: Mutex<Option<Arc<ModuleMetrics>>>,
}

impl FallbackLabels {
    /// The series of calls to `module` (a client's name).
    pub(super) fn get(&self, m: &Metrics, module: &str) -> Arc<ModuleMetrics> {
        let name = module_type(module);
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mm) = named.get(name) {
            return mm.clone();
        }
        if named.len() < MAX_FALLBACK_MODULES {
            let mm = Arc::new(m.module_metrics(escape_label(name)));
            named.insert(name.to_owned(), mm.clone());
            return mm;
        }
        drop(named);
        self.other
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| Arc::new(m.module_metrics(OTHER_MODULE.to_owned())))
            .clone()
    }
}

/// `type` of `type@id`, or `module`.
fn module_type(module: &str) -> &str {
    module.split_once('@').map_or(module, |(ty, _)| ty)
}

enum Labels {
    /// A module of the routing table (its `type@id` calls included).
    Fixed(Arc<ModuleMetrics>),
    /// The fallback: labelled by the client's module, bounded.
    Fallback,
}

/// A back end counted and timed.
struct CountedBackend {
    inner: Arc<dyn Backend>,
    labels: Labels,
    metrics: Arc<Metrics>,
}

/// Answers every call `not_found`: the fallback of a table without one, so those calls are
/// counted (the gate's answer is the same).
struct NoSuchModule;

impl Backend for NoSuchModule {
    fn call(
        &self,
        _session: Arc<Session>,
        _func: &str,
        _body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        Box::pin(async { Err(BackendError::NotFound) })
    }
}

pub(super) fn counted_backends(metrics: &Arc<Metrics>, backends: Backends) -> Backends {
    let mut names: Vec<&str> = backends.modules().collect();
    names.sort_unstable();
    let mut table = Backends::new();
    for name in names {
        let Some(inner) = backends.route(name) else {
            continue;
        };
        let labels = Labels::Fixed(Arc::new(metrics.module_metrics(escape_label(name))));
        table = table.with_arc(
            name,
            Arc::new(CountedBackend {
                inner: inner.clone(),
                labels,
                metrics: metrics.clone(),
            }),
        );
    }
    let fallback = backends
        .fallback()
        .cloned()
        .unwrap_or_else(|| Arc::new(NoSuchModule));
    table.with_fallback(Arc::new(CountedBackend {
        inner: fallback,
        labels: Labels::Fallback,
        metrics: metrics.clone(),
    }))
}

impl Backend for CountedBackend {
    /// Not counted: the gate calls [`Backend::call_in`].
    fn call(
        &self,
        session: Arc<Session>,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        self.inner.call(session, func, body)
    }

    fn call_in(
        &self,
        session: Arc<Session>,
        module: &str,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        let series = match &self.labels {
            Labels::Fixed(mm) => mm.clone(),
            Labels::Fallback => self.metrics.fallback.get(&self.metrics, module),
        };
        // Started before the back end is called, so a panic in `call_in` itself is counted.
        let guard = CallGuard::start(
            series,
            self.metrics.calls_in_flight.clone(),
            self.metrics.backend_timeout(),
        );
        let fut = self.inner.call_in(session, module, func, body);
        Box::pin(async move {
            let result = fut.await;
            guard.finish(&result);
            result
        })
    }
}

/// One call, from its start to its answer or its drop.
struct CallGuard {
    series: Arc<ModuleMetrics>,
    in_flight: Gauge,
    started: Instant,
    timeout: Duration,
    done: bool,
}

impl CallGuard {
    fn start(series: Arc<ModuleMetrics>, in_flight: Gauge, timeout: Duration) -> CallGuard {
        in_flight.inc();
        CallGuard {
            series,
            in_flight,
            started: Instant::now(),
            timeout,
            done: false,
        }
    }

    fn finish(mut self, result: &Result<Bytes, BackendError>) {
        self.done = true;
        let s = &self.series;
        let status = match result {
            Ok(_) => &s.ok,
            Err(BackendError::NotFound) => &s.not_found,
            Err(BackendError::Failed(_)) => &s.failed,
            Err(BackendError::Busy) => &s.busy,
            Err(BackendError::Internal(_)) => &s.internal_error,
        };
        self.answered(status);
    }

    fn answered(&self, status: &Counter) {
        let elapsed = self.started.elapsed();
        status.inc();
        self.series.latency.observe(elapsed.as_secs_f64());
        if elapsed >= self.timeout {
            self.series.timeouts.inc();
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.in_flight.dec();
        if self.done {
            return;
        }
        if std::thread::panicking() {
            // The back end panicked: the gate answers internal error.
            let series = self.series.clone();
            self.answered(&series.internal_error);
        } else {
            self.series.cancelled.inc();
            if self.started.elapsed() >= self.timeout {
                self.series.timeouts.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.parse().unwrap())
        })
    }

    fn session() -> Arc<Session> {
        Arc::new(Session::new("s1", "tcp", "127.0.0.1:1", "gate-1"))
    }

    fn echo() -> Arc<dyn Backend> {
        Arc::new(crate::embedded::Echo)
    }

    #[test]
    fn fallback_labels_are_capped() {
        let m = Metrics::new("gate-1");
        let mut seen = std::collections::HashSet::new();
        for i in 0..=MAX_FALLBACK_MODULES {
            let mm = m.fallback.get(&m, &format!("mod{i}@{i}"));
            seen.insert(Arc::as_ptr(&mm) as usize);
        }
        // Again: the same series, none created.
        for i in 0..=MAX_FALLBACK_MODULES + 10 {
            let mm = m.fallback.get(&m, &format!("mod{i}"));
            seen.insert(Arc::as_ptr(&mm) as usize);
        }
        assert_eq!(seen.len(), MAX_FALLBACK_MODULES + 1);
        let text = m.encode();
        let labels: std::collections::HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("gatekit_requests_total{"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert_eq!(labels.len(), MAX_FALLBACK_MODULES + 1, "{labels:?}");
        assert!(labels.contains("mod0"));
        assert!(labels.contains("mod63"));
        assert!(!labels.contains("mod64"));
        assert!(labels.contains(OTHER_MODULE));
    }

    #[tokio::test]
    async fn calls_are_counted_by_module_and_status() {
        let m = Metrics::new("gate-1");
        let backends = m.backends(Backends::new().with_arc("echo", echo()));
        let call = |module: &str| {
            backends.route(module).expect("a fallback").call_in(
                session(),
                module,
                "f",
                Bytes::from_static(b"x"),
            )
        };
        assert_eq!(call("echo").await, Ok(Bytes::from_static(b"x")));
        assert_eq!(call("echo@7").await, Ok(Bytes::from_static(b"x")));
        assert_eq!(call("nosuch@1").await, Err(BackendError::NotFound));
        assert_eq!(call("we\"ird\nname").await, Err(BackendError::NotFound));
        let text = m.encode();
        let get = |s: &str| value(&text, s);
        assert_eq!(
            get(r#"gatekit_requests_total{module="echo",status="ok"}"#),
            Some(2.0)
        );
        assert_eq!(
            get(r#"gatekit_requests_total{module="echo",status="failed"}"#),
            Some(0.0)
        );
        assert_eq!(
            get(r#"gatekit_requests_total{module="nosuch",status="not_found"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"gatekit_requests_total{module="we\"ird\nname",status="not_found"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"gatekit_backend_latency_seconds_count{module="echo"}"#),
            Some(2.0)
        );
        assert_eq!(get("gatekit_calls_in_flight"), Some(0.0));
        assert_eq!(
            get(r#"gatekit_backend_timeouts_total{module="echo"}"#),
            Some(0.0)
        );
    }

    #[tokio::test]
    async fn dropped_and_slow_calls() {
        let m = Metrics::new("gate-1");
        m.set_backend_timeout(Duration::from_millis(20));
        let never: Arc<dyn Backend> = Arc::new(|_s: Arc<Session>, _f: String, _b: Bytes| {
            std::future::pending::<Result<Bytes, BackendError>>()
        });
        let slow: Arc<dyn Backend> = Arc::new(|_s: Arc<Session>, _f: String, _b: Bytes| async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Err(BackendError::Busy)
        });
        let panics: Arc<dyn Backend> =
            Arc::new(|_s: Arc<Session>, f: String, _b: Bytes| async move {
                if f == "boom" {
                    panic!("boom");
                }
                Ok(Bytes::new())
            });
        let backends = m.backends(
            Backends::new()
                .with_arc("never", never)
                .with_arc("slow", slow)
                .with_arc("panics", panics),
        );
        let call = |module: &str, func: &str| {
            backends
                .route(module)
                .unwrap()
                .call_in(session(), module, func, Bytes::new())
        };
        // Dropped at once: cancelled, not a timeout.
        let fut = call("never", "f");
        assert_eq!(value(&m.encode(), "gatekit_calls_in_flight"), Some(1.0));
        drop(fut);
        // Dropped after the timeout: cancelled and a timeout.
        let _ = tokio::time::timeout(Duration::from_millis(30), call("never", "f")).await;
        // Answered late: its answer, and a timeout.
        assert_eq!(call("slow", "f").await, Err(BackendError::Busy));
        // A panic: internal_error.
        let join = tokio::spawn(call("panics", "boom")).await;
        assert!(join.is_err());
        let text = m.encode();
        let get = |s: &str| value(&text, s);
        assert_eq!(
            get(r#"gatekit_requests_total{module="never",status="cancelled"}"#),
            Some(2.0)
        );
        assert_eq!(
            get(r#"gatekit_backend_timeouts_total{module="never"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"gatekit_backend_latency_seconds_count{module="never"}"#),
            Some(0.0)
        );
        assert_eq!(
            get(r#"gatekit_requests_total{module="slow",status="busy"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"gatekit_backend_timeouts_total{module="slow"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"gatekit_requests_total{module="panics",status="internal_error"}"#),
            Some(1.0)
        );
        assert_eq!(get("gatekit_calls_in_flight"), Some(0.0));
    }

    #[test]
    fn learner_and_store_counts() {
        struct Failing;
        impl SessionStore for Failing {
            fn bind(&self, _: Arc<Session>, _: DuplicateLogin) -> StoreFuture<Bound> {
                Box::pin(std::future::ready(Err(
                    gatekit_agent::StoreError::Unavailable("down".into()),
                )))
            }
        }
        let m = Metrics::new("gate-1");
        let learner = m.learner(Arc::new(gatekit_agent::NoLearner));
        let store = m.store(Arc::new(gatekit_agent::NoStore));
        let s = session();
        learner.connect(&s);
        learner.connect(&Session::new("s2", "ws", "p", "gate-1"));
        learner.disconnect(&s, CloseReason::SlowConsumer);
        learner.ended_without_session(CloseReason::Refused);
        futures_util::FutureExt::now_or_never(store.heartbeat(s.clone()))
            .expect("NoStore answers at once")
            .unwrap();
        let failing = m.store(Arc::new(Failing));
        for _ in 0..2 {
            assert!(futures_util::FutureExt::now_or_never(
                failing.bind(s.clone(), DuplicateLogin::Kick)
            )
            .unwrap()
            .is_err());
        }
        let text = m.encode();
        let get = |s: &str| value(&text, s);
        assert_eq!(get(r#"gatekit_sessions{network="tcp"}"#), Some(0.0));
        assert_eq!(get(r#"gatekit_sessions{network="ws"}"#), Some(1.0));
        assert_eq!(
            get(r#"gatekit_handshakes_total{result="accepted"}"#),
            Some(2.0)
        );
        assert_eq!(
            get(r#"gatekit_handshakes_refused_total{reason="refused"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"gatekit_handshakes_refused_total{reason="eof"}"#),
            Some(0.0)
        );
        assert_eq!(
            get(r#"gatekit_disconnects_total{reason="slow_consumer"}"#),
            Some(1.0)
        );
        assert_eq!(get("gatekit_slow_consumers_total"), Some(1.0));
        assert_eq!(get("gatekit_storage_heartbeats_total"), Some(1.0));
        assert_eq!(
            get(r#"gatekit_store_operations_total{op="heartbeat"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"gatekit_store_errors_total{op="heartbeat"}"#),
            Some(0.0)
        );
        assert_eq!(
            get(r#"gatekit_store_operations_total{op="bind"}"#),
            Some(2.0)
        );
        assert_eq!(get(r#"gatekit_store_errors_total{op="bind"}"#), Some(2.0));
        assert_eq!(get(r#"gatekit_store_errors_total{op="delete"}"#), Some(0.0));
        assert_eq!(get(r#"gatekit_gate_info{gate="gate-1"}"#), Some(1.0));
        assert!(text.ends_with("# EOF\n"));
    }
}
