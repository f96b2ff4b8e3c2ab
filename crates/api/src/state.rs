//! What every handler shares: the JMAP server and the HTTP layer's own parts. A leaf of
//! the crate: it imports no handler and no router, so that every handler can import it.

use crate::auth::Authenticator;
use jmap_server::JmapServer;
use std::sync::Arc;
use store::Store;

/// The JMAP server (`jmap`: store, limits, push hub, the engine's fetchers) and what only
/// HTTP needs (authentication, account setup from the browser).
///
/// It dereferences to the [`JmapServer`], so a handler (and whoever builds the state)
/// reaches `state.store` or sets `state.submission_delay` as before the split.
pub struct AppState {
    pub jmap: JmapServer,
    pub auth: Authenticator,
    /// Adding accounts from the browser; without it (no key to encrypt secrets with)
    /// those routes answer 404.
    pub setup: Option<Arc<crate::setup::Setup>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, base_url: &str) -> Self {
        AppState {
            auth: Authenticator::new(store.clone()),
            jmap: JmapServer::new(store, base_url),
            setup: None,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = JmapServer;
    fn deref(&self) -> &JmapServer {
        &self.jmap
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut JmapServer {
        &mut self.jmap
    }
}
