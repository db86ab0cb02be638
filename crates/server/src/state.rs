//! What every handler shares: the store, the limits, the model slot, the journey engine, the
//! replayer, ingest's admission and the notifier's silences. Built once at start; cheap to clone
//! per request.

use std::collections::BTreeMap;
use std::sync::Arc;

use causeway_envelope::ParseOptions;
use causeway_store::{SqlLimits, Store};

use crate::auth::Auth;
use crate::connections::ConnectionStats;
use crate::engine::{Clock, JourneyEngine};
use crate::metrics::Metrics;
use crate::model::ModelSlot;
use crate::notify::Notifications;
use crate::overload::{Admission, IngestLimits};
use crate::replay::{Consumer, Replayer};
use crate::source::{Sink, SourceStatus};
use crate::sql_workers::SqlWorkers;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub parse: ParseOptions,
    pub sql: SqlLimits,
    /// One permit for each SQL query allowed to run at once (`sql.max_concurrent`).
    pub sql_slots: Arc<tokio::sync::Semaphore>,
    /// The threads SQL queries run on, one per slot (under `SCHED_IDLE` with `sql.idle_priority`).
    pub sql_workers: SqlWorkers,
    pub metrics: Arc<Metrics>,
    /// The model whose contracts apply at ingest, if one is loaded.
    pub model: ModelSlot,
    /// The journey engine, when it runs.
    pub journeys: Option<JourneyEngine>,
    /// Replays dead letters to the consumers' targets.
    pub dlq: Arc<Replayer>,
    /// Admission of ingest requests: the body buffer, the writer's queue, the engine's lag.
    pub admission: Arc<Admission>,
    /// What the connection layer counts, for `/metrics`: the serving loop is given the same.
    pub connections: Arc<ConnectionStats>,
    /// The NATS source's status, when it runs (for `/readyz`).
    pub nats: Option<Arc<std::sync::Mutex<SourceStatus>>>,
    /// The Kafka source's state, when it runs.
    pub kafka: Option<Arc<std::sync::Mutex<SourceStatus>>>,
    /// The lag monitor's latest evaluation, when it runs.
    pub lag: Option<Arc<std::sync::RwLock<crate::lag::LagReport>>>,
    /// Silences and the notifier's alerts (`notify.rs`); in memory until `with_notifications`.
    pub notify: Arc<Notifications>,
    /// Tokens, roles, rates and the audit log (`auth.rs`); off until `with_auth`.
    pub auth: Arc<Auth>,
}

impl AppState {
    pub fn new(store: Store, parse: ParseOptions, sql: SqlLimits) -> Self {
        AppState {
            store,
            parse,
            sql,
            sql_slots: Arc::new(tokio::sync::Semaphore::new(sql.max_concurrent.max(1))),
            sql_workers: SqlWorkers::start(sql.max_concurrent, sql.idle_priority),
            metrics: Arc::new(Metrics::default()),
            model: ModelSlot::empty(),
            journeys: None,
            dlq: Arc::new(Replayer::default()),
            admission: Arc::new(Admission::new(IngestLimits::default(), parse.limits.max_request_bytes)),
            connections: Arc::default(),
            nats: None,
            kafka: None,
            lag: None,
            notify: Arc::new(Notifications::in_memory()),
            auth: Arc::new(Auth::off()),
        }
    }

    /// Where a broker source writes: the same store, model, engine and limits as HTTP ingest.
    pub fn sink(&self) -> Sink {
        Sink {
            store: self.store.clone(),
            model: self.model.clone(),
            journeys: self.journeys.clone(),
            parse: self.parse,
            metrics: self.metrics.clone(),
        }
    }

    /// Bounds of ingest under load.
    pub fn with_ingest_limits(mut self, limits: IngestLimits) -> Self {
        self.admission = Arc::new(Admission::new(limits, self.parse.limits.max_request_bytes));
        self
    }

    pub fn with_model(mut self, model: ModelSlot) -> Self {
        self.model = model;
        self
    }

    /// The estate's consumers (`[consumers.NAME]`), for DLQ replay.
    pub fn with_consumers(mut self, consumers: BTreeMap<String, Consumer>) -> Self {
        self.dlq = Arc::new(Replayer::new(consumers));
        self
    }

    /// Tokens asked for (or not), rates and the audit log (`Auth::open`).
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// Silences kept in the data directory (`Notifications::open`), shared with the notifier.
    pub fn with_notifications(mut self, notify: Arc<Notifications>) -> Self {
        self.notify = notify;
        self
    }

    /// Starts the journey engine on this state's store and model slot.
    pub fn with_journeys(mut self, clock: Clock) -> Self {
        self.journeys = Some(JourneyEngine::start(self.store.clone(), self.model.clone(), clock));
        self
    }
}
