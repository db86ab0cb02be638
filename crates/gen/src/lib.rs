//! Generators from the event-storming model (`causeway gen …`, PRODUCT §8): the model is the
//! source of truth, and these turn it into artefacts other tools read.
//!
//! - [`json_schema`]: per event and schema version, `<Event>.v<N>.schema.json` (the payload, JSON
//!   Schema 2020-12) and `<Event>.v<N>.cloudevent.schema.json` (the whole CloudEvent a producer
//!   sends, with causeway's extension attributes and `data` = the payload);
//! - [`asyncapi`]: `asyncapi.json`, one AsyncAPI 3.0.0 document for the estate;
//! - [`runbooks`]: Markdown runbook skeletons per journey, policy and finding kind, and an index.
//!
//! **Invariants:** pure functions of the model (no IO, no clock, no absolute paths): the same model
//! gives byte-identical files, keys in a fixed order whatever `serde_json` features are enabled.
//! Paths are relative, `/`-separated, and never leave the output directory.

mod asyncapi;
mod json;
mod runbooks;
mod schema;
mod util;

use causeway_model::Model;

pub use asyncapi::asyncapi;
pub use runbooks::{FINDING_KINDS, runbooks};
pub use schema::json_schema;

/// One generated file: a relative, `/`-separated path and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: String,
    pub contents: String,
}

/// What `causeway gen` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    JsonSchema,
    AsyncApi,
    Runbooks,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::JsonSchema, Kind::AsyncApi, Kind::Runbooks];

    /// The name used on the command line and as the default output directory.
    pub fn name(self) -> &'static str {
        match self {
            Kind::JsonSchema => "json-schema",
            Kind::AsyncApi => "asyncapi",
            Kind::Runbooks => "runbooks",
        }
    }

    pub fn generate(self, model: &Model) -> Vec<GeneratedFile> {
        match self {
            Kind::JsonSchema => json_schema(model),
            Kind::AsyncApi => asyncapi(model),
            Kind::Runbooks => runbooks(model),
        }
    }
}
