//! The zstd dictionaries this client holds: every one a node named in its
//! handshake (fetched before the connection serves requests), so whatever
//! a node sends can be inflated, and the one the nodes ask clients to
//! compress with.

use std::sync::{Arc, RwLock};

use stratum_wire::codec::{Dictionaries, Dictionary};
use stratum_wire::CodecError;

#[derive(Default)]
struct State {
    held: Dictionaries,
    /// Prepared for compressing at the client's level.
    current: Option<Arc<Dictionary>>,
}

/// Shared by the caller threads (which compress and inflate) and the I/O
/// threads (which fetch). Written a handful of times in a client's life.
pub(crate) struct ClientDictionaries {
    /// The client's compression level (`None`: it does not compress).
    level: Option<i32>,
    state: RwLock<State>,
}

impl ClientDictionaries {
    pub fn new(level: Option<i32>) -> Self {
        Self {
            level,
            state: RwLock::new(State::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` with the dictionaries held (for inflating).
    pub fn with<T>(&self, work: impl FnOnce(&Dictionaries) -> T) -> T {
        work(&self.read().held)
    }

    /// The dictionary to compress with, if the nodes named one.
    pub fn current(&self) -> Option<Arc<Dictionary>> {
        self.read().current.clone()
    }

    /// Of `ids`, those not held yet.
    pub fn missing(&self, ids: &[u32]) -> Vec<u32> {
        let state = self.read();
        ids.iter()
            .copied()
            .filter(|id| *id != 0 && !state.held.contains(*id))
            .collect()
    }

    /// Makes dictionary `id` (held) the one to compress with.
    pub fn use_for_compressing(&self, id: u32) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state
            .current
            .as_ref()
            .is_some_and(|current| current.id() == id)
        {
            return;
        }
        if let Some(held) = state.held.get(id).cloned() {
            state.current = Some(held);
        }
    }

    /// Adds a dictionary a node sent as `id`, checking its bytes are that
    /// dictionary.
    pub fn add(&self, id: u32, bytes: Vec<u8>) -> Result<(), CodecError> {
        let mut dictionary = Dictionary::new(bytes)?;
        if dictionary.id() != id {
            return Err(CodecError::BadDictionary(format!(
                "sent as {id:#010x}, the bytes are {:#010x}",
                dictionary.id()
            )));
        }
        if let Some(level) = self.level {
            dictionary = dictionary.for_compressing(level)?;
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.held.insert(Arc::new(dictionary))?;
        Ok(())
    }
}
