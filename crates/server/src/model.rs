//! The loaded model: swapped atomically on reload; a model with errors is refused and the running
//! one stays. Its endpoints (`/v1/model…`) are in `api::model`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use causeway_contracts::Contracts;
use causeway_model::{Diagnostic, Model};

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
