//! Handles every part of the server may need: configuration, store, metrics. Below its users
//! (the wiring, the importer, ingest) so none of them imports another for it.

use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::Arc;
use turingwatch_config::Config;

/// Shared handles every part of the server may need.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}
