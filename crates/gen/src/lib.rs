//! Generators from the event-storming model (`causeway gen …`, PRODUCT §8): the model is the
//! source of truth, and these turn it into artefacts other tools read.
//!
//! - [`json_schema`]: per event and schema version, `<Event>.v<N>.schema.json` (the payload, JSON
//!   Schema 2020-12) and `<Event>.v<N>.cloudevent.schema.json` (the whole CloudEvent a producer
//!   sends, with causeway's extension attributes and `data` = the payload);
//! - [`asyncapi`]: `asyncapi.json`, one AsyncAPI 3.0.0 document for the estate;
//! - [`runbooks`]: Markdown runbook skeletons per journey, policy and finding kind, and an index;
//! - [`prometheus_rules`]: `causeway-slos.rules.yml`, Prometheus recording rules and multi-window,
//!   multi-burn-rate alerts per SLO, and alerts on consumer lag and dead letters;
//! - [`grafana`]: three Grafana dashboards (executive, on-call, debug) on causeway's metrics, with
//!   panels per SLO, journey and policy.
//!
//! **Invariants:** pure functions of the model (no IO, no clock, no absolute paths): the same model
//! gives byte-identical files, keys in a fixed order whatever `serde_json` features are enabled.
//! Paths are relative, `/`-separated, and never leave the output directory.

mod asyncapi;
mod grafana;
mod json;
mod prometheus;
mod runbooks;
mod schema;
mod slos;
mod util;

use causeway_model::Model;

pub use asyncapi::asyncapi;
pub use grafana::{DASHBOARDS, grafana};
pub use prometheus::{CONSUMER_LAG_SECONDS, DLQ_OLDEST_PENDING_SECONDS, RULES_FILE, WINDOWS, prometheus_rules};
pub use runbooks::{FINDING_KINDS, finding_path, journey_path, policy_path, runbooks, slo_runbook};
pub use schema::json_schema;

/// One generated file: a relative, `/`-separated path and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: String,
    pub contents: String,
}

/// Choices that change what a generator writes; [`Kind::generate`] takes the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Where the runbooks of `causeway gen runbooks` are published (a URL or a path), for the
    /// alerts' `runbook_url`. Without it the links are relative to the runbooks' directory.
    pub runbook_base: Option<String>,
}

/// What `causeway gen` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    JsonSchema,
    AsyncApi,
    Runbooks,
    PrometheusRules,
    Grafana,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::JsonSchema, Kind::AsyncApi, Kind::Runbooks, Kind::PrometheusRules, Kind::Grafana];

    /// The name used on the command line and as the default output directory.
    pub fn name(self) -> &'static str {
        match self {
            Kind::JsonSchema => "json-schema",
            Kind::AsyncApi => "asyncapi",
            Kind::Runbooks => "runbooks",
            Kind::PrometheusRules => "prometheus-rules",
            Kind::Grafana => "grafana",
        }
    }

    pub fn generate(self, model: &Model) -> Vec<GeneratedFile> {
        self.generate_with(model, &Options::default())
    }

    pub fn generate_with(self, model: &Model, options: &Options) -> Vec<GeneratedFile> {
        match self {
            Kind::JsonSchema => json_schema(model),
            Kind::AsyncApi => asyncapi(model),
            Kind::Runbooks => runbooks(model),
            Kind::PrometheusRules => prometheus_rules(model, options),
            Kind::Grafana => grafana(model),
        }
    }
}
