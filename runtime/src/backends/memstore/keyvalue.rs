//! memstore's KeyValue adapter: every capability, with ordered maps per namespace, monotonic
//! versions and exact expiry.

use crate::patterns::keyvalue::store::{
    BatchItem, ByteBudget, Condition, Entry, KvBasic, KvBatch, KvCas, KvScan, KvTtl, ScanItem,
    StoreError, StoreResult,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often expired entries are swept from memory (reads never see them regardless).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct MemEntry {
    value: Bytes,
    version: u64,
    expires_at: Option<Instant>,
}

impl MemEntry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    fn to_entry(&self, now: Instant) -> Entry {
        Entry {
            value: self.value.clone(),
            version: self.version,
            ttl: self.expires_at.map(|at| at.saturating_duration_since(now)),
        }
    }
}

type Space = Arc<RwLock<BTreeMap<String, MemEntry>>>;

/// The in-memory store: one ordered map per namespace and one version counter.
#[derive(Debug, Default)]
pub struct MemStore {
    spaces: RwLock<HashMap<String, Space>>,
    last_version: AtomicU64,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Internal("memstore lock poisoned by a panicked writer".into())
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a background task that drops expired entries; it ends when the store is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                store.sweep();
            }
        });
    }

    /// Drops every expired entry now.
    pub fn sweep(&self) {
        let now = Instant::now();
        let spaces: Vec<Space> = match self.spaces.read() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for space in spaces {
            if let Ok(mut map) = space.write() {
                map.retain(|_, e| e.live(now));
            }
        }
    }

    fn space(&self, ns: &str) -> StoreResult<Space> {
        if let Some(space) = self.spaces.read().map_err(poisoned)?.get(ns) {
            return Ok(space.clone());
        }
        let mut spaces = self.spaces.write().map_err(poisoned)?;
        Ok(spaces.entry(ns.to_string()).or_default().clone())
    }

    /// A stored value owns exactly its bytes: a value decoded from a request is a slice of the
    /// connection's read buffer, and keeping that slice would pin the whole buffer (kilobytes per
    /// 256-byte value). Called before the namespace lock is taken, so the copy is outside it.
    fn owned(value: Bytes) -> Bytes {
        Bytes::copy_from_slice(&value)
    }

    fn next_version(&self) -> u64 {
        self.last_version.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn write(
        &self,
        map: &mut BTreeMap<String, MemEntry>,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> u64 {
        let version = self.next_version();
        let expires_at = ttl.map(|t| Instant::now() + t);
        map.insert(
            key.to_string(),
            MemEntry {
                value,
                version,
                expires_at,
            },
        );
        version
    }
}

#[async_trait]
impl crate::backends::health::Ping for MemStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl KvBasic for MemStore {
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Entry>> {
        let space = self.space(ns)?;
        let map = space.read().map_err(poisoned)?;
        let now = Instant::now();
        Ok(map
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.to_entry(now)))
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        let value = Self::owned(value);
        let space = self.space(ns)?;
        let mut map = space.write().map_err(poisoned)?;
        Ok(self.write(&mut map, key, value, ttl))
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let space = self.space(ns)?;
        let mut map = space.write().map_err(poisoned)?;
        let now = Instant::now();
        Ok(map.remove(key).is_some_and(|e| e.live(now)))
    }

    async fn exists(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let space = self.space(ns)?;
        let map = space.read().map_err(poisoned)?;
        let now = Instant::now();
        Ok(map.get(key).is_some_and(|e| e.live(now)))
    }
}

#[async_trait]
impl KvTtl for MemStore {
    async fn expire(&self, ns: &str, key: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        let space = self.space(ns)?;
        let mut map = space.write().map_err(poisoned)?;
        let now = Instant::now();
        match map.get_mut(key).filter(|e| e.live(now)) {
            Some(entry) => {
                entry.expires_at = ttl.map(|t| now + t);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[async_trait]
impl KvScan for MemStore {
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
        keys_only: bool,
    ) -> StoreResult<Vec<ScanItem>> {
        let space = self.space(ns)?;
        let map = space.read().map_err(poisoned)?;
        let now = Instant::now();
        let start = match crate::patterns::keyvalue::keys::scan_start(prefix, after) {
            (bound, true) => Bound::Excluded(bound.to_string()),
            (bound, false) => Bound::Included(bound.to_string()),
        };
        let mut budget = ByteBudget::new(max_bytes);
        let mut page = Vec::new();
        for (k, e) in map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.live(now))
            .take(limit)
        {
            let item = ScanItem {
                key: k.clone(),
                value: (!keys_only).then(|| e.value.clone()),
            };
            let size = item.size();
            page.push(item);
            if budget.spend(size) {
                break;
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl KvBatch for MemStore {
    async fn batch_set(&self, ns: &str, mut items: Vec<BatchItem>) -> StoreResult<Vec<u64>> {
        for item in &mut items {
            item.value = Self::owned(std::mem::take(&mut item.value));
        }
        let space = self.space(ns)?;
        let mut map = space.write().map_err(poisoned)?;
        Ok(items
            .into_iter()
            .map(|item| self.write(&mut map, &item.key, item.value, item.ttl))
            .collect())
    }

    async fn batch_get(
        &self,
        ns: &str,
        keys: &[String],
        max_bytes: usize,
    ) -> StoreResult<Vec<Option<Entry>>> {
        let space = self.space(ns)?;
        let map = space.read().map_err(poisoned)?;
        let now = Instant::now();
        let mut budget = ByteBudget::new(max_bytes);
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let entry = map.get(k).filter(|e| e.live(now)).map(|e| e.to_entry(now));
            if budget.spend(entry.as_ref().map_or(0, |e| e.value.len())) {
                return Err(StoreError::TooLarge { limit: max_bytes });
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn batch_delete(&self, ns: &str, keys: &[String]) -> StoreResult<u32> {
        let space = self.space(ns)?;
        let mut map = space.write().map_err(poisoned)?;
        let now = Instant::now();
        let deleted = keys
            .iter()
            .filter(|k| map.remove(k.as_str()).is_some_and(|e| e.live(now)))
            .count();
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl KvCas for MemStore {
    async fn set_if(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> StoreResult<u64> {
        let value = Self::owned(value);
        let space = self.space(ns)?;
        let mut map = space.write().map_err(poisoned)?;
        let now = Instant::now();
        let current = map.get(key).filter(|e| e.live(now)).map(|e| e.version);
        match (condition, current) {
            (Condition::IfAbsent, Some(_)) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
            (Condition::IfVersion(expected), current) if current != Some(expected) => {
                Err(StoreError::VersionMismatch {
                    key: key.to_string(),
                    expected,
                    current,
                })
            }
            _ => Ok(self.write(&mut map, key, value, ttl)),
        }
    }
}

crate::kv_store_with_every_capability!(MemStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expiry_is_exact_and_sweep_frees_memory() {
        let store = MemStore::new();
        store
            .set(
                "a",
                "k",
                Bytes::from_static(b"v"),
                Some(Duration::from_millis(100)),
            )
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(99)).await;
        let entry = store.get("a", "k").await.unwrap().expect("still live");
        assert_eq!(entry.ttl, Some(Duration::from_millis(1)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(store.get("a", "k").await.unwrap(), None);
        assert!(!store.exists("a", "k").await.unwrap());
        store.sweep();
        assert!(store.space("a").unwrap().read().unwrap().is_empty());
    }

    #[tokio::test]
    async fn stored_values_do_not_pin_the_request_buffer() {
        let store = MemStore::new();
        let buffer = Bytes::from(vec![7u8; 64 * 1024]);
        let value = buffer.slice(100..104);
        store.set("a", "k", value, None).await.unwrap();
        let kept = store.get("a", "k").await.unwrap().unwrap().value;
        assert_eq!(kept.as_ref(), &[7, 7, 7, 7]);
        let range = buffer.as_ptr_range();
        assert!(
            !range.contains(&kept.as_ptr()),
            "the stored value is a view of the 64 KiB buffer it arrived in"
        );
        let item = BatchItem {
            key: "b".into(),
            value: buffer.slice(200..204),
            ttl: None,
        };
        store.batch_set("a", vec![item]).await.unwrap();
        let kept = store.get("a", "b").await.unwrap().unwrap().value;
        assert!(
            !range.contains(&kept.as_ptr()),
            "a batch-set value is a view of its request buffer"
        );
    }

    #[tokio::test]
    async fn namespaces_are_isolated_and_versions_increase() {
        let store = MemStore::new();
        let v1 = store
            .set("a", "k", Bytes::from_static(b"1"), None)
            .await
            .unwrap();
        let v2 = store
            .set("b", "k", Bytes::from_static(b"2"), None)
            .await
            .unwrap();
        let v3 = store
            .set("a", "k", Bytes::from_static(b"3"), None)
            .await
            .unwrap();
        assert!(v1 < v2 && v2 < v3);
        assert_eq!(store.get("b", "k").await.unwrap().unwrap().value, "2");
        assert_eq!(store.get("a", "k").await.unwrap().unwrap().value, "3");
    }
}
