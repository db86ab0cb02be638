//! The loaded model: swapped atomically on reload; a model with errors is refused and the running
//! one stays. Its endpoints (`/v1/model…`) are in `api::model`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use causeway_contracts::{Contracts, Redaction};
use causeway_model::{Diagnostic, Model};
use causeway_store::DlqReport;

/// A model in force, with its compiled contracts.
pub struct LoadedModel {
    pub contracts: Contracts,
    /// Reads the journey keys of events the engine never sees (those refused at ingest).
    pub keys: causeway_journey::JourneyKeys,
    pub path: PathBuf,
    pub loaded_at: String,
}

impl LoadedModel {
    pub fn model(&self) -> &Model {
        self.contracts.model()
    }

    /// A consumer's failure report (`POST /v1/dlq`, a dead-letter topic's message) made fit to
    /// keep: the model's PII redacted from the event it reports (at the pointers of its type, the
    /// one the report or its headers name), and every value so replaced also replaced wherever
    /// else the report quotes it — its error message, stack, context, the message's key and
    /// headers. The redacted event is what a replay sends.
    pub(crate) fn redact_report(&self, report: &mut DlqReport) {
        let redaction = self.contracts.redact_input(&report.original, report.event_type.as_deref());
        if let Some(text) = redaction.text.as_ref() {
            report.original = text.clone();
            // Bytes that were not UTF-8 are kept as the redacted text.
            report.original_bytes = None;
        }
        if let Some(message) = redaction.scrub(&report.error_message) {
            report.error_message = message;
        }
        for text in [&mut report.stack, &mut report.context] {
            if let Some(scrubbed) = text.as_deref().and_then(|t| redaction.scrub(t)) {
                *text = Some(scrubbed);
            }
        }
        scrub_message(&redaction, report);
    }

    /// The key and headers of a broker message refused at ingest, kept on its record (whose
    /// original `ingest` redacted) and in its context, with every PII value its body `raw`
    /// carried replaced there too.
    pub(crate) fn redact_refused_message(&self, raw: &str, record: &mut DlqReport) {
        if record.original_key.is_none() && record.original_headers.is_none() {
            return;
        }
        let redaction = self.contracts.redact_input(raw, record.event_type.as_deref());
        if let Some(context) = record.context.as_deref().and_then(|c| redaction.scrub(c)) {
            record.context = Some(context);
        }
        scrub_message(&redaction, record);
    }
}

/// A message's key and headers with every value `redaction` replaced in its event replaced.
fn scrub_message(redaction: &Redaction, report: &mut DlqReport) {
    let scrub_bytes = |bytes: &mut Vec<u8>| {
        if let Some(scrubbed) = std::str::from_utf8(bytes).ok().and_then(|t| redaction.scrub(t)) {
            *bytes = scrubbed.into_bytes();
        }
    };
    if let Some(key) = report.original_key.as_mut() {
        scrub_bytes(key);
    }
    for (_, value) in report.original_headers.iter_mut().flatten() {
        if let Some(value) = value.as_mut() {
            scrub_bytes(value);
        }
    }
}

/// The slot holding the model in force; cheap to clone and share.
#[derive(Clone, Default)]
pub struct ModelSlot {
    current: Arc<RwLock<Option<Arc<LoadedModel>>>>,
    pii_key: Arc<Vec<u8>>,
}

impl ModelSlot {
    /// A slot with no model: events are stored without contract checks.
    pub fn empty() -> ModelSlot {
        ModelSlot::default()
    }

    /// Loads the model file; any error diagnostic refuses it.
    pub fn load(path: &Path, pii_key: Vec<u8>) -> Result<ModelSlot, Vec<Diagnostic>> {
        let slot = ModelSlot { current: Arc::default(), pii_key: Arc::new(pii_key) };
        slot.install(path)?;
        Ok(slot)
    }

    pub fn current(&self) -> Option<Arc<LoadedModel>> {
        self.current.read().expect("model slot").clone()
    }

    /// Re-reads the model file. On errors the running model stays and the diagnostics come back.
    pub fn reload(&self) -> Result<Option<Arc<LoadedModel>>, Vec<Diagnostic>> {
        let Some(path) = self.current().map(|m| m.path.clone()) else { return Ok(None) };
        self.install(&path).map(Some)
    }

    fn install(&self, path: &Path) -> Result<Arc<LoadedModel>, Vec<Diagnostic>> {
        let model = causeway_model::load(path).into_result()?;
        let loaded = Arc::new(LoadedModel {
            keys: causeway_journey::JourneyKeys::new(&model),
            contracts: Contracts::new(model, self.pii_key.as_ref().clone()),
            path: path.to_path_buf(),
            loaded_at: causeway_envelope::format_time(&chrono::Utc::now()),
        });
        *self.current.write().expect("model slot") = Some(loaded.clone());
        Ok(loaded)
    }
}
