//! Recently read API keys, so authenticating a request does not query the
//! store each time (the synchronous scoring calls have a latency budget of a
//! millisecond). An entry lives [`KEY_TTL`]: a key revoked or a tenant deleted
//! through this instance is forgotten at once; through another instance, it
//! stops working within `KEY_TTL`. Unknown key ids are not cached, so a key
//! just created works at once everywhere.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::KeyRecord;

pub const KEY_TTL: Duration = Duration::from_secs(1);
/// Beyond this many keys the cache is emptied (memory stays bounded under a
/// flood of distinct valid keys).
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<String, (KeyRecord, Instant)>>,
}

impl KeyCache {
    pub fn get(&self, id: &str) -> Option<KeyRecord> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(id)
            .filter(|(_, at)| at.elapsed() < KEY_TTL)
            .map(|(key, _)| key.clone())
    }

    pub fn put(&self, key: KeyRecord) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(key.id.clone(), (key, Instant::now()));
    }

    pub fn forget(&self, id: &str) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub fn clear(&self) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
